//! A tenant's sessions from a scan of its directory (what its session catalog is built
//! from), and the purge of expired sessions, which visits every tenant's.

use persistence_core::{ExpiredSession, Result, SessionKey, TenantId, Timestamp};

use crate::Inner;
use crate::checkpointer::entry_id;
use crate::error::IoContext;
use crate::files::{self, FileLock};

impl Inner {
    /// The ids of a tenant's sessions from a scan of its directory: what its session
    /// catalog is built from.
    pub(crate) fn session_names(&self, t: &TenantId) -> Result<Vec<String>> {
        Ok(self
            .session_ids(t)?
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect())
    }

    /// Sessions of a tenant in id order, with their directories.
    fn session_ids(&self, t: &TenantId) -> Result<Vec<SessionKey>> {
        let dir = self.inside(self.layout.sessions(t))?;
        let mut out = Vec::new();
        for name in files::list_dirs(&dir).at(&dir)? {
            if let Some(id) = entry_id(&dir, &name)?
                && let Ok(key) = SessionKey::new(id)
            {
                out.push(key);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes expired sessions of every tenant.
    pub(crate) fn purge_sessions(&self) -> Result<Vec<ExpiredSession>> {
        let tenants = self.layout.tenants();
        let mut removed = Vec::new();
        for name in files::list_dirs(&tenants).at(&tenants)? {
            let Ok(t) = TenantId::new(crate::layout::decode(&name).unwrap_or_default()) else {
                continue;
            };
            for s in self.session_ids(&t)? {
                let (f, lock_path, _) = self.session_files(&t, &s)?;
                self.open_sessions.forget(&f.dir);
                let _lock = FileLock::exclusive(&lock_path, self.durability).at(&lock_path)?;
                let state = self.recover(&f)?;
                if state.exists() && state.expired(Timestamp::now()) {
                    files::remove_dir_atomic(&f.dir, self.durability).at(&f.dir)?;
                    self.session_catalog(&t)?.remove(s.as_str());
                    removed.push(ExpiredSession::new(t.clone(), s.clone()));
                }
            }
        }
        Ok(removed)
    }
}
