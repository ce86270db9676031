//! The backend's own URL query options, taken out of the URL before the driver sees it.

use std::time::Duration;

use persistence_core::{Error, Result, redact_url};

use crate::error::BACKEND;
use crate::{PgConfig, SslMode};

/// Every query option a `postgres://` URL may carry.
const KNOWN_OPTIONS: [&str; 17] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "operation_timeout_ms",
    "connect_timeout_ms",
    "max_connections",
    "prepared_statements",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
    "statement-cache-capacity",
];

/// A config with URL options applied, and the URL to hand to the driver.
pub(crate) struct Applied {
    pub config: PgConfig,
    pub driver_url: String,
}

/// Applies `operation_timeout_ms`, `connect_timeout_ms`, `max_connections`,
/// `prepared_statements` and the TLS options (`sslmode`, `sslrootcert`, `sslcert`,
/// `sslkey`) from the URL's query to `config`.
///
/// # Errors
/// `InvalidInput` naming the option for a value that does not parse, or for a URL that
/// does not parse (shown without its password).
pub(crate) fn apply(mut config: PgConfig) -> Result<Applied> {
    let bad = |what: String| {
        Error::invalid_input(what).context(BACKEND, "connect", redact_url(&config.url))
    };
    let mut url =
        url::Url::parse(&config.url).map_err(|e| bad(format!("not a postgres:// URL: {e}")))?;
    let mut kept = Vec::new();
    let mut ours = Vec::new();
    for (key, value) in url.query_pairs() {
        match &*key {
            "operation_timeout_ms"
            | "connect_timeout_ms"
            | "max_connections"
            | "prepared_statements"
            | "sslmode"
            | "sslrootcert"
            | "sslcert"
            | "sslkey" => ours.push((key.into_owned(), value.into_owned())),
            // The driver's own, which it applies as they are.
            "host"
            | "hostaddr"
            | "port"
            | "dbname"
            | "user"
            | "password"
            | "application_name"
            | "options"
            | "statement-cache-capacity" => {
                kept.push((key.into_owned(), value.into_owned()));
            }
            // The driver ignores what it does not know (and would take `ssl-mode` past
            // this crate's TLS checks): a mistyped option must not be lost.
            other => {
                return Err(bad(format!(
                    "unknown URL option {other:?}: expected one of {}",
                    KNOWN_OPTIONS.join(", ")
                )));
            }
        }
    }
    for (key, value) in ours {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| bad(format!("URL option {key}={value:?} is not a whole number")))
        };
        match key.as_str() {
            "operation_timeout_ms" => config.operation_timeout = Duration::from_millis(number()?),
            "connect_timeout_ms" => config.connect_timeout = Duration::from_millis(number()?),
            "max_connections" => {
                config.max_connections = u32::try_from(number()?)
                    .map_err(|_| bad(format!("URL option max_connections={value} is too large")))?;
            }
            "sslmode" => config.ssl_mode = Some(SslMode::parse(&value).map_err(bad)?),
            "sslrootcert" => config.tls_root_cert = Some(file_path(&value)),
            "sslcert" => config.tls_client_cert = Some(file_path(&value)),
            "sslkey" => config.tls_client_key = Some(file_path(&value)),
            _ => {
                config.prepared_statements = match value.as_str() {
                    "on" | "true" => true,
                    "off" | "false" => false,
                    _ => {
                        return Err(bad(format!(
                            "URL option prepared_statements={value:?}: expected on or off"
                        )));
                    }
                }
            }
        }
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok(Applied {
        driver_url: url.to_string(),
        config,
    })
}

/// A TLS file option's path: as given, or after the `file: ` prefix sqlx's
/// `PgConnectOptions::to_url_lossy` writes, so URLs built that way work too.
fn file_path(value: &str) -> std::path::PathBuf {
    value
        .strip_prefix("file:")
        .map_or(value, str::trim_start)
        .into()
}
