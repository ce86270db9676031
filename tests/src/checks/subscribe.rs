//! Live tail: `Subscription`s deliver the backlog then new events, in order, once each,
//! resume from their last ordinal, report a trim they fell behind, and see only their
//! tenant's session.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use persistence_core::{Compaction, ErrorKind, SessionEvent, Subscribe, Subscription};

use super::{env_n, events, session, tenant};
use crate::Fixture;

/// Fast polling, so a backend without push still answers within a check's deadlines.
fn options() -> Subscribe {
    Subscribe::default().with_poll_interval(Duration::from_millis(50))
}

/// The next event within a generous deadline.
async fn next(sub: &mut Subscription<'_>) -> Result<SessionEvent> {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .context("no event within 10 s")?
        .map_err(Into::into)
}

/// The error `next` fails with within a deadline.
async fn next_err(sub: &mut Subscription<'_>) -> Result<persistence_core::Error> {
    match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
        Err(_) => anyhow::bail!("neither an event nor an error within 10 s"),
        Ok(Ok(e)) => anyhow::bail!("expected an error, got {e:?}"),
        Ok(Err(err)) => Ok(err),
    }
}

/// The backlog first, then events appended while the subscriber waits, in order.
pub async fn subscribe_delivers_backlog_then_live_events(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("tail"));
    fx.sessions
        .append(&t, &s, events(0..3), Default::default())
        .await?;
    let mut sub = fx.sessions.subscribe(&t, &s, 0, options());
    for want in 1..=3 {
        let e = next(&mut sub).await?;
        ensure!(e.seq == want && e.event == env_n(want - 1), "got {e:?}");
    }
    let writer = {
        let (fx, t, s) = (fx.clone(), t.clone(), s.clone());
        tokio::spawn(async move {
            for batch in [3..4, 4..7, 7..10] {
                tokio::time::sleep(Duration::from_millis(30)).await;
                fx.sessions
                    .append(&t, &s, events(batch), Default::default())
                    .await?;
            }
            anyhow::Ok(())
        })
    };
    for want in 4..=10 {
        let e = next(&mut sub).await?;
        ensure!(
            e.seq == want && e.event == env_n(want - 1),
            "got {e:?}, wanted {want}"
        );
    }
    writer.await??;
    ensure!(sub.last_seq() == 10);
    Ok(())
}

/// A new subscription from `last_seq` continues exactly where the old one stopped.
pub async fn subscribe_resumes_from_its_last_ordinal(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("resume"));
    fx.sessions
        .append(&t, &s, events(0..6), Default::default())
        .await?;
    let mut first = fx.sessions.subscribe(&t, &s, 2, options());
    ensure!(next(&mut first).await?.seq == 3);
    ensure!(next(&mut first).await?.seq == 4);
    let resume_at = first.last_seq();
    drop(first);
    let mut second = fx.sessions.subscribe(&t, &s, resume_at, options());
    ensure!(next(&mut second).await?.seq == 5);
    ensure!(next(&mut second).await?.seq == 6);
    Ok(())
}

/// A subscriber behind a trim or a compaction fails `Trimmed` instead of skipping; so
/// does one whose session was deleted.
pub async fn subscribe_behind_a_trim_is_told(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("behind"));
    fx.sessions
        .append(&t, &s, events(0..5), Default::default())
        .await?;
    let one = options().with_batch(1);
    let mut sub = fx.sessions.subscribe(&t, &s, 0, one.clone());
    ensure!(next(&mut sub).await?.seq == 1);
    fx.sessions.trim_before(&t, &s, 4).await?;
    let err = next_err(&mut sub).await.context("read past a trim")?;
    ensure!(err.kind() == ErrorKind::Trimmed, "got {err}");
    // From the oldest stored event it reads on.
    let mut sub = fx.sessions.subscribe(&t, &s, 3, one.clone());
    ensure!(next(&mut sub).await?.seq == 4);

    if fx.capabilities.lifecycle {
        fx.sessions
            .compact(&t, &s, Compaction::new(5, events(9..10)))
            .await?;
        let err = next_err(&mut sub).await.context("read past a compaction")?;
        ensure!(err.kind() == ErrorKind::Trimmed, "got {err}");
    }

    let head = fx.sessions.head(&t, &s).await?;
    let mut sub = fx.sessions.subscribe(&t, &s, head - 1, one);
    ensure!(next(&mut sub).await?.seq == head);
    fx.sessions.delete(&t, &s).await?;
    let err = next_err(&mut sub).await.context("read past a delete")?;
    ensure!(
        err.kind() == ErrorKind::Trimmed,
        "after ordinal {head}: got {err}"
    );
    Ok(())
}

/// A subscriber sees its tenant's session only, not another tenant's of the same id.
pub async fn subscribe_sees_only_its_tenant(fx: &Fixture) -> Result<()> {
    let (a, b, s) = (tenant("a"), tenant("b"), session("shared-id"));
    let mut sub = fx.sessions.subscribe(&a, &s, 0, options());
    fx.sessions
        .append(&b, &s, events(100..103), Default::default())
        .await?;
    let early = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    ensure!(early.is_err(), "tenant a's subscriber got {early:?}");
    fx.sessions
        .append(&a, &s, events(0..1), Default::default())
        .await?;
    let e = next(&mut sub).await?;
    ensure!(e.seq == 1 && e.event == env_n(0), "got {e:?}");
    Ok(())
}

/// Several subscribers next to several appenders each get every event once, in order.
pub async fn subscribe_with_concurrent_appenders(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("crowd"));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (fx, t, s) = (fx.clone(), t.clone(), s.clone());
        readers.push(tokio::spawn(async move {
            let mut sub = fx.sessions.subscribe(&t, &s, 0, options());
            let mut seqs = Vec::new();
            for _ in 0..30 {
                seqs.push(next(&mut sub).await?.seq);
            }
            anyhow::Ok(seqs)
        }));
    }
    let mut writers = Vec::new();
    for w in 0..3u64 {
        let (fx, t, s) = (fx.clone(), t.clone(), s.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                fx.sessions
                    .append(
                        &t,
                        &s,
                        events(w * 10 + i..w * 10 + i + 1),
                        Default::default(),
                    )
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    for r in readers {
        let seqs = r.await??;
        ensure!(seqs.iter().copied().eq(1..=30), "a subscriber got {seqs:?}");
    }
    Ok(())
}

/// A batch outside 1..=10 000 is `InvalidInput` from `next`, and the session is
/// untouched; a batch of one delivers every event, one read each.
pub async fn subscribe_batch_bounds(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("batch"));
    fx.sessions
        .append(&t, &s, events(0..3), Default::default())
        .await?;
    for bad in [0, persistence_core::MAX_PAGE_LIMIT + 1] {
        let mut sub = fx.sessions.subscribe(&t, &s, 0, options().with_batch(bad));
        let err = next_err(&mut sub).await?;
        ensure!(err.kind() == ErrorKind::InvalidInput, "batch {bad}: {err}");
    }
    let mut sub = fx.sessions.subscribe(&t, &s, 0, options().with_batch(1));
    for want in 1..=3 {
        ensure!(next(&mut sub).await?.seq == want);
    }
    ensure!(fx.sessions.head(&t, &s).await? == 3);
    Ok(())
}
