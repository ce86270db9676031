//! Merge updates of store items: JSON merge patch (RFC 7396) applied atomically.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::ids::{ItemKey, Namespace, TenantId};
use crate::store::{PutItemOptions, Store};

/// How many times [`Store::patch`]'s default implementation reads and writes again when
/// another writer changed the item in between, before it gives up with `Conflict`.
pub const PATCH_ATTEMPTS: usize = 64;

/// Options of [`Store::patch`].
///
/// ```
/// use persistence_core::PatchItemOptions;
///
/// let options = PatchItemOptions::default().with_if_version(4);
/// assert_eq!(options.if_version, Some(4));
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct PatchItemOptions {
    /// Patch only if the item's version is this one: `Conflict` otherwise, nothing
    /// written. `None`: patch whatever version is current (concurrent patches all apply,
    /// one after the other).
    pub if_version: Option<u64>,
    /// As in [`Store::put`]: the item expires this long after the patch; `None`: it no
    /// longer expires.
    pub ttl: Option<Duration>,
}

impl PatchItemOptions {
    /// Same, patching only version `if_version`.
    #[must_use]
    pub fn with_if_version(mut self, if_version: impl Into<Option<u64>>) -> Self {
        self.if_version = if_version.into();
        self
    }
    /// Same, expiring the item `ttl` after the patch (`None`: never).
    #[must_use]
    pub fn with_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.ttl = ttl.into();
        self
    }
}

/// Applies `patch` to `target` as RFC 7396 says: an object patch merges into an object
/// (a `null` member removes that member, other members are merged recursively); any
/// other patch replaces the target whole.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(object) = target {
        for (name, value) in members {
            if value.is_null() {
                object.remove(name);
            } else {
                merge_patch(object.entry(name.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// [`Store::patch`] on top of `get` and a compare-and-swap `put`: read the item, merge,
/// write it back only if its version did not move, and start over when it did (up to
/// [`PATCH_ATTEMPTS`] times, with a short randomized pause). Atomic on every backend
/// whose `put` honours `if_version`, which the conformance suite checks.
///
/// # Errors
/// `NotFound` for an absent or expired item; `Conflict` when `if_version` does not hold
/// or the item kept changing for [`PATCH_ATTEMPTS`] attempts; errors of `get` and `put`.
pub async fn patch_by_compare_and_swap<S: Store + ?Sized>(
    store: &S,
    tenant: &TenantId,
    namespace: &Namespace,
    key: &ItemKey,
    patch: Value,
    options: PatchItemOptions,
) -> Result<u64> {
    let ctx = |e: Error| e.context("core", "store.patch", format!("{tenant}/{namespace}/{key}"));
    for attempt in 0..PATCH_ATTEMPTS {
        let Some(item) = store.get(tenant, namespace, key).await? else {
            return Err(ctx(Error::not_found(
                "no item to patch (put it first: a patch keeps its schema version)",
            )));
        };
        if let Some(expected) = options.if_version
            && expected != item.version
        {
            return Err(ctx(Error::conflict(format!(
                "expected version {expected}, found {}",
                item.version
            ))));
        }
        let mut value = item.value;
        merge_patch(&mut value.data, &patch);
        let put = PutItemOptions::default()
            .with_if_version(item.version)
            .with_ttl(options.ttl);
        match store.put(tenant, namespace, key, value, put).await {
            Ok(version) => return Ok(version),
            // Changed since it was read: with a version to hold, that is the caller's
            // conflict; without, merge into the newer value.
            Err(e) if e.kind() == crate::ErrorKind::Conflict && options.if_version.is_none() => {
                let pause = fastrand::u64(0..=(1u64 << attempt.min(6)));
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ctx(Error::conflict(format!(
        "the item changed under every one of {PATCH_ATTEMPTS} attempts"
    ))))
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    /// The examples of RFC 7396, appendix A.
    #[test]
    fn rfc_7396_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want, "patch {patch}");
        }
    }
}
