//! Replacing stored payloads in place (`Capabilities::replace`): only when the payload
//! still equals the one expected, changing nothing else, one winner among racers, and
//! never across tenants. What re-encrypting stored rows (the codec's rekey) builds on.

use anyhow::{Context, Result, ensure};
use persistence_core::serde_json::json;
use persistence_core::{
    AppendOptions, CheckpointPayload, CheckpointSelector, PutCheckpointOptions, PutWrites,
};

use super::{cp, env, env_n, events, read_all, session, task, tenant, thread, write};
use crate::Fixture;

/// A checkpoint's state is replaced only when it is the one expected; its id, parent,
/// step, metadata, creation time, writes and place in the history stay, and so does
/// every other checkpoint and tenant.
pub async fn replace_checkpoint_state_when_expected(fx: &Fixture) -> Result<()> {
    let (t, other, th) = (tenant("a"), tenant("b"), thread("replace-state"));
    let first = fx
        .checkpointer
        .put(&t, &th, cp(None, 0), PutCheckpointOptions::default())
        .await?;
    let second_new = cp(Some(first.id), 1).with_metadata_entry("source", json!("loop"));
    let second = fx
        .checkpointer
        .put(&t, &th, second_new.clone(), PutCheckpointOptions::default())
        .await?;
    fx.checkpointer
        .put(&other, &th, second_new, PutCheckpointOptions::default())
        .await?;
    fx.checkpointer
        .put_writes(
            &t,
            &th,
            PutWrites::new(second.id, task("t"), vec![write("c", 1)]),
        )
        .await?;
    let slot = CheckpointPayload::State(second.id);
    let new = env(json!({"re": "encoded"}));

    let wrong = env(json!({"step": 99}));
    ensure!(
        !fx.checkpointer
            .replace_payload(&t, &th, &slot, &wrong, new.clone())
            .await?,
        "replaced a state that was not the one expected"
    );
    let absent = CheckpointPayload::State(persistence_core::CheckpointId::new());
    ensure!(
        !fx.checkpointer
            .replace_payload(&t, &th, &absent, &second.state, new.clone())
            .await?,
        "replaced the state of an absent checkpoint"
    );
    ensure!(
        !fx.checkpointer
            .replace_payload(&t, &thread("no-such"), &slot, &second.state, new.clone())
            .await?,
        "replaced a state in an absent thread"
    );
    ensure!(
        fx.checkpointer
            .replace_payload(&t, &th, &slot, &second.state, new.clone())
            .await?,
        "did not replace the state expected"
    );
    ensure!(
        !fx.checkpointer
            .replace_payload(&t, &th, &slot, &second.state, env(json!({"x": 1})))
            .await?,
        "replaced again with the old state as expected"
    );

    let got = fx
        .checkpointer
        .get(&t, &th, CheckpointSelector::Latest)
        .await?
        .context("latest checkpoint gone")?;
    ensure!(
        got.checkpoint.state == new,
        "get returns {:?}",
        got.checkpoint.state
    );
    ensure!(
        (
            got.checkpoint.id,
            got.checkpoint.parent,
            got.checkpoint.step,
            &got.checkpoint.metadata,
            got.checkpoint.created_at
        ) == (
            second.id,
            second.parent,
            second.step,
            &second.metadata,
            second.created_at
        ),
        "replacing the state changed the checkpoint around it: {:?}",
        got.checkpoint
    );
    ensure!(
        got.pending_writes.len() == 1 && got.pending_writes[0].value == write("c", 1).value,
        "the checkpoint's writes changed: {:?}",
        got.pending_writes
    );
    let history = super::all_checkpoint_pages(fx, &t, &th, 10).await?;
    ensure!(
        history.iter().map(|c| c.id).collect::<Vec<_>>() == vec![second.id, first.id],
        "history order changed"
    );
    ensure!(
        history[1].state == first.state,
        "another checkpoint changed"
    );
    let theirs = fx
        .checkpointer
        .get(&other, &th, CheckpointSelector::Id(second.id))
        .await?
        .context("other tenant's checkpoint gone")?;
    ensure!(
        theirs.checkpoint.state == second.state,
        "another tenant's checkpoint of the same id changed"
    );
    ensure!(
        !fx.checkpointer
            .replace_payload(&other, &th, &slot, &new, env(json!({"x": 2})))
            .await?,
        "a tenant replaced with a state only another tenant holds"
    );
    Ok(())
}

/// A pending write is replaced only when it is the one expected; its task, index and
/// channel stay, and so do its neighbours.
pub async fn replace_pending_write_when_expected(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("replace-write"));
    let c = fx
        .checkpointer
        .put(&t, &th, cp(None, 0), PutCheckpointOptions::default())
        .await?;
    fx.checkpointer
        .put_writes(
            &t,
            &th,
            PutWrites::new(c.id, task("t"), vec![write("a", 0), write("b", 1)]),
        )
        .await?;
    let slot = |index| CheckpointPayload::Write {
        checkpoint: c.id,
        task: task("t"),
        index,
    };
    let new = env(json!({"re": "encoded"}));
    let old = write("b", 1).value;
    ensure!(
        !fx.checkpointer
            .replace_payload(&t, &th, &slot(1), &write("b", 7).value, new.clone())
            .await?,
        "replaced a write that was not the one expected"
    );
    ensure!(
        !fx.checkpointer
            .replace_payload(&t, &th, &slot(2), &old, new.clone())
            .await?,
        "replaced an absent write"
    );
    let other_task = CheckpointPayload::Write {
        checkpoint: c.id,
        task: task("u"),
        index: 1,
    };
    ensure!(
        !fx.checkpointer
            .replace_payload(&t, &th, &other_task, &old, new.clone())
            .await?,
        "replaced a write of a task that wrote nothing"
    );
    ensure!(
        fx.checkpointer
            .replace_payload(&t, &th, &slot(1), &old, new.clone())
            .await?,
        "did not replace the write expected"
    );
    let got = fx
        .checkpointer
        .get(&t, &th, CheckpointSelector::Id(c.id))
        .await?
        .context("checkpoint gone")?;
    let mut writes = got.pending_writes;
    writes.sort_by_key(|w| w.index);
    ensure!(writes.len() == 2, "writes: {writes:?}");
    ensure!(
        writes[0].value == write("a", 0).value && writes[0].channel.as_str() == "a",
        "a neighbouring write changed: {:?}",
        writes[0]
    );
    ensure!(
        writes[1].value == new
            && writes[1].channel.as_str() == "b"
            && writes[1].task_id == task("t")
            && writes[1].index == 1,
        "the replaced write is {:?}",
        writes[1]
    );
    ensure!(
        got.checkpoint.state == c.state,
        "the checkpoint's state changed"
    );
    Ok(())
}

/// An event is replaced only when it is the one expected, in a live session; its
/// ordinal, its append time, the head and the other events stay. Trimmed events, deleted
/// sessions and other tenants' sessions are never written.
pub async fn replace_event_when_expected(fx: &Fixture) -> Result<()> {
    let (t, other, s) = (tenant("a"), tenant("b"), session("replace-event"));
    for tn in [&t, &other] {
        fx.sessions
            .append(tn, &s, events(1..5), AppendOptions::default())
            .await?;
    }
    let before = read_all(fx, &t, &s, 100).await?;
    let new = env(json!({"re": "encoded"}));
    ensure!(
        !fx.sessions
            .replace_event(&t, &s, 2, &env_n(3), new.clone())
            .await?,
        "replaced an event that was not the one expected"
    );
    ensure!(
        !fx.sessions
            .replace_event(&t, &s, 9, &env_n(9), new.clone())
            .await?,
        "replaced an event past the head"
    );
    ensure!(
        fx.sessions
            .replace_event(&t, &s, 2, &env_n(2), new.clone())
            .await?,
        "did not replace the event expected"
    );
    let after = read_all(fx, &t, &s, 100).await?;
    ensure!(after.len() == before.len(), "events: {after:?}");
    for (b, a) in before.iter().zip(&after) {
        ensure!(
            a.seq == b.seq && a.appended_at == b.appended_at,
            "ordinals or times changed"
        );
        let want = if a.seq == 2 { &new } else { &b.event };
        ensure!(a.event == *want, "event {} is {:?}", a.seq, a.event);
    }
    ensure!(fx.sessions.head(&t, &s).await? == 4, "the head changed");
    let head = fx
        .sessions
        .append(&t, &s, events(5..6), AppendOptions::default())
        .await?;
    let appended = read_all(fx, &t, &s, 100).await?;
    ensure!(
        head == 5
            && appended.len() == 5
            && appended[1].event == new
            && appended[4].event == env_n(5),
        "an append after the replace: head {head}, events {appended:?}"
    );
    let theirs = read_all(fx, &other, &s, 100).await?;
    ensure!(
        theirs[1].event == env_n(2),
        "another tenant's event changed"
    );

    fx.sessions.trim_before(&t, &s, 2).await?;
    ensure!(
        !fx.sessions
            .replace_event(&t, &s, 1, &env_n(1), new.clone())
            .await?,
        "replaced a trimmed event"
    );
    fx.sessions.delete(&t, &s).await?;
    ensure!(
        !fx.sessions
            .replace_event(&t, &s, 3, &env_n(3), new.clone())
            .await?,
        "replaced an event of a deleted session"
    );
    ensure!(
        read_all(fx, &t, &s, 100).await?.is_empty(),
        "a replace brought a deleted session back"
    );
    Ok(())
}

/// Racing replaces of one event from the same expected payload: exactly one wins, and
/// its payload is the one stored.
pub async fn replace_event_one_winner(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("replace-race"));
    fx.sessions
        .append(&t, &s, events(1..2), AppendOptions::default())
        .await?;
    let mut racers = Vec::new();
    for i in 0..8 {
        let sessions = fx.sessions.clone();
        let (t, s) = (t.clone(), s.clone());
        racers.push(tokio::spawn(async move {
            sessions
                .replace_event(&t, &s, 1, &env_n(1), env(json!({"racer": i})))
                .await
                .map(|won| won.then_some(i))
        }));
    }
    let mut winners = Vec::new();
    for racer in racers {
        if let Some(i) = racer.await?? {
            winners.push(i);
        }
    }
    ensure!(winners.len() == 1, "winners: {winners:?}");
    let stored = read_all(fx, &t, &s, 10).await?;
    ensure!(
        stored.len() == 1 && stored[0].event == env(json!({"racer": winners[0]})),
        "stored {stored:?}, winner {winners:?}"
    );
    Ok(())
}
