//! The checks, grouped by trait, and the helpers they share.
//!
//! Every check is a plain `pub async fn(&Fixture) -> anyhow::Result<()>`. The list in
//! [`__for_each_check!`](crate::__for_each_check) is the one place a new check is
//! registered; both [`conformance_suite!`](crate::conformance_suite) and [`all`] read it.

use anyhow::Result;
use persistence_core::{
    ChannelName, Checkpoint, CheckpointId, Envelope, Fence, ItemKey, Lease, ListCheckpoints,
    ListItems, ListNamespaces, ListSessions, ListThreads, LockKey, Namespace, NewCheckpoint,
    SessionEvent, SessionKey, TaskId, TenantId, ThreadKey, Timestamp, Write,
    serde_json::{Value, json},
};

use crate::Fixture;

/// Fails the check unless `$result` is an error of kind `$kind`.
macro_rules! ensure_kind {
    ($result:expr, $kind:ident) => {
        match $result {
            Err(e) if e.kind() == persistence_core::ErrorKind::$kind => {}
            Err(e) => anyhow::bail!(
                "expected {:?}, got error {e}",
                persistence_core::ErrorKind::$kind
            ),
            Ok(v) => anyhow::bail!(
                "expected {:?}, got Ok({v:?})",
                persistence_core::ErrorKind::$kind
            ),
        }
    };
}

pub mod binary;
pub mod checkpointer;
pub mod concurrency;
pub mod envelope;
pub mod lease;
pub mod limits;
pub mod lock;
pub mod maintenance;
pub mod patch;
pub mod refresh;
pub mod replace;
pub mod retention;
pub mod session_lifecycle;
pub mod session_log;
pub mod store;
pub mod subscribe;
pub mod tenancy;

/// Ids that break naive encodings: path traversal, separators, hash-tag braces, globs,
/// percent escapes, backslashes, unicode, near-collisions and a 512-byte id.
pub const HOSTILE_IDS: &[&str] = &[
    "../x",
    "..",
    ".",
    "/",
    "a/b",
    "a%2Fb",
    "a:b",
    "a::b",
    "a\\b",
    "{x}",
    "}{",
    "*",
    "?[]",
    "%",
    "%00",
    "ünï/cødé",
    "🦀",
    "CON",
    "a b",
    " ",
    "A",
    "a",
    "x.",
    concat!(
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ),
    concat!(
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeX",
    ),
];

// Constructors for ids the checks know to be valid; a failure here is a bug in a check.
/// A lease of `th`'s own lock ([`LockKey::for_thread`]) with fence `f`, as a [`Lock`]
/// would hand it out: the checks pick fences freely to test how they compare.
///
/// [`Lock`]: persistence_core::Lock
pub(crate) fn thread_lease(t: &TenantId, th: &ThreadKey, f: u64) -> Lease {
    forged_lease(t, LockKey::for_thread(th), f)
}
/// A lease of `s`'s own lock ([`LockKey::for_session`]) with fence `f`.
pub(crate) fn session_lease(t: &TenantId, s: &SessionKey, f: u64) -> Lease {
    forged_lease(t, LockKey::for_session(s), f)
}
fn forged_lease(t: &TenantId, name: LockKey, f: u64) -> Lease {
    Lease::new(
        t.clone(),
        name,
        "forged-by-check",
        Fence(f),
        Timestamp::now(),
    )
}

#[allow(clippy::expect_used)]
pub(crate) fn tenant(s: &str) -> TenantId {
    TenantId::new(s).expect("valid tenant in check")
}
#[allow(clippy::expect_used)]
pub(crate) fn thread(s: &str) -> ThreadKey {
    ThreadKey::new(s).expect("valid thread in check")
}
#[allow(clippy::expect_used)]
pub(crate) fn session(s: &str) -> SessionKey {
    SessionKey::new(s).expect("valid session in check")
}
#[allow(clippy::expect_used)]
pub(crate) fn lock_key(s: &str) -> LockKey {
    LockKey::new(s).expect("valid lock name in check")
}
#[allow(clippy::expect_used)]
pub(crate) fn item_key(s: &str) -> ItemKey {
    ItemKey::new(s).expect("valid key in check")
}
#[allow(clippy::expect_used)]
pub(crate) fn task(s: &str) -> TaskId {
    TaskId::new(s).expect("valid task in check")
}
#[allow(clippy::expect_used)]
pub(crate) fn ns(labels: &[&str]) -> Namespace {
    Namespace::new(labels.iter().copied()).expect("valid namespace in check")
}
#[allow(clippy::expect_used)]
pub(crate) fn write(channel: &str, n: i64) -> Write {
    Write::new(
        ChannelName::new(channel).expect("valid channel in check"),
        env(json!({"w": n})),
    )
}

/// A version-1 envelope.
pub(crate) fn env(data: Value) -> Envelope {
    Envelope::new(1, data)
}
/// The event numbered `n` as the checks write it.
pub(crate) fn env_n(n: u64) -> Envelope {
    env(json!({"n": n}))
}
/// Events numbered by `range`.
pub(crate) fn events(range: std::ops::Range<u64>) -> Vec<Envelope> {
    range.map(env_n).collect()
}
/// A new checkpoint with a fresh id.
pub(crate) fn cp(parent: Option<CheckpointId>, step: i64) -> NewCheckpoint {
    NewCheckpoint::new(CheckpointId::new(), step, env(json!({"step": step}))).with_parent(parent)
}
/// A new checkpoint with metadata from a JSON object.
pub(crate) fn cp_meta(step: i64, metadata: Value) -> NewCheckpoint {
    let mut c = cp(None, step);
    if let Value::Object(map) = metadata {
        c.metadata = map.into_iter().collect();
    }
    c
}

/// Follows cursors to the end, failing on a runaway pagination.
async fn drain<T, C, F, Fut>(mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(Option<C>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<C>)>>,
{
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..10_000 {
        let (items, next) = fetch(cursor).await?;
        out.extend(items);
        match next {
            Some(n) => cursor = Some(n),
            None => return Ok(out),
        }
    }
    anyhow::bail!("pagination did not end after 10 000 pages")
}

pub(crate) async fn all_checkpoint_pages(
    fx: &Fixture,
    t: &TenantId,
    th: &ThreadKey,
    limit: usize,
) -> Result<Vec<Checkpoint>> {
    drain(|cursor| async move {
        let page = fx
            .checkpointer
            .list(
                t,
                th,
                ListCheckpoints::default()
                    .with_limit(limit)
                    .with_cursor(cursor),
            )
            .await?;
        Ok((page.items, page.next))
    })
    .await
}

pub(crate) async fn all_thread_pages(
    fx: &Fixture,
    t: &TenantId,
    limit: usize,
) -> Result<Vec<ThreadKey>> {
    drain(|cursor| async move {
        let page = fx
            .checkpointer
            .list_threads(
                t,
                ListThreads::default().with_cursor(cursor).with_limit(limit),
            )
            .await?;
        Ok((page.items, page.next))
    })
    .await
}

pub(crate) async fn all_session_pages(
    fx: &Fixture,
    t: &TenantId,
    limit: usize,
) -> Result<Vec<SessionKey>> {
    drain(|cursor| async move {
        let page = fx
            .sessions
            .list_sessions(
                t,
                ListSessions::default()
                    .with_cursor(cursor)
                    .with_limit(limit),
            )
            .await?;
        Ok((page.items, page.next))
    })
    .await
}

pub(crate) async fn all_item_pages(
    fx: &Fixture,
    t: &TenantId,
    n: &Namespace,
    prefix: Option<&str>,
    limit: usize,
) -> Result<Vec<persistence_core::Item>> {
    drain(|cursor| async move {
        let query = ListItems::default()
            .with_key_prefix(prefix.map(str::to_string))
            .with_cursor(cursor)
            .with_limit(limit);
        let page = fx.store.list(t, n, query).await?;
        Ok((page.items, page.next))
    })
    .await
}

pub(crate) async fn all_namespace_pages(
    fx: &Fixture,
    t: &TenantId,
    query: ListNamespaces,
) -> Result<Vec<Namespace>> {
    drain(|cursor| {
        let query = query.clone().with_cursor(cursor);
        async move {
            let page = fx.store.list_namespaces(t, query).await?;
            Ok((page.items, page.next))
        }
    })
    .await
}

/// Reads a whole session `limit` events at a time, following ordinals.
pub(crate) async fn read_all(
    fx: &Fixture,
    t: &TenantId,
    s: &SessionKey,
    limit: usize,
) -> Result<Vec<SessionEvent>> {
    let mut out: Vec<SessionEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = fx.sessions.read(t, s, after, limit).await?;
        if page.is_empty() {
            return Ok(out);
        }
        anyhow::ensure!(
            page.iter().all(|e| e.seq > after),
            "read returned ordinals not after {after}"
        );
        out.extend(page);
    }
}

/// Calls `$callback!` with every check as `module::name [requirements]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_check {
    ($callback:ident $(, $arg:tt)*) => {
        $crate::$callback! { ($($arg),*)
            checkpointer::checkpoint_put_then_get [],
            checkpointer::checkpoint_get_missing_is_none [],
            checkpointer::checkpoint_put_is_idempotent [],
            checkpointer::checkpoint_same_id_other_content_conflicts [],
            checkpointer::checkpoint_expect_latest_absent [],
            checkpointer::checkpoint_expect_latest_is [],
            checkpointer::checkpoint_retry_after_guard_moved_is_ok [],
            checkpointer::checkpoint_list_newest_first [],
            checkpointer::checkpoint_list_before_and_limit [],
            checkpointer::checkpoint_list_metadata_filter [],
            checkpointer::checkpoint_list_pages_exactly_once [],
            checkpointer::checkpoint_put_writes_returned_with_checkpoint [],
            checkpointer::checkpoint_put_writes_idempotent [],
            checkpointer::checkpoint_put_writes_missing_checkpoint [],
            checkpointer::checkpoint_writes_belong_to_their_checkpoint [],
            checkpointer::checkpoint_delete_thread [],
            checkpointer::checkpoint_prune_keeps_latest [],
            checkpointer::checkpoint_copy_thread [],
            checkpointer::checkpoint_copy_thread_errors [],
            checkpointer::checkpoint_list_threads_paginated [],
            checkpointer::checkpoint_fenced_put [],
            checkpointer::checkpoint_fenced_put_writes [],
            checkpointer::checkpoint_fence_survives_delete [],
            checkpointer::checkpoint_invalid_list_arguments [],
            session_log::session_first_append_starts_at_one [],
            session_log::session_ordinals_gapless_across_batches [],
            session_log::session_expect_head [],
            session_log::session_read_after_and_limit [],
            session_log::session_trim_never_reuses_ordinals [],
            session_log::session_trim_beyond_head [],
            session_log::session_delete_restarts [],
            session_log::session_list_sessions_paginated [],
            session_log::session_empty_append_is_invalid [],
            session_log::session_fenced_append [],
            session_log::session_event_roundtrip [],
            session_log::session_ttl_expiry [Ttl],
            session_log::session_ttl_hidden_before_purge [Ttl],
            session_log::session_ttl_survives_a_full_trim [Ttl],
            session_log::session_purge_names_expired_sessions [Ttl, Lifecycle],
            session_log::session_zero_ttl_is_invalid [Ttl],
            retention::retention_prune_through_keeps_newer [Lifecycle],
            retention::retention_count_and_age [Lifecycle],
            retention::retention_thread_ttl_deletes_idle_threads [Lifecycle],
            retention::retention_keeps_checkpoints_put_meanwhile [Lifecycle],
            retention::retention_of_a_fork_is_its_own [Lifecycle],
            subscribe::subscribe_delivers_backlog_then_live_events [],
            subscribe::subscribe_resumes_from_its_last_ordinal [],
            subscribe::subscribe_behind_a_trim_is_told [],
            subscribe::subscribe_sees_only_its_tenant [],
            subscribe::subscribe_with_concurrent_appenders [],
            subscribe::subscribe_batch_bounds [],
            session_lifecycle::session_info_follows_the_session [Lifecycle],
            session_lifecycle::session_close_refuses_appends [Lifecycle],
            session_lifecycle::session_close_can_remove_events [Lifecycle],
            session_lifecycle::session_closed_session_still_expires [Lifecycle, Ttl],
            session_lifecycle::session_compaction_trims_and_appends [Lifecycle],
            session_lifecycle::session_compaction_concurrent_with_appends [Lifecycle],
            store::store_put_get_roundtrip [],
            store::store_put_increments_version [],
            store::store_if_version_cas [],
            store::store_if_version_zero_creates_only [],
            store::store_delete [],
            store::store_recreate_restarts_version [],
            store::store_list_prefix_paginated [],
            store::store_list_namespaces_prefix_and_depth [],
            store::store_list_namespaces_paginated [],
            store::store_search_filters [Search],
            store::store_search_prefix_offset_limit [Search],
            store::store_ttl_expiry [Ttl],
            patch::store_patch_merges_fields [],
            patch::store_patch_guarded_and_missing [],
            patch::store_patch_expired_is_not_found [Ttl],
            patch::store_patch_concurrent_fields_survive [],
            patch::store_delete_namespace_subtree [],
            refresh::store_refresh_on_read_restarts_ttl [Ttl, Lifecycle],
            refresh::store_refresh_uses_latest_ttl_and_skips_untimed [Ttl, Lifecycle],
            refresh::store_search_refreshes_returned_items [Ttl, Search, Lifecycle],
            store::store_and_session_purges_count_their_own_kind [Ttl],
            store::store_ttl_hidden_before_purge_and_cleared [Ttl, Search],
            store::store_expired_is_absent_for_cas [Ttl],
            store::store_zero_ttl_is_invalid [Ttl],
            lock::lock_try_acquire_is_exclusive [],
            lock::lock_release_frees [],
            lock::lock_fences_strictly_increase [],
            lock::lock_expired_lease_frees [],
            lock::lock_renew_extends [],
            lock::lock_renew_after_expiry_is_lost [],
            lock::lock_renew_after_takeover_is_lost [],
            lock::lock_late_release_keeps_next_holder [],
            lock::lock_acquire_times_out [],
            lock::lock_acquire_waits_for_release [],
            lock::lock_with_lock_runs_and_releases [],
            lock::lock_with_lock_renews_in_background [],
            lock::lock_with_lock_reports_loss [],
            lock::lock_with_lock_releases_when_dropped [],
            lock::lock_with_lock_sees_renewals [],
            lock::lock_ttl_bounds [],
            lock::lock_held_does_not_block_writes [],
            lease::lock_lease_of_another_lock_refused [],
            maintenance::maintenance_reports_the_backend [],
            tenancy::tenancy_checkpoints_isolated [],
            tenancy::tenancy_sessions_isolated [],
            tenancy::tenancy_store_isolated [],
            tenancy::tenancy_search_isolated [Search],
            tenancy::tenancy_locks_isolated [],
            tenancy::tenancy_fences_isolated [],
            tenancy::tenancy_hostile_ids_never_collide [],
            tenancy::tenancy_hostile_lock_names [],
            tenancy::tenancy_rejects_bad_tenant_ids [],
            envelope::envelope_versions_preserved [],
            envelope::envelope_upcasters_run_on_read [],
            envelope::envelope_schema_too_new_leaves_data [],
            envelope::envelope_garbled_is_corrupt [],
            envelope::envelope_typed_roundtrip [],
            binary::binary_checkpoint_bytes_kept_or_refused [],
            binary::binary_item_bytes_kept_or_refused [],
            binary::binary_event_bytes_kept_or_refused [],
            limits::limits_fences_compare_exactly [],
            limits::limits_fence_above_range_is_invalid [],
            limits::limits_schema_version_full_range [],
            limits::limits_extreme_numbers_round_trip_or_are_refused [],
            concurrency::concurrency_appenders_gapless [],
            concurrency::concurrency_one_lock_holder [],
            concurrency::concurrency_expect_latest_one_winner [],
            concurrency::concurrency_store_cas_one_winner [],
            concurrency::concurrency_expect_head_one_winner [],
            concurrency::concurrency_with_lock_mutual_exclusion [],
            concurrency::concurrency_cas_merges_keep_every_field [],
            replace::replace_checkpoint_state_when_expected [Replace],
            replace::replace_pending_write_when_expected [Replace],
            replace::replace_event_when_expected [Replace],
            replace::replace_event_one_winner [Replace],
        }
    };
}

crate::__for_each_check!(__check_registry);
