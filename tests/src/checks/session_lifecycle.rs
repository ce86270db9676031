//! Sessions with a life cycle: `session_info`, `close_session` and `compact`.

use anyhow::{Context, Result, ensure};
use persistence_core::{AppendOptions, CloseSession, Compaction};

use super::{all_session_pages, env_n, events, read_all, session, session_lease, tenant};
use crate::Fixture;

/// Info is `None` for an absent session; it then follows appends (head, times), trims
/// (oldest) and a TTL (expiry), and a deleted session has none again.
pub async fn session_info_follows_the_session(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("info"));
    ensure!(fx.sessions.session_info(&t, &s).await?.is_none());
    fx.sessions
        .append(&t, &s, events(0..3), Default::default())
        .await?;
    let info = fx
        .sessions
        .session_info(&t, &s)
        .await?
        .context("no info after an append")?;
    ensure!(info.head == 3 && info.oldest == Some(1), "info {info:?}");
    let created = info.created_at.context("no creation time")?;
    let last = info.last_append_at.context("no last append time")?;
    ensure!(
        last >= created,
        "last append {last:?} before creation {created:?}"
    );
    ensure!(
        info.expires_at.is_none() && !info.is_closed(),
        "info {info:?}"
    );
    ensure!(
        fx.sessions.session_info(&tenant("b"), &s).await?.is_none(),
        "another tenant sees the session's info"
    );

    fx.sessions.trim_before(&t, &s, 3).await?;
    fx.sessions
        .append(
            &t,
            &s,
            events(3..4),
            AppendOptions::default().with_ttl(fx.long_ttl()),
        )
        .await?;
    let info = fx
        .sessions
        .session_info(&t, &s)
        .await?
        .context("info gone")?;
    ensure!(info.head == 4 && info.oldest == Some(3), "info {info:?}");
    ensure!(
        info.created_at == Some(created),
        "creation time changed: {info:?}"
    );
    let expires = info.expires_at.context("no expiry after a TTL append")?;
    ensure!(
        info.last_append_at
            .is_some_and(|l| l < expires && l >= last),
        "info {info:?}"
    );

    fx.sessions.trim_before(&t, &s, 5).await?;
    let info = fx.sessions.session_info(&t, &s).await?.context("gone")?;
    ensure!(
        info.head == 4 && info.oldest.is_none(),
        "after a full trim: {info:?}"
    );
    fx.sessions.delete(&t, &s).await?;
    ensure!(fx.sessions.session_info(&t, &s).await?.is_none());
    Ok(())
}

/// A closed session refuses appends and compactions with `Closed`, and keeps its
/// events, head and listing; closing again keeps the first close time; a deleted
/// closed session starts again, open, at ordinal 1.
pub async fn session_close_refuses_appends(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("closing"));
    ensure_kind!(
        fx.sessions
            .close_session(&t, &s, CloseSession::default())
            .await,
        NotFound
    );
    fx.sessions
        .append(&t, &s, events(0..2), Default::default())
        .await?;
    let info = fx
        .sessions
        .close_session(&t, &s, CloseSession::default())
        .await?;
    let closed_at = info.closed_at.context("close returned an open session")?;
    ensure!(info.head == 2 && info.oldest == Some(1), "info {info:?}");
    ensure_kind!(
        fx.sessions
            .append(&t, &s, events(2..3), Default::default())
            .await,
        Closed
    );
    ensure_kind!(
        fx.sessions
            .append(
                &t,
                &s,
                events(2..3),
                AppendOptions::default().with_expect_head(2)
            )
            .await,
        Closed
    );
    ensure_kind!(
        fx.sessions
            .compact(&t, &s, Compaction::new(1, events(9..10)))
            .await,
        Closed
    );
    ensure!(fx.sessions.head(&t, &s).await? == 2);
    let kept = read_all(fx, &t, &s, 10).await?;
    ensure!(
        kept.iter().map(|e| e.seq).eq([1, 2]) && kept[1].event == env_n(1),
        "events of the closed session: {kept:?}"
    );
    let listed = all_session_pages(fx, &t, 100).await?;
    ensure!(
        listed.contains(&s),
        "a closed session is not listed: {listed:?}"
    );

    fx.pass(std::time::Duration::from_millis(5)).await;
    let again = fx
        .sessions
        .close_session(&t, &s, CloseSession::default().with_events_removed())
        .await?;
    ensure!(
        again.closed_at == Some(closed_at),
        "second close: {again:?}"
    );
    ensure!(
        read_all(fx, &t, &s, 10).await?.len() == 2,
        "closing a closed session again removed its events"
    );

    fx.sessions
        .append(&tenant("b"), &s, events(0..1), Default::default())
        .await
        .context("another tenant's session of the same id refused an append")?;
    ensure!(
        fx.sessions
            .session_info(&tenant("b"), &s)
            .await?
            .is_some_and(|i| !i.is_closed()),
        "closing a session closed another tenant's session of the same id"
    );

    ensure!(fx.sessions.delete(&t, &s).await?);
    ensure!(
        fx.sessions
            .append(&t, &s, events(5..6), Default::default())
            .await?
            == 1,
        "a deleted closed session does not start again at 1"
    );
    let info = fx.sessions.session_info(&t, &s).await?.context("gone")?;
    ensure!(
        !info.is_closed(),
        "a session started again is still closed: {info:?}"
    );
    Ok(())
}

/// Closing with `remove_events` removes the events and keeps the head, so a reader
/// finds nothing and the ordinals are not reused.
pub async fn session_close_can_remove_events(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("close-remove"));
    fx.sessions
        .append(&t, &s, events(0..3), Default::default())
        .await?;
    let info = fx
        .sessions
        .close_session(&t, &s, CloseSession::default().with_events_removed())
        .await?;
    ensure!(
        info.head == 3 && info.oldest.is_none() && info.is_closed(),
        "info {info:?}"
    );
    ensure!(fx.sessions.read(&t, &s, 0, 10).await?.is_empty());
    ensure!(fx.sessions.head(&t, &s).await? == 3);
    ensure_kind!(
        fx.sessions
            .append(&t, &s, events(3..4), Default::default())
            .await,
        Closed
    );
    Ok(())
}

/// A closed session with a TTL still expires, and then starts again open at 1.
pub async fn session_closed_session_still_expires(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("close-ttl"));
    fx.sessions
        .append(
            &t,
            &s,
            events(0..2),
            AppendOptions::default().with_ttl(fx.short_ttl()),
        )
        .await?;
    fx.sessions
        .close_session(&t, &s, CloseSession::default())
        .await?;
    fx.expire().await;
    ensure!(fx.sessions.session_info(&t, &s).await?.is_none());
    ensure!(
        fx.sessions
            .append(&t, &s, events(0..1), Default::default())
            .await?
            == 1
    );
    let info = fx.sessions.session_info(&t, &s).await?.context("gone")?;
    ensure!(!info.is_closed(), "expired closed session came back closed");
    Ok(())
}

/// A compaction removes the events through `through` and appends its summary after the
/// head in one step; its guards (`expect_head`, `through` past the head, an empty
/// summary, an absent session, a stale lease) change nothing.
pub async fn session_compaction_trims_and_appends(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("compact"));
    ensure_kind!(
        fx.sessions
            .compact(&t, &s, Compaction::new(0, events(100..101)))
            .await,
        NotFound
    );
    fx.sessions
        .append(
            &t,
            &s,
            events(0..5),
            AppendOptions::default().with_lease(&session_lease(&t, &s, 5)),
        )
        .await?;
    let unchanged = read_all(fx, &t, &s, 10).await?;
    ensure_kind!(
        fx.sessions
            .compact(
                &t,
                &s,
                Compaction::new(3, events(100..101)).with_expect_head(4)
            )
            .await,
        Conflict
    );
    ensure_kind!(
        fx.sessions
            .compact(&t, &s, Compaction::new(6, events(100..101)))
            .await,
        Conflict
    );
    ensure_kind!(
        fx.sessions
            .compact(&t, &s, Compaction::new(3, vec![]))
            .await,
        InvalidInput
    );
    ensure_kind!(
        fx.sessions
            .compact(
                &t,
                &s,
                Compaction::new(3, events(100..101)).with_lease(&session_lease(&t, &s, 4))
            )
            .await,
        Fenced
    );
    ensure_kind!(
        fx.sessions
            .compact(&tenant("b"), &s, Compaction::new(0, events(100..101)))
            .await,
        NotFound
    );
    ensure!(
        read_all(fx, &t, &s, 10).await? == unchanged,
        "a refused compaction changed the session"
    );

    let head = fx
        .sessions
        .compact(
            &t,
            &s,
            Compaction::new(3, events(100..102))
                .with_expect_head(5)
                .with_lease(&session_lease(&t, &s, 5)),
        )
        .await?;
    ensure!(head == 7, "compaction returned head {head}, not 7");
    let after = read_all(fx, &t, &s, 10).await?;
    ensure!(
        after.iter().map(|e| e.seq).eq([4, 5, 6, 7]),
        "ordinals after compaction: {:?}",
        after.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    ensure!(
        after[0].event == env_n(3) && after[2].event == env_n(100) && after[3].event == env_n(101)
    );
    let info = fx.sessions.session_info(&t, &s).await?.context("gone")?;
    ensure!(info.head == 7 && info.oldest == Some(4), "info {info:?}");
    ensure!(fx.sessions.head(&t, &s).await? == 7);
    ensure!(
        fx.sessions
            .append(&t, &s, events(7..8), Default::default())
            .await?
            == 8,
        "the append after a compaction did not continue at 8"
    );
    Ok(())
}

/// Appenders and a compacting task on one session: every append gets its own ordinal,
/// what stays is gapless up to the head, and the head counts every event.
pub async fn session_compaction_concurrent_with_appends(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("compact-race"));
    fx.sessions
        .append(&t, &s, events(0..1), Default::default())
        .await?;
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let (fx, t, s) = (fx.clone(), t.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..8u64 {
                fx.sessions
                    .append(
                        &t,
                        &s,
                        events(w * 100 + i..w * 100 + i + 1),
                        Default::default(),
                    )
                    .await?;
            }
            anyhow::Ok(0u64)
        }));
    }
    {
        let (fx, t, s) = (fx.clone(), t.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..3u64 {
                let head = fx.sessions.head(&t, &s).await?;
                fx.sessions
                    .compact(
                        &t,
                        &s,
                        Compaction::new(head, events(900 + round..901 + round)),
                    )
                    .await?;
            }
            anyhow::Ok(3u64)
        }));
    }
    let mut summaries = 0;
    for task in tasks {
        summaries += task.await??;
    }
    let head = fx.sessions.head(&t, &s).await?;
    ensure!(
        head == 1 + 32 + summaries,
        "head {head}, expected {}",
        1 + 32 + summaries
    );
    let kept = read_all(fx, &t, &s, 7).await?;
    let first = kept.first().context("nothing left")?.seq;
    ensure!(
        kept.iter().map(|e| e.seq).eq(first..=head),
        "ordinals left are not gapless up to the head: {:?}",
        kept.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    Ok(())
}
