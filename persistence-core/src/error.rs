//! The one error type every backend maps into.
//!
//! Callers branch on [`ErrorKind`], never on message text. Messages name the backend,
//! the operation and the key so that a log line alone says what failed.

use std::fmt;

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as far as a caller needs to know to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller passed something the contract rejects (bad id, zero TTL, bad cursor).
    InvalidInput,
    /// The addressed thing does not exist.
    NotFound,
    /// A precondition (`expect_latest`, `expect_head`, `if_version`, same id with other
    /// content) did not hold; nothing was written.
    Conflict,
    /// The write carried a fence lower than one already seen; nothing was written.
    Fenced,
    /// The lease was lost (expired or taken over) before the operation.
    LockLost,
    /// Waiting (for a lock, for the backend) took longer than allowed.
    Timeout,
    /// The stored payload was written by a newer schema than this code knows, or the
    /// database was migrated past what this code stays compatible with.
    SchemaTooNew,
    /// The database schema is older than this code needs: run the migrations
    /// (`persistence migrate`) first. Nothing was changed.
    SchemaTooOld,
    /// Stored data could not be decoded; it was not silently skipped.
    Corrupt,
    /// The backend could not be reached; retrying later may succeed. For writes whose
    /// outcome is unknown the message says so.
    Unavailable,
    /// The backend does not support the operation (see its capabilities).
    Unsupported,
    /// The session was closed ([`SessionLog::close_session`](crate::SessionLog::close_session)):
    /// it takes no more appends. Reading it, trimming and deleting it still work; a deleted
    /// or expired session can be started again.
    Closed,
    /// The events asked for no longer exist: they were trimmed or compacted away (or the
    /// session was deleted or expired) before they were read. A
    /// [`Subscription`](crate::Subscription) that fell behind says so instead of skipping
    /// them; read on from the oldest stored event
    /// ([`SessionInfo::oldest`](crate::SessionInfo::oldest)) if a gap is acceptable.
    Trimmed,
    /// A TLS connection could not be set up: the server's certificate is not trusted or
    /// does not name the host, the server does not offer TLS, or it refused the client's
    /// certificate. Not retryable: the configuration (or the server's) must change; the
    /// message names the host and what to set (see [`TlsFailure`](crate::TlsFailure)).
    Tls,
    /// Any other backend failure.
    Backend,
}

impl ErrorKind {
    /// A short stable name, e.g. `"conflict"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Fenced => "fenced",
            ErrorKind::LockLost => "lock lost",
            ErrorKind::Timeout => "timeout",
            ErrorKind::SchemaTooNew => "schema too new",
            ErrorKind::SchemaTooOld => "schema too old",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Closed => "closed",
            ErrorKind::Trimmed => "trimmed",
            ErrorKind::Tls => "tls",
            ErrorKind::Backend => "backend error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from any part of the library.
///
/// Build one with a constructor such as [`Error::conflict`], then add where it happened
/// with [`Error::context`]. Backends keep their own private error enums and convert into
/// this one at their boundary.
///
/// `Display` prints this error alone (context, kind, message); its cause, when there is
/// one (an I/O error, the driver's error), is returned by
/// [`source`](std::error::Error::source) and not repeated in `Display`, so error
/// reporters that walk the chain (`anyhow`'s `{:#}`, `eyre`, `tracing`'s error fields)
/// print each cause once. [`Error::report`] prints the error with its causes on one
/// line, for a log line or a terminal.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    backend: &'static str,
    operation: &'static str,
    key: String,
    schema: Option<SchemaVersions>,
    source: Option<BoxError>,
}

/// The versions reported by an [`ErrorKind::SchemaTooNew`] error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersions {
    /// Version found in storage.
    pub found: u32,
    /// Newest version this code supports.
    pub supported: u32,
}

impl Error {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            backend: "",
            operation: "",
            key: String::new(),
            schema: None,
            source: None,
        }
    }

    /// [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// [`ErrorKind::Fenced`]: `presented` is below `highest`.
    pub fn fenced(presented: u64, highest: u64) -> Self {
        Self::new(
            ErrorKind::Fenced,
            format!("fence {presented} is lower than fence {highest} already seen"),
        )
    }
    /// [`ErrorKind::LockLost`].
    pub fn lock_lost(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LockLost, message)
    }
    /// [`ErrorKind::Timeout`].
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// [`ErrorKind::SchemaTooNew`] with both versions.
    pub fn schema_too_new(found: u32, supported: u32) -> Self {
        let mut e = Self::new(
            ErrorKind::SchemaTooNew,
            format!("stored schema version {found} is newer than supported version {supported}"),
        );
        e.schema = Some(SchemaVersions { found, supported });
        e
    }
    /// [`ErrorKind::SchemaTooNew`] with both versions and why they are incompatible.
    pub fn schema_too_new_because(found: u32, supported: u32, why: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::SchemaTooNew, why);
        e.schema = Some(SchemaVersions { found, supported });
        e
    }
    /// [`ErrorKind::SchemaTooOld`].
    pub fn schema_too_old(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::SchemaTooOld, message)
    }
    /// [`ErrorKind::Corrupt`].
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }
    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// [`ErrorKind::Closed`].
    pub fn closed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Closed, message)
    }
    /// [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// [`ErrorKind::Backend`].
    pub fn backend_error(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, message)
    }

    /// Records which backend, operation and key the error belongs to.
    pub fn context(
        mut self,
        backend: &'static str,
        operation: &'static str,
        key: impl fmt::Display,
    ) -> Self {
        self.backend = backend;
        self.operation = operation;
        self.key = key.to_string();
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message, without context.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The backend that failed (`""` when raised by core validation).
    pub fn backend(&self) -> &'static str {
        self.backend
    }
    /// The operation that failed, e.g. `"checkpoint.put"`.
    pub fn operation(&self) -> &'static str {
        self.operation
    }
    /// The key the operation addressed, as displayed.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// For [`ErrorKind::SchemaTooNew`], the versions found and supported.
    pub fn schema_versions(&self) -> Option<SchemaVersions> {
        self.schema
    }

    /// Whether the same call may succeed if retried later (`Unavailable`, `Timeout`).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.backend.is_empty() {
            write!(f, "{} {}", self.backend, self.operation)?;
            if !self.key.is_empty() {
                write!(f, " [{}]", self.key)?;
            }
            f.write_str(": ")?;
        }
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl Error {
    /// This error followed by each of its causes, `: `-separated, on one line: what a log
    /// line or a terminal should show (`Display` shows the error alone; see [`Error`]).
    pub fn report(&self) -> ErrorReport<'_> {
        ErrorReport(self)
    }
}

/// [`Error::report`]: an error and its causes.
#[derive(Debug, Clone, Copy)]
pub struct ErrorReport<'a>(&'a Error);

impl fmt::Display for ErrorReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(self.0);
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_backend_operation_and_key() {
        let e = Error::conflict("expected latest a, found b").context(
            "memory",
            "checkpoint.put",
            "t1/thread-9",
        );
        assert_eq!(
            e.to_string(),
            "memory checkpoint.put [t1/thread-9]: conflict: expected latest a, found b"
        );
        assert!(!e.is_retryable());
        assert!(Error::unavailable("down").is_retryable());
    }

    /// A cause is printed once by anything that walks the chain: `Display` leaves it to
    /// `source()` (it printed it too), and `report()` prints the whole chain.
    #[test]
    fn the_cause_is_in_the_chain_not_in_display() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full here");
        let e = Error::backend_error("I/O error on /data/x")
            .context("fs", "checkpoint.put", "t/th")
            .with_source(io);
        assert_eq!(
            e.to_string(),
            "fs checkpoint.put [t/th]: backend error: I/O error on /data/x"
        );
        let cause = std::error::Error::source(&e).expect("a source");
        assert_eq!(cause.to_string(), "disk full here");
        let mut chain = vec![e.to_string()];
        let mut next = std::error::Error::source(&e);
        while let Some(c) = next {
            chain.push(c.to_string());
            next = c.source();
        }
        assert_eq!(chain.join(": ").matches("disk full here").count(), 1);
        assert_eq!(e.report().to_string(), chain.join(": "));
        let plain = Error::conflict("x");
        assert_eq!(plain.report().to_string(), plain.to_string());
    }

    #[test]
    fn schema_too_new_carries_versions() {
        let e = Error::schema_too_new(3, 2);
        assert_eq!(e.kind(), ErrorKind::SchemaTooNew);
        assert_eq!(
            e.schema_versions(),
            Some(SchemaVersions {
                found: 3,
                supported: 2
            })
        );
    }
}
