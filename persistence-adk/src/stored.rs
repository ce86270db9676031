//! A session as the service returns it: adk's `Session`, `State` and `Events` over
//! what was read from storage.

use std::collections::HashMap;

use adk_session::{Event, Events, Session, State};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::session::StateMap;

/// A session as read from storage.
pub(crate) struct StoredSession {
    pub(crate) app: String,
    pub(crate) user: String,
    pub(crate) id: String,
    pub(crate) state: SessionState,
    pub(crate) events: SessionEvents,
    pub(crate) updated: DateTime<Utc>,
}

/// A session's state, all tiers merged.
pub(crate) struct SessionState(pub(crate) StateMap);
/// A session's events, oldest first.
pub(crate) struct SessionEvents(pub(crate) Vec<Event>);

impl State for SessionState {
    fn get(&self, key: &str) -> Option<Value> {
        self.0.get(key).cloned()
    }
    fn set(&mut self, key: String, value: Value) {
        self.0.insert(key, value);
    }
    fn all(&self) -> HashMap<String, Value> {
        self.0.clone()
    }
}

impl Events for SessionEvents {
    fn all(&self) -> Vec<Event> {
        self.0.clone()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn at(&self, index: usize) -> Option<&Event> {
        self.0.get(index)
    }
}

impl Session for StoredSession {
    fn id(&self) -> &str {
        &self.id
    }
    fn app_name(&self) -> &str {
        &self.app
    }
    fn user_id(&self) -> &str {
        &self.user
    }
    fn state(&self) -> &dyn State {
        &self.state
    }
    fn events(&self) -> &dyn Events {
        &self.events
    }
    fn last_update_time(&self) -> DateTime<Utc> {
        self.updated
    }
}
