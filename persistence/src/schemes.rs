//! URL schemes of backends outside this workspace, registered at run time (like sqlx's
//! `install_drivers`), so that [`open`](crate::open) and the `persistence` CLI reach them.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use persistence_core::{Error, Result};

use crate::persistence::Persistence;

/// The schemes [`open`](crate::open) knows without registration.
pub const BUILT_IN_SCHEMES: &[&str] = &[
    "memory",
    "file",
    "postgres",
    "postgresql",
    "redis",
    "rediss",
    "redis+cluster",
    "rediss+cluster",
];

/// What an opener registered with [`register_scheme`] is asked to open.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenRequest {
    /// The whole URL, as given to [`open`](crate::open). It may hold a password: an
    /// opener must not put it in an error (use
    /// [`redact_url`](persistence_core::redact_url)).
    pub url: String,
    /// `false` when called by [`open_existing`](crate::open_existing): create nothing,
    /// fail `NotFound` where there is no store.
    pub create_if_missing: bool,
}

/// A boxed future of an opened backend.
pub type OpenFuture = Pin<Box<dyn Future<Output = Result<Persistence>> + Send>>;

type Opener = Arc<dyn Fn(OpenRequest) -> OpenFuture + Send + Sync>;

static SCHEMES: RwLock<BTreeMap<String, Opener>> = RwLock::new(BTreeMap::new());

/// Makes [`open`](crate::open), [`open_existing`](crate::open_existing) and everything
/// built on them (the `persistence` CLI run through `persistence_cli::run_from`) open
/// `scheme://...` URLs with `opener`, for the rest of the process.
///
/// ```
/// use persistence::{MemoryBackend, OpenRequest, Persistence, register_scheme};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> persistence::Result<()> {
/// register_scheme("scratch", |_request: OpenRequest| async {
///     Ok(Persistence::from_backend(MemoryBackend::new()))
/// })?;
/// let p = persistence::open("scratch://anything").await?;
/// assert_eq!(p.backend_name(), "memory");
/// # Ok(()) }
/// ```
///
/// # Errors
/// `InvalidInput` for a scheme that is not lower-case RFC 3986 syntax (a letter, then
/// letters, digits, `+`, `-`, `.`) or is one of [`BUILT_IN_SCHEMES`]; `Conflict` if the
/// scheme is registered already.
pub fn register_scheme<F, Fut>(scheme: &str, opener: F) -> Result<()>
where
    F: Fn(OpenRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Persistence>> + Send + 'static,
{
    let valid = scheme.starts_with(|c: char| c.is_ascii_lowercase())
        && scheme
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if !valid {
        return Err(Error::invalid_input(format!(
            "{scheme:?} is not a URL scheme: a lower-case letter, then lower-case letters, \
             digits, '+', '-' or '.'"
        )));
    }
    if BUILT_IN_SCHEMES.contains(&scheme) {
        return Err(Error::invalid_input(format!(
            "{scheme}:// is built in and cannot be registered"
        )));
    }
    let mut schemes = SCHEMES.write().unwrap_or_else(|e| e.into_inner());
    if schemes.contains_key(scheme) {
        return Err(Error::conflict(format!(
            "{scheme}:// is registered already"
        )));
    }
    let opener: Opener = Arc::new(move |request| Box::pin(opener(request)));
    schemes.insert(scheme.to_string(), opener);
    Ok(())
}

/// The opener of a registered scheme.
pub(crate) fn registered(scheme: &str) -> Option<Opener> {
    let schemes = SCHEMES.read().unwrap_or_else(|e| e.into_inner());
    schemes.get(scheme).cloned()
}

/// Every scheme [`open`](crate::open) accepts now: built-in, then registered.
pub fn known_schemes() -> Vec<String> {
    let schemes = SCHEMES.read().unwrap_or_else(|e| e.into_inner());
    BUILT_IN_SCHEMES
        .iter()
        .map(|s| s.to_string())
        .chain(schemes.keys().cloned())
        .collect()
}
