//! TTL refresh on read: a live item with a TTL gets a new record with its expiry moved
//! to now + its TTL, written under the item's lock like a put (so it is durable like
//! one), with the same value, version and times.

use std::time::Duration;

use persistence_core::{ItemKey, Namespace, Result, TenantId, Timestamp};

use super::{Current, StoredItem, current};
use crate::Inner;
use crate::error::IoContext;

impl StoredItem {
    /// The TTL a refresh restarts: the stored one, or for an item written before TTLs
    /// were stored, the time from its last write to its expiry (what its TTL was).
    fn ttl(&self) -> Option<Duration> {
        match (self.ttl_ms, self.expires_at) {
            (Some(ms), _) => Some(Duration::from_millis(ms)),
            (None, Some(expires)) => Some(Duration::from_millis(
                expires.0.saturating_sub(self.updated_at.0),
            )),
            (None, None) => None,
        }
    }
}

impl Inner {
    /// The live item `key`, its TTL restarted (an item without TTL is returned as it is,
    /// nothing written).
    ///
    /// # Errors
    /// `Corrupt` for an item file that does not decode; I/O errors of the lock and write.
    pub(super) fn refresh_item(
        &self,
        t: &TenantId,
        ns: &Namespace,
        key: &ItemKey,
    ) -> Result<Option<StoredItem>> {
        let ns_dir = self.inside(self.layout.namespace(t, ns))?;
        let _lock = self.item_lock(&ns_dir, key)?;
        let path = self.item_path_in(&ns_dir, key)?;
        let (found, file) = current(&path, key)?;
        let now = Timestamp::now();
        let mut item = match found {
            Current::Item(item) if item.live(now) => item,
            Current::Item(_) | Current::Absent => return Ok(None),
            Current::Corrupt(e) => return Err(e),
        };
        let Some(ttl) = item.ttl() else {
            return Ok(Some(item));
        };
        item.expires_at = Some(now.saturating_add(ttl));
        item.ttl_ms = Some(ttl.as_millis() as u64);
        let bytes = crate::payload_record::encode(&mut item)?;
        file.write(&path, &bytes, self.durability).at(&path)?;
        Ok(Some(item))
    }
}
