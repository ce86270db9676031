//! Where the codec's keys come from: [`KeyProvider`], and the built-in [`StaticKeyring`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hkdf::Hkdf;
use persistence_core::{Error, Result, TenantId};
use sha2::Sha256;

/// The id of a master key, stored beside every payload sealed with it:
/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Validates and wraps `id`.
    ///
    /// # Errors
    /// `InvalidInput` naming the rule that failed.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.starts_with(|c: char| c.is_ascii_alphanumeric())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(Error::invalid_input(format!(
                "key id {id:?} must be 1 to 64 ASCII letters, digits, '.', '_' or '-', \
                 starting with a letter or digit"
            )));
        }
        Ok(KeyId(id))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", self.0)
    }
}

/// 32 bytes of master key material. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// Wraps 32 bytes (from a KMS, say).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    /// Decodes standard base64 of exactly 32 bytes.
    ///
    /// # Errors
    /// `InvalidInput` (without the text) when it is not base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| Error::invalid_input("a master key is not valid base64"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|v: Vec<u8>| {
            Error::invalid_input(format!(
                "a master key must be 32 bytes, this one is {}",
                v.len()
            ))
        })?;
        Ok(MasterKey(bytes))
    }

    /// The data key of one tenant: HKDF-SHA256 of this key with the tenant id in its
    /// info, so one tenant's key never opens another tenant's payloads.
    pub(crate) fn tenant_key(&self, tenant: &TenantId) -> [u8; 32] {
        let hkdf = Hkdf::<Sha256>::new(Some(b"persistence codec v1"), &self.0);
        let mut out = [0u8; 32];
        let info = [b"tenant\0".as_slice(), tenant.as_str().as_bytes()].concat();
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: expand cannot fail.
        if hkdf.expand(&info, &mut out).is_err() {
            unreachable!("HKDF-SHA256 expands 32 bytes");
        }
        out
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Where the codec gets its master keys: the one new payloads are sealed with, and any
/// by id for payloads sealed before. A KMS-backed provider is the user's implementation
/// (fetching and caching the keys it unwraps); [`StaticKeyring`] is built in.
///
/// `current` is asked on every write (keep it cheap: a rotation takes effect at the next
/// write). `key` is asked once per key id and tenant: the codec keeps the tenant's
/// derived data key for its own life (about 100 bytes per tenant and key), so removing a
/// key from a provider takes effect for a running codec only when it is built again.
#[async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// The id of the key new payloads are sealed with.
    ///
    /// # Errors
    /// Whatever stops the provider from naming one (a KMS outage: `Unavailable`).
    async fn current(&self) -> Result<KeyId>;

    /// The key with this id; `None` if the provider does not have it (retired).
    ///
    /// # Errors
    /// Whatever stops the provider from answering.
    async fn key(&self, id: &KeyId) -> Result<Option<MasterKey>>;
}

/// Master keys held in memory: read from a string, an environment variable or a file.
/// The last key listed is the one new payloads are sealed with, so adding a key at the
/// end rotates to it while the others still open what they sealed.
///
/// The text form is entries `ID=BASE64` (32 bytes of key each, standard base64),
/// separated by commas or newlines; blank lines and lines starting with `#` are
/// skipped:
///
/// ```
/// use persistence_codec::StaticKeyring;
///
/// let keys = StaticKeyring::parse(
///     "k2024=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,\
///      k2025=HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=",
/// )?;
/// assert_eq!(keys.current_id().as_str(), "k2025");
/// assert!(!format!("{keys:?}").contains("AAEC"));
/// # Ok::<(), persistence_core::Error>(())
/// ```
#[derive(Clone)]
pub struct StaticKeyring {
    keys: Arc<HashMap<KeyId, MasterKey>>,
    current: KeyId,
}

impl fmt::Debug for StaticKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&str> = self.keys.keys().map(KeyId::as_str).collect();
        ids.sort_unstable();
        f.debug_struct("StaticKeyring")
            .field("key_ids", &ids)
            .field("current", &self.current.as_str())
            .finish()
    }
}

impl StaticKeyring {
    /// A keyring of `(id, key)` pairs; the last is the current one.
    ///
    /// # Errors
    /// `InvalidInput` for no keys or an id listed twice.
    pub fn new(keys: impl IntoIterator<Item = (KeyId, MasterKey)>) -> Result<Self> {
        let mut map = HashMap::new();
        let mut current = None;
        for (id, key) in keys {
            if map.insert(id.clone(), key).is_some() {
                return Err(Error::invalid_input(format!(
                    "key id {id} is listed twice in the keyring"
                )));
            }
            current = Some(id);
        }
        let current = current.ok_or_else(|| Error::invalid_input("the keyring has no key"))?;
        Ok(StaticKeyring {
            keys: Arc::new(map),
            current,
        })
    }

    /// Parses the text form (see the type's docs).
    ///
    /// # Errors
    /// `InvalidInput` naming the entry (by position and id, never the key) that is not
    /// `ID=BASE64` of 32 bytes.
    pub fn parse(text: &str) -> Result<Self> {
        let mut keys = Vec::new();
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (n, entry) in entries.enumerate() {
            let (id, key) = entry.split_once('=').ok_or_else(|| {
                Error::invalid_input(format!("keyring entry {} is not ID=BASE64", n + 1))
            })?;
            let id = KeyId::new(id.trim()).map_err(|e| {
                Error::invalid_input(format!("keyring entry {}: {}", n + 1, e.message()))
            })?;
            let key = MasterKey::from_base64(key)
                .map_err(|e| Error::invalid_input(format!("keyring key {id}: {}", e.message())))?;
            keys.push((id, key));
        }
        Self::new(keys)
    }

    /// Parses the environment variable `name`.
    ///
    /// # Errors
    /// `InvalidInput` when it is unset, not Unicode, or does not parse.
    pub fn from_env(name: &str) -> Result<Self> {
        let text = std::env::var(name).map_err(|_| {
            Error::invalid_input(format!(
                "the keyring variable {name} is unset or not Unicode"
            ))
        })?;
        Self::parse(&text)
    }

    /// Parses the file at `path`.
    ///
    /// # Errors
    /// `InvalidInput` when it cannot be read or does not parse.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid_input(format!("cannot read keyring file {}: {e}", path.display()))
        })?;
        Self::parse(&text)
    }

    /// The id of the key new payloads are sealed with (the last listed).
    pub fn current_id(&self) -> &KeyId {
        &self.current
    }
}

#[async_trait]
impl KeyProvider for StaticKeyring {
    async fn current(&self) -> Result<KeyId> {
        Ok(self.current.clone())
    }

    async fn key(&self, id: &KeyId) -> Result<Option<MasterKey>> {
        Ok(self.keys.get(id).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn tenant_keys_differ_per_tenant_and_master_key() {
        let k = MasterKey::from_base64(A).unwrap();
        let other = MasterKey::from_bytes([7; 32]);
        let t1 = TenantId::new("t1").unwrap();
        let t2 = TenantId::new("t2").unwrap();
        assert_ne!(k.tenant_key(&t1), k.tenant_key(&t2));
        assert_ne!(k.tenant_key(&t1), other.tenant_key(&t1));
        assert_eq!(k.tenant_key(&t1), k.tenant_key(&t1));
    }

    #[test]
    fn bad_keyrings_say_which_entry_without_the_key() {
        for (text, needle) in [
            ("", "no key"),
            ("k1", "entry 1 is not ID=BASE64"),
            ("k1=AAAA", "must be 32 bytes"),
            ("k1=not base64!", "not valid base64"),
            (&format!("k1={A},k1={A}"), "listed twice"),
            (&format!("-x={A}"), "entry 1"),
        ] {
            let err = StaticKeyring::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains("AAEC"), "{err}");
        }
        let ring = StaticKeyring::parse(&format!("# comment\nold={A}\n\nnew={A}\n")).unwrap();
        assert_eq!(ring.current_id().as_str(), "new");
        assert!(!format!("{ring:?}").contains(A));
        assert_eq!(
            format!("{:?}", MasterKey::from_bytes([1; 32])),
            "MasterKey(<redacted>)"
        );
    }
}
