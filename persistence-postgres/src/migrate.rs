//! The embedded migrations (this crate's `migrations/`) and the schema check
//! run at connect.

use persistence_core::{Error, Result, redact_url};

use sqlx::types::Json;

use crate::error::{BACKEND, map_unsent};
use crate::statement::{Call, Protocol};

/// The migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Schema version this code was written for (`persistence.schema_version()` after
/// `migrate`).
pub const SCHEMA_VERSION: i32 = 14;

/// The oldest database schema this code runs against: older ones fail `SchemaTooOld`
/// (run `persistence migrate`). Newer ones are opened when they say this code is still
/// compatible (`persistence.schema_compatible_from()` at most [`SCHEMA_VERSION`]), and
/// refused with `SchemaTooNew` otherwise, so rolling upgrades work in either order:
/// migrate first (old instances keep running until the database says they cannot), or
/// deploy first (new instances refuse an old database with a clear kind).
pub const MIN_DATABASE_SCHEMA: i32 = 13;

/// Applies pending migrations as the migrator role (owner of the schema; superuser or
/// BYPASSRLS). Idempotent. Returns the versions applied by this call.
///
/// # Errors
/// `InvalidInput` for a malformed URL or TLS option; `Tls` when TLS cannot be set up;
/// `Timeout` when no connection completes within the connect timeout; `Unavailable` if
/// the database cannot be reached; `Backend` if a migration fails or the database has
/// migrations this code does not know.
pub async fn migrate(admin_url: &str) -> Result<Vec<i64>> {
    use sqlx::{ConnectOptions, Connection};
    // One plain connection: a refused or unreachable server fails at once instead of
    // after a pool's acquire timeout. The URL's options (TLS, connect timeout) apply as
    // for `PgBackend::connect`.
    let settings = crate::url_options::apply(crate::PgConfig::new(admin_url))?;
    let options = settings
        .driver_url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(|e| map_unsent(e, "migrate", redact_url(admin_url)))?
        .disable_statement_logging();
    let options = crate::tls::apply(options, &settings.config)?;
    let limit = settings.config.connect_timeout;
    let mut conn = tokio::time::timeout(limit, options.connect())
        .await
        .map_err(|_| {
            Error::timeout(format!(
                "the server did not complete a connection within {limit:?}"
            ))
            .context(BACKEND, "migrate", redact_url(admin_url))
        })?
        .map_err(|e| {
            map_unsent(
                crate::tls::name_failure(e, &options),
                "migrate",
                redact_url(admin_url),
            )
        })?;
    let before: Vec<i64> = applied(&mut conn).await;
    let mut attempt = 0;
    loop {
        match MIGRATOR.run(&mut conn).await {
            Ok(()) => break,
            // Databases of one cluster share its roles: migrating several at once races
            // on `CREATE ROLE` (a unique violation in pg_authid). The loser's migration
            // rolled back; run again, and it finds the role.
            Err(e) if attempt < 5 && is_role_race(&e) => attempt += 1,
            Err(e) => {
                return Err(
                    Error::backend_error(format!("migration failed: {e}")).context(
                        BACKEND,
                        "migrate",
                        redact_url(admin_url),
                    ),
                );
            }
        }
    }
    let after = applied(&mut conn).await;
    let _ = conn.close().await;
    Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
}

/// Whether a migration failed because a concurrent migration of another database of the
/// same cluster created a shared object (the app role) first.
fn is_role_race(e: &sqlx::migrate::MigrateError) -> bool {
    use sqlx::migrate::MigrateError;
    let (MigrateError::Execute(sqlx::Error::Database(db))
    | MigrateError::ExecuteMigration(sqlx::Error::Database(db), _)) = e
    else {
        return false;
    };
    // 23505 unique violation; XX000 "tuple concurrently updated" (a concurrent GRANT).
    matches!(db.code().as_deref(), Some("23505") | Some("XX000"))
}

async fn applied(conn: &mut sqlx::PgConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(conn)
        .await
        .unwrap_or_default()
}

const SCHEMA_VERSION_SQL: &str = "SELECT persistence.schema_version()";
const COMPATIBILITY_SQL: &str = "SELECT jsonb_build_object(\
    'compatible_from', persistence.schema_compatible_from(), \
    'applied', persistence.applied_migrations())";

#[derive(serde::Deserialize)]
struct Compatibility {
    compatible_from: i32,
    applied: Vec<i64>,
}

/// What the database says about its schema.
struct DatabaseSchema {
    version: i32,
    compatible_from: i32,
    applied: Vec<i64>,
}

/// Refuses a database that is not migrated, older than [`MIN_DATABASE_SCHEMA`], or newer
/// than this code and not compatible with it (including one holding a migration this code
/// does not know that did not declare itself compatible).
pub(crate) async fn check_schema(conn: &mut sqlx::PgConnection, protocol: Protocol) -> Result<()> {
    let version: i32 = match Call::new(SCHEMA_VERSION_SQL)
        .fetch_all(&mut *conn, protocol)
        .await
        .and_then(crate::pool::single)
    {
        Ok(v) => v,
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42883") | Some("3F000")) =>
        {
            return Err(Error::schema_too_old(
                "the database has no persistence schema (it was never migrated)",
            )
            .context(BACKEND, "connect", ""));
        }
        Err(e) => return Err(map_unsent(e, "connect", "")),
    };
    if version < MIN_DATABASE_SCHEMA {
        return Err(Error::schema_too_old(format!(
            "database schema version {version} is older than {MIN_DATABASE_SCHEMA}, the oldest this \
             library runs against: migrate it"
        ))
        .context(BACKEND, "connect", ""));
    }
    let Json(compat): Json<Compatibility> = Call::new(COMPATIBILITY_SQL)
        .fetch_all(&mut *conn, protocol)
        .await
        .and_then(crate::pool::single)
        .map_err(|e| map_unsent(e, "connect", ""))?;
    judge(&DatabaseSchema {
        version,
        compatible_from: compat.compatible_from,
        applied: compat.applied,
    })
}

fn judge(db: &DatabaseSchema) -> Result<()> {
    let unknown: Vec<i64> = db
        .applied
        .iter()
        .copied()
        .filter(|v| MIGRATOR.iter().all(|m| m.version != *v))
        .collect();
    let too_new = |why: String| {
        Err(
            Error::schema_too_new_because(db.version.max(0) as u32, SCHEMA_VERSION as u32, why)
                .context(BACKEND, "connect", ""),
        )
    };
    if db.compatible_from > SCHEMA_VERSION {
        return too_new(format!(
            "database schema version {}, compatible only with library schema {} and newer; this \
             library has schema {SCHEMA_VERSION}: upgrade the library",
            db.version, db.compatible_from
        ));
    }
    if !unknown.is_empty() && db.version <= SCHEMA_VERSION {
        return too_new(format!(
            "the database has migrations {unknown:?} that this library (schema {SCHEMA_VERSION}) \
             does not know, without a newer schema version declaring itself compatible"
        ));
    }
    Ok(())
}
