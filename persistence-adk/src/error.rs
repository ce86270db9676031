//! The errors the adapters report: `AdkError`s of the session service, `GraphError`s of
//! the checkpointer.

use adk_core::{AdkError, ErrorCategory, ErrorComponent};
use persistence::ErrorKind;

/// A workspace error as adk reports backend failures: the session component, a category
/// after the kind, the message (ids and kinds, never payloads).
pub(crate) fn backend_error(e: persistence::Error) -> AdkError {
    let category = match e.kind() {
        ErrorKind::Unavailable => ErrorCategory::Unavailable,
        ErrorKind::Timeout => ErrorCategory::Timeout,
        ErrorKind::InvalidInput => ErrorCategory::InvalidInput,
        _ => ErrorCategory::Internal,
    };
    AdkError::new(
        ErrorComponent::Session,
        category,
        "session.backend",
        e.to_string(),
    )
}

pub(crate) fn invalid(message: String) -> AdkError {
    AdkError::new(
        ErrorComponent::Session,
        ErrorCategory::InvalidInput,
        "session.invalid_input",
        message,
    )
}

pub(crate) fn not_found(app: &str, user: &str, session: &str) -> AdkError {
    AdkError::not_found(
        ErrorComponent::Session,
        "session.not_found",
        format!("session '{session}' was not found for app '{app}' and user '{user}'"),
    )
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> AdkError {
    AdkError::internal(
        ErrorComponent::Session,
        "session.corrupt",
        format!("a stored {what} does not decode: {e}"),
    )
}

/// A workspace error as adk-graph reports checkpoint failures (ids and kinds, never
/// payloads).
pub(crate) fn checkpoint_error(e: persistence::Error) -> adk_graph::error::GraphError {
    adk_graph::error::GraphError::CheckpointError(e.to_string())
}
