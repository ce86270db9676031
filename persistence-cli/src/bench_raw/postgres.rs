//! The Postgres baseline's statements: a durable insert of the checkpoint row, a read
//! by key, and an advisory lock cycle.

use persistence::Result;

use super::raw_error;

/// The tenant and thread the Postgres baseline's rows are written under (removed at the
/// end).
pub(super) const PG_TENANT: &str = "persistence-bench";
pub(super) const PG_THREAD: &str = "bench-raw";

/// A connection with the baseline's tenant set (the tables' row-level security checks
/// it, as for the backend's own connections).
pub(super) async fn pg_connect(url: &str) -> Result<sqlx::PgConnection> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| raw_error("connect", e))?;
    sqlx::query("SELECT set_config('persistence.tenant', $1, false)")
        .bind(PG_TENANT)
        .execute(&mut conn)
        .await
        .map_err(|e| raw_error("set the tenant", e))?;
    Ok(conn)
}

/// The row a checkpoint put writes, inserted plainly.
pub(super) async fn pg_insert(
    conn: &mut sqlx::PgConnection,
    id: uuid::Uuid,
    step: i64,
) -> std::result::Result<(), sqlx::Error> {
    let state = serde_json::json!({"messages": [{"role": "user", "text": "x".repeat(200)}]});
    sqlx::query(
        "INSERT INTO persistence.checkpoints (tenant_id, thread_id, checkpoint_id, \
         parent_id, step, state_version, state, metadata) \
         VALUES ($1, $2, $3, NULL, $4, 1, $5, '{}')",
    )
    .bind(PG_TENANT)
    .bind(PG_THREAD)
    .bind(id)
    .bind(step)
    .bind(sqlx::types::Json(state))
    .execute(conn)
    .await
    .map(|_| ())
}

/// `pg_try_advisory_lock` then `pg_advisory_unlock` of the task's own key: the
/// server's lock, held in memory by the session and never written (so unusable as a
/// lease behind a pool, but the floor of what taking and freeing a lock costs).
pub(super) async fn pg_advisory_cycle(
    conn: &mut sqlx::PgConnection,
    task: usize,
) -> std::result::Result<(), sqlx::Error> {
    // A key of the bench's own, away from small keys an application may use.
    let key = 0x7065_7273_0000_0000_i64 + task as i64;
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
    if !taken {
        return Err(sqlx::Error::Protocol("advisory lock held elsewhere".into()));
    }
    sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .fetch_one(conn)
        .await
        .map(|_| ())
}

pub(super) async fn pg_select(
    conn: &mut sqlx::PgConnection,
    id: uuid::Uuid,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT state FROM persistence.checkpoints WHERE tenant_id = $1 AND thread_id = $2 \
         AND checkpoint_id = $3",
    )
    .bind(PG_TENANT)
    .bind(PG_THREAD)
    .bind(id)
    .fetch_one(conn)
    .await
    .map(|_| ())
}
