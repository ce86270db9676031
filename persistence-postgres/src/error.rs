//! Mapping of database errors into [`persistence_core::Error`].

use persistence_core::Error;

use persistence_core::TlsFailure;

use crate::pool::DbError;
use crate::tls::TlsConnectError;

/// Backend name used in error messages.
pub const BACKEND: &str = "postgres";

/// Whether `operation` (as named in errors, e.g. `"checkpoint.put"`) may change data.
fn is_write(operation: &str) -> bool {
    let verb = operation.rsplit('.').next().unwrap_or(operation);
    !matches!(
        verb,
        "get"
            | "list"
            | "list_threads"
            | "read"
            | "head"
            | "list_sessions"
            | "list_namespaces"
            | "search"
            | "tenants"
            | "connect"
            | "migrate"
    )
}

/// Maps a failed operation `operation` on `key`.
///
/// The SQL functions signal contract failures with custom SQLSTATEs: `PT409` conflict,
/// `PT423` fenced, `PT404` not found, `PT410` closed, `PT400` invalid input. A write's outcome is called
/// unknown only when its statement was sent and no answer came back.
pub(crate) fn map(e: DbError, operation: &'static str, key: impl std::fmt::Display) -> Error {
    let unknown = if e.sent && is_write(operation) {
        "; the write's outcome is unknown"
    } else {
        ""
    };
    let Some(source) = e.error else {
        return Error::timeout(format!(
            "no answer from the database within the operation deadline of {:?}{unknown}",
            e.deadline
        ))
        .context(BACKEND, operation, key);
    };
    let err = match &source {
        // The pool names the failure and the host (see `tls::name_failure`).
        sqlx::Error::Tls(inner) => match inner.downcast_ref::<TlsConnectError>() {
            Some(tls) => Error::tls(tls.failure, &tls.host),
            None => Error::tls(TlsFailure::Handshake, "the database server"),
        },
        // The database's message is all its error says (besides the SQLSTATE, which picks
        // the kind): it becomes the message, and is not repeated as a source.
        sqlx::Error::Database(db) => {
            let message = db.message().to_string();
            let err = match db.code().as_deref() {
                Some("PT409") => Error::conflict(message),
                Some("PT423") => Error::new(persistence_core::ErrorKind::Fenced, message),
                Some("PT404") => Error::not_found(message),
                Some("PT410") => Error::closed(message),
                Some("PT400") | Some("22P05") | Some("22021") | Some("54000") | Some("22003")
                | Some("23514") => Error::invalid_input(message),
                Some("57014") => Error::timeout(format!("statement timed out: {message}")),
                Some("40001") | Some("40P01") | Some("53300") => {
                    Error::unavailable(format!("{message}; retry"))
                }
                Some(code) if code.starts_with("57P") || code.starts_with("08") => {
                    Error::unavailable(format!("{message}{unknown}"))
                }
                // `persistence migrate` creates the application role: without it, the
                // database (cluster) was never migrated.
                Some("28000") if message.contains("\"persistence_app\"") => {
                    Error::schema_too_old(format!("{message}: the database was never migrated"))
                }
                Some(code) => Error::backend_error(format!("{message} (SQLSTATE {code})")),
                None => Error::backend_error(message),
            };
            return err.context(BACKEND, operation, key);
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => {
            Error::unavailable(format!("cannot reach the database{unknown}"))
        }
        sqlx::Error::PoolTimedOut => {
            Error::unavailable("no database connection became free in time")
        }
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
            Error::corrupt("stored data does not decode")
        }
        _ => Error::backend_error("database error"),
    };
    err.context(BACKEND, operation, key).with_source(source)
}

/// [`map`] for an error that happened before any statement was sent (connect, setup).
pub(crate) fn map_unsent(
    e: sqlx::Error,
    operation: &'static str,
    key: impl std::fmt::Display,
) -> Error {
    map(DbError::before_send(e), operation, key)
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
