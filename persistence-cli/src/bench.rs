//! `persistence bench` (filled in below).
use persistence::Result;
/// Arguments of `persistence bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Backend URL.
    #[arg(long, env = "PERSISTENCE_URL")]
    pub url: String,
}
/// Runs the benchmark.
pub async fn run(_args: BenchArgs) -> Result<()> {
    Ok(())
}
