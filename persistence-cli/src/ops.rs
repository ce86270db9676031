//! Operations commands: `migrate`, `status`, `gc`.

use persistence::{
    Capabilities, Cursor, Enforcement, ListItems, ListNamespaces, ListSessions, ListThreads, Page,
    Persistence, Result, TenantId,
};
use serde_json::json;

use crate::output::{Format, print_json, print_table, say};

/// Page size of the listings that count.
const PAGE: usize = 500;

/// Applies the embedded Postgres migrations and prints each one applied.
pub async fn migrate(url: &str, format: Format) -> Result<()> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    if !matches!(scheme, "postgres" | "postgresql") {
        // Opening validates the URL and reports a bad one the same way as elsewhere.
        persistence::open(url).await?.close().await;
        let note =
            format!("nothing to migrate: the {scheme} backend versions its layout by itself");
        match format {
            Format::Json => print_json(&json!({"applied": [], "note": note})),
            Format::Table => say!("{note}"),
        }
        return Ok(());
    }
    let applied = persistence::postgres::migrate(url).await?;
    let names = persistence::postgres::MIGRATOR
        .iter()
        .map(|m| (m.version, m.description.to_string()));
    let names: Vec<(i64, String)> = names.collect();
    let name_of = |version: &i64| {
        names
            .iter()
            .find(|(v, _)| v == version)
            .map_or("", |(_, n)| n.as_str())
    };
    if format == Format::Json {
        print_json(&json!({
            "applied": applied
                .iter()
                .map(|v| json!({"version": v, "name": name_of(v)}))
                .collect::<Vec<_>>(),
            "schema_version": persistence::postgres::SCHEMA_VERSION,
        }));
        return Ok(());
    }
    if applied.is_empty() {
        say!(
            "already up to date: schema version {}",
            persistence::postgres::SCHEMA_VERSION
        );
    }
    for version in &applied {
        say!("applied {version:04} {}", name_of(version));
    }
    if !applied.is_empty() {
        say!(
            "schema version {}; connect the application as persistence_app",
            persistence::postgres::SCHEMA_VERSION
        );
    }
    Ok(())
}

/// What one tenant holds.
struct TenantCounts {
    tenant: TenantId,
    threads: u64,
    sessions: u64,
    namespaces: u64,
    items: u64,
}

/// Prints the backend, its schema, capabilities and counts per tenant (of a store that
/// exists: nothing is created).
pub async fn status(url: &str, keys: bool, format: Format) -> Result<()> {
    let p = persistence::open_existing(url).await?;
    let mut counts = Vec::new();
    let mut usage = Vec::new();
    for tenant in p.tenants().await? {
        if keys {
            usage.push((tenant.clone(), p.key_usage(&tenant).await?));
        }
        counts.push(count(&p, tenant).await?);
    }
    let caps = capability_names(p.capabilities());
    match format {
        Format::Json => print_json(&json!({
            "backend": p.backend_name(),
            "schema": p.schema(),
            "capabilities": caps,
            "tenants": counts.iter().map(|c| json!({
                "tenant": c.tenant.as_str(),
                "threads": c.threads,
                "sessions": c.sessions,
                "namespaces": c.namespaces,
                "items": c.items,
            })).collect::<Vec<_>>(),
            "keys": keys.then(|| usage.iter().map(|(tenant, u)| json!({
                "tenant": tenant.as_str(),
                "by_key": u.by_key,
                "unencrypted": u.unencrypted,
            })).collect::<Vec<_>>()),
        })),
        Format::Table => {
            say!("backend       {}", p.backend_name());
            say!("schema        {}", p.schema());
            say!("capabilities  {}", caps.join(", "));
            say!("tenants       {}", counts.len());
            if !counts.is_empty() {
                say!();
                let rows: Vec<Vec<String>> = counts
                    .iter()
                    .map(|c| {
                        vec![
                            c.tenant.to_string(),
                            c.threads.to_string(),
                            c.sessions.to_string(),
                            c.namespaces.to_string(),
                            c.items.to_string(),
                        ]
                    })
                    .collect();
                print_table(
                    &["tenant", "threads", "sessions", "namespaces", "items"],
                    &rows,
                );
            }
            if keys && !usage.is_empty() {
                say!();
                let rows: Vec<Vec<String>> = usage
                    .iter()
                    .flat_map(|(tenant, u)| {
                        let sealed = u.by_key.iter().map(move |(key, n)| {
                            vec![tenant.to_string(), key.clone(), n.to_string()]
                        });
                        let plain = (u.unencrypted > 0).then(|| {
                            vec![
                                tenant.to_string(),
                                "(not encrypted)".to_string(),
                                u.unencrypted.to_string(),
                            ]
                        });
                        sealed.chain(plain)
                    })
                    .collect();
                print_table(&["tenant", "key id", "payloads"], &rows);
            }
        }
    }
    p.close().await;
    Ok(())
}

fn capability_names(c: Capabilities) -> Vec<&'static str> {
    [
        (c.ttl, "ttl"),
        (c.search, "search"),
        (c.multi_process, "multi-process"),
        (c.cluster_safe, "cluster-safe"),
        (c.durable, "durable"),
        (c.lifecycle, "lifecycle"),
        (c.replace, "replace"),
        (c.binary_payloads, "binary-payloads"),
        // What expires or ages out without a `gc` (hidden at once either way).
        (
            c.item_expiry == Enforcement::Backend,
            "items-expire-by-themselves",
        ),
        (
            c.session_expiry == Enforcement::Backend,
            "sessions-expire-by-themselves",
        ),
        (
            c.checkpoint_retention == Enforcement::Backend,
            "retention-by-itself",
        ),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

/// Counts by paging through the tenant's listings (never loading one whole).
async fn count(p: &Persistence, tenant: TenantId) -> Result<TenantCounts> {
    let threads = count_pages(|cursor| {
        p.checkpointer.list_threads(
            &tenant,
            ListThreads::default().with_cursor(cursor).with_limit(PAGE),
        )
    })
    .await?;
    let sessions = count_pages(|cursor| {
        p.sessions.list_sessions(
            &tenant,
            ListSessions::default().with_cursor(cursor).with_limit(PAGE),
        )
    })
    .await?;
    let (mut namespaces, mut items, mut cursor) = (0, 0, None);
    loop {
        let query = ListNamespaces::default()
            .with_cursor(cursor)
            .with_limit(PAGE);
        let page = p.store.list_namespaces(&tenant, query).await?;
        for ns in &page.items {
            namespaces += 1;
            items += count_pages(|cursor| {
                let query = ListItems::default().with_cursor(cursor).with_limit(PAGE);
                p.store.list(&tenant, ns, query)
            })
            .await?;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(TenantCounts {
        tenant,
        threads,
        sessions,
        namespaces,
        items,
    })
}

async fn count_pages<T, F, Fut>(mut list: F) -> Result<u64>
where
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>>>,
{
    let (mut total, mut cursor) = (0u64, None);
    loop {
        let page = list(cursor).await?;
        total += page.items.len() as u64;
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(total),
        }
    }
}

/// `persistence gc`'s options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct GcArgs {
    #[command(flatten)]
    pub(crate) url: crate::UrlArg,
    /// Keep at most this many newest checkpoints per thread.
    #[arg(long)]
    keep_last: Option<usize>,
    /// Drop checkpoints older than this (never a thread's latest), e.g. `7d`, `12h`.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_age: Option<std::time::Duration>,
    /// Delete threads whose latest checkpoint is older than this, e.g. `90d`.
    #[arg(long, value_parser = humantime::parse_duration)]
    thread_ttl: Option<std::time::Duration>,
    /// Threads visited per round (the pass runs rounds until it is complete).
    #[arg(long, default_value_t = 1000)]
    threads_per_round: usize,
}

/// Sweeps a store that exists once (every round until the pass is complete) and prints
/// what it removed.
pub async fn gc(args: GcArgs, format: Format) -> Result<()> {
    use persistence::{Retention, SweepConfig, Sweeper};
    let p = persistence::open_existing(&args.url.url).await?;
    let retention = Retention::default()
        .with_keep_last(args.keep_last)
        .with_max_age(args.max_age)
        .with_thread_ttl(args.thread_ttl);
    let config = SweepConfig::default()
        .with_retention(retention)
        .with_threads_per_round(args.threads_per_round);
    let on_terminal =
        format == Format::Table && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = if on_terminal {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = Sweeper::new(p.clone(), config)
        .sweep_all(&mut |step| {
            bar.set_message(format!("{} threads, tenant {}", step.threads, step.tenant));
            bar.tick();
        })
        .await;
    bar.finish_and_clear();
    p.close().await;
    let report = report?;
    if format == Format::Json {
        print_json(&json!({
            "backend": p.backend_name(),
            "ran": report.ran,
            "items": report.items_purged,
            "sessions": report.sessions_purged,
            "leases": report.leases_purged,
            "threads": report.threads,
            "checkpoints": report.checkpoints,
            "threads_deleted": report.threads_deleted,
            "audit_trimmed": report.audit_trimmed,
        }));
        return Ok(());
    }
    if !report.ran {
        say!(
            "another sweeper holds the lease: nothing done ({} backend)",
            p.backend_name()
        );
        return Ok(());
    }
    say!(
        "removed {} expired store items and {} expired sessions ({} backend)",
        report.items_purged,
        report.sessions_purged,
        p.backend_name()
    );
    if report.leases_purged > 0 {
        say!(
            "removed {} lease records of locks unused for an hour",
            report.leases_purged
        );
    }
    say!(
        "retention: {} threads visited, {} checkpoints deleted, {} idle threads deleted",
        report.threads,
        report.checkpoints,
        report.threads_deleted
    );
    Ok(())
}
