//! The backend's private errors and their mapping into [`persistence_core::Error`].

use std::io;
use std::path::Path;

use persistence_core::Error;

/// Backend name used in error messages.
pub const BACKEND: &str = "fs";

/// An I/O failure on `path`. Running out of space or permissions is not retryable; a
/// busy resource or interruption is.
pub fn io_error(path: &Path, e: io::Error) -> Error {
    let retryable = matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    );
    let message = format!("I/O error on {}", path.display());
    let err = if retryable {
        Error::unavailable(message)
    } else {
        Error::backend_error(message)
    };
    err.with_source(e)
}

/// Stored bytes at `path` that do not decode.
pub fn corrupt(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("{}: {what}", path.display()))
}

/// Shorthand to attach `path` to an I/O result.
pub trait IoContext<T> {
    /// Maps an I/O error on `path` into a core error.
    fn at(self, path: &Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, Error> {
        self.map_err(|e| io_error(path, e))
    }
}
