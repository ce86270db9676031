//! The `persistence` command: run the demo, migrate a Postgres database, look at what is
//! stored, purge expired data and benchmark a backend.
//!
//! Every command takes `--url` (or `PERSISTENCE_URL`); the default is the embedded
//! filesystem store the demo writes, `file://.persistence-demo`.

#![deny(missing_docs)]

mod bench;
mod bench_cost;
mod bench_raw;
mod bench_target;
mod demo;
mod inspect;
mod ops;
mod output;

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
struct UrlArg {
    /// Backend URL: memory://, file://DIR, postgres://USER@HOST/DB, redis://HOST:PORT,
    /// redis+cluster://HOST:PORT,HOST:PORT; TLS: rediss://, rediss+cluster://,
    /// postgres://...?sslmode=verify-full, with sslrootcert=, sslcert=, sslkey= files.
    #[arg(long, env = "PERSISTENCE_URL", default_value = DEFAULT_URL, global = true)]
    url: String,
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
    },
    /// Print stored data of one thread, session or namespace.
    Inspect {
        #[command(flatten)]
        url: UrlArg,
        #[command(subcommand)]
        what: inspect::Target,
    },
    /// Delete expired store items and sessions of every tenant, and report counts.
    Gc {
        #[command(flatten)]
        url: UrlArg,
    },
    /// Benchmark the backend beside a raw baseline (plain INSERT, EVAL or write+fsync).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let format = cli.format;
    let (url, result) = runtime.block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::report_error(&url, &e, format);
            ExitCode::FAILURE
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
            .init();
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
        Command::Status { url } => {
            let result = ops::status(&url.url, format).await;
            (url.url, result)
        }
        Command::Inspect { url, what } => {
            let result = inspect::run(&url.url, what, format).await;
            (url.url, result)
        }
        Command::Gc { url } => {
            let result = ops::gc(&url.url, format).await;
            (url.url, result)
        }
        Command::Bench(args) => {
            let url = args.url.clone().unwrap_or_default();
            let result = bench::run(args, format).await;
            (url, result)
        }
    }
}
