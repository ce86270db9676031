//! Where everything lives under the root, and the one function that turns an id into a
//! file name.
//!
//! ```text
//! {root}/v1/
//!   tenants/{tenant}/
//!     threads/{thread}/~id                 original thread id (for hashed names)
//!                     /checkpoints/{uuid}  one JSON file per checkpoint (temp + rename)
//!                                 /.journal  redo journal of recent puts (synced)
//!                                 /.latest   id of the greatest checkpoint
//!                     /writes/{uuid}       pending writes: append-only record log
//!     thread-guards/{thread}.lock|.fence   flock target and fence high-water mark
//!     sessions/{session}/~id, log, index   record log + fixed-width offset index
//!                       /~base             first ordinal still in `log` after a trim
//!     session-guards/{session}.lock|.fence
//!     store/{label}/{label}/.../~items/{key}   one log of versions per item
//!                          /~locks/{key}.lock  flock target of one item
//!     leases/{name}.lock|.lease|.fence     lease (owner, token, fence, expiry)
//!     catalogs/{threads,sessions,namespaces}/  sorted ids + journal (module `catalog`)
//!     store/.../~catalog/                  the same for a namespace's items
//! ```
//!
//! Every id goes through [`encode`]: bytes `[a-z0-9_-]` and non-leading `.` stay as they
//! are, every other byte becomes `+xx` (lowercase hex). So names are lowercase only (safe
//! on case-insensitive filesystems), never `.`/`..` or hidden, never contain `/`, and
//! different ids give different names. A name longer than [`MAX_NAME`] bytes is replaced
//! by `=` and the SHA-256 of the id; the original id is kept inside the entry (`~id`
//! file, or the item itself). Names starting with `~` are the layout's own; names
//! starting with `.` are temp files or the layout's hidden files (`.journal`, `.latest`),
//! which listings skip.
//!
//! A record holding a payload (checkpoint file, pending write, item version, session
//! event) is its JSON; when the payload has [`Envelope::bytes`] (the codec's
//! ciphertext), a NUL byte and the bytes raw follow it (module `payload_record`).
//!
//! [`Envelope::bytes`]: persistence_core::Envelope::bytes

use std::path::{Path, PathBuf};

use persistence_core::{LockKey, Namespace, SessionKey, TenantId, ThreadKey};
use sha2::{Digest, Sha256};

/// Layout version directory.
pub const LAYOUT_VERSION: &str = "v1";
/// Longest encoded name before hashing (well under the usual 255-byte limit).
pub const MAX_NAME: usize = 200;

/// Encodes one id component as a file name. See the module docs.
pub fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for (i, b) in id.bytes().enumerate() {
        let keep = matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-') || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02x}"));
        }
    }
    if out.len() > MAX_NAME {
        let digest = Sha256::digest(id.as_bytes());
        let mut hashed = String::from("=");
        for byte in digest {
            hashed.push_str(&format!("{byte:02x}"));
        }
        return hashed;
    }
    out
}

/// Decodes a name made by [`encode`]. `None` for hashed names (read the stored id) and
/// for names [`encode`] cannot produce (temp files, layout files).
pub fn decode(name: &str) -> Option<String> {
    if name.starts_with(['=', '~', '.']) {
        return None;
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'+' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Paths of one backend root.
#[derive(Debug, Clone)]
pub struct Layout {
    base: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Layout {
            base: root.join(LAYOUT_VERSION),
        }
    }
    /// `{root}/v1`.
    pub fn base(&self) -> &Path {
        &self.base
    }
    /// All tenants.
    pub fn tenants(&self) -> PathBuf {
        self.base.join("tenants")
    }
    /// Directory of one tenant.
    pub fn tenant(&self, t: &TenantId) -> PathBuf {
        self.tenants().join(encode(t.as_str()))
    }
    /// Directory of all threads of a tenant.
    pub fn threads(&self, t: &TenantId) -> PathBuf {
        self.tenant(t).join("threads")
    }
    /// Directory of one thread.
    pub fn thread(&self, t: &TenantId, th: &ThreadKey) -> PathBuf {
        self.threads(t).join(encode(th.as_str()))
    }
    /// Lock file and fence file of one thread: `(lock, fence)`.
    pub fn thread_guards(&self, t: &TenantId, th: &ThreadKey) -> (PathBuf, PathBuf) {
        guards(&self.tenant(t).join("thread-guards"), th.as_str())
    }
    /// Directory of all sessions of a tenant.
    pub fn sessions(&self, t: &TenantId) -> PathBuf {
        self.tenant(t).join("sessions")
    }
    /// Directory of one session.
    pub fn session(&self, t: &TenantId, s: &SessionKey) -> PathBuf {
        self.sessions(t).join(encode(s.as_str()))
    }
    /// Directory of the sessions' lock and fence files.
    pub fn session_guards_dir(&self, t: &TenantId) -> PathBuf {
        self.tenant(t).join("session-guards")
    }
    /// Lock file and fence file of one session: `(lock, fence)`.
    pub fn session_guards(&self, t: &TenantId, s: &SessionKey) -> (PathBuf, PathBuf) {
        guards(&self.session_guards_dir(t), s.as_str())
    }
    /// Root of a tenant's store tree.
    pub fn store(&self, t: &TenantId) -> PathBuf {
        self.tenant(t).join("store")
    }
    /// Directory of one namespace.
    pub fn namespace(&self, t: &TenantId, ns: &Namespace) -> PathBuf {
        let mut p = self.store(t);
        for label in ns.labels() {
            p.push(encode(label));
        }
        p
    }
    /// Catalog of a tenant's threads (module `catalog`).
    pub fn thread_catalog(&self, t: &TenantId) -> PathBuf {
        self.tenant(t).join(CATALOGS_DIR).join("threads")
    }
    /// Catalog of a tenant's sessions.
    pub fn session_catalog(&self, t: &TenantId) -> PathBuf {
        self.tenant(t).join(CATALOGS_DIR).join("sessions")
    }
    /// Catalog of a tenant's namespaces.
    pub fn namespace_catalog(&self, t: &TenantId) -> PathBuf {
        self.tenant(t).join(CATALOGS_DIR).join("namespaces")
    }
    /// Catalog of a namespace's items.
    pub fn item_catalog(&self, t: &TenantId, ns: &Namespace) -> PathBuf {
        self.namespace(t, ns).join(ITEM_CATALOG_DIR)
    }
    /// Refuses a path with a symbolic link anywhere below the root (the root itself may
    /// be one: that is the user's choice): a link planted inside the store would make
    /// writes land outside it. Components that do not exist yet are fine (they are
    /// created as directories, never followed).
    ///
    /// # Errors
    /// `InvalidData` naming the link; other I/O errors of `lstat`.
    pub fn refuse_links(&self, path: &Path) -> std::io::Result<()> {
        self.refuse_links_below(self.base.parent().unwrap_or(&self.base), path)
    }

    /// [`Self::refuse_links`] for the components of `path` below `checked`, a directory
    /// already checked (so a listing checks its directory once, then one name per entry).
    ///
    /// # Errors
    /// As [`Self::refuse_links`].
    pub fn refuse_links_below(&self, checked: &Path, path: &Path) -> std::io::Result<()> {
        let root = self.base.parent().unwrap_or(&self.base);
        let Ok(below) = path.strip_prefix(checked) else {
            // Not below `checked`: check it from the root (outside the root: nothing).
            return if checked == root {
                Ok(())
            } else {
                self.refuse_links_below(root, path)
            };
        };
        let mut at = checked.to_path_buf();
        for part in below.components() {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} is a symbolic link: links inside the store are never followed",
                            at.display()
                        ),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Files of one lock: `(flock target, lease, fence)`.
    pub fn lease(&self, t: &TenantId, name: &LockKey) -> (PathBuf, PathBuf, PathBuf) {
        let dir = self.tenant(t).join("leases");
        let stem = encode(name.as_str());
        (
            dir.join(format!("{stem}.lock")),
            dir.join(format!("{stem}.lease")),
            dir.join(format!("{stem}.fence")),
        )
    }
}

fn guards(dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    let stem = encode(id);
    (
        dir.join(format!("{stem}.lock")),
        dir.join(format!("{stem}.fence")),
    )
}

/// Name of the file holding an entry's original id.
pub const ID_FILE: &str = "~id";
/// Directory of a namespace's items.
pub const ITEMS_DIR: &str = "~items";
/// Directory of a tenant's catalogs of threads and sessions.
pub const CATALOGS_DIR: &str = "catalogs";
/// Directory of a namespace's item catalog.
pub const ITEM_CATALOG_DIR: &str = "~catalog";
/// Directory of a namespace's per-item lock files (`{encoded key}.lock`): writers of
/// different keys of one namespace do not wait for each other.
pub const ITEM_LOCKS_DIR: &str = "~locks";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_safety() {
        let long = "é".repeat(256);
        for id in [
            "a",
            "A",
            "../x",
            "..",
            ".",
            "a/b",
            "a%2Fb",
            "+",
            "+2f",
            "~id",
            "=x",
            "CON",
            "日本",
            "a b",
            long.as_str(),
        ] {
            let name = encode(id);
            assert!(
                !name.contains('/') && name != "." && name != ".." && !name.starts_with('.'),
                "{id:?} -> {name}"
            );
            assert!(!name.starts_with('~'));
            assert!(name.len() <= MAX_NAME + 1 || name.len() == 65, "{name}");
            assert_eq!(name, name.to_lowercase(), "{id:?} -> {name} has uppercase");
            if !name.starts_with('=') {
                assert_eq!(decode(&name).as_deref(), Some(id));
            }
        }
        assert_ne!(encode("A"), encode("a"));
        assert_ne!(encode("+2f"), encode("/"));
        assert!(decode(".tmp123").is_none() && decode("~id").is_none());
    }
}
