//! The `persistence` command; see the `persistence_cli` library.

fn main() -> std::process::ExitCode {
    persistence_cli::main()
}
