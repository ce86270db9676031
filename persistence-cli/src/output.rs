//! How results and errors are printed: aligned tables or JSON, and one-line errors with
//! a hint.

use std::io::Write as _;

use persistence::{Error, ErrorKind};
use serde_json::{Value, json};

/// `println!` for the command's output. A reader that closed the pipe (`persistence ...
/// | head -1`) has what it wanted: the command ends quietly with success. Any other
/// failure to write ends it with a one-line error.
macro_rules! say {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use say;

/// One line to stdout (see [`say!`]).
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Output format of every command (`--format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document for programs.
    Json,
}

/// Prints rows under a header, columns padded to their widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    for line in table_lines(header, rows) {
        say!("{line}");
    }
}

/// The lines of [`print_table`]: no borders, two spaces between columns, each column
/// as wide as its widest cell on a terminal (display width: a CJK character takes two
/// columns), no trailing spaces, and never wrapped.
fn table_lines(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.iter().copied())
        .add_rows(rows.iter().cloned());
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
        .lines()
        .map(|line| line.trim_end().to_string())
        .collect()
}

/// Prints a JSON document, pretty.
pub fn print_json(value: &Value) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A JSON value shortened for a table cell.
pub fn cell(value: &Value, max: usize) -> String {
    let text = value.to_string();
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Prints `error: ...` (one line: the error and its causes) and `hint: ...` to stderr,
/// or under `--format json` one JSON document: `{"error": {"kind", "message",
/// "backend", "operation", "key", "causes", "hint"}}`.
pub fn report_error(url: &str, e: &Error, format: Format) {
    let hint = hint(url, e);
    if format == Format::Json {
        let mut causes = Vec::new();
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            causes.push(c.to_string());
            cause = c.source();
        }
        let doc = json!({"error": {
            "kind": e.kind().as_str(),
            "message": e.message(),
            "backend": e.backend(),
            "operation": e.operation(),
            "key": e.key(),
            "causes": causes,
            "hint": hint,
        }});
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
        );
        return;
    }
    let message = e.report().to_string().replace(['\n', '\r'], " ");
    eprintln!("error: {message}");
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
}

fn hint(url: &str, e: &Error) -> Option<String> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    let server = match scheme {
        "postgres" | "postgresql" => Some(("Postgres", "postgres")),
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => Some(("Redis", "redis")),
        _ => None,
    };
    // Hints follow from the kind and where the error arose, never from message text.
    let opening = e.backend() == "persistence" && e.operation() == "open";
    match e.kind() {
        ErrorKind::Unavailable => Some(match server {
            Some((name, service)) => format!(
                "is {name} running at that address? For a local one: \
                 `docker compose up -d {service}` (see README)"
            ),
            None => "retry later; the store was unreachable".to_string(),
        }),
        ErrorKind::InvalidInput if opening => Some(
            "URLs look like memory://, file://DIR, postgres://USER@HOST:5432/DB, \
             redis://HOST:6379, rediss://HOST:6379 (TLS), redis+cluster://HOST:PORT,HOST:PORT"
                .to_string(),
        ),
        ErrorKind::Tls => Some(
            "TLS URL options: sslrootcert=CA.pem, sslcert=CLIENT.pem, sslkey=CLIENT.key \
             (Postgres also sslmode=disable|prefer|require|verify-ca|verify-full); see README, TLS"
                .to_string(),
        ),
        ErrorKind::SchemaTooOld => Some(
            "run `persistence migrate --url postgres://OWNER@HOST/DB` as the owner role (it \
             creates the schema and the persistence_app role), then connect as \
             persistence_app"
                .to_string(),
        ),
        ErrorKind::SchemaTooNew => Some(
            "this store was written by a newer version of persistence: upgrade this tool"
                .to_string(),
        ),
        ErrorKind::Backend if server.is_some() => {
            Some("check the user, password, database and permissions in the URL".to_string())
        }
        ErrorKind::Backend => Some(format!(
            "check that {} is a writable directory",
            url.split_once("://").map_or(url, |(_, p)| p)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns of a table, as a terminal shows them: a wide character (CJK) takes two
    /// columns, so padding by character count misaligned the columns after it.
    fn display_column(line: &str, byte: usize) -> usize {
        line[..byte]
            .chars()
            .map(|c| {
                if ('\u{3000}'..='\u{9fff}').contains(&c) {
                    2
                } else {
                    1
                }
            })
            .sum()
    }

    #[test]
    fn columns_align_by_display_width() {
        let rows = vec![
            vec!["日本語".to_string(), "one".to_string()],
            vec!["abc".to_string(), "two".to_string()],
        ];
        let lines = table_lines(&["key", "value"], &rows);
        assert_eq!(lines.len(), 3, "{lines:?}");
        let starts: Vec<usize> = lines
            .iter()
            .zip(["value", "one", "two"])
            .map(|(line, cell)| display_column(line, line.find(cell).expect(cell)))
            .collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{lines:#?}");
        assert!(lines.iter().all(|l| l == l.trim_end()), "{lines:?}");
    }
}
