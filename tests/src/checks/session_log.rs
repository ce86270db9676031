//! Session log: gapless ordinals, atomic batches, `expect_head`, reads, trim, delete,
//! listing, fences, TTL.

use anyhow::{Result, ensure};
use persistence_core::{AppendOptions, ListSessions};

use super::{all_session_pages, env_n, events, read_all, session, session_lease, tenant};
use crate::Fixture;

fn expect(head: u64) -> AppendOptions {
    AppendOptions::default().with_expect_head(head)
}

/// The first append of a new session gets ordinal 1; an absent session has head 0.
pub async fn session_first_append_starts_at_one(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("fresh"));
    ensure!(fx.sessions.head(&t, &s).await? == 0);
    ensure!(fx.sessions.read(&t, &s, 0, 10).await?.is_empty());
    ensure!(
        fx.sessions
            .append(&t, &s, events(0..1), Default::default())
            .await?
            == 1
    );
    let got = fx.sessions.read(&t, &s, 0, 10).await?;
    ensure!(
        got.len() == 1 && got[0].seq == 1 && got[0].event == env_n(0),
        "read {got:?}"
    );
    Ok(())
}

/// Batches get consecutive ordinals and the append returns the new head.
pub async fn session_ordinals_gapless_across_batches(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("batches"));
    let mut next = 0;
    for size in [1, 3, 1, 10, 2] {
        let head = fx
            .sessions
            .append(&t, &s, events(next..next + size), Default::default())
            .await?;
        next += size;
        ensure!(head == next, "head {head} after {next} events");
    }
    let all = read_all(fx, &t, &s, 4).await?;
    for (i, e) in all.iter().enumerate() {
        ensure!(
            e.seq == i as u64 + 1 && e.event == env_n(i as u64),
            "event {i} is {e:?}"
        );
    }
    ensure!(all.len() as u64 == next && fx.sessions.head(&t, &s).await? == next);
    Ok(())
}

/// `expect_head` passes on the current head (0 for empty) and otherwise fails `Conflict`
/// without writing any event of the batch.
pub async fn session_expect_head(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("expect"));
    ensure_kind!(
        fx.sessions.append(&t, &s, events(0..2), expect(1)).await,
        Conflict
    );
    ensure!(
        fx.sessions.head(&t, &s).await? == 0,
        "failed append created events"
    );
    ensure!(fx.sessions.append(&t, &s, events(0..2), expect(0)).await? == 2);
    ensure!(fx.sessions.append(&t, &s, events(2..3), expect(2)).await? == 3);
    ensure_kind!(
        fx.sessions.append(&t, &s, events(3..6), expect(2)).await,
        Conflict
    );
    ensure!(fx.sessions.head(&t, &s).await? == 3);
    ensure!(
        read_all(fx, &t, &s, 10).await?.len() == 3,
        "partial batch written"
    );
    Ok(())
}

/// `read(after, limit)` returns ordinals greater than `after`, ascending, at most `limit`.
pub async fn session_read_after_and_limit(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("reads"));
    fx.sessions
        .append(&t, &s, events(0..20), Default::default())
        .await?;
    let page = fx.sessions.read(&t, &s, 5, 4).await?;
    let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
    ensure!(seqs == vec![6, 7, 8, 9], "seqs {seqs:?}");
    ensure!(fx.sessions.read(&t, &s, 20, 5).await?.is_empty());
    ensure!(fx.sessions.read(&t, &s, 18, 100).await?.len() == 2);
    for limit in [1, 3, 20] {
        ensure!(read_all(fx, &t, &s, limit).await?.len() == 20);
    }
    ensure_kind!(fx.sessions.read(&t, &s, 0, 0).await, InvalidInput);
    Ok(())
}

/// Trimming removes old events but never lowers the head, so ordinals are never reused.
pub async fn session_trim_never_reuses_ordinals(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("trim"));
    fx.sessions
        .append(&t, &s, events(0..10), Default::default())
        .await?;
    ensure!(fx.sessions.trim_before(&t, &s, 4).await? == 3);
    let first = fx.sessions.read(&t, &s, 0, 1).await?;
    ensure!(
        first.first().is_some_and(|e| e.seq == 4),
        "first after trim {first:?}"
    );
    ensure!(fx.sessions.trim_before(&t, &s, 11).await? == 7);
    ensure!(
        fx.sessions.head(&t, &s).await? == 10,
        "trim lowered the head"
    );
    ensure!(
        fx.sessions
            .append(&t, &s, events(10..11), expect(10))
            .await?
            == 11
    );
    let rest = read_all(fx, &t, &s, 5).await?;
    ensure!(rest.len() == 1 && rest[0].seq == 11, "after trim {rest:?}");
    ensure!(fx.sessions.trim_before(&t, &s, 1).await? == 0);
    Ok(())
}

/// Trimming past the head removes everything and still keeps the head.
pub async fn session_trim_beyond_head(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("trim-all"));
    fx.sessions
        .append(&t, &s, events(0..3), Default::default())
        .await?;
    ensure!(fx.sessions.trim_before(&t, &s, u64::MAX).await? == 3);
    ensure!(fx.sessions.read(&t, &s, 0, 10).await?.is_empty());
    ensure!(
        fx.sessions
            .append(&t, &s, events(3..4), Default::default())
            .await?
            == 4
    );
    ensure!(fx.sessions.trim_before(&t, &session("absent"), 5).await? == 0);
    Ok(())
}

/// A deleted session is gone and starts again at 1.
pub async fn session_delete_restarts(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("delete-me"));
    let other = session("survivor");
    fx.sessions
        .append(&t, &s, events(0..3), Default::default())
        .await?;
    fx.sessions
        .append(&t, &other, events(0..1), Default::default())
        .await?;
    ensure!(fx.sessions.delete(&t, &s).await?);
    ensure!(!fx.sessions.delete(&t, &s).await?);
    ensure!(fx.sessions.head(&t, &s).await? == 0);
    ensure!(fx.sessions.read(&t, &s, 0, 10).await?.is_empty());
    ensure!(fx.sessions.append(&t, &s, events(0..1), expect(0)).await? == 1);
    ensure!(
        fx.sessions.head(&t, &other).await? == 1,
        "delete touched another session"
    );
    Ok(())
}

/// `list_sessions` pages through every session exactly once, in id order.
pub async fn session_list_sessions_paginated(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let mut want: Vec<String> = (0..13).map(|i| format!("s{i:03}")).collect();
    want.push("{weird}:*%".into());
    for name in &want {
        fx.sessions
            .append(&t, &session(name), events(0..1), Default::default())
            .await?;
    }
    want.sort();
    for limit in [1, 3, 14, 100] {
        let got: Vec<String> = all_session_pages(fx, &t, limit)
            .await?
            .iter()
            .map(|k| k.to_string())
            .collect();
        ensure!(got == want, "limit {limit}: {got:?}");
    }
    fx.sessions.delete(&t, &session("s004")).await?;
    ensure!(all_session_pages(fx, &t, 4).await?.len() == want.len() - 1);
    ensure_kind!(
        fx.sessions
            .list_sessions(&t, ListSessions::default().with_limit(0))
            .await,
        InvalidInput
    );
    Ok(())
}

/// An empty batch is `InvalidInput` and creates nothing.
pub async fn session_empty_append_is_invalid(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("empty"));
    ensure_kind!(
        fx.sessions
            .append(&t, &s, Vec::new(), Default::default())
            .await,
        InvalidInput
    );
    ensure!(
        all_session_pages(fx, &t, 10).await?.is_empty(),
        "empty append created a session"
    );
    Ok(())
}

/// A stale fence fails `Fenced` and writes nothing; equal and higher fences pass.
pub async fn session_fenced_append(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("fenced"));
    let with = |f| AppendOptions::default().with_lease(&session_lease(&t, &s, f));
    fx.sessions.append(&t, &s, events(0..1), with(2)).await?;
    fx.sessions.append(&t, &s, events(1..2), with(2)).await?;
    ensure_kind!(
        fx.sessions.append(&t, &s, events(2..3), with(1)).await,
        Fenced
    );
    ensure!(fx.sessions.head(&t, &s).await? == 2, "fenced append wrote");
    fx.sessions.append(&t, &s, events(2..3), with(7)).await?;
    ensure_kind!(
        fx.sessions.append(&t, &s, events(3..4), with(6)).await,
        Fenced
    );
    fx.sessions.delete(&t, &s).await?;
    ensure_kind!(
        fx.sessions.append(&t, &s, events(0..1), with(6)).await,
        Fenced
    );
    Ok(())
}

/// Events keep their schema version and payload and get an append time.
pub async fn session_event_roundtrip(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("payload"));
    let odd = persistence_core::Envelope::new(
        42,
        persistence_core::serde_json::json!({"text": "é\"\\\n\u{2028}", "n": -1.5e300, "list": [true, null, {}]}),
    );
    fx.sessions
        .append(&t, &s, vec![odd.clone()], Default::default())
        .await?;
    let got = fx.sessions.read(&t, &s, 0, 1).await?;
    ensure!(got.len() == 1 && got[0].event == odd, "read back {got:?}");
    ensure!(got[0].appended_at.as_millis() > 0, "no append time");
    Ok(())
}

/// An ephemeral session disappears from read, head and listing once its TTL passes,
/// and `purge_expired` removes and counts it.
pub async fn session_ttl_expiry(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let (tmp, keep) = (session("ephemeral"), session("durable"));
    let ttl = AppendOptions::default().with_ttl(fx.short_ttl());
    fx.sessions.append(&t, &tmp, events(0..3), ttl).await?;
    fx.sessions
        .append(&t, &keep, events(0..1), Default::default())
        .await?;
    ensure!(fx.sessions.head(&t, &tmp).await? == 3);
    fx.expire().await;
    ensure!(
        fx.maintenance.purge_expired().await?.sessions >= 1,
        "purge counted nothing"
    );
    ensure!(
        fx.sessions.head(&t, &tmp).await? == 0,
        "expired session has a head"
    );
    ensure!(fx.sessions.read(&t, &tmp, 0, 10).await?.is_empty());
    let listed = all_session_pages(fx, &t, 10).await?;
    ensure!(listed == vec![keep.clone()], "listed {listed:?}");
    ensure!(
        fx.sessions.head(&t, &keep).await? == 1,
        "durable session expired"
    );
    ensure!(
        fx.sessions
            .append(&t, &tmp, events(0..1), expect(0))
            .await?
            == 1
    );
    Ok(())
}

/// A session with a TTL whose events were all trimmed (or compacted away and trimmed)
/// still expires: the expiry belongs to the session, not to its last event.
pub async fn session_ttl_survives_a_full_trim(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("trimmed-ttl"));
    let ttl = AppendOptions::default().with_ttl(fx.short_ttl());
    fx.sessions.append(&t, &s, events(0..3), ttl).await?;
    fx.sessions.trim_before(&t, &s, 4).await?;
    ensure!(
        fx.sessions.head(&t, &s).await? == 3,
        "a full trim lost the head"
    );
    fx.expire().await;
    ensure!(
        fx.sessions.head(&t, &s).await? == 0,
        "a fully trimmed session with a TTL never expires"
    );
    ensure!(
        !all_session_pages(fx, &t, 10).await?.contains(&s),
        "a fully trimmed expired session is listed"
    );
    fx.maintenance.purge_expired().await?;
    ensure!(
        fx.sessions.append(&t, &s, events(0..1), expect(0)).await? == 1,
        "the session did not start again at 1"
    );
    Ok(())
}

/// `purge_expired_report` names the expired sessions it removed, per tenant, and no
/// other.
pub async fn session_purge_names_expired_sessions(fx: &Fixture) -> Result<()> {
    let (a, b) = (tenant("a"), tenant("b"));
    let (gone, kept) = (session("named-expired"), session("named-kept"));
    let ttl = AppendOptions::default().with_ttl(fx.short_ttl());
    fx.sessions
        .append(&a, &gone, events(0..1), ttl.clone())
        .await?;
    fx.sessions.append(&b, &gone, events(0..1), ttl).await?;
    fx.sessions
        .append(&a, &kept, events(0..1), Default::default())
        .await?;
    fx.expire().await;
    let report = fx.maintenance.purge_expired_report().await?;
    ensure!(
        report.named,
        "the backend did not name the sessions it purged"
    );
    let named: Vec<(String, String)> = report
        .expired_sessions
        .iter()
        .map(|e| (e.tenant.to_string(), e.session.to_string()))
        .collect();
    for t in ["a", "b"] {
        ensure!(
            named.contains(&(t.to_string(), gone.to_string())),
            "{t}/{gone} not named: {named:?}"
        );
    }
    ensure!(
        !named.iter().any(|(_, s)| *s == kept.to_string()),
        "a live session was named: {named:?}"
    );
    ensure!(
        report.counts.sessions >= 2,
        "counted {} sessions",
        report.counts.sessions
    );
    Ok(())
}

/// Expired sessions are hidden even before any purge runs.
pub async fn session_ttl_hidden_before_purge(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("lazy"));
    let ttl = AppendOptions::default().with_ttl(fx.short_ttl());
    fx.sessions.append(&t, &s, events(0..2), ttl).await?;
    fx.expire().await;
    ensure!(
        fx.sessions.read(&t, &s, 0, 10).await?.is_empty(),
        "expired events readable"
    );
    ensure!(
        all_session_pages(fx, &t, 10).await?.is_empty(),
        "expired session listed"
    );
    ensure!(
        !fx.sessions.delete(&t, &s).await?,
        "delete saw an expired session"
    );
    Ok(())
}

/// A zero TTL is `InvalidInput`.
pub async fn session_zero_ttl_is_invalid(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("zero-ttl"));
    let zero = AppendOptions::default().with_ttl(std::time::Duration::ZERO);
    ensure_kind!(
        fx.sessions.append(&t, &s, events(0..1), zero).await,
        InvalidInput
    );
    ensure!(fx.sessions.head(&t, &s).await? == 0);
    Ok(())
}
