//! Validated identifiers.
//!
//! Every id is checked once, at construction (including deserialization), so backends
//! can rely on the rules below and only have to encode ids safely, never re-validate.
//!
//! - [`TenantId`]: matches `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
//! - [`ThreadKey`], [`SessionKey`], [`LockKey`], [`ItemKey`], [`TaskId`],
//!   [`ChannelName`] and namespace labels: any UTF-8 of 1..=512 bytes without NUL or
//!   other control characters. They may contain `/`, `..`, `:`, `{`, `*`, `%` and any
//!   unicode: backends must encode them, never interpret them.
//! - [`Namespace`]: 1..=16 labels.
//! - [`CheckpointId`]: a UUIDv7, generated client side so ids sort by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Longest tenant id, in bytes.
pub const MAX_TENANT_BYTES: usize = 64;
/// Most labels in a [`Namespace`].
pub const MAX_NAMESPACE_DEPTH: usize = 16;

fn check_key(what: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid_input(format!("{what} must not be empty")));
    }
    if s.len() > MAX_KEY_BYTES {
        return Err(Error::invalid_input(format!(
            "{what} is {} bytes long, the limit is {MAX_KEY_BYTES}",
            s.len()
        )));
    }
    if s.contains('\0') {
        return Err(Error::invalid_input(format!("{what} must not contain NUL")));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(Error::invalid_input(format!(
            "{what} must not contain control characters (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

fn check_tenant(s: &str) -> Result<()> {
    let what = "tenant id";
    let Some(first) = s.chars().next() else {
        return Err(Error::invalid_input("tenant id must not be empty"));
    };
    if s.len() > MAX_TENANT_BYTES {
        return Err(Error::invalid_input(format!(
            "{what} is {} bytes long, the limit is {MAX_TENANT_BYTES}",
            s.len()
        )));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(Error::invalid_input(format!(
            "{what} {s:?} must start with an ASCII letter or digit"
        )));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::invalid_input(format!(
            "{what} {s:?} may only contain ASCII letters, digits, '.', '_' and '-' (found {c:?})"
        )));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $what:literal, $check:path) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `value`.
            ///
            /// # Errors
            /// `InvalidInput` naming the rule that failed.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                $check($what, &value)?;
                Ok(Self(value))
            }
            /// The id as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl crate::backend::FromStored for $name {
            fn from_stored(value: impl Into<String>) -> Result<Self> {
                Self::new(value).map_err(|e| Error::corrupt(format!("stored {}", e.message())))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn check_tenant_named(_what: &str, s: &str) -> Result<()> {
    check_tenant(s)
}

string_id!(
    /// A tenant: the unit of isolation. Nothing written under one tenant is visible under
    /// another. `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
    TenantId, "tenant id", check_tenant_named
);
string_id!(
    /// The id of a checkpointed thread (one run of a graph/agent).
    ThreadKey, "thread id", check_key
);
string_id!(
    /// The id of a session event log.
    SessionKey, "session id", check_key
);
string_id!(
    /// The name of a lock. A thread's or session's own lock is named by
    /// [`LockKey::for_thread`] / [`LockKey::for_session`].
    LockKey, "lock name", check_key
);
impl LockKey {
    /// The lock that owns `thread`: the only lock whose lease a fenced checkpoint write
    /// of that thread accepts. Named `thread:` followed by the thread id (so up to
    /// 519 bytes, past the 512 bytes [`LockKey::new`] allows, and every backend stores it).
    pub fn for_thread(thread: &ThreadKey) -> LockKey {
        LockKey(format!("thread:{thread}"))
    }
    /// The lock that owns `session`: the only lock whose lease a fenced append to that
    /// session accepts. Named `session:` followed by the session id.
    pub fn for_session(session: &SessionKey) -> LockKey {
        LockKey(format!("session:{session}"))
    }
}

string_id!(
    /// The key of a store item within its namespace.
    ItemKey, "store key", check_key
);
string_id!(
    /// The id of a task that produced pending writes.
    TaskId, "task id", check_key
);
string_id!(
    /// The channel a pending write targets.
    ChannelName, "channel name", check_key
);

/// A hierarchical namespace for store items: 1..=16 labels, each a valid key.
///
/// Prefix queries match whole labels: `["a"]` is a prefix of `["a", "b"]` but not of
/// `["ab"]`. Ordering compares label by label.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Namespace(Vec<String>);

impl Namespace {
    /// Validates and wraps `labels`.
    ///
    /// # Errors
    /// `InvalidInput` if there are no labels, more than 16, or a label breaks the key rules.
    pub fn new<I, S>(labels: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let labels: Vec<String> = labels.into_iter().map(Into::into).collect();
        if labels.is_empty() {
            return Err(Error::invalid_input("namespace needs at least one label"));
        }
        if labels.len() > MAX_NAMESPACE_DEPTH {
            return Err(Error::invalid_input(format!(
                "namespace has {} labels, the limit is {MAX_NAMESPACE_DEPTH}",
                labels.len()
            )));
        }
        for (i, label) in labels.iter().enumerate() {
            check_key(&format!("namespace label {i}"), label)?;
        }
        Ok(Namespace(labels))
    }

    /// The labels, outermost first.
    pub fn labels(&self) -> &[String] {
        &self.0
    }
    /// Number of labels (1..=16).
    pub fn depth(&self) -> usize {
        self.0.len()
    }
    /// Whether `self` starts with all labels of `prefix`.
    pub fn starts_with(&self, prefix: &Namespace) -> bool {
        self.0.starts_with(&prefix.0)
    }
    /// The first `depth` labels (all of them if `depth` is larger).
    ///
    /// `depth` 0 is treated as 1, since a namespace has at least one label.
    pub fn truncated(&self, depth: usize) -> Namespace {
        Namespace(self.0[..depth.clamp(1, self.0.len())].to_vec())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({:?})", self.0)
    }
}
impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let labels = Vec::<String>::deserialize(d)?;
        Namespace::new(labels).map_err(serde::de::Error::custom)
    }
}

/// The id of a checkpoint: a UUIDv7, so ids generated by one client sort by creation
/// time. "Latest" means greatest id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CheckpointId(Uuid);

impl CheckpointId {
    /// A fresh id for now; ids from one process are strictly increasing.
    pub fn new() -> Self {
        CheckpointId(Uuid::now_v7())
    }
    /// Wraps an existing UUID.
    ///
    /// # Errors
    /// `InvalidInput` if it is not a version 7 UUID.
    pub fn from_uuid(uuid: Uuid) -> Result<Self> {
        if uuid.get_version_num() != 7 {
            return Err(Error::invalid_input(format!(
                "checkpoint id {uuid} is a version {} UUID, not version 7",
                uuid.get_version_num()
            )));
        }
        Ok(CheckpointId(uuid))
    }
    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
    /// When the id was minted: the millisecond timestamp a UUIDv7 carries (the clock of
    /// the writer that made it). Retention measures a checkpoint's age from it.
    pub fn timestamp(&self) -> crate::Timestamp {
        let b = self.0.as_bytes();
        crate::Timestamp(
            b[..6]
                .iter()
                .fold(0u64, |ms, &byte| (ms << 8) | u64::from(byte)),
        )
    }
    /// The greatest id minted at millisecond `at` (or at the largest a UUIDv7 holds): every
    /// id minted at or before `at` sorts at or below it, every later one above.
    pub fn last_of(at: crate::Timestamp) -> CheckpointId {
        let ms = at.0.min((1 << 48) - 1);
        let mut bytes = [0xffu8; 16];
        bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        bytes[6] = 0x7f; // version 7, then random bits all set
        bytes[8] = 0xbf; // variant 10, then random bits all set
        CheckpointId(Uuid::from_bytes(bytes))
    }
}

impl Default for CheckpointId {
    fn default() -> Self {
        Self::new()
    }
}
impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}
impl fmt::Debug for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointId({})", self.0)
    }
}
impl FromStr for CheckpointId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let uuid = Uuid::parse_str(s)
            .map_err(|e| Error::invalid_input(format!("checkpoint id {s:?} is not a UUID: {e}")))?;
        Self::from_uuid(uuid)
    }
}
impl<'de> Deserialize<'de> for CheckpointId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let uuid = Uuid::deserialize(d)?;
        Self::from_uuid(uuid).map_err(serde::de::Error::custom)
    }
}

/// A key (thread, session or item id) for an id of another system (a framework's
/// session id, say): `prefix`, then `id` with `%` and control characters
/// percent-encoded (their UTF-8 bytes as `%XX`). One to one: two different ids under one
/// prefix never map to the same key, and the key reads as the id for every id without
/// `%` or control characters.
///
/// ```
/// use persistence_core::{ThreadKey, foreign_key};
///
/// assert_eq!(foreign_key("graph-flow/", "chat 7")?, "graph-flow/chat 7");
/// assert_eq!(foreign_key("rig/", "50%\n")?, "rig/50%25%0A");
/// let thread = ThreadKey::new(foreign_key("rig/", "a/b")?)?;
/// # Ok::<(), persistence_core::Error>(())
/// ```
///
/// # Errors
/// `InvalidInput` for an empty id, or a key longer than [`MAX_KEY_BYTES`].
pub fn foreign_key(prefix: &str, id: &str) -> Result<String> {
    if id.is_empty() {
        return Err(Error::invalid_input("the id must not be empty"));
    }
    let mut key = String::with_capacity(prefix.len() + id.len());
    key.push_str(prefix);
    for c in id.chars() {
        if c == '%' || c.is_control() {
            let mut bytes = [0; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                key.push_str(&format!("%{b:02X}"));
            }
        } else {
            key.push(c);
        }
    }
    check_key("key", &key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn tenant_rules() {
        for ok in ["a", "A9", "acme.prod_1-x", &"a".repeat(64)] {
            assert!(TenantId::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a\0",
            "a b",
            "é",
            "-a",
            "_a",
            &"a".repeat(65),
        ] {
            let e = TenantId::new(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn key_rules() {
        for ok in [
            "../x",
            "a:b",
            "{x}",
            "*",
            "%",
            "日本語",
            "/",
            &"k".repeat(512),
        ] {
            assert!(ThreadKey::new(ok).is_ok(), "{ok}");
        }
        let long = "é".repeat(257); // 514 bytes
        for bad in ["", "a\0b", "a\nb", "\u{7f}", "\u{85}", long.as_str()] {
            let e = ThreadKey::new(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
        assert!(
            ThreadKey::new("")
                .unwrap_err()
                .message()
                .contains("thread id")
        );
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<TenantId>("\"a/b\"").is_err());
        assert!(serde_json::from_str::<Namespace>("[]").is_err());
        let ns: Namespace = serde_json::from_str(r#"["a","b"]"#).unwrap();
        assert_eq!(ns.depth(), 2);
        let v4 = "\"6f1c4c52-7e4f-4c1e-9f57-3a1f8a5f2b10\"";
        assert!(serde_json::from_str::<CheckpointId>(v4).is_err());
        let id = CheckpointId::new();
        let back: CheckpointId =
            serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
        assert_eq!(id, back);
    }

    #[test]
    fn namespace_prefix_is_whole_labels() {
        let ab = Namespace::new(["a", "b"]).unwrap();
        assert!(ab.starts_with(&Namespace::new(["a"]).unwrap()));
        assert!(
            !Namespace::new(["ab"])
                .unwrap()
                .starts_with(&Namespace::new(["a"]).unwrap())
        );
        assert!(Namespace::new(vec!["x"; 17]).is_err());
        assert_eq!(ab.truncated(1), Namespace::new(["a"]).unwrap());
    }

    #[test]
    fn checkpoint_ids_increase() {
        let id = CheckpointId::new();
        let at = id.timestamp();
        assert!(at.0.abs_diff(crate::Timestamp::now().0) < 60_000, "{at:?}");
        assert!(CheckpointId::last_of(at) >= id);
        assert!(CheckpointId::last_of(crate::Timestamp(at.0 - 1)) < id);
        assert_eq!(CheckpointId::last_of(at).timestamp(), at);
        let mut last = CheckpointId::new();
        for _ in 0..1000 {
            let next = CheckpointId::new();
            assert!(next > last);
            assert!(next.to_string() > last.to_string());
            last = next;
        }
    }

    /// Ids that differ only by what the mapping encodes map to different keys; every key
    /// is a valid key; empty and over-long ids are refused.
    #[test]
    fn foreign_keys_are_one_to_one() {
        let ids = [
            "a",
            "A",
            "%",
            "%25",
            "%2",
            "a%",
            "\n",
            "%0A",
            "a\u{7f}",
            "a%7F",
            "\u{1F600}",
            " ",
            "a/b",
            "a\u{85}",
            "%C2%85",
        ];
        let keys: std::collections::BTreeSet<String> = ids
            .iter()
            .map(|id| foreign_key("p/", id).unwrap())
            .collect();
        assert_eq!(keys.len(), ids.len(), "{keys:?}");
        for key in &keys {
            assert!(ThreadKey::new(key.as_str()).is_ok(), "{key:?}");
        }
        for bad in ["", &"x".repeat(MAX_KEY_BYTES)] {
            let err = foreign_key("p/", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
    }
}
