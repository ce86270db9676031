//! [`LogSessionService`]: adk-session's `SessionService` over a session log and a store.

use std::collections::HashMap;
use std::sync::Arc;

use adk_session::{
    AppendEventRequest, CreateRequest, DeleteRequest, Event, GetRequest, KEY_PREFIX_TEMP,
    ListRequest, Session, SessionService, extract_state_deltas, merge_states,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use persistence::{
    AppendOptions, Envelope, ErrorKind, ItemKey, ListItems, Namespace, PutItemOptions, SessionKey,
    SessionLog, Store, TenantId,
};
use serde_json::{Value, json};

use adk_core::{AdkError, ErrorCategory, ErrorComponent};

use crate::error::{backend_error, corrupt, invalid, not_found};
use crate::stored::{SessionEvents, SessionState, StoredSession};
use crate::{decode_part, part};

pub(crate) type StateMap = HashMap<String, Value>;
type AdkResult<T> = adk_core::Result<T>;

/// Schema version of stored events, session records and state items.
pub const ADK_SCHEMA: u32 = 1;

/// How many times a compare-and-swap of a state item is tried again under contention.
const CAS_ATTEMPTS: usize = 64;

/// Events read per round trip.
const READ_BATCH: usize = 1000;

/// adk sessions of one tenant. Cheap to clone.
#[derive(Clone)]
pub struct LogSessionService {
    sessions: Arc<dyn SessionLog>,
    store: Arc<dyn Store>,
    tenant: TenantId,
}

impl std::fmt::Debug for LogSessionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSessionService")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A session's stored record: its own state folded through ordinal `through`, the
/// log's head when it was created (`start`: its events come after), when it was created
/// and last appended to.
struct Record {
    state: StateMap,
    start: u64,
    through: u64,
    created: i64,
    updated: i64,
    version: u64,
}

impl Record {
    fn to_json(&self) -> Value {
        json!({"state": self.state, "start": self.start, "through": self.through,
               "created": self.created, "updated": self.updated})
    }

    fn from_item(item: &persistence::Item) -> AdkResult<Self> {
        let data = &item.value.data;
        let state = serde_json::from_value(data["state"].clone())
            .map_err(|e| corrupt("session record", e))?;
        Ok(Record {
            state,
            start: data["start"].as_u64().unwrap_or(0),
            through: data["through"].as_u64().unwrap_or(0),
            created: data["created"].as_i64().unwrap_or(0),
            updated: data["updated"].as_i64().unwrap_or(0),
            version: item.version,
        })
    }
}

/// The session keys of one identity.
struct Keys {
    app: String,
    user: String,
    id: String,
    log: SessionKey,
    sessions: Namespace,
    record: ItemKey,
}

impl LogSessionService {
    /// Sessions of `tenant`: events in `sessions`, records and state in `store`.
    pub fn new(sessions: Arc<dyn SessionLog>, store: Arc<dyn Store>, tenant: TenantId) -> Self {
        LogSessionService {
            sessions,
            store,
            tenant,
        }
    }

    /// The tenant its sessions belong to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn keys(app: &str, user: &str, id: &str) -> AdkResult<Keys> {
        let build = || -> persistence::Result<Keys> {
            Ok(Keys {
                app: app.to_string(),
                user: user.to_string(),
                id: id.to_string(),
                log: SessionKey::new(format!("adk/{}/{}/{}", part(app), part(user), part(id)))?,
                sessions: Namespace::new(["adk-sessions".to_string(), part(app), part(user)])?,
                record: ItemKey::new(part(id))?,
            })
        };
        build().map_err(|e| invalid(format!("session identity: {}", e.message())))
    }

    fn app_state_at() -> AdkResult<Namespace> {
        Namespace::new(["adk-app-state"]).map_err(backend_error)
    }

    fn user_state_at(app: &str) -> AdkResult<Namespace> {
        Namespace::new(["adk-user-state".to_string(), part(app)]).map_err(backend_error)
    }

    fn index_at() -> AdkResult<Namespace> {
        Namespace::new(["adk-session-index"]).map_err(backend_error)
    }

    /// A state item's map (empty when absent) and version (0).
    async fn state_item(&self, ns: &Namespace, key: &str) -> AdkResult<(StateMap, u64)> {
        let key = ItemKey::new(part(key)).map_err(backend_error)?;
        match self
            .store
            .get(&self.tenant, ns, &key)
            .await
            .map_err(backend_error)?
        {
            None => Ok((StateMap::new(), 0)),
            Some(item) => Ok((
                serde_json::from_value(item.value.data).map_err(|e| corrupt("state", e))?,
                item.version,
            )),
        }
    }

    /// Sets the keys of `delta` in a state item (each replacing its value), by
    /// compare-and-swap.
    async fn extend_state(&self, ns: &Namespace, key: &str, delta: StateMap) -> AdkResult<()> {
        if delta.is_empty() {
            return Ok(());
        }
        let item = ItemKey::new(part(key)).map_err(backend_error)?;
        for _ in 0..CAS_ATTEMPTS {
            let (mut state, version) = self.state_item(ns, key).await?;
            state.extend(delta.clone());
            let value = Envelope::new(ADK_SCHEMA, json!(state));
            let put = PutItemOptions::default().with_if_version(version);
            match self.store.put(&self.tenant, ns, &item, value, put).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(backend_error(e)),
            }
        }
        Err(backend_error(persistence::Error::conflict(
            "state kept changing under every attempt",
        )))
    }

    async fn record(&self, k: &Keys) -> AdkResult<Option<Record>> {
        self.store
            .get(&self.tenant, &k.sessions, &k.record)
            .await
            .map_err(backend_error)?
            .map(|item| Record::from_item(&item))
            .transpose()
    }

    /// The events of a session after ordinal `after`, decoded, with their ordinals.
    async fn events_after(&self, k: &Keys, mut after: u64) -> AdkResult<Vec<(u64, Event)>> {
        let mut out = Vec::new();
        loop {
            let page = self
                .sessions
                .read(&self.tenant, &k.log, after, READ_BATCH)
                .await
                .map_err(backend_error)?;
            for e in &page {
                let event: Event = serde_json::from_value(e.event.data.clone())
                    .map_err(|err| corrupt("event", err))?;
                out.push((e.seq, event));
            }
            match page.last() {
                Some(last) if page.len() == READ_BATCH => after = last.seq,
                _ => return Ok(out),
            }
        }
    }

    /// The session's own state: the record's fold, then the deltas of `events` (those
    /// after it).
    fn fold(record: &Record, events: &[(u64, Event)]) -> StateMap {
        let mut state = record.state.clone();
        for (seq, event) in events {
            if *seq > record.through {
                let (_, _, own) = extract_state_deltas(&event.actions.state_delta);
                state.extend(own);
            }
        }
        state
    }

    /// Brings the record's fold up to the log's head (by compare-and-swap; one already
    /// past it is left).
    async fn refold(&self, k: &Keys, updated: i64) -> AdkResult<()> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(record) = self.record(k).await? else {
                return Ok(());
            };
            let events = self.events_after(k, record.through).await?;
            let Some((head, _)) = events.last() else {
                return Ok(());
            };
            let folded = Record {
                state: Self::fold(&record, &events),
                start: record.start,
                through: *head,
                created: record.created,
                updated: updated.max(record.updated),
                version: record.version,
            };
            let value = Envelope::new(ADK_SCHEMA, folded.to_json());
            let put = PutItemOptions::default().with_if_version(record.version);
            match self
                .store
                .put(&self.tenant, &k.sessions, &k.record, value, put)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(backend_error(e)),
            }
        }
        Ok(())
    }

    async fn build(
        &self,
        k: &Keys,
        record: &Record,
        own: StateMap,
        events: Vec<Event>,
    ) -> AdkResult<Box<dyn Session>> {
        let (app, _) = self.state_item(&Self::app_state_at()?, &k.app).await?;
        let (user, _) = self
            .state_item(&Self::user_state_at(&k.app)?, &k.user)
            .await?;
        let updated = events.last().map_or(from_millis(record.updated), |e| {
            e.timestamp.max(from_millis(record.updated))
        });
        Ok(Box::new(StoredSession {
            app: k.app.clone(),
            user: k.user.clone(),
            id: k.id.clone(),
            state: SessionState(merge_states(&app, &user, &own)),
            events: SessionEvents(events),
            updated,
        }))
    }
}

#[async_trait]
impl SessionService for LogSessionService {
    async fn create(&self, req: CreateRequest) -> AdkResult<Box<dyn Session>> {
        req.try_app_name()?;
        req.try_user_id()?;
        req.try_session_id()?;
        let id = req
            .session_id
            .clone()
            .unwrap_or_else(|| persistence::CheckpointId::new().to_string());
        let k = Self::keys(&req.app_name, &req.user_id, &id)?;
        let (app_delta, user_delta, own) = extract_state_deltas(&req.state);
        let now = to_millis(Utc::now());
        // Events left by an earlier session under this id (a delete cut short) come
        // before `start` and are not this one's.
        let start = self
            .sessions
            .head(&self.tenant, &k.log)
            .await
            .map_err(backend_error)?;
        let record = Record {
            state: own.clone(),
            start,
            through: start,
            created: now,
            updated: now,
            version: 0,
        };
        let value = Envelope::new(ADK_SCHEMA, record.to_json());
        let put = PutItemOptions::default().with_if_version(0);
        match self
            .store
            .put(&self.tenant, &k.sessions, &k.record, value, put)
            .await
        {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => {
                return Err(AdkError::new(
                    ErrorComponent::Session,
                    ErrorCategory::InvalidInput,
                    "session.already_exists",
                    format!(
                        "session '{id}' exists for app '{}' and user '{}'",
                        req.app_name, req.user_id
                    ),
                ));
            }
            Err(e) => return Err(backend_error(e)),
        }
        let index = Envelope::new(
            ADK_SCHEMA,
            json!({"app": req.app_name, "user": req.user_id}),
        );
        let index_key = ItemKey::new(part(&id)).map_err(backend_error)?;
        self.store
            .put(
                &self.tenant,
                &Self::index_at()?,
                &index_key,
                index,
                PutItemOptions::default(),
            )
            .await
            .map_err(backend_error)?;
        self.extend_state(&Self::app_state_at()?, &req.app_name, app_delta)
            .await?;
        self.extend_state(
            &Self::user_state_at(&req.app_name)?,
            &req.user_id,
            user_delta,
        )
        .await?;
        self.build(&k, &record, own, Vec::new()).await
    }

    async fn get(&self, req: GetRequest) -> AdkResult<Box<dyn Session>> {
        req.try_identity()?;
        let k = Self::keys(&req.app_name, &req.user_id, &req.session_id)?;
        let Some(record) = self.record(&k).await? else {
            return Err(not_found(&req.app_name, &req.user_id, &req.session_id));
        };
        let all = self.events_after(&k, record.start).await?;
        let own = Self::fold(&record, &all);
        let mut events: Vec<Event> = all.into_iter().map(|(_, e)| e).collect();
        if let Some(n) = req.num_recent_events {
            let start = events.len().saturating_sub(n);
            events.drain(..start);
        }
        if let Some(after) = req.after {
            events.retain(|e| e.timestamp >= after);
        }
        self.build(&k, &record, own, events).await
    }

    async fn list(&self, req: ListRequest) -> AdkResult<Vec<Box<dyn Session>>> {
        req.try_app_name()?;
        req.try_user_id()?;
        let probe = Self::keys(&req.app_name, &req.user_id, "x")?;
        let mut records = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list(
                    &self.tenant,
                    &probe.sessions,
                    ListItems::default().with_cursor(cursor).with_limit(1000),
                )
                .await
                .map_err(backend_error)?;
            for item in &page.items {
                records.push((item.key.clone(), Record::from_item(item)?));
            }
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        records.sort_by(|a, b| b.1.updated.cmp(&a.1.updated).then_with(|| a.0.cmp(&b.0)));
        let mut out = Vec::new();
        for (key, record) in records
            .into_iter()
            .skip(req.offset.unwrap_or(0))
            .take(req.limit.unwrap_or(usize::MAX))
        {
            let id = decode_part(key.as_str());
            let k = Self::keys(&req.app_name, &req.user_id, &id)?;
            let own = record.state.clone();
            out.push(self.build(&k, &record, own, Vec::new()).await?);
        }
        Ok(out)
    }

    async fn delete(&self, req: DeleteRequest) -> AdkResult<()> {
        req.try_identity()?;
        let k = Self::keys(&req.app_name, &req.user_id, &req.session_id)?;
        self.store
            .delete(&self.tenant, &k.sessions, &k.record, None)
            .await
            .map_err(backend_error)?;
        self.sessions
            .delete(&self.tenant, &k.log)
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn delete_all_sessions(&self, app_name: &str, user_id: &str) -> AdkResult<()> {
        let listed = self
            .list(ListRequest {
                app_name: app_name.to_string(),
                user_id: user_id.to_string(),
                limit: None,
                offset: None,
            })
            .await?;
        for session in listed {
            self.delete(DeleteRequest {
                app_name: app_name.to_string(),
                user_id: user_id.to_string(),
                session_id: session.id().to_string(),
            })
            .await?;
        }
        Ok(())
    }

    async fn append_event(&self, session_id: &str, event: Event) -> AdkResult<()> {
        let key = ItemKey::new(part(session_id)).map_err(|e| invalid(e.message().to_string()))?;
        let found = self
            .store
            .get(&self.tenant, &Self::index_at()?, &key)
            .await
            .map_err(backend_error)?;
        let Some(found) = found else {
            return Err(AdkError::session("session not found"));
        };
        let (app, user) = (
            found.value.data["app"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            found.value.data["user"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let identity = adk_core::AdkIdentity {
            app_name: adk_core::AppName::try_from(app.as_str())?,
            user_id: adk_core::UserId::try_from(user.as_str())?,
            session_id: adk_core::SessionId::try_from(session_id)?,
        };
        self.append_event_for_identity(AppendEventRequest { identity, event })
            .await
    }

    async fn append_event_for_identity(&self, req: AppendEventRequest) -> AdkResult<()> {
        let mut event = req.event;
        event
            .actions
            .state_delta
            .retain(|k, _| !k.starts_with(KEY_PREFIX_TEMP));
        let (app, user, id) = (
            req.identity.app_name.as_ref().to_string(),
            req.identity.user_id.as_ref().to_string(),
            req.identity.session_id.as_ref().to_string(),
        );
        let k = Self::keys(&app, &user, &id)?;
        if self.record(&k).await?.is_none() {
            return Err(AdkError::session("session not found"));
        }
        let (app_delta, user_delta, _) = extract_state_deltas(&event.actions.state_delta);
        let data = serde_json::to_value(&event)
            .map_err(|e| invalid(format!("the event does not serialize: {e}")))?;
        self.sessions
            .append(
                &self.tenant,
                &k.log,
                vec![Envelope::new(ADK_SCHEMA, data)],
                AppendOptions::default(),
            )
            .await
            .map_err(backend_error)?;
        self.extend_state(&Self::app_state_at()?, &app, app_delta)
            .await?;
        self.extend_state(&Self::user_state_at(&app)?, &user, user_delta)
            .await?;
        self.refold(&k, to_millis(event.timestamp)).await
    }
}
