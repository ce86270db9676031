//! `persistence inspect thread|session|audit|namespace`: print what is stored.

use clap::Subcommand;
use persistence::{
    CheckpointSelector, Envelope, Error, ItemKey, ListCheckpoints, ListItems, Namespace,
    Persistence, Result, SessionKey, TenantId, ThreadKey, Timestamp,
};
use serde_json::{Value, json};

use crate::output::{Format, cell, print_json, print_table, say};

/// What to inspect.
#[derive(Subcommand, Debug)]
pub enum Target {
    /// A thread's checkpoints, newest first, and the latest one's pending writes.
    Thread {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Thread id.
        thread: String,
        /// How many checkpoints.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// A session's events in order.
    Session {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Session id.
        session: String,
        /// Start after this ordinal.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// How many events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// A tenant's audit log: what the sweeper removed (`thread.pruned`,
    /// `thread.deleted`), and its rounds in the tenant `persistence.system`.
    Audit {
        /// Tenant id (`persistence.system` for the sweeper's rounds).
        #[arg(long)]
        tenant: String,
        /// Start after this ordinal.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// How many events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The items of one namespace, given as its labels (`inspect namespace memory t-1`).
    Namespace {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// The namespace's labels, outermost first.
        #[arg(required = true)]
        labels: Vec<String>,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// How many items.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// Opens `url` (a store that exists: nothing is created) and prints the target;
/// `NotFound` when it holds nothing.
pub async fn run(url: &str, target: Target, format: Format) -> Result<()> {
    validate(&target)?;
    let p = persistence::open_existing(url).await?;
    let result = show(&p, target, format).await;
    p.close().await;
    result
}

async fn show(p: &Persistence, target: Target, format: Format) -> Result<()> {
    match target {
        Target::Thread {
            tenant,
            thread,
            limit,
        } => {
            let (tenant, thread) = (
                arg::<TenantId>("--tenant", &tenant)?,
                arg::<ThreadKey>("THREAD", &thread)?,
            );
            let query = ListCheckpoints::default().with_limit(limit);
            let page = p.checkpointer.list(&tenant, &thread, query).await?;
            let latest = p
                .checkpointer
                .get(&tenant, &thread, CheckpointSelector::Latest)
                .await?;
            if latest.is_none() {
                return Err(Error::not_found(format!(
                    "thread {thread} of tenant {tenant} has no checkpoint"
                )));
            }
            let writes: Vec<Value> = latest
                .map(|t| t.pending_writes)
                .unwrap_or_default()
                .into_iter()
                .map(|w| json!({"task": w.task_id.as_str(), "index": w.index, "channel": w.channel.as_str(), "value": envelope(&w.value)}))
                .collect();
            let checkpoints: Vec<Value> = page
                .items
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id.to_string(),
                        "parent": c.parent.map(|p| p.to_string()),
                        "step": c.step,
                        "created_at": rfc3339(c.created_at),
                        "metadata": c.metadata,
                        "state": envelope(&c.state),
                    })
                })
                .collect();
            if format == Format::Json {
                print_json(
                    &json!({"tenant": tenant.as_str(), "thread": thread.as_str(), "checkpoints": checkpoints, "pending_writes": writes}),
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = checkpoints
                .iter()
                .map(|c| {
                    vec![
                        c["step"].to_string(),
                        text(&c["id"]),
                        c["created_at"].to_string(),
                        cell(&c["metadata"], 30),
                        cell(&c["state"], 60),
                    ]
                })
                .collect();
            print_table(&["step", "id", "created_at", "metadata", "state"], &rows);
            say!("{} pending writes on the latest checkpoint", writes.len());
        }
        Target::Session {
            tenant,
            session,
            after,
            limit,
        } => {
            let (tenant, session) = (
                arg::<TenantId>("--tenant", &tenant)?,
                arg::<SessionKey>("SESSION", &session)?,
            );
            let head = p.sessions.head(&tenant, &session).await?;
            if head == 0 {
                return Err(Error::not_found(format!(
                    "session {session} of tenant {tenant} has no events"
                )));
            }
            let events = p.sessions.read(&tenant, &session, after, limit).await?;
            // Backends without a session life cycle have no info: shown as null.
            let info = match p.sessions.session_info(&tenant, &session).await {
                Ok(info) => info,
                Err(e) if e.kind() == persistence::ErrorKind::Unsupported => None,
                Err(e) => return Err(e),
            };
            let info = info.map(|i| {
                json!({
                    "oldest": i.oldest,
                    "created_at": i.created_at.map(rfc3339),
                    "last_append_at": i.last_append_at.map(rfc3339),
                    "expires_at": i.expires_at.map(rfc3339),
                    "closed_at": i.closed_at.map(rfc3339),
                })
            });
            let events: Vec<Value> = events
                .iter()
                .map(|e| json!({"seq": e.seq, "appended_at": rfc3339(e.appended_at), "event": envelope(&e.event)}))
                .collect();
            if format == Format::Json {
                print_json(
                    &json!({"tenant": tenant.as_str(), "session": session.as_str(), "head": head, "info": info, "events": events}),
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    vec![
                        e["seq"].to_string(),
                        e["appended_at"].to_string(),
                        cell(&e["event"], 80),
                    ]
                })
                .collect();
            print_table(&["seq", "appended_at", "event"], &rows);
            say!("head {head}");
            if let Some(info) = info {
                let when = |field: &str| info[field].as_str().unwrap_or("unknown").to_string();
                say!(
                    "created {}, last append {}, {}",
                    when("created_at"),
                    when("last_append_at"),
                    match info["closed_at"].as_str() {
                        Some(at) => format!("closed {at}"),
                        None => "open".to_string(),
                    }
                );
            }
        }
        Target::Audit {
            tenant,
            after,
            limit,
        } => {
            let tenant = arg::<TenantId>("--tenant", &tenant)?;
            let audit = arg::<SessionKey>("audit session", persistence::AUDIT_SESSION)?;
            let events = p.sessions.read(&tenant, &audit, after, limit).await?;
            if events.is_empty() && p.sessions.head(&tenant, &audit).await? == 0 {
                return Err(Error::not_found(format!(
                    "tenant {tenant} has no audit events (the sweeper, `persistence gc`, \
                     records them)"
                )));
            }
            let events: Vec<Value> = events
                .iter()
                .map(|e| json!({"seq": e.seq, "appended_at": rfc3339(e.appended_at), "event": e.event.data}))
                .collect();
            if format == Format::Json {
                print_json(&json!({"tenant": tenant.as_str(), "events": events}));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    let mut details = e["event"].clone();
                    let kind = details
                        .as_object_mut()
                        .and_then(|o| o.remove("kind"))
                        .map_or_else(String::new, |k| text(&k));
                    vec![
                        e["seq"].to_string(),
                        text(&e["appended_at"]),
                        kind,
                        cell(&details, 80),
                    ]
                })
                .collect();
            print_table(&["seq", "appended_at", "kind", "details"], &rows);
        }
        Target::Namespace {
            tenant,
            labels,
            prefix,
            limit,
        } => {
            let tenant = arg::<TenantId>("--tenant", &tenant)?;
            let namespace = Namespace::new(labels)
                .map_err(|e| Error::invalid_input(format!("namespace: {}", e.message())))?;
            if let Some(prefix) = &prefix {
                ItemKey::new(prefix.clone())
                    .map_err(|e| Error::invalid_input(format!("--prefix: {}", e.message())))?;
            }
            let query_prefix = prefix.clone();
            let query = ListItems::default()
                .with_key_prefix(prefix)
                .with_limit(limit);
            let page = p.store.list(&tenant, &namespace, query).await?;
            if page.items.is_empty() {
                let keys = query_prefix
                    .map(|p| format!(" with keys starting with {p:?}"))
                    .unwrap_or_default();
                return Err(Error::not_found(format!(
                    "namespace {} of tenant {tenant} holds no items{keys}",
                    namespace.labels().join("/")
                )));
            }
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|i| {
                    json!({
                        "key": i.key.as_str(),
                        "version": i.version,
                        "updated_at": rfc3339(i.updated_at),
                        "expires_at": i.expires_at.map(rfc3339),
                        "value": envelope(&i.value),
                    })
                })
                .collect();
            if format == Format::Json {
                print_json(
                    &json!({"tenant": tenant.as_str(), "namespace": namespace.labels(), "items": items}),
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    vec![
                        text(&i["key"]),
                        i["version"].to_string(),
                        i["expires_at"].to_string(),
                        cell(&i["value"], 70),
                    ]
                })
                .collect();
            print_table(&["key", "version", "expires_at", "value"], &rows);
        }
    }
    Ok(())
}

/// Bad arguments are reported before the store is opened (whether or not it exists).
fn validate(target: &Target) -> Result<()> {
    match target {
        Target::Thread { tenant, thread, .. } => {
            arg::<TenantId>("--tenant", tenant)?;
            arg::<ThreadKey>("THREAD", thread)?;
        }
        Target::Session {
            tenant, session, ..
        } => {
            arg::<TenantId>("--tenant", tenant)?;
            arg::<SessionKey>("SESSION", session)?;
        }
        Target::Audit { tenant, .. } => {
            arg::<TenantId>("--tenant", tenant)?;
        }
        Target::Namespace { tenant, labels, .. } => {
            arg::<TenantId>("--tenant", tenant)?;
            Namespace::new(labels.clone())
                .map_err(|e| Error::invalid_input(format!("namespace: {}", e.message())))?;
        }
    }
    Ok(())
}

/// Parses an id argument, naming the argument in the error.
fn arg<T: std::str::FromStr<Err = Error>>(name: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|e: Error| Error::invalid_input(format!("{name}: {}", e.message())))
}

fn envelope(e: &Envelope) -> Value {
    json!({"schema_version": e.schema_version, "data": e.data})
}

/// An instant as people and programs read it: RFC 3339 in UTC, to the millisecond.
fn rfc3339(t: Timestamp) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}
