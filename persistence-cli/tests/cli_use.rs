//! The CLI as a user meets it: read commands that create nothing, missing things that
//! say so, output into a closed pipe, and one `--format` for every command (errors
//! included).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::{command, fails, json, ok, persistence, stderr, stdout};

/// A mistyped `file://` path is not an empty store: `status`, `inspect` and `gc` say
/// there is no store there, fail, and leave the path as it was.
#[test]
fn read_commands_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["status", "--url", "file://typo_dir"][..],
        &["gc", "--url", "file://typo_dir"],
        &[
            "inspect",
            "thread",
            "--url",
            "file://typo_dir",
            "--tenant",
            "t",
            "th",
        ],
        &[
            "inspect",
            "session",
            "--url",
            "file://typo_dir",
            "--tenant",
            "t",
            "s",
        ],
    ] {
        let err = fails(dir.path(), args);
        assert!(err.contains("no store at typo_dir"), "{args:?}: {err}");
        assert!(
            !dir.path().join("typo_dir").exists(),
            "{args:?} created the store it was asked to read"
        );
    }
}

/// Inspecting what does not exist fails with "not found" instead of printing an empty
/// table.
#[test]
fn inspecting_a_missing_thread_session_or_namespace_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["demo", "--steps", "2"]);
    for (args, what) in [
        (
            &["inspect", "thread", "--tenant", "acme", "no-such-thread"][..],
            "no-such-thread",
        ),
        (
            &["inspect", "session", "--tenant", "acme", "no-such-session"],
            "no-such-session",
        ),
        (
            &["inspect", "namespace", "--tenant", "acme", "no", "such"],
            "no/such",
        ),
    ] {
        let err = fails(dir.path(), args);
        assert!(err.contains("not found"), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
    }
    // What exists still prints.
    let out = ok(
        dir.path(),
        &["inspect", "thread", "--tenant", "acme", "billing/run-7"],
    );
    assert!(out.contains("step"), "{out}");
}

/// `persistence inspect ... | head -1`: the reader closed the pipe; the command ends
/// quietly (it panicked, exit 101).
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["demo", "--steps", "2"]);
    for format in ["table", "json"] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // closed before the command writes anything
        let out = command(
            dir.path(),
            &["inspect", "session", "--tenant", "acme", "billing/run-7"],
        )
        .args(["--format", format])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{format}: {err}");
        assert!(out.status.success(), "{format}: {:?} {err}", out.status);
    }
}

/// `--format json` is accepted by every command, before or after it, and makes every
/// output, errors included, one JSON document.
#[test]
fn every_command_speaks_json() {
    let dir = tempfile::tempdir().unwrap();
    let demo = json(&ok(
        dir.path(),
        &["demo", "--steps", "2", "--format", "json"],
    ));
    assert!(
        demo["lines"].as_array().is_some_and(|l| !l.is_empty()),
        "{demo}"
    );
    let status = json(&ok(dir.path(), &["--format", "json", "status"]));
    assert_eq!(status["backend"], "fs", "{status}");
    let gc = json(&ok(dir.path(), &["gc", "--format", "json"]));
    assert!(gc["items"].is_u64() && gc["sessions"].is_u64(), "{gc}");
    let migrate = json(&ok(dir.path(), &["migrate", "--format", "json"]));
    assert_eq!(migrate["applied"], serde_json::json!([]), "{migrate}");
    let inspect = json(&ok(
        dir.path(),
        &[
            "inspect",
            "thread",
            "--tenant",
            "acme",
            "billing/run-7",
            "--format",
            "json",
        ],
    ));
    assert!(inspect["checkpoints"].is_array(), "{inspect}");
    // Times are RFC 3339 in UTC (they were epoch milliseconds).
    let created = inspect["checkpoints"][0]["created_at"]
        .as_str()
        .unwrap_or_default();
    assert!(
        created.len() == 24 && created.as_bytes()[10] == b'T' && created.ends_with('Z'),
        "{inspect}"
    );
    let bench = json(&ok(
        dir.path(),
        &["bench", "--ops", "20", "--tasks", "1", "--format", "json"],
    ));
    assert!(bench["rows"].is_array(), "{bench}");

    // An error: exit non-zero, nothing on stdout, one JSON document on stderr.
    let out = persistence(
        dir.path(),
        &["status", "--url", "ftp://x", "--format", "json"],
    );
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "");
    let error = json(&stderr(&out));
    assert_eq!(error["error"]["kind"], "invalid input", "{error}");
    assert_eq!(error["error"]["operation"], "open", "{error}");
    assert!(error["error"]["hint"].is_string(), "{error}");
}

/// Colour is for a terminal: logs written into a pipe carry no escape codes.
#[test]
fn no_colour_into_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), &["demo", "--steps", "2"])
        .env("RUST_LOG", "persistence=debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("persistence"), "no log lines: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in piped output: {err:?}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\u{1b}'));
}
