//! Envelope bytes in a backend's own byte records: a record's JSON without them, then a
//! NUL byte and the bytes raw (JSON text never holds a raw NUL), so they cost their own
//! length instead of base64's four thirds.

use std::borrow::Borrow;

use serde::Serializer;
use serde::ser::SerializeStruct;

use crate::envelope::Envelope;

/// Serializes an envelope without its [`bytes`](Envelope::bytes), for
/// `#[serde(serialize_with = "...")]` on a record's envelope field: the bytes go after
/// the record's JSON with [`append_bytes`].
///
/// # Errors
/// Whatever `serializer` fails with.
pub fn envelope_without_bytes<S: Serializer, E: Borrow<Envelope>>(
    envelope: &E,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let envelope = envelope.borrow();
    let mut out = serializer.serialize_struct("Envelope", 2)?;
    out.serialize_field("schema_version", &envelope.schema_version)?;
    out.serialize_field("data", &envelope.data)?;
    out.end()
}

/// Appends `bytes` raw to a record's `json`, after a NUL byte; nothing for `None`.
pub fn append_bytes(json: &mut Vec<u8>, bytes: Option<&[u8]>) {
    if let Some(bytes) = bytes {
        json.reserve(1 + bytes.len());
        json.push(0);
        json.extend_from_slice(bytes);
    }
}

/// A stored record's JSON, and the bytes [`append_bytes`] put after it, if any.
pub fn split_bytes(stored: &[u8]) -> (&[u8], Option<&[u8]>) {
    match stored.iter().position(|&b| b == 0) {
        Some(at) => (&stored[..at], Some(&stored[at + 1..])),
        None => (stored, None),
    }
}

/// Puts the bytes found after a record's JSON back into its envelope.
///
/// # Errors
/// A message for a `Corrupt` error when the envelope has bytes in its JSON too (base64,
/// as a record written before could): a record holds them once.
pub fn attach_bytes(envelope: &mut Envelope, bytes: Option<&[u8]>) -> Result<(), String> {
    if let Some(bytes) = bytes {
        if envelope.bytes.is_some() {
            return Err("the record has bytes both in its JSON and after it".into());
        }
        envelope.bytes = Some(bytes.to_vec());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Record {
        n: u32,
        #[serde(serialize_with = "envelope_without_bytes")]
        value: Envelope,
    }

    #[test]
    fn records_keep_bytes_raw_and_plain_records_are_their_json() {
        let value = Envelope::new(2, json!({"a": "\u{0}"})).with_bytes(vec![0, 1, 0, 255]);
        let record = Record { n: 7, value };
        let mut stored = serde_json::to_vec(&record).unwrap();
        assert!(!stored.contains(&0), "escaped in JSON");
        append_bytes(&mut stored, record.value.bytes.as_deref());
        let (json, bytes) = split_bytes(&stored);
        let mut read: Record = serde_json::from_slice(json).unwrap();
        attach_bytes(&mut read.value, bytes).unwrap();
        assert_eq!((read.n, &read.value), (7, &record.value));

        let plain = Record {
            n: 1,
            value: Envelope::new(1, json!(1)),
        };
        let mut stored = serde_json::to_vec(&plain).unwrap();
        append_bytes(&mut stored, None);
        assert_eq!(split_bytes(&stored), (stored.as_slice(), None));

        let mut twice = Envelope::new(1, json!(1)).with_bytes(vec![1]);
        assert!(attach_bytes(&mut twice, Some(&[2])).is_err());
    }
}
