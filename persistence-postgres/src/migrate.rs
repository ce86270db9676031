//! The embedded migrations (`migrations/` at the repository root) and the schema check
//! run at connect.

use persistence_core::{Error, Result};

use crate::error::{BACKEND, map};

/// The migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Schema version this code was written for (`persistence.schema_version()`).
pub const SCHEMA_VERSION: i32 = 5;

/// Applies pending migrations as the migrator role (owner of the schema; superuser or
/// BYPASSRLS). Idempotent. Returns the versions applied by this call.
///
/// # Errors
/// `Unavailable` if the database cannot be reached; `Backend` if a migration fails or
/// the database has migrations this code does not know.
pub async fn migrate(admin_url: &str) -> Result<Vec<i64>> {
    use sqlx::Connection;
    // One plain connection: a refused or unreachable server fails at once instead of
    // after a pool's acquire timeout.
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .map_err(|e| map(e, "migrate", "connect"))?;
    let before: Vec<i64> = applied(&mut conn).await;
    MIGRATOR.run(&mut conn).await.map_err(|e| {
        Error::backend_error(format!("migration failed: {e}")).context(BACKEND, "migrate", "run")
    })?;
    let after = applied(&mut conn).await;
    let _ = conn.close().await;
    Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
}

async fn applied(conn: &mut sqlx::PgConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(conn)
        .await
        .unwrap_or_default()
}

/// Refuses a database that is not migrated or was migrated by newer code.
pub(crate) async fn check_schema(conn: &mut sqlx::PgConnection) -> Result<()> {
    let found: i32 = match sqlx::query_scalar("SELECT persistence.schema_version()")
        .fetch_one(&mut *conn)
        .await
    {
        Ok(v) => v,
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42883") | Some("3F000")) =>
        {
            return Err(Error::not_found(
                "the database has no persistence schema: run `persistence migrate --url <admin url>`",
            )
            .context(BACKEND, "connect", "schema"));
        }
        Err(e) => return Err(map(e, "connect", "schema")),
    };
    if found > SCHEMA_VERSION {
        return Err(
            Error::schema_too_new(found as u32, SCHEMA_VERSION as u32).context(
                BACKEND,
                "connect",
                format!(
                    "database schema version {found}, this library supports up to {SCHEMA_VERSION}"
                ),
            ),
        );
    }
    if found < SCHEMA_VERSION {
        return Err(Error::not_found(format!(
            "database schema version {found} is older than {SCHEMA_VERSION}: run `persistence migrate`"
        ))
        .context(BACKEND, "connect", "schema"));
    }
    Ok(())
}
