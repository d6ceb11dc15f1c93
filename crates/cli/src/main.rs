//! `crescendo`: one binary whose subcommand chooses its role.
//!
//! It only parses flags, loads [`Settings`] (defaults < `--config` TOML < `CRESCENDO_*`
//! environment < flags), sets up logging, and hands over to the library crates.

use clap::{Args, Parser, Subcommand};
use crescendo_config::{Overrides, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;

/// mimalloc instead of the system allocator: a request allocates and frees many small
/// buffers on whichever worker thread runs it, which glibc's per-thread arenas serve
/// slower and return to the system less readily.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Fill a running Crescendo with benchmark data through its public API: users with a
    /// heavy-tailed follow graph, articles with tags, favourites and comments. Idempotent.
    Seed(SeedArgs),
}

/// Flags of `seed`.
#[derive(Args, Debug)]
struct SeedArgs {
    /// Base URL of the target, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    target: String,
    /// Users to create.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Follows made by each user.
    #[arg(long, default_value_t = 20)]
    follows: usize,
    /// Articles in all.
    #[arg(long, default_value_t = 2000)]
    articles: usize,
    /// Favourites made by each user.
    #[arg(long, default_value_t = 10)]
    favorites: usize,
    /// Comments in all.
    #[arg(long, default_value_t = 2000)]
    comments: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Directory for `tokens.txt` and `slugs.txt` (one per line), for load generators.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
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
            Command::Seed(a) => seed(a).await,
        }
    })
}

async fn seed(a: SeedArgs) -> anyhow::Result<()> {
    let plan = crescendo_bench::SeedPlan {
        users: a.users,
        follows_per_user: a.follows,
        articles: a.articles,
        favorites_per_user: a.favorites,
        comments: a.comments,
        concurrency: a.concurrency,
    };
    let start = std::time::Instant::now();
    let seeded = crescendo_bench::seed(&a.target, &plan).await?;
    if let Some(dir) = a.out {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("tokens.txt"), seeded.tokens.join("\n") + "\n")?;
        std::fs::write(dir.join("slugs.txt"), seeded.slugs.join("\n") + "\n")?;
    }
    println!(
        "seeded {} users and {} articles in {:.1}s",
        seeded.tokens.len(),
        seeded.slugs.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
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
