//! Choosing and opening a backend from a URL.

use persistence_core::{Error, MemoryBackend, Result, redact_url};

use crate::persistence::Persistence;
use crate::schemes;

/// Opens the backend named by `url` (see the crate docs for the schemes; schemes added
/// with [`register_scheme`](crate::register_scheme) work too).
///
/// With the `codec` feature, any URL also takes the payload codec's options
/// ([`Persistence::with_codec`]): `encryption=required` or `encryption=optional` with
/// `keyring=env:VARIABLE` or `keyring=file:PATH` (the keyring's text form: `ID=BASE64`
/// entries, the last one writing; never the keys themselves in a URL), and
/// `compress_above=BYTES` (zstd), and `clear_fields=FIELD,FIELD` (top-level fields of
/// store values kept in clear for search). They are taken off before the backend sees
/// the URL:
/// `postgres://app@db/agents?sslmode=verify-full&encryption=required&keyring=env:APP_KEYS`.
///
/// # Errors
/// `InvalidInput` for a URL without a known scheme or with a bad option;
/// `Unsupported` when the scheme's backend is not compiled in (the message names the
/// cargo feature); the backend's own errors when it cannot open (`Unavailable` for an
/// unreachable server, `SchemaTooOld` for an unmigrated database, `SchemaTooNew`, ...).
/// No error carries the URL's password. Errors raised here, before a backend is involved
/// (a malformed URL, an unknown option), name backend `"persistence"` and operation
/// `"open"`, with the URL (password hidden) as their key.
pub async fn open(url: &str) -> Result<Persistence> {
    open_url(url, Create::IfMissing).await
}

/// [`open`] for a store that must exist already, creating nothing: a `file://` root
/// that holds no store is `NotFound` ("no store at PATH"), so a tool that only reads
/// says that a path is mistyped instead of showing an empty store. Servers are connected
/// as by [`open`] (connecting creates nothing).
///
/// # Errors
/// As [`open`], and `NotFound` for a `file://` root without a store.
pub async fn open_existing(url: &str) -> Result<Persistence> {
    open_url(url, Create::Never).await
}

/// Whether opening a `file://` root that holds no store makes one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    IfMissing,
    Never,
}

/// [`open`] or [`open_existing`]; errors that no backend claimed are keyed
/// `persistence open [URL]`.
async fn open_url(url: &str, create: Create) -> Result<Persistence> {
    open_scheme(url, create).await.map_err(|e| {
        if e.backend().is_empty() {
            e.context("persistence", "open", redact_url(url))
        } else {
            e
        }
    })
}

/// The codec options of a URL (any scheme): `encryption`, `keyring`, `compress_above`,
/// `clear_fields`.
const CODEC_OPTIONS: [&str; 4] = ["encryption", "keyring", "compress_above", "clear_fields"];

/// Opens `url` without its codec options, then applies them.
async fn open_scheme(url: &str, create: Create) -> Result<Persistence> {
    let (url, codec) = split_codec_options(url)?;
    let opened = open_backend(&url, create).await?;
    match codec {
        None => Ok(opened),
        Some(codec) => apply_codec(opened, codec),
    }
}

/// The codec options of a URL, as given.
#[cfg_attr(not(feature = "codec"), allow(dead_code))]
struct CodecOptions(Vec<(String, String)>);

/// `url` without the codec options, and those options (when any is given).
fn split_codec_options(url: &str) -> Result<(String, Option<CodecOptions>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if !pairs
        .iter()
        .any(|(k, _)| CODEC_OPTIONS.contains(&k.as_str()))
    {
        return Ok((url.to_string(), None));
    }
    let (codec, rest): (Vec<_>, Vec<_>) = pairs
        .into_iter()
        .partition(|(k, _)| CODEC_OPTIONS.contains(&k.as_str()));
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&rest)
            .finish();
        format!("{base}?{query}")
    };
    Ok((url, Some(CodecOptions(codec))))
}

#[cfg(feature = "codec")]
fn apply_codec(opened: Persistence, options: CodecOptions) -> Result<Persistence> {
    use persistence_codec::{CodecConfig, EncryptionPolicy, StaticKeyring};
    let get = |key: &str| {
        options
            .0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut config = CodecConfig::default();
    if let Some(bytes) = get("compress_above") {
        let bytes = bytes.parse::<usize>().map_err(|_| {
            Error::invalid_input(format!(
                "compress_above={bytes:?}: expected a number of bytes"
            ))
        })?;
        config = config.with_compression(bytes);
    }
    if let Some(fields) = get("clear_fields") {
        config = config.with_clear_fields(fields.split(',').filter(|f| !f.is_empty()));
    }
    let policy = match get("encryption") {
        None => None,
        Some("required") => Some(EncryptionPolicy::Required),
        Some("optional") => Some(EncryptionPolicy::Optional),
        Some(other) => {
            return Err(Error::invalid_input(format!(
                "encryption={other:?}: expected required or optional"
            )));
        }
    };
    match (policy, get("keyring")) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(Error::invalid_input(
                "keyring= without encryption=required or encryption=optional",
            ));
        }
        (Some(_), None) => {
            return Err(Error::invalid_input(
                "encryption= needs keyring=env:VARIABLE or keyring=file:PATH",
            ));
        }
        (Some(policy), Some(source)) => {
            let keys = if let Some(name) = source.strip_prefix("env:") {
                StaticKeyring::from_env(name)?
            } else if let Some(path) = source.strip_prefix("file:") {
                StaticKeyring::from_file(path)?
            } else {
                // Never echo it: it may be a key pasted into the URL.
                return Err(Error::invalid_input(
                    "keyring= must be env:VARIABLE or file:PATH (keys never go in a URL)",
                ));
            };
            config = config.with_encryption(std::sync::Arc::new(keys), policy);
        }
    }
    Ok(opened.with_codec(config))
}

#[cfg(not(feature = "codec"))]
fn apply_codec(_: Persistence, _: CodecOptions) -> Result<Persistence> {
    Err(feature_off("encryption=/compress_above=", "codec"))
}

async fn open_backend(url: &str, create: Create) -> Result<Persistence> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        Error::invalid_input(format!(
            "{:?} is not a persistence URL: expected memory://, file://PATH, postgres://..., \
             redis://... or redis+cluster://...",
            redact_url(url)
        ))
    })?;
    if let Some(opener) = schemes::registered(scheme) {
        let request = schemes::OpenRequest {
            url: url.to_string(),
            create_if_missing: create == Create::IfMissing,
        };
        return opener(request).await;
    }
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let options = Options::parse(query)?;
    match scheme {
        "memory" => {
            options.reject_all(scheme)?;
            Ok(Persistence::from_backend(MemoryBackend::new()))
        }
        "file" => open_fs(location, options, create),
        "postgres" | "postgresql" => open_postgres(url).await,
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => {
            open_redis(scheme, location, options).await
        }
        other => Err(Error::invalid_input(format!(
            "unknown URL scheme {other:?}: expected {}",
            schemes::known_schemes().join(", ")
        ))),
    }
}

#[cfg_attr(
    all(feature = "fs", feature = "postgres", feature = "redis"),
    allow(dead_code)
)]
fn feature_off(scheme: &str, feature: &str) -> Error {
    Error::unsupported(format!(
        "{scheme}:// needs the `{feature}` feature of the `persistence` crate \
         (features = [\"{feature}\"] or [\"full\"])"
    ))
}

/// `key=value` options after `?` (percent-decoded), consumed by the backend that
/// understands them.
struct Options(Vec<(String, String)>);

impl Options {
    fn parse(query: &str) -> Result<Self> {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            if !pair.contains('=') {
                return Err(Error::invalid_input(format!(
                    "URL option {pair:?} is not key=value"
                )));
            }
        }
        let pairs = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Options(pairs))
    }

    /// The options left, encoded again for a URL's query.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn encode(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.0)
            .finish()
    }

    #[cfg_attr(not(any(feature = "fs", feature = "redis")), allow(dead_code))]
    fn take(&mut self, key: &str) -> Option<String> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    fn reject_all(self, scheme: &str) -> Result<()> {
        match self.0.first() {
            None => Ok(()),
            Some((k, _)) => Err(Error::invalid_input(format!(
                "unknown option {k:?} for {scheme}:// URLs"
            ))),
        }
    }
}

#[cfg(feature = "fs")]
fn open_fs(location: &str, mut options: Options, create: Create) -> Result<Persistence> {
    use persistence_fs::{Durability, FsBackend, FsConfig};
    if location.is_empty() {
        return Err(Error::invalid_input(
            "file:// URL without a path: use file:///absolute/dir or file://relative/dir",
        ));
    }
    // RFC 8089 reads `file://localhost/PATH` as the absolute `/PATH`; here the part after
    // `file://` is the path, so it would be the relative `localhost/PATH`: refuse it.
    if location == "localhost" || location.starts_with("localhost/") {
        return Err(Error::invalid_input(format!(
            "file://{location}: write file:///{} for an absolute path (after file:// comes \
             the path itself: file:///absolute/dir, file://relative/dir)",
            location
                .trim_start_matches("localhost")
                .trim_start_matches('/')
        )));
    }
    let location = percent_encoding::percent_decode_str(location)
        .decode_utf8()
        .map_err(|_| Error::invalid_input("file:// URL path is not UTF-8 once percent-decoded"))?;
    let location: &str = &location;
    let durability = match options.take("durability").as_deref() {
        None | Some("fsync") => Durability::Fsync,
        Some("none") => Durability::None,
        Some(other) => {
            return Err(Error::invalid_input(format!(
                "durability={other:?}: expected fsync (default) or none"
            )));
        }
    };
    options.reject_all("file")?;
    let config = FsConfig::new(location)
        .with_durability(durability)
        .with_create_if_missing(create == Create::IfMissing);
    Ok(Persistence::from_backend(FsBackend::open(config)?))
}

#[cfg(not(feature = "fs"))]
fn open_fs(_: &str, _: Options, _: Create) -> Result<Persistence> {
    Err(feature_off("file", "fs"))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Persistence> {
    use persistence_postgres::{PgBackend, PgConfig};
    Ok(Persistence::from_backend(
        PgBackend::connect(PgConfig::new(url)).await?,
    ))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &str) -> Result<Persistence> {
    Err(feature_off("postgres", "postgres"))
}

#[cfg(feature = "redis")]
async fn open_redis(scheme: &str, location: &str, mut options: Options) -> Result<Persistence> {
    use persistence_redis::{RedisBackend, RedisConfig};
    let prefix = options.take("prefix");
    // Other options (TLS files, `protocol=resp3`, ...) belong to the backend and the
    // driver (for a cluster, to every node).
    let url = if options.0.is_empty() {
        format!("{scheme}://{location}")
    } else {
        format!("{scheme}://{location}?{}", options.encode())
    };
    let mut config = RedisConfig::new(url);
    if let Some(prefix) = prefix {
        config = config.with_prefix(prefix);
    }
    Ok(Persistence::from_backend(
        RedisBackend::connect(config).await?,
    ))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(scheme: &str, _: &str, _: Options) -> Result<Persistence> {
    Err(feature_off(scheme, "redis"))
}
