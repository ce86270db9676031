//! [`Codec`]: sealing and opening one payload.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, Generate, KeyInit, Nonce, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hkdf::Hkdf;
use persistence_core::{Capabilities, Envelope, Error, Result, TenantId};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::compression::{compress, decompress};
use crate::{CodecConfig, EncryptionPolicy, FORMAT, KeyId, MARKER, Row};

/// The codec of one [`CodecConfig`], shared by the sealed wrappers of one backend.
pub struct Codec {
    config: CodecConfig,
    /// Sealed bytes go in [`Envelope::bytes`] (the backend declares
    /// [`Capabilities::binary_payloads`]), not as base64 in the data.
    binary: bool,
    /// Tenant data keys by (key id, tenant), derived once.
    tenant_keys: Mutex<HashMap<(KeyId, TenantId), Arc<DataKey>>>,
}

/// A tenant's data key, ready to derive write keys from.
type DataKey = Hkdf<Sha256>;

/// The random bytes of one sealing: the first half names its write key, the second is
/// its AES-GCM nonce.
type Salt = [u8; 24];

/// The info of a write key's derivation, before the first half of the salt.
const WRITE_KEY_INFO: &[u8] = b"persistence codec v2 write key\0";

/// The AES-256-GCM cipher and nonce of the sealing with `salt` under a tenant's data key:
/// a key of its own per sealing (HKDF-Expand of the data key with the salt's first 12
/// bytes, as XAES-256-GCM does with its nonce's), so no key ever sees enough random
/// 96-bit nonces for one to repeat.
fn write_cipher(data_key: &DataKey, salt: &Salt) -> (Aes256Gcm, Nonce<Aes256Gcm>) {
    let (named, nonce) = salt.split_at(12);
    let mut info = [0u8; WRITE_KEY_INFO.len() + 12];
    info[..WRITE_KEY_INFO.len()].copy_from_slice(WRITE_KEY_INFO);
    info[WRITE_KEY_INFO.len()..].copy_from_slice(named);
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: expand cannot fail.
    if data_key.expand(&info, &mut key).is_err() {
        unreachable!("HKDF-SHA256 expands 32 bytes");
    }
    let mut nonce_bytes = Nonce::<Aes256Gcm>::default();
    nonce_bytes.copy_from_slice(nonce);
    (Aes256Gcm::new(&key.into()), nonce_bytes)
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn corrupt(row: &Row<'_>, why: impl fmt::Display) -> Error {
    Error::corrupt(format!("{row}: {why}"))
}

/// The sealed fields of a stored payload (an object with the key `"$sealed"` holding an
/// object) and the fields kept in clear beside them; `None` for a plain payload.
fn sealed_fields(data: &Value) -> Option<(&Value, Map<String, Value>)> {
    let Value::Object(map) = data else {
        return None;
    };
    let fields = map.get(MARKER).filter(|f| f.is_object())?;
    let clear = map
        .iter()
        .filter(|(k, _)| *k != MARKER)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some((fields, clear))
}

/// `value` as JSON text with every object's keys sorted: the same text however a
/// backend reordered them (Postgres' jsonb does).
fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

impl Codec {
    /// The codec of `config`, for any backend: sealed bytes are stored as base64 in the
    /// envelope's data. [`for_backend`](Self::for_backend) stores them raw where the
    /// backend can.
    pub fn new(config: CodecConfig) -> Arc<Self> {
        Self::build(config, false)
    }

    /// The codec of `config` for a backend with `capabilities`: sealed bytes go in
    /// [`Envelope::bytes`] when it declares
    /// [`binary_payloads`](Capabilities::binary_payloads) (a third smaller than base64),
    /// as base64 in the data otherwise. Either form opens on any backend.
    pub fn for_backend(config: CodecConfig, capabilities: &Capabilities) -> Arc<Self> {
        Self::build(config, capabilities.binary_payloads)
    }

    fn build(mut config: CodecConfig, binary: bool) -> Arc<Self> {
        if config.zstd_level == 0 {
            config.zstd_level = 3;
        }
        Arc::new(Codec {
            config,
            binary,
            tenant_keys: Mutex::new(HashMap::new()),
        })
    }

    /// Whether store values are sealed: compression or encryption is on.
    pub fn seals_values(&self) -> bool {
        self.config.encryption.is_some() || self.config.compress_above.is_some()
    }

    /// Whether a store search can filter on `field`: values are not sealed, or the
    /// field is kept in clear.
    pub fn searchable(&self, field: &str) -> bool {
        !self.seals_values() || self.config.clear_fields.iter().any(|f| f == field)
    }

    /// Whether a store search can filter on some field.
    pub fn searches(&self) -> bool {
        !self.seals_values() || !self.config.clear_fields.is_empty()
    }

    /// The fields of an item's value kept in clear, and the rest to seal.
    fn split_clear<'v>(
        &self,
        row: &Row<'_>,
        data: &'v Value,
    ) -> (Map<String, Value>, Cow<'v, Value>) {
        let Value::Object(map) = data else {
            return (Map::new(), Cow::Borrowed(data));
        };
        if !matches!(row, Row::Item { .. }) || self.config.clear_fields.is_empty() {
            return (Map::new(), Cow::Borrowed(data));
        }
        let (clear, rest): (Map<String, Value>, Map<String, Value>) = map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, _)| self.config.clear_fields.contains(k));
        (clear, Cow::Owned(Value::Object(rest)))
    }

    /// The data key of `tenant` under master key `id`.
    async fn data_key(&self, tenant: &TenantId, id: &KeyId, row: &Row<'_>) -> Result<Arc<DataKey>> {
        let Some((keys, _)) = &self.config.encryption else {
            return Err(corrupt(
                row,
                "the payload is encrypted and no keys are configured",
            ));
        };
        let cache_key = (id.clone(), tenant.clone());
        let cached = self
            .tenant_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
            .cloned();
        Ok(match cached {
            Some(key) => key,
            None => {
                let master = keys.key(id).await?.ok_or_else(|| {
                    corrupt(
                        row,
                        format!("sealed under key id {id}, which the key provider does not have"),
                    )
                })?;
                let key = DataKey::from_prk(&master.tenant_key(tenant))
                    .map_err(|_| Error::invalid_input("a data key is not 32 bytes"))?;
                let key = Arc::new(key);
                self.tenant_keys
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(cache_key, key.clone());
                key
            }
        })
    }

    /// `envelope` as stored for `row` of `tenant` (by reference: a sealed payload is
    /// built from the serialized bytes, so the value itself is never cloned).
    pub(crate) async fn seal(
        &self,
        tenant: &TenantId,
        row: Row<'_>,
        envelope: &Envelope,
    ) -> Result<Envelope> {
        let schema = envelope.schema_version;
        if !self.seals_values() {
            return Ok(envelope.clone());
        }
        if envelope.bytes.is_some() {
            return Err(Error::invalid_input(format!(
                "{row}: the codec seals JSON payloads and refuses an envelope with bytes"
            )));
        }
        let (clear, rest) = self.split_clear(&row, &envelope.data);
        let clear_text = if clear.is_empty() {
            String::new()
        } else {
            canonical(&Value::Object(clear.clone()))
        };
        let mut bytes = serde_json::to_vec(rest.as_ref())
            .map_err(|e| Error::invalid_input(format!("{row}: cannot serialize: {e}")))?;
        let mut compressed = false;
        if self.config.compress_above.is_some_and(|t| bytes.len() >= t) {
            let packed = compress(&bytes, self.config.zstd_level)
                .map_err(|e| Error::invalid_input(format!("{row}: zstd: {e}")))?;
            if packed.len() < bytes.len() {
                bytes = packed;
                compressed = true;
            }
        }
        let mut fields = serde_json::Map::new();
        fields.insert("v".into(), json!(FORMAT));
        if compressed {
            fields.insert("z".into(), json!(1));
        }
        if let Some((keys, _)) = &self.config.encryption {
            let id = keys.current().await?;
            let data_key = self.data_key(tenant, &id, &row).await?;
            let salt = Salt::generate();
            let (cipher, nonce) = write_cipher(&data_key, &salt);
            let aad = row.associated_data(tenant, schema, compressed, &clear_text);
            let sealed = cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &bytes,
                        aad: &aad,
                    },
                )
                .map_err(|_| {
                    Error::invalid_input(format!("{row}: the payload cannot be encrypted"))
                })?;
            fields.insert("k".into(), json!(id.as_str()));
            if self.binary {
                let mut out = Vec::with_capacity(salt.len() + sealed.len());
                out.extend_from_slice(&salt);
                out.extend_from_slice(&sealed);
                return Ok(self.stored(schema, clear, fields, Some(out)));
            }
            fields.insert("n".into(), json!(BASE64.encode(salt)));
            fields.insert("c".into(), json!(BASE64.encode(sealed)));
        } else if compressed {
            if self.binary {
                return Ok(self.stored(schema, clear, fields, Some(bytes)));
            }
            fields.insert("c".into(), json!(BASE64.encode(&bytes)));
        } else if sealed_fields(&envelope.data).is_some() {
            // A plain value that looks sealed is escaped, never taken for sealed.
            fields.insert("p".into(), envelope.data.clone());
            return Ok(Envelope::new(schema, json!({ MARKER: fields })));
        } else {
            return Ok(envelope.clone());
        }
        Ok(self.stored(schema, clear, fields, None))
    }

    /// The stored envelope: the clear fields, the sealed header under [`MARKER`], and
    /// the sealed bytes when they are stored raw.
    fn stored(
        &self,
        schema: u32,
        clear: Map<String, Value>,
        header: Map<String, Value>,
        bytes: Option<Vec<u8>>,
    ) -> Envelope {
        let mut stored = clear;
        stored.insert(MARKER.into(), Value::Object(header));
        let envelope = Envelope::new(schema, Value::Object(stored));
        match bytes {
            Some(bytes) => envelope.with_bytes(bytes),
            None => envelope,
        }
    }

    /// The id of the key writes are encrypted under now; `None` without encryption.
    ///
    /// # Errors
    /// Whatever the key provider fails with.
    pub(crate) async fn writer_key(&self) -> Result<Option<KeyId>> {
        match &self.config.encryption {
            Some((keys, _)) => Ok(Some(keys.current().await?)),
            None => Ok(None),
        }
    }

    /// The payload stored as `envelope` for `row` of `tenant`.
    pub(crate) async fn open(
        &self,
        tenant: &TenantId,
        row: Row<'_>,
        envelope: Envelope,
    ) -> Result<Envelope> {
        let required = matches!(
            self.config.encryption,
            Some((_, EncryptionPolicy::Required))
        );
        self.open_with(tenant, row, envelope, required).await
    }

    /// [`open`](Self::open), reading payloads that are not encrypted unless `required`:
    /// a rekey reads them whatever the policy (it is the migration that encrypts them).
    pub(crate) async fn open_with(
        &self,
        tenant: &TenantId,
        row: Row<'_>,
        envelope: Envelope,
        required: bool,
    ) -> Result<Envelope> {
        let plaintext = || {
            corrupt(
                &row,
                "a payload that is not encrypted, where encryption is required",
            )
        };
        let Some((fields, clear)) = sealed_fields(&envelope.data) else {
            return if required {
                Err(plaintext())
            } else {
                Ok(envelope)
            };
        };
        let schema = envelope.schema_version;
        let version = fields.get("v").and_then(Value::as_u64);
        if version != Some(FORMAT) {
            return Err(corrupt(
                &row,
                format!("sealed payload of unknown format {version:?}"),
            ));
        }
        if let Some(plain) = fields.get("p") {
            if envelope.bytes.is_some() {
                return Err(corrupt(&row, "an escaped plain payload with bytes"));
            }
            return if required || !clear.is_empty() {
                Err(plaintext())
            } else {
                Ok(Envelope::new(schema, plain.clone()))
            };
        }
        let text = |name: &str| fields.get(name).and_then(Value::as_str);
        let binary = |name: &str| -> Result<Vec<u8>> {
            let text = text(name)
                .ok_or_else(|| corrupt(&row, format!("sealed payload without \"{name}\"")))?;
            BASE64
                .decode(text)
                .map_err(|_| corrupt(&row, format!("sealed payload's \"{name}\" is not base64")))
        };
        let compressed = match fields.get("z") {
            None => false,
            Some(z) if z == &json!(1) => true,
            Some(_) => return Err(corrupt(&row, "sealed payload's \"z\" is not 1")),
        };
        // Raw bytes beside the header (salt then ciphertext when encrypted), or base64
        // fields in it; never both.
        let raw = envelope.bytes;
        let (salt, mut bytes) = match raw {
            Some(_) if fields.get("c").is_some() || fields.get("n").is_some() => {
                return Err(corrupt(
                    &row,
                    "sealed payload with both raw and base64 bytes",
                ));
            }
            Some(mut raw) if text("k").is_some() => {
                if raw.len() < std::mem::size_of::<Salt>() {
                    return Err(corrupt(&row, "sealed payload's bytes are truncated"));
                }
                let rest = raw.split_off(std::mem::size_of::<Salt>());
                (Some(raw), rest)
            }
            Some(raw) => (None, raw),
            None if text("k").is_some() => (Some(binary("n")?), binary("c")?),
            None => (None, binary("c")?),
        };
        match text("k") {
            Some(id) => {
                let id = KeyId::new(id).map_err(|e| corrupt(&row, e.message()))?;
                let data_key = self.data_key(tenant, &id, &row).await?;
                let salt: Salt = salt
                    .unwrap_or_default()
                    .try_into()
                    .map_err(|_| corrupt(&row, "sealed payload's \"n\" is not 24 bytes"))?;
                let (cipher, nonce) = write_cipher(&data_key, &salt);
                let clear_text = if clear.is_empty() {
                    String::new()
                } else {
                    canonical(&Value::Object(clear.clone()))
                };
                let aad = row.associated_data(tenant, schema, compressed, &clear_text);
                bytes = cipher
                    .decrypt(
                        &nonce,
                        Payload {
                            msg: &bytes,
                            aad: &aad,
                        },
                    )
                    .map_err(|_| {
                        corrupt(
                            &row,
                            format!(
                                "the payload sealed under key id {id} does not authenticate \
                                 (damaged, or moved from another row, tenant or version)"
                            ),
                        )
                    })?;
            }
            None if required => return Err(plaintext()),
            None => {}
        }
        if compressed {
            bytes = decompress(&bytes)
                .map_err(|e| corrupt(&row, format!("the payload does not decompress: {e}")))?;
        }
        let mut data: Value = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(&row, format!("the opened payload is not JSON: {e}")))?;
        if !clear.is_empty() {
            let Value::Object(rest) = &mut data else {
                return Err(corrupt(&row, "fields in clear beside a sealed non-object"));
            };
            for (k, v) in clear {
                if rest.insert(k, v).is_some() {
                    return Err(corrupt(&row, "a field both in clear and sealed"));
                }
            }
        }
        Ok(Envelope::new(schema, data))
    }
}

#[cfg(test)]
mod tests;
