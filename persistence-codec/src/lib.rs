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
//! 2. encrypted with AES-256-GCM under a key of its own: 24 fresh random bytes per
//!    write, the first 12 naming the write key (HKDF-SHA256-Expand of the tenant's data
//!    key, itself HKDF-SHA256 of the current master key of the [`KeyProvider`] and the
//!    tenant id), the last 12 the GCM nonce. As in XAES-256-GCM, no key meets enough
//!    random 96-bit nonces for one to repeat, however many payloads a tenant writes;
//! 3. stored as the envelope's data `{"$sealed": {"v": 2, "k": key id, "z": 1 if
//!    compressed}}`, the envelope's `schema_version` unchanged, and the sealed bytes (the
//!    24 random bytes, then ciphertext and tag): raw in the envelope's
//!    [`bytes`](persistence_core::Envelope::bytes) on a backend that declares
//!    [`Capabilities::binary_payloads`](persistence_core::Capabilities::binary_payloads)
//!    (with [`Codec::for_backend`], as the facade does); otherwise as base64 in the
//!    data, `"n"` the random bytes and `"c"` ciphertext and tag, which any backend,
//!    third-party ones included, stores like any JSON. Either form opens with any codec.
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
//! metadata (list filters use it), pending writes' channel names, and the top-level
//! fields of store values named by [`CodecConfig::with_clear_fields`] (bound to the
//! rest by the associated data, so a changed one fails the read). Without clear fields
//! store values are sealed whole: a store `search` with a filter fails `Unsupported`
//! and the layer declares `search: false`; search by namespace prefix works. With them,
//! a search filters on those fields only.
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
//! `Optional`, except one whose JSON is an object with a `"$sealed"` key holding an
//! object: that shape is what the codec stores, so such a row is read as sealed (and
//! fails `Corrupt`). Through the codec, a value of that shape is escaped on write, so
//! whatever a put accepts, a get returns.
//!
//! # Rotation
//! The [`KeyProvider`]'s current key seals every write; the other keys it has still
//! open what they sealed. [`rekey`] re-encrypts a tenant's payloads that are not under
//! the current key (sealed under an older one, or not encrypted at all, whatever the
//! policy) in bounded batches, resumably and next to live writers, through the
//! backend's compare-and-replace
//! ([`Capabilities::replace`](persistence_core::Capabilities::replace)); the wrappers'
//! own `replace_payload` and `replace_event` compare opened payloads. [`key_usage`]
//! then shows whether any payload still uses an old key; when none does, the key can
//! leave the provider.

#![deny(missing_docs)]

mod backend;
mod checkpointer;
mod compression;
mod keys;
mod maintenance;
mod rekey;
mod row;
mod seal;
mod sessions;
mod store;
mod usage;
mod walk;

use std::fmt;
use std::sync::Arc;

pub use backend::SealedBackend;
pub use checkpointer::SealedCheckpointer;
pub use keys::{KeyId, KeyProvider, MasterKey, StaticKeyring};
pub use maintenance::SealedMaintenance;
pub use rekey::{RekeyOptions, RekeyReport, rekey};
pub(crate) use row::Row;
pub use seal::Codec;
pub use sessions::SealedSessions;
pub use store::SealedStore;
pub use usage::{KeyUsage, key_usage, sealed_key};
pub use walk::Stored;

/// The key of the object a sealed payload is stored as.
const MARKER: &str = "$sealed";

/// The format version of sealed payloads this code writes and reads.
/// Format 1 (XChaCha20-Poly1305 under the tenant's data key) was never released.
const FORMAT: u64 = 2;

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
    /// Top-level fields of store values kept in clear beside the sealed rest, so a
    /// store search can filter on them (their values are bound to the rest by the
    /// associated data). Empty: store values are sealed whole and cannot be searched.
    pub clear_fields: Vec<String>,
}

impl fmt::Debug for CodecConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodecConfig")
            .field("encryption", &self.encryption.as_ref().map(|(k, p)| (k, p)))
            .field("compress_above", &self.compress_above)
            .field("zstd_level", &self.zstd_level)
            .field("clear_fields", &self.clear_fields)
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

    /// Same, keeping these top-level fields of store values (JSON objects) in clear
    /// beside the sealed rest: a store search can filter on them, on nothing else. They
    /// are bound to the rest (changing one fails the read `Corrupt`) but readable by
    /// whoever reads the rows. `"$sealed"` is never kept in clear.
    #[must_use]
    pub fn with_clear_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.clear_fields = fields
            .into_iter()
            .map(Into::into)
            .filter(|f| f != MARKER)
            .collect();
        self
    }

    /// Same, at zstd level `level` (clamped to 1..=22).
    #[must_use]
    pub fn with_zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level.clamp(1, 22);
        self
    }
}
