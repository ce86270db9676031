//! The Lua scripts, loaded from `src/lua/*.lua`. Each runs with EVALSHA (falling back to
//! EVAL once after a server restart) and touches keys of one hash tag only.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file))));
    };
}

/// A script that checks fences: `lua/fence.lua` is prepended.
macro_rules! fenced_script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/fence.lua"),
                include_str!(concat!("lua/", $file))
            ))
        });
    };
}

fenced_script!(CHECKPOINT_PUT, "checkpoint_put.lua");
script!(CHECKPOINT_GET, "checkpoint_get.lua");
script!(CHECKPOINT_LIST, "checkpoint_list.lua");
fenced_script!(CHECKPOINT_PUT_WRITES, "checkpoint_put_writes.lua");
script!(CHECKPOINT_PRUNE, "checkpoint_prune.lua");
script!(CHECKPOINT_PRUNE_THROUGH, "checkpoint_prune_through.lua");
script!(CHECKPOINT_EXPORT, "checkpoint_export.lua");
script!(CHECKPOINT_IMPORT, "checkpoint_import.lua");
script!(HASH_REPLACE, "hash_replace.lua");
script!(EVENT_REPLACE, "event_replace.lua");
/// A script that may announce a session's change: `lua/announce.lua` (and the fence
/// check) is prepended.
macro_rules! announcing_script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/fence.lua"),
                include_str!("lua/announce.lua"),
                include_str!(concat!("lua/", $file))
            ))
        });
    };
}

announcing_script!(SESSION_APPEND, "session_append.lua");
announcing_script!(SESSION_COMPACT, "session_compact.lua");
announcing_script!(SESSION_INFO, "session_info.lua");
script!(ITEM_PUT, "item_put.lua");
script!(ITEM_DELETE, "item_delete.lua");
script!(ITEM_LIST, "item_list.lua");
script!(ITEM_PURGE, "item_purge.lua");
script!(ITEM_REFRESH, "item_refresh.lua");
script!(LEASE_ACQUIRE, "lease_acquire.lua");
script!(LEASE_RENEW, "lease_renew.lua");
script!(LEASE_RELEASE, "lease_release.lua");
