//! Mapping of database errors into [`persistence_core::Error`].

use persistence_core::Error;

/// Backend name used in error messages.
pub const BACKEND: &str = "postgres";

/// Maps a sqlx error of `operation` on `key`.
///
/// The SQL functions signal contract failures with custom SQLSTATEs: `PT409` conflict,
/// `PT423` fenced, `PT404` not found, `PT400` invalid input.
pub fn map(e: sqlx::Error, operation: &'static str, key: impl std::fmt::Display) -> Error {
    let err = match &e {
        sqlx::Error::Database(db) => {
            let message = db.message().to_string();
            match db.code().as_deref() {
                Some("PT409") => Error::conflict(message),
                Some("PT423") => Error::new(persistence_core::ErrorKind::Fenced, message),
                Some("PT404") => Error::not_found(message),
                Some("PT400") | Some("22P05") | Some("22021") | Some("54000") => {
                    Error::invalid_input(message)
                }
                Some("57014") => Error::timeout(format!("statement timed out: {message}")),
                Some("40001") | Some("40P01") | Some("53300") | Some("57P01") | Some("57P03") => {
                    Error::unavailable(format!("{message}; retry"))
                }
                _ => Error::backend_error(message),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Error::unavailable(
            "cannot reach the database (is Postgres running?); if this was a write, its outcome is unknown",
        ),
        sqlx::Error::PoolTimedOut => {
            Error::unavailable("no database connection became free in time")
        }
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
            Error::corrupt("stored data does not decode")
        }
        _ => Error::backend_error("database error"),
    };
    err.context(BACKEND, operation, key).with_source(e)
}

/// A JSON result that does not decode: the database holds something this code did not
/// write.
pub fn corrupt(
    e: serde_json::Error,
    operation: &'static str,
    key: impl std::fmt::Display,
) -> Error {
    Error::corrupt(format!("unexpected result shape: {e}")).context(BACKEND, operation, key)
}
