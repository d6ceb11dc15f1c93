//! `crescendo`: one binary whose subcommand chooses its role.
//!
//! It only parses flags, loads [`Settings`] (defaults < `--config` TOML < `CRESCENDO_*`
//! environment < flags), sets up logging, and hands over to the library crates.

use clap::{Args, Parser, Subcommand};
use crescendo_config::{Overrides, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Crescendo: a social blogging service (the RealWorld "Conduit" API) that grows from one
/// process to a multi-tier deployment by configuration alone.
#[derive(Parser, Debug)]
#[command(name = "crescendo", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole service in one process (rung 1): JSON API, embedded SQLite database,
    /// in-process cache and job queue, local files. Zero set-up: the first run creates
    /// everything under the data directory.
    Serve(Common),
    /// Create or upgrade the database schema, then exit (`serve` also does this at start).
    Migrate(Common),
}

/// Flags every role takes.
#[derive(Args, Debug)]
struct Common {
    /// Address to listen on; port 0 picks a free one (the bound address is printed).
    /// [default: 127.0.0.1:8080; setting http.listen]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where data, uploads and generated keys live. [default: ./crescendo-data; setting data_dir]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML settings file; see README.md for every key.
    #[arg(long, value_name = "FILE", env = "CRESCENDO_CONFIG")]
    config: Option<PathBuf>,
}

impl Common {
    fn settings(&self) -> anyhow::Result<Settings> {
        let overrides = Overrides { listen: self.listen, data_dir: self.data_dir.clone() };
        Ok(Settings::load(self.config.as_deref(), &overrides)?)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(common) => serve(common.settings()?).await,
            Command::Migrate(common) => {
                let settings = common.settings()?;
                crescendo_telemetry::init_logs(settings.log.format, &settings.log.filter);
                crescendo_server::build(&settings).await?;
                println!("database in {} is up to date", settings.data_dir.display());
                Ok(())
            }
        }
    })
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    crescendo_telemetry::init_logs(settings.log.format, &settings.log.filter);
    let _ = crescendo_telemetry::metrics_handle();
    let data_dir = settings.data_dir.clone();
    let running = crescendo_server::serve(settings, crescendo_server::shutdown_signal()).await?;
    tracing::info!(addr = %running.addr, data_dir = %data_dir.display(), "serving");
    println!("listening on http://{}", running.addr);
    running.done.await??;
    Ok(())
}
