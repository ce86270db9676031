//! The `persistence` command: run the demo, migrate a Postgres database, look at what is
//! stored, purge expired data and benchmark a backend.
//!
//! Every command takes `--url` (or `PERSISTENCE_URL`); the default is the embedded
//! filesystem store the demo writes, `file://.persistence-demo`.
//!
//! # The command for your own backend
//! The command reaches backends only through the `persistence` facade's traits, so a
//! backend outside this workspace gets it too: register its URL scheme with
//! [`persistence::register_scheme`] and run the command from a binary of your own.
//!
//! ```no_run
//! use persistence::{MemoryBackend, OpenRequest, Persistence, register_scheme};
//!
//! fn main() -> std::process::ExitCode {
//!     // Stand-in for your backend: anything implementing the five traits.
//!     register_scheme("mine", |_: OpenRequest| async {
//!         Ok(Persistence::from_backend(MemoryBackend::new()))
//!     })
//!     .expect("a new scheme");
//!     persistence_cli::main() // `my-persistence status --url mine://...`
//! }
//! ```

#![deny(missing_docs)]

mod bench;
mod bench_cost;
mod bench_raw;
mod bench_target;
mod demo;
mod inspect;
mod ops;
mod output;
mod rekey;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Format;

/// Where the demo keeps its data, and the default of every command.
const DEFAULT_URL: &str = "file://.persistence-demo";

/// Tenant-keyed state for AI agents: checkpoints, memory, session logs and fenced locks.
#[derive(Parser, Debug)]
#[command(name = "persistence", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Output format of every command: aligned text, or one JSON document (errors too,
    /// on stderr).
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    format: Format,
}

/// The backend to use: memory://, file://DIR, postgres://..., redis://..., rediss://...,
/// redis+cluster://..., rediss+cluster://...
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct UrlArg {
    /// Backend URL: memory://, file://DIR, postgres://USER@HOST/DB, redis://HOST:PORT,
    /// redis+cluster://HOST:PORT,HOST:PORT; TLS: rediss://, rediss+cluster://,
    /// postgres://...?sslmode=verify-full, with sslrootcert=, sslcert=, sslkey= files;
    /// payload codec: encryption=required|optional&keyring=env:VAR|file:PATH,
    /// compress_above=BYTES.
    #[arg(long, env = "PERSISTENCE_URL", default_value = DEFAULT_URL, global = true)]
    pub(crate) url: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a small multi-tenant agent simulation: workers under locks checkpoint, log
    /// events and write memory; one is killed mid-run and resumed from its checkpoint.
    Demo {
        #[command(flatten)]
        url: UrlArg,
        /// Steps each worker takes in this run.
        #[arg(long, default_value_t = 8)]
        steps: u64,
    },
    /// Apply the embedded Postgres migrations (connect as the owner/migrator role).
    Migrate {
        #[command(flatten)]
        url: UrlArg,
    },
    /// Show the backend, its schema version and what each tenant holds.
    Status {
        #[command(flatten)]
        url: UrlArg,
        /// Also count each tenant's payloads per encryption key id (and those not
        /// encrypted): a key no tenant uses can be retired. Reads every payload.
        #[arg(long)]
        keys: bool,
    },
    /// Print stored data of one thread, session or namespace.
    Inspect {
        #[command(flatten)]
        url: UrlArg,
        #[command(subcommand)]
        what: inspect::Target,
    },
    /// Sweep once: apply retention to every thread (when asked), delete expired store
    /// items and sessions of every tenant, and report counts. Runs the sweeper's rounds
    /// until the pass is complete, under the sweeper's lease (skips when another sweeper
    /// holds it), recording what it removed in each tenant's audit log.
    Gc(ops::GcArgs),
    /// Benchmark the backend beside a raw baseline (plain INSERT, EVAL or write+fsync).
    Bench(bench::BenchArgs),
    /// Re-encrypt stored payloads not under the writer's key (the last key of the
    /// URL's keyring) with it, in batches, next to live writers; resumable (a payload
    /// under the writer's key is skipped). Afterwards `status --keys` shows which keys
    /// nothing uses any more.
    Rekey(rekey::RekeyArgs),
}

/// Runs the command with the process's arguments: what the `persistence` binary does.
pub fn main() -> ExitCode {
    ExitCode::from(run_from(std::env::args_os()))
}

/// Runs the command with `args` (the first is the program's name) and returns its exit
/// status: 0 on success, 1 when the command failed (the error is printed on stderr), 2
/// for arguments it does not accept (with usage on stderr).
pub fn run_from<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` are "errors" that print to stdout and exit 0.
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let format = cli.format;
    let (url, result) = runtime.block_on(run(cli));
    match result {
        Ok(()) => 0,
        Err(e) => {
            output::report_error(&url, &e, format);
            1
        }
    }
}

/// Spans and events of the library go to stderr when `RUST_LOG` asks for them
/// (e.g. `RUST_LOG=persistence=debug`), coloured only on a terminal.
fn init_tracing() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            // Colour for a person at a terminal, never into a file or a pipe.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            // A second run in one process (`run_from` called again) keeps the first's.
            .try_init()
            .ok();
    }
}

async fn run(cli: Cli) -> (String, persistence::Result<()>) {
    let format = cli.format;
    match cli.command {
        Command::Demo { url, steps } => {
            let result = demo::run(&url.url, steps, format).await;
            (url.url, result)
        }
        Command::Migrate { url } => {
            let result = ops::migrate(&url.url, format).await;
            (url.url, result)
        }
        Command::Status { url, keys } => {
            let result = ops::status(&url.url, keys, format).await;
            (url.url, result)
        }
        Command::Inspect { url, what } => {
            let result = inspect::run(&url.url, what, format).await;
            (url.url, result)
        }
        Command::Gc(args) => {
            let url = args.url.url.clone();
            let result = ops::gc(args, format).await;
            (url, result)
        }
        Command::Rekey(args) => {
            let url = args.url.url.clone();
            let result = rekey::run(args, format).await;
            (url, result)
        }
        Command::Bench(args) => {
            let url = args.url.clone().unwrap_or_default();
            let result = bench::run(args, format).await;
            (url, result)
        }
    }
}
