//! Payloads compressed and encrypted at rest, bound to their row: a layer over any
//! backend of the persistence workspace, third-party ones included. The `persistence`
//! facade applies it with `Persistence::with_codec` (or `encryption=` URL options);
//! [`SealedCheckpointer`], [`SealedStore`] and [`SealedSessions`] wrap the traits
//! directly.
//!
//! Every payload (checkpoint state, pending write, store value, session event) goes
//! through the codec on its way to the backend and back:
//!
//! 1. serialized to JSON; compressed with zstd when it is at least
//!    [`CodecConfig::with_compression`]'s threshold long (and only if that makes it
//!    smaller);
//! 2. encrypted with XChaCha20-Poly1305 under the tenant's data key (HKDF-SHA256 of the
//!    current master key of the [`KeyProvider`] and the tenant id), with a fresh random
//!    192-bit nonce per write;
//! 3. stored as the envelope's data: `{"$sealed": {"v": 1, "k": key id, "n": nonce,
//!    "c": ciphertext, "z": 1 if compressed}}` (base64), the envelope's
//!    `schema_version` unchanged. A backend, third-party ones included, stores it like
//!    any JSON.
//!
//! The associated data of the encryption names the tenant, the kind of payload, the
//! row's identity and the schema version: thread and checkpoint id (checkpoint state);
//! thread, checkpoint id, task and index (pending write); namespace, key and item
//! version (store value); session and ordinal (session event). A ciphertext copied to
//! another row, tenant or version, a flipped byte, a truncated envelope: each fails
//! [`Corrupt`](persistence_core::ErrorKind::Corrupt) on read, never decrypts.
//!
//! # What stays in clear
//! Tenant ids, thread, session and checkpoint ids, namespaces and keys, ordinals,
//! versions, steps, parents, timestamps, TTLs, the envelope's schema version, the key
//! id a payload was sealed with, its length (give or take compression), checkpoint
//! metadata (list filters use it) and pending writes' channel names. Store values are
//! sealed whole, so a store `search` with a filter fails `Unsupported` (the layer
//! declares `search: false`); search by key prefix works.
//!
//! # Threat model
//! It protects payloads from whoever reads the stored rows without the app's keys: a
//! database dump, a backup, a DBA or operator reading tables, Redis keys or files. It
//! does not protect against a compromised app process (it holds the keys) or hide the
//! clear data above; it does not stop someone with write access from deleting rows or
//! putting back an older row with its own identity unchanged (a deleted session's
//! ordinals and a deleted item's versions start again, so such a row still opens).
//!
//! # Policy
//! [`EncryptionPolicy::Required`] refuses to read a payload that is not encrypted
//! (plain or compressed only): `Corrupt`, nothing returned. [`EncryptionPolicy::Optional`]
//! reads both and writes encrypted: the migration mode for data written before
//! encryption was turned on. Rows written without the codec read as they are under
//! `Optional` (a plain payload whose JSON is an object with the single key `"$sealed"`
//! is escaped on write so it is never taken for a sealed one).

#![deny(missing_docs)]

mod checkpointer;
mod keys;
mod maintenance;
mod sessions;
mod store;
mod usage;

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, Generate, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use persistence_core::{
    CheckpointId, Envelope, Error, ItemKey, Namespace, Result, SessionKey, TenantId, ThreadKey,
};
use serde_json::{Value, json};

pub use checkpointer::SealedCheckpointer;
pub use keys::{KeyId, KeyProvider, MasterKey, StaticKeyring};
pub use maintenance::SealedMaintenance;
pub use sessions::SealedSessions;
pub use store::SealedStore;
pub use usage::{KeyUsage, key_usage, sealed_key};

/// The key of the object a sealed payload is stored as.
const MARKER: &str = "$sealed";

/// The format version of sealed payloads this code writes and reads.
const FORMAT: u64 = 1;

/// The largest payload a decompression produces: a stored frame claiming more is
/// `Corrupt` (no allocation bomb from a damaged row).
const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Whether plaintext payloads are still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncryptionPolicy {
    /// Every payload read must be encrypted; a plain or compressed-only one is
    /// `Corrupt`. Writes are encrypted.
    Required,
    /// Writes are encrypted; reads take encrypted and plain payloads (the mode for a
    /// store that has rows from before encryption).
    Optional,
}

/// What the codec does. The default does nothing (payloads are stored as they are);
/// turn on compression, encryption or both.
///
/// ```
/// use std::sync::Arc;
/// use persistence_codec::{CodecConfig, EncryptionPolicy, StaticKeyring};
///
/// let keys = StaticKeyring::parse("k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
/// let config = CodecConfig::default()
///     .with_compression(1024)
///     .with_encryption(Arc::new(keys), EncryptionPolicy::Required);
/// assert!(!format!("{config:?}").contains("AAEC"));
/// # Ok::<(), persistence_core::Error>(())
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct CodecConfig {
    /// Master keys and the policy; `None`: no encryption.
    pub encryption: Option<(Arc<dyn KeyProvider>, EncryptionPolicy)>,
    /// Compress payloads whose JSON is at least this many bytes; `None`: never.
    pub compress_above: Option<usize>,
    /// The zstd level (1..=22; default 3).
    pub zstd_level: i32,
}

impl fmt::Debug for CodecConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodecConfig")
            .field("encryption", &self.encryption.as_ref().map(|(k, p)| (k, p)))
            .field("compress_above", &self.compress_above)
            .field("zstd_level", &self.zstd_level)
            .finish()
    }
}

impl CodecConfig {
    /// Same, encrypting with the keys of `keys` under `policy`.
    #[must_use]
    pub fn with_encryption(mut self, keys: Arc<dyn KeyProvider>, policy: EncryptionPolicy) -> Self {
        self.encryption = Some((keys, policy));
        self
    }

    /// Same, compressing payloads of at least `threshold` bytes of JSON.
    #[must_use]
    pub fn with_compression(mut self, threshold: usize) -> Self {
        self.compress_above = Some(threshold);
        self
    }

    /// Same, at zstd level `level` (clamped to 1..=22).
    #[must_use]
    pub fn with_zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level.clamp(1, 22);
        self
    }
}

/// The row a payload belongs to: what its ciphertext is bound to.
#[derive(Clone, Copy)]
pub(crate) enum Row<'a> {
    Checkpoint {
        thread: &'a ThreadKey,
        id: CheckpointId,
    },
    Write {
        thread: &'a ThreadKey,
        checkpoint: CheckpointId,
        task: &'a str,
        index: u32,
    },
    Item {
        namespace: &'a Namespace,
        key: &'a ItemKey,
        version: u64,
    },
    Event {
        session: &'a SessionKey,
        seq: u64,
    },
}

impl fmt::Display for Row<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Row::Checkpoint { thread, id } => write!(f, "checkpoint {id} of thread {thread}"),
            Row::Write {
                thread,
                checkpoint,
                task,
                index,
            } => write!(
                f,
                "pending write {task}/{index} of checkpoint {checkpoint} of thread {thread}"
            ),
            Row::Item {
                namespace,
                key,
                version,
            } => write!(f, "item {namespace}/{key} version {version}"),
            Row::Event { session, seq } => write!(f, "event {seq} of session {session}"),
        }
    }
}

impl Row<'_> {
    /// The associated data: tenant, kind, identity, schema version and whether the
    /// plaintext is compressed, NUL-separated (ids contain no NUL).
    fn associated_data(&self, tenant: &TenantId, schema: u32, compressed: bool) -> Vec<u8> {
        let parts: Vec<String> = match self {
            Row::Checkpoint { thread, id } => {
                vec!["checkpoint".into(), thread.to_string(), id.to_string()]
            }
            Row::Write {
                thread,
                checkpoint,
                task,
                index,
            } => vec![
                "write".into(),
                thread.to_string(),
                checkpoint.to_string(),
                task.to_string(),
                index.to_string(),
            ],
            Row::Item {
                namespace,
                key,
                version,
            } => {
                let mut parts = vec!["item".to_string(), namespace.labels().len().to_string()];
                parts.extend(namespace.labels().iter().cloned());
                parts.push(key.to_string());
                parts.push(version.to_string());
                parts
            }
            Row::Event { session, seq } => {
                vec!["event".into(), session.to_string(), seq.to_string()]
            }
        };
        let mut aad = b"persistence codec v1".to_vec();
        for part in [tenant.as_str().to_string()]
            .into_iter()
            .chain(parts)
            .chain([schema.to_string(), u8::from(compressed).to_string()])
        {
            aad.push(0);
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

/// The codec of one [`CodecConfig`], shared by the sealed wrappers of one backend.
pub struct Codec {
    config: CodecConfig,
    /// Tenant data keys by (key id, tenant), derived once.
    tenant_keys: Mutex<HashMap<(KeyId, TenantId), [u8; 32]>>,
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

thread_local! {
    /// A zstd context per thread and level: making one per payload costs more than
    /// compressing a small payload.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// `bytes` compressed at `level`, with this thread's context.
fn compress(bytes: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, compressor)) => compressor.compress(bytes),
            None => zstd::bulk::compress(bytes, level),
        }
    })
}

/// Whether `data` is a sealed payload (an object with the single key `"$sealed"`).
fn sealed_fields(data: &Value) -> Option<&Value> {
    match data {
        Value::Object(map) if map.len() == 1 => map.get(MARKER),
        _ => None,
    }
}

impl Codec {
    /// The codec of `config`.
    pub fn new(config: CodecConfig) -> Arc<Self> {
        let mut config = config;
        if config.zstd_level == 0 {
            config.zstd_level = 3;
        }
        Arc::new(Codec {
            config,
            tenant_keys: Mutex::new(HashMap::new()),
        })
    }

    /// Whether store values are sealed (and so cannot be searched by their fields):
    /// compression or encryption is on.
    pub fn seals_values(&self) -> bool {
        self.config.encryption.is_some() || self.config.compress_above.is_some()
    }

    async fn cipher(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        row: &Row<'_>,
    ) -> Result<XChaCha20Poly1305> {
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
            .copied();
        let key = match cached {
            Some(key) => key,
            None => {
                let master = keys.key(id).await?.ok_or_else(|| {
                    corrupt(
                        row,
                        format!("sealed under key id {id}, which the key provider does not have"),
                    )
                })?;
                let key = master.tenant_key(tenant);
                self.tenant_keys
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(cache_key, key);
                key
            }
        };
        XChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| Error::invalid_input("a data key is not 32 bytes"))
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
        let mut bytes = serde_json::to_vec(&envelope.data)
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
            let cipher = self.cipher(tenant, &id, &row).await?;
            let nonce = XNonce::generate();
            let aad = row.associated_data(tenant, schema, compressed);
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
            fields.insert("n".into(), json!(BASE64.encode(nonce)));
            fields.insert("c".into(), json!(BASE64.encode(sealed)));
        } else if compressed {
            fields.insert("c".into(), json!(BASE64.encode(&bytes)));
        } else if sealed_fields(&envelope.data).is_some() {
            // A plain value that looks sealed is escaped, never taken for sealed.
            fields.insert("p".into(), envelope.data.clone());
        } else {
            return Ok(envelope.clone());
        }
        Ok(Envelope::new(schema, json!({ MARKER: fields })))
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
        let plaintext = || {
            corrupt(
                &row,
                "a payload that is not encrypted, where encryption is required",
            )
        };
        let Some(fields) = sealed_fields(&envelope.data) else {
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
            return if required {
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
        let mut bytes = binary("c")?;
        match text("k") {
            Some(id) => {
                let id = KeyId::new(id).map_err(|e| corrupt(&row, e.message()))?;
                let cipher = self.cipher(tenant, &id, &row).await?;
                let nonce: [u8; 24] = binary("n")?
                    .try_into()
                    .map_err(|_| corrupt(&row, "sealed payload's nonce is not 24 bytes"))?;
                let aad = row.associated_data(tenant, schema, compressed);
                bytes = cipher
                    .decrypt(
                        &XNonce::from(nonce),
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
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(bytes.as_slice())
                .map_err(|e| corrupt(&row, format!("zstd: {e}")))?
                .take(MAX_DECOMPRESSED)
                .read_to_end(&mut out)
                .map_err(|e| corrupt(&row, format!("the payload does not decompress: {e}")))?;
            bytes = out;
        }
        let data = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(&row, format!("the opened payload is not JSON: {e}")))?;
        Ok(Envelope::new(schema, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persistence_core::{MemoryBackend, PutItemOptions, Store};

    /// Whatever a put accepts, a get returns: a plain value shaped like a sealed one is
    /// escaped (never taken for sealed), a large one compressed, a small one kept as is.
    #[tokio::test]
    async fn every_value_round_trips_and_lookalikes_are_escaped() {
        let backend = MemoryBackend::new();
        let inner: Arc<dyn Store> = Arc::new(backend.clone());
        let codec = Codec::new(CodecConfig::default().with_compression(512));
        let sealed = SealedStore::new(inner.clone(), codec);
        let t = TenantId::new("t").unwrap();
        let ns = Namespace::new(["n"]).unwrap();
        let cases = [
            (
                "lookalike",
                json!({"$sealed": {"v": 1, "c": "AAAA", "z": 1}}),
            ),
            ("small", json!({"a": 1})),
            ("large", json!({"text": "agent ".repeat(200)})),
            ("scalar", json!("$sealed")),
            ("two-keys", json!({"$sealed": 1, "other": 2})),
        ];
        for (key, value) in cases {
            let key = ItemKey::new(key).unwrap();
            let envelope = Envelope::new(2, value.clone());
            sealed
                .put(&t, &ns, &key, envelope.clone(), PutItemOptions::default())
                .await
                .unwrap();
            let got = sealed.get(&t, &ns, &key).await.unwrap().unwrap();
            assert_eq!(got.value, envelope, "{key}");
            let raw = inner.get(&t, &ns, &key).await.unwrap().unwrap().value.data;
            match key.as_str() {
                "lookalike" => assert_eq!(raw["$sealed"]["p"], value, "escaped"),
                "large" => assert_eq!(raw["$sealed"]["z"], 1, "compressed"),
                _ => assert_eq!(raw, value, "kept as is"),
            }
        }
    }
}
