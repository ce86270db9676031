//! The one way a connection URL is shown: without its secrets.

/// `url` with every secret replaced by `***`: the password of the userinfo
/// (`scheme://user:PASSWORD@host`, for each host of a multi-host URL), the values of
/// `password`, `sslpassword` and `auth` query options, and a `keyring` option that is not
/// a reference (`env:VARIABLE`, `file:PATH`: anything else may be a key pasted in).
/// Use it wherever a URL may reach an error, a `Debug` print, a span or a terminal.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => authority.to_string(),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(&authority);
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if matches!(k, "password" | "sslpassword" | "auth") => {
                    format!("{k}=***")
                }
                Some(("keyring", v)) if !v.starts_with("env:") && !v.starts_with("file:") => {
                    "keyring=***".to_string()
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn secrets_are_replaced() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/x?sslmode=require&password=p2"),
            "postgres://app:***@db:5432/x?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("redis://:s3cret@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(
            redact_url("redis+cluster://u:p@a:1,b:2"),
            "redis+cluster://u:***@a:1,b:2"
        );
        assert_eq!(redact_url("file:///var/lib/x"), "file:///var/lib/x");
        assert_eq!(redact_url("memory://"), "memory://");
        // A password holding '@' or '/' stays hidden up to the last '@' of the authority.
        assert!(!redact_url("postgres://u:a@b@h/db").contains("a@b"));
        // A keyring reference is shown; anything else in its place may be a key.
        assert_eq!(
            redact_url("memory://?encryption=required&keyring=env:KEYS"),
            "memory://?encryption=required&keyring=env:KEYS"
        );
        assert_eq!(
            redact_url("file:///x?keyring=file:/etc/keys&durability=none"),
            "file:///x?keyring=file:/etc/keys&durability=none"
        );
        assert_eq!(
            redact_url("memory://?keyring=k1%3DAAEC"),
            "memory://?keyring=***"
        );
    }
}
