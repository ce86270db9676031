//! Running the real `persistence` binary, shared by this crate's test files.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each file uses some

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// The binary with `args`, run in `dir`, without the caller's `PERSISTENCE_URL` and
/// `RUST_LOG`.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_persistence"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("PERSISTENCE_URL")
        .env_remove("RUST_LOG");
    command
}

pub fn persistence(dir: &Path, args: &[&str]) -> Output {
    command(dir, args)
        .output()
        .expect("run the persistence binary")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and requires success, returning stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let o = persistence(dir, args);
    assert!(
        o.status.success(),
        "persistence {args:?} failed: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs and requires a failure with a one-line error, a hint, and no panic.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    let o = persistence(dir, args);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "persistence {args:?} succeeded: {}",
        stdout(&o)
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {err}");
    assert!(
        err.lines()
            .all(|l| l.starts_with("error:") || l.starts_with("hint:")),
        "{err}"
    );
    err
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
