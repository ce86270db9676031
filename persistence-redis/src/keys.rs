//! The one key-encoding module.
//!
//! A key is `{prefix}{<kind>:<tenant>:<id>}:<part>`. The part in braces is the Redis
//! Cluster hash tag, so every key of one thread (or session, namespace, lock) lands in
//! one slot and each Lua script touches a single slot. Components are percent-encoded
//! (every byte outside `[A-Za-z0-9._-]` becomes `%XX`), so they contain no `{`, `}`,
//! `:`, `*` or `\`, and two different (tenant, id) pairs never give the same key.
//! Tenant-level indexes live under their own tag `{i:<tenant>}`; the list of tenants
//! (for `purge_expired`) under `{g}`.

use persistence_core::{LockKey, Namespace, SessionKey, TenantId, ThreadKey};

/// Percent-encodes one component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Key builder for one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// Keys of one thread.
pub struct ThreadKeys {
    base: String,
}

impl ThreadKeys {
    /// Hash: checkpoint id -> content json.
    pub fn content(&self) -> String {
        format!("{}:cp", self.base)
    }
    /// Hash: checkpoint id -> created-at ms.
    pub fn created(&self) -> String {
        format!("{}:at", self.base)
    }
    /// Sorted set of checkpoint ids (all score 0, ordered by bytes = by UUID).
    pub fn ids(&self) -> String {
        format!("{}:ids", self.base)
    }
    /// Fence high-water mark (no TTL).
    pub fn fence(&self) -> String {
        format!("{}:fence", self.base)
    }
    /// Prefix of the per-checkpoint pending-writes hashes.
    pub fn writes_prefix(&self) -> String {
        format!("{}:w:", self.base)
    }
}

/// Keys of one session.
pub struct SessionKeys {
    base: String,
}

impl SessionKeys {
    /// Hash: head, exp.
    pub fn meta(&self) -> String {
        format!("{}:meta", self.base)
    }
    /// Sorted set of events scored by ordinal.
    pub fn events(&self) -> String {
        format!("{}:ev", self.base)
    }
    /// Fence high-water mark (no TTL).
    pub fn fence(&self) -> String {
        format!("{}:fence", self.base)
    }
    /// The sharded pub/sub channel (in the session's slot) its changes are announced on
    /// in a cluster.
    pub fn changes(&self) -> String {
        format!("{}:changes", self.base)
    }
}

/// Keys of one store namespace.
pub struct NamespaceKeys {
    base: String,
}

impl NamespaceKeys {
    /// Hash: key -> envelope json.
    pub fn values(&self) -> String {
        format!("{}:v", self.base)
    }
    /// Hash: key -> "version|created|updated|expires".
    pub fn meta(&self) -> String {
        format!("{}:m", self.base)
    }
    /// Sorted set of keys (lex).
    pub fn keys(&self) -> String {
        format!("{}:k", self.base)
    }
    /// Sorted set of keys by expiry.
    pub fn expiry(&self) -> String {
        format!("{}:x", self.base)
    }
    /// Hash: key -> "updated|ttl ms", the TTL of the write at `updated` (what a refresh
    /// restarts).
    pub fn ttls(&self) -> String {
        format!("{}:t", self.base)
    }
}

/// What a tenant index lists.
#[derive(Debug, Clone, Copy)]
pub enum Index {
    /// Thread ids.
    Threads,
    /// Session ids.
    Sessions,
    /// Namespaces, labels joined by NUL (so byte order is label-by-label order).
    Namespaces,
}

impl Keys {
    /// Keys under `prefix` (which must not contain `{` or `}`).
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    fn tagged(&self, kind: &str, tenant: &TenantId, id: &str) -> String {
        format!(
            "{}{{{kind}:{}:{}}}",
            self.prefix,
            encode(tenant.as_str()),
            encode(id)
        )
    }

    /// A thread's keys.
    pub fn thread(&self, t: &TenantId, th: &ThreadKey) -> ThreadKeys {
        ThreadKeys {
            base: self.tagged("t", t, th.as_str()),
        }
    }
    /// A session's keys.
    pub fn session(&self, t: &TenantId, s: &SessionKey) -> SessionKeys {
        SessionKeys {
            base: self.tagged("s", t, s.as_str()),
        }
    }
    /// A namespace's keys.
    pub fn namespace(&self, t: &TenantId, ns: &Namespace) -> NamespaceKeys {
        let id: Vec<String> = ns.labels().iter().map(|l| encode(l)).collect();
        NamespaceKeys {
            base: format!(
                "{}{{n:{}:{}}}",
                self.prefix,
                encode(t.as_str()),
                id.join(":")
            ),
        }
    }
    /// A lock's `(lease, fence)` keys.
    pub fn lease(&self, t: &TenantId, name: &LockKey) -> (String, String) {
        let base = self.tagged("l", t, name.as_str());
        (format!("{base}:lease"), format!("{base}:fence"))
    }
    /// A tenant's index of threads, sessions or namespaces.
    pub fn index(&self, t: &TenantId, what: Index) -> String {
        let part = match what {
            Index::Threads => "threads",
            Index::Sessions => "sessions",
            Index::Namespaces => "namespaces",
        };
        format!("{}{{i:{}}}:{part}", self.prefix, encode(t.as_str()))
    }
    /// The set of tenants that ever wrote.
    pub fn tenants(&self) -> String {
        format!("{}{{g}}:tenants", self.prefix)
    }
    /// The pub/sub channel on which session changes are announced (the message is the
    /// session's meta key: ids only).
    pub fn session_changes(&self) -> String {
        format!("{}{{g}}:session-changes", self.prefix)
    }
}

/// A namespace as an index member: labels joined by NUL.
pub fn namespace_member(ns: &Namespace) -> String {
    ns.labels().join("\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_never_collide_and_tags_are_clean() {
        let keys = Keys::new("p:");
        let ids = [
            "a:b", "a", "b", "{x}", "}{", "*", "\\", "%41", "A", "a%3Ab", "ü", "a b",
        ];
        let tenants = ["a", "a.b", "a_b"];
        let mut seen = std::collections::HashSet::new();
        for t in tenants {
            for id in ids {
                let t = TenantId::new(t).unwrap();
                let k = keys.thread(&t, &ThreadKey::new(id).unwrap()).ids();
                let tag = &k[k.find('{').unwrap() + 1..k.find('}').unwrap()];
                assert!(
                    !tag.contains('{')
                        && k.matches('{').count() == 1
                        && k.matches('}').count() == 1,
                    "{k}"
                );
                assert!(seen.insert(k.clone()), "collision: {k}");
            }
        }
        assert_eq!(encode("a:b{c}*\\%"), "a%3Ab%7Bc%7D%2A%5C%25");
        let ns = |l: &[&str]| Namespace::new(l.iter().copied()).unwrap();
        let t = TenantId::new("t").unwrap();
        assert_ne!(
            keys.namespace(&t, &ns(&["a:b"])).keys(),
            keys.namespace(&t, &ns(&["a", "b"])).keys()
        );
    }
}
