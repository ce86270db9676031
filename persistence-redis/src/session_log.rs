//! Session logs: a meta hash (head, expiry, created, last append, closed) and a sorted
//! set of events scored by ordinal, under one hash tag. Ordinals come from the stored
//! head, never from the set's size, so trimming and compaction never let one be reused.
//! Ephemeral sessions expire with native key TTLs (the life-cycle fields with them); the
//! fence counter has none. Appends, compactions and closes announce the change for live
//! tails (`changes`).

use async_trait::async_trait;
use persistence_core::backend::{
    CursorExt, PageExt, compaction_fence, decode_record, encode_envelope, session_fence,
    validate_limit, validate_ttl,
};
use persistence_core::{
    AppendOptions, CloseSession, Compaction, Cursor, Envelope, Error, ExpiredSession, ListSessions,
    Page, Result, SessionEvent, SessionInfo, SessionKey, SessionLog, TenantId, Timestamp,
};
use redis::AsyncCommands;

use crate::error::{BACKEND, Effect, corrupt, map};
use crate::keys::{Index, SessionKeys};
use crate::{RedisBackend, expect_ok, invocation, parse_u64, scripts};

/// An event's sorted-set member, `{ordinal}|{appended at}|{record}`, split: the record
/// is the event's JSON, then its bytes raw (`encode_envelope`). `None` without both
/// separators or with a non-UTF-8 ordinal or time.
pub(crate) fn split_event_member(member: &[u8]) -> Option<(&str, &str, &[u8])> {
    let mut parts = member.splitn(3, |&b| b == b'|');
    let (seq, at, record) = (parts.next()?, parts.next()?, parts.next()?);
    Some((
        std::str::from_utf8(seq).ok()?,
        std::str::from_utf8(at).ok()?,
        record,
    ))
}

fn parse_event(member: &[u8], key: &str) -> Result<SessionEvent> {
    let Some((seq, at, record)) = split_event_member(member) else {
        return Err(corrupt("event member without ordinal", "session.read", key));
    };
    Ok(SessionEvent::new(
        parse_u64(seq, "session.read", key)?,
        decode_record(record).map_err(|e| corrupt(e, "session.read", key))?,
        Timestamp(parse_u64(at, "session.read", key)?),
    ))
}

/// `session_info.lua`'s reply: `{'none'}`, or `{'ok', head, oldest, created, last, exp,
/// closed}` with `''` for what is unknown.
fn parse_info(reply: &[String], operation: &'static str, key: &str) -> Result<Option<SessionInfo>> {
    let field = |s: &String| -> Result<Option<u64>> {
        if s.is_empty() {
            return Ok(None);
        }
        parse_u64(s, operation, key).map(Some)
    };
    match reply {
        [none] if none == "none" => Ok(None),
        [ok, head, oldest, created, last, exp, closed] if ok == "ok" => Ok(Some(
            SessionInfo::new(parse_u64(head, operation, key)?)
                .with_oldest(field(oldest)?)
                .with_created_at(field(created)?.map(Timestamp))
                .with_last_append_at(field(last)?.map(Timestamp))
                .with_expires_at(field(exp)?.map(Timestamp))
                .with_closed_at(field(closed)?.map(Timestamp)),
        )),
        [status, message] => Err(crate::error::status(status, message, operation, key)),
        other => Err(corrupt(format!("script reply {other:?}"), operation, key)),
    }
}

/// The events of an append or compaction as script arguments.
fn event_args(
    invocation: &mut redis::ScriptInvocation<'static>,
    events: &[Envelope],
) -> Result<()> {
    for event in events {
        invocation.arg(encode_envelope(event)?);
    }
    Ok(())
}

impl RedisBackend {
    /// The command and channel a script announces a change of the session with
    /// (`["", ""]`: without push).
    fn announce(&self, k: &SessionKeys) -> [String; 2] {
        match &self.changes {
            Some(changes) => {
                let session_channel = k.changes();
                let announce = changes.announce(&session_channel);
                [announce.command.to_owned(), announce.channel.to_owned()]
            }
            None => [String::new(), String::new()],
        }
    }
}

#[async_trait]
impl SessionLog for RedisBackend {
    async fn append(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        events: Vec<Envelope>,
        options: AppendOptions,
    ) -> Result<u64> {
        through_codec!(self.sessions().append(tenant, session, events, options));
        let key = format!("{tenant}/{session}");
        let ctx = |e: Error| e.context(BACKEND, "session.append", &key);
        if events.is_empty() {
            return Err(ctx(Error::invalid_input("append needs at least one event")));
        }
        let ttl = options
            .ttl
            .map(|t| validate_ttl("session ttl", t))
            .transpose()
            .map_err(ctx)?;
        let fence = session_fence(tenant, session, options.lease.as_ref()).map_err(ctx)?;
        let k = self.keys.session(tenant, session);
        let [command, channel] = self.announce(&k);
        let mut invocation = invocation!(
            scripts::SESSION_APPEND,
            [k.meta(), k.events(), k.fence()],
            [
                options
                    .expect_head
                    .map(|h| h.to_string())
                    .unwrap_or_default(),
                fence.map(|f| f.0.to_string()).unwrap_or_default(),
                ttl.map(|t| t.as_millis().to_string()).unwrap_or_default(),
                command,
                channel,
            ]
        );
        event_args(&mut invocation, &events).map_err(ctx)?;
        let script = self.invoke::<Vec<String>>(invocation);
        let (index, reply) = tokio::join!(
            self.index_add(tenant, Index::Sessions, session.as_str()),
            script
        );
        index.map_err(|e| map(e, Effect::Write, "session.append", &key))?;
        let head = expect_ok(
            reply.map_err(|e| map(e, Effect::Write, "session.append", &key))?,
            "session.append",
            &key,
        )?;
        self.confirm_write("session.append", &key).await?;
        parse_u64(&head, "session.append", &key)
    }

    async fn read(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEvent>> {
        through_codec!(self.sessions().read(tenant, session, after, limit));
        let key = format!("{tenant}/{session}");
        let limit = validate_limit(limit).map_err(|e| e.context(BACKEND, "session.read", &key))?;
        let events_key = self.keys.session(tenant, session).events();
        let members: Vec<Vec<u8>> = self
            .read("session.read", &key, || {
                let mut cmd = redis::cmd("ZRANGEBYSCORE");
                cmd.arg(&events_key)
                    .arg(format!("({after}"))
                    .arg("+inf")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit);
                self.query(cmd)
            })
            .await?;
        members.iter().map(|m| parse_event(m, &key)).collect()
    }

    async fn head(&self, tenant: &TenantId, session: &SessionKey) -> Result<u64> {
        through_codec!(self.sessions().head(tenant, session));
        let key = format!("{tenant}/{session}");
        let meta = self.keys.session(tenant, session).meta();
        let head: Option<u64> = self
            .read("session.head", &key, || {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(&meta).arg("head");
                self.query(cmd)
            })
            .await?;
        Ok(head.unwrap_or(0))
    }

    async fn replace_event(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seq: u64,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        through_codec!(
            self.sessions()
                .replace_event(tenant, session, seq, expected, new)
        );
        self.replace_session_event(tenant, session, seq, expected, new)
            .await
    }

    async fn trim_before(&self, tenant: &TenantId, session: &SessionKey, seq: u64) -> Result<u64> {
        through_codec!(self.sessions().trim_before(tenant, session, seq));
        let key = format!("{tenant}/{session}");
        let events_key = self.keys.session(tenant, session).events();
        let mut cmd = redis::cmd("ZREMRANGEBYSCORE");
        cmd.arg(&events_key).arg("-inf").arg(format!("({seq}"));
        self.query(cmd)
            .await
            .map_err(|e| map(e, Effect::Write, "session.trim_before", &key))
    }

    async fn delete(&self, tenant: &TenantId, session: &SessionKey) -> Result<bool> {
        through_codec!(self.sessions().delete(tenant, session));
        let key = format!("{tenant}/{session}");
        let k = self.keys.session(tenant, session);
        let removed: u64 = self
            .conn()
            .del(&[k.meta(), k.events()])
            .await
            .map_err(|e| map(e, Effect::Write, "session.delete", &key))?;
        // The index entry after the data (another slot): a crash in between leaves an
        // entry that the next purge drops.
        let _: u64 = self
            .conn()
            .zrem(self.keys.index(tenant, Index::Sessions), session.as_str())
            .await
            .map_err(|e| map(e, Effect::Write, "session.delete", &key))?;
        Ok(removed > 0)
    }

    async fn list_sessions(
        &self,
        tenant: &TenantId,
        query: ListSessions,
    ) -> Result<Page<SessionKey>> {
        through_codec!(self.sessions().list_sessions(tenant, query));
        let ListSessions { cursor, limit, .. } = query;
        let key = tenant.to_string();
        let limit =
            validate_limit(limit).map_err(|e| e.context(BACKEND, "session.list_sessions", &key))?;
        let after = cursor
            .as_ref()
            .map(|c| {
                SessionKey::new(c.as_str())
                    .map_err(|_| c.invalid().context(BACKEND, "session.list_sessions", &key))
            })
            .transpose()?
            .map(SessionKey::into_string);
        let members = self
            .live_members(
                tenant,
                Index::Sessions,
                after,
                limit,
                "session.list_sessions",
                |m| {
                    SessionKey::new(m)
                        .ok()
                        .map(|s| self.keys.session(tenant, &s).meta())
                },
            )
            .await?;
        let items: Vec<SessionKey> = members
            .into_iter()
            .filter_map(|m| SessionKey::new(m).ok())
            .collect();
        Ok(Page::from_overfetch(items, limit, |k| {
            Cursor::new(k.as_str())
        }))
    }

    async fn wait_for_change(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seen_head: u64,
        timeout: std::time::Duration,
    ) -> Result<()> {
        through_codec!(
            self.sessions()
                .wait_for_change(tenant, session, seen_head, timeout)
        );
        let Some(changes) = &self.changes else {
            tokio::time::sleep(timeout).await;
            return Ok(());
        };
        let k = self.keys.session(tenant, session);
        let (meta, channel) = (k.meta(), k.changes());
        let waiter_key = changes.waiter_key(&meta, &channel).to_owned();
        let notify = changes.waiter(&waiter_key);
        let head = async {
            // Registered for notices from here: a head read since answers this waiter.
            let not_before = std::time::Instant::now();
            let read_head = || self.head(tenant, session);
            changes.heads.call(waiter_key, not_before, read_head).await
        };
        persistence_core::backend::wait_on_notify(&notify, head, seen_head, timeout).await
    }

    async fn session_info(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
    ) -> Result<Option<SessionInfo>> {
        through_codec!(self.sessions().session_info(tenant, session));
        let key = format!("{tenant}/{session}");
        let k = self.keys.session(tenant, session);
        let reply: Vec<String> = self
            .read("session.info", &key, || {
                self.invoke(invocation!(
                    scripts::SESSION_INFO,
                    [k.meta(), k.events()],
                    ["", "", ""]
                ))
            })
            .await?;
        parse_info(&reply, "session.info", &key)
    }

    async fn close_session(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        options: CloseSession,
    ) -> Result<SessionInfo> {
        through_codec!(self.sessions().close_session(tenant, session, options));
        let key = format!("{tenant}/{session}");
        let k = self.keys.session(tenant, session);
        let mode = if options.remove_events {
            "close-remove"
        } else {
            "close"
        };
        let [command, channel] = self.announce(&k);
        let reply: Vec<String> = self
            .invoke(invocation!(
                scripts::SESSION_INFO,
                [k.meta(), k.events()],
                [mode, command, channel]
            ))
            .await
            .map_err(|e| map(e, Effect::Write, "session.close", &key))?;
        self.confirm_write("session.close", &key).await?;
        parse_info(&reply, "session.close", &key)?.ok_or_else(|| {
            corrupt(
                "close replied that the session is absent",
                "session.close",
                &key,
            )
        })
    }

    async fn compact(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        compaction: Compaction,
    ) -> Result<u64> {
        through_codec!(self.sessions().compact(tenant, session, compaction));
        let key = format!("{tenant}/{session}");
        let ctx = |e: Error| e.context(BACKEND, "session.compact", &key);
        let fence = compaction_fence(tenant, session, &compaction).map_err(ctx)?;
        let k = self.keys.session(tenant, session);
        let [command, channel] = self.announce(&k);
        let mut invocation = invocation!(
            scripts::SESSION_COMPACT,
            [k.meta(), k.events(), k.fence()],
            [
                compaction
                    .expect_head
                    .map(|h| h.to_string())
                    .unwrap_or_default(),
                fence.map(|f| f.0.to_string()).unwrap_or_default(),
                compaction.through.to_string(),
                command,
                channel,
            ]
        );
        event_args(&mut invocation, &compaction.summary).map_err(ctx)?;
        let reply = self
            .invoke::<Vec<String>>(invocation)
            .await
            .map_err(|e| map(e, Effect::Write, "session.compact", &key))?;
        let head = expect_ok(reply, "session.compact", &key)?;
        self.confirm_write("session.compact", &key).await?;
        parse_u64(&head, "session.compact", &key)
    }
}

impl RedisBackend {
    /// Session data expires by itself (key TTLs); this drops index entries of sessions
    /// that are gone and names them (a deleted session's entry goes with it, so these
    /// expired).
    pub(crate) async fn purge_expired_sessions(&self) -> Result<Vec<ExpiredSession>> {
        let mut removed = Vec::new();
        for t in self.tenants().await? {
            let mut after: Option<String> = None;
            loop {
                let page = self
                    .index_page(&t, Index::Sessions, after.as_deref(), 500)
                    .await
                    .map_err(|e| map(e, Effect::Read, "session.purge_expired", &t))?;
                let candidates: Vec<SessionKey> = page
                    .iter()
                    .filter_map(|id| SessionKey::new(id.as_str()).ok())
                    .collect();
                let metas: Vec<String> = candidates
                    .iter()
                    .map(|s| self.keys.session(&t, s).meta())
                    .collect();
                let live = self
                    .exists_many(&metas)
                    .await
                    .map_err(|e| map(e, Effect::Read, "session.purge_expired", &t))?;
                for (s, live) in candidates.iter().zip(live) {
                    if !live {
                        let n: u64 = self
                            .conn()
                            .zrem(self.keys.index(&t, Index::Sessions), s.as_str())
                            .await
                            .map_err(|e| map(e, Effect::Write, "session.purge_expired", &t))?;
                        if n > 0 {
                            removed.push(ExpiredSession::new(t.clone(), s.clone()));
                        }
                    }
                }
                if page.len() < 500 {
                    break;
                }
                after = page.last().cloned();
            }
        }
        Ok(removed)
    }
}
