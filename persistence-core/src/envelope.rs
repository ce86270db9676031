//! Schema-versioned payloads.
//!
//! Every stored payload (checkpoint state, pending write, store value, session event) is
//! an [`Envelope`]: the JSON data plus the `schema_version` it was written with. User
//! types implement [`Versioned`] and go through [`encode`] / [`decode`] (the typed
//! handles do this for you):
//!
//! - same version: decoded as is;
//! - older: passed through the type's upcasters `v1 -> v2 -> ...` up to the current one;
//! - newer: [`ErrorKind::SchemaTooNew`](crate::ErrorKind::SchemaTooNew), nothing changed;
//! - missing, garbled, or no upcaster for that version:
//!   [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// A stored payload and the schema version it was written with.
///
/// # Room to grow
/// `#[non_exhaustive]`: build one with [`Envelope::new`]. Fields added later stay absent
/// for plain JSON (as [`bytes`](Self::bytes) does), so rows written before them still
/// read as they are. In the other direction, a stored envelope with a field this version
/// does not know (one written by a later version) is `Corrupt` on read, never taken for
/// plain JSON.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Envelope {
    /// Version of the writer's schema.
    pub schema_version: u32,
    /// The payload.
    pub data: Value,
    /// Binary bytes beside `data`, `None` for plain JSON payloads. The codec
    /// (`persistence-codec`) puts a sealed payload's ciphertext here, and its header in
    /// `data`, on a backend that declares
    /// [`Capabilities::binary_payloads`](crate::Capabilities::binary_payloads): such a
    /// backend stores them as they are. A backend that does not declare it keeps them
    /// in a larger encoding or refuses them (`InvalidInput`); it never drops them.
    /// Serialized with serde as a base64 string under `"bytes"`, left out when `None`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "base64_bytes"
    )]
    pub bytes: Option<Vec<u8>>,
}

impl std::fmt::Debug for Envelope {
    /// Shows the length of [`bytes`](Self::bytes), never the bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Envelope");
        out.field("schema_version", &self.schema_version)
            .field("data", &self.data);
        if let Some(bytes) = &self.bytes {
            out.field("bytes", &format_args!("<{} bytes>", bytes.len()));
        }
        out.finish()
    }
}

/// [`Envelope::bytes`] as a base64 string in serde formats.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => serializer.serialize_str(&STANDARD.encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text = <Option<String>>::deserialize(deserializer)?;
        text.map(|text| {
            STANDARD
                .decode(text.as_bytes())
                .map_err(|_| serde::de::Error::custom("envelope bytes are not base64"))
        })
        .transpose()
    }
}

impl Envelope {
    /// An envelope of raw JSON at `schema_version`.
    pub fn new(schema_version: u32, data: Value) -> Self {
        Envelope {
            schema_version,
            data,
            bytes: None,
        }
    }

    /// Same, with [`bytes`](Self::bytes) beside the data.
    #[must_use]
    pub fn with_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.bytes = Some(bytes);
        self
    }

    /// Serializes to bytes for storage.
    ///
    /// # Errors
    /// `InvalidInput` if the JSON cannot be serialized (it always can for `Value`).
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self)
            .map_err(|e| Error::invalid_input(format!("cannot serialize envelope: {e}")))
    }

    /// Parses stored bytes.
    ///
    /// # Errors
    /// `Corrupt` when the bytes are not an envelope (missing `schema_version`, bad JSON).
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(format!("stored envelope is unreadable: {e}")))
    }
}

/// Upgrades data of one schema version to the next.
pub type Upcaster = fn(Value) -> std::result::Result<Value, String>;

/// A user type with a schema version and a chain of upcasters from older versions.
///
/// ```
/// use persistence_core::{Versioned, Upcaster};
/// use serde::{Deserialize, Serialize};
/// use serde_json::{json, Value};
///
/// #[derive(Serialize, Deserialize)]
/// struct Note { text: String, tags: Vec<String> }
///
/// impl Versioned for Note {
///     const VERSION: u32 = 2;
///     // v1 had no tags.
///     const UPCASTERS: &'static [Upcaster] = &[|mut v: Value| {
///         v["tags"] = json!([]);
///         Ok(v)
///     }];
/// }
/// ```
pub trait Versioned: Serialize + DeserializeOwned {
    /// The version this code writes. Versions start at 1.
    const VERSION: u32;
    /// `UPCASTERS[i]` turns version `i + 1` into version `i + 2`; so there are
    /// `VERSION - 1` of them.
    const UPCASTERS: &'static [Upcaster] = &[];
}

/// Stamps `value` with `T::VERSION`.
///
/// # Errors
/// `InvalidInput` if `value` cannot be serialized to JSON.
pub fn encode<T: Versioned>(value: &T) -> Result<Envelope> {
    let data = serde_json::to_value(value).map_err(|e| {
        Error::invalid_input(format!(
            "cannot serialize {}: {e}",
            std::any::type_name::<T>()
        ))
    })?;
    Ok(Envelope::new(T::VERSION, data))
}

/// Decodes an envelope into `T`, running upcasters for older versions.
///
/// # Errors
/// `SchemaTooNew` for a newer version; `Corrupt` when the data does not decode or no
/// upcaster covers the stored version.
pub fn decode<T: Versioned>(envelope: &Envelope) -> Result<T> {
    let found = envelope.schema_version;
    let current = T::VERSION;
    if found > current {
        return Err(Error::schema_too_new(found, current));
    }
    if found == 0 {
        return Err(Error::corrupt("schema version 0 is not a valid version"));
    }
    let mut data = envelope.data.clone();
    for version in found..current {
        let upcaster = T::UPCASTERS.get(version as usize - 1).ok_or_else(|| {
            Error::corrupt(format!(
                "{} has no upcaster from schema version {version} to {}",
                std::any::type_name::<T>(),
                version + 1
            ))
        })?;
        data = upcaster(data).map_err(|e| {
            Error::corrupt(format!(
                "upcasting {} from version {version} failed: {e}",
                std::any::type_name::<T>()
            ))
        })?;
    }
    serde_json::from_value(data).map_err(|e| {
        Error::corrupt(format!(
            "stored {} (schema version {found}) does not decode: {e}",
            std::any::type_name::<T>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V3 {
        name: String,
        tags: Vec<String>,
        score: i64,
    }
    impl Versioned for V3 {
        const VERSION: u32 = 3;
        const UPCASTERS: &'static [Upcaster] = &[
            |mut v| {
                v["tags"] = json!([]);
                Ok(v)
            },
            |mut v| {
                v["score"] = json!(0);
                Ok(v)
            },
        ];
    }

    #[test]
    fn upcasts_through_the_chain() {
        let old = Envelope::new(1, json!({"name": "x"}));
        let v: V3 = decode(&old).unwrap();
        assert_eq!(
            v,
            V3 {
                name: "x".into(),
                tags: vec![],
                score: 0
            }
        );
    }

    #[test]
    fn newer_and_garbled() {
        let e = decode::<V3>(&Envelope::new(4, json!({}))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SchemaTooNew);
        let e = decode::<V3>(&Envelope::new(3, json!({"name": 5}))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        let e = Envelope::from_slice(br#"{"data": 1}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        let e = decode::<V3>(&Envelope::new(0, json!({}))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn a_field_of_a_later_version_is_refused_not_ignored() {
        let later = br#"{"schema_version": 1, "data": "c2VjcmV0", "codec": "aes-gcm"}"#;
        let e = Envelope::from_slice(later).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.message().contains("codec"), "{e}");
        let plain = Envelope::from_slice(br#"{"schema_version": 1, "data": "x"}"#).unwrap();
        assert_eq!(plain, Envelope::new(1, json!("x")));
    }

    #[test]
    fn bytes_serialize_as_base64_and_never_show_in_debug() {
        let plain = Envelope::new(1, json!({"a": 1}));
        let text = String::from_utf8(plain.to_vec().unwrap()).unwrap();
        assert!(!text.contains("bytes"), "left out when None: {text}");
        let binary = plain.clone().with_bytes(vec![0, 1, 0xfe, 0xff]);
        let text = String::from_utf8(binary.to_vec().unwrap()).unwrap();
        assert!(text.contains(r#""bytes":"AAH+/w==""#), "{text}");
        assert_eq!(Envelope::from_slice(text.as_bytes()).unwrap(), binary);
        assert_ne!(binary, plain, "bytes take part in equality");
        let debug = format!("{binary:?}");
        assert!(
            debug.contains("<4 bytes>") && !debug.contains("254"),
            "{debug}"
        );
        let bad = br#"{"schema_version": 1, "data": 1, "bytes": "not base64!"}"#;
        let e = Envelope::from_slice(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    }
}
