//! The measuring commands: `bench` (a load against a target, with the server's view),
//! `ceiling` (recorded answers served from memory, the stack's own limit), `tour` (every
//! rung started, measured and stopped) and `regions-bench` (a running two-region topology,
//! from inside its namespaces), with the load flags `bench` and `tour` share.

use clap::Args;
use crescendo_config::{Overrides, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Load flags shared by `bench` and `tour`.
#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    /// What to send.
    #[arg(long, value_enum, default_value = "social")]
    scenario: crescendo_bench::scenario::Scenario,
    /// How long to send, e.g. 30s, 2m, 500ms.
    #[arg(long, default_value = "30s", value_parser = crescendo_bench::parse_duration)]
    duration: std::time::Duration,
    /// Closed loop: this many connections, each sending again as soon as it has an answer.
    #[arg(long, default_value_t = 32, conflicts_with = "rate")]
    connections: usize,
    /// Open loop: this many requests per second whatever the server does; latency is
    /// counted from when each request was meant to go.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: most requests outstanding at once.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// A request without an answer after this long counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = crescendo_bench::parse_duration)]
    timeout: std::time::Duration,
    /// Users to seed (named bench_0, bench_1, …).
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Follows each seeded user makes (heavy-tailed towards popular users).
    #[arg(long, default_value_t = 20)]
    follows: usize,
    /// Articles to seed in all.
    #[arg(long, default_value_t = 2000)]
    articles: usize,
    /// Favourites each seeded user makes.
    #[arg(long, default_value_t = 10)]
    favorites: usize,
    /// Comments to seed in all.
    #[arg(long, default_value_t = 2000)]
    comments: usize,
    /// Seed users and follows from a real social graph (an edge list, `a b` per line,
    /// followed both ways), e.g. ../shared/datasets/socfb-Reed98/socfb-Reed98.edges.
    #[arg(long, value_name = "EDGELIST")]
    graph: Option<PathBuf>,
    /// Requests in flight while seeding.
    #[arg(long, default_value_t = 16)]
    seed_concurrency: usize,
}

/// Flags of `bench`.
#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// The target, e.g. http://127.0.0.1:8080 (a trailing /api is fine).
    #[arg(long, value_name = "URL")]
    target: String,
    #[command(flatten)]
    load: LoadArgs,
    /// Seed, then stop (tokens.txt and slugs.txt are written for other load tools).
    #[arg(long, conflicts_with = "no_seed")]
    seed_only: bool,
    /// Do not seed: sign the seeded users in and load what is there.
    #[arg(long)]
    no_seed: bool,
    /// The target's metrics endpoint on its operators' listener (a node prints it at start as
    /// `ops listening on http://ADDR`; `crescendo status --json` lists `ops_addr`); repeat it
    /// for each web node behind a load balancer (their counters are summed). Without it (and
    /// without --run-dir) the report has no server view.
    #[arg(long, value_name = "URL")]
    metrics: Vec<String>,
    /// PID of the target when it runs on this machine: adds CPU time per request and peak memory.
    #[arg(long)]
    pid: Option<u32>,
    /// The run directory of a topology `crescendo up` started on this machine: the report
    /// adds where the CPU goes, read from /proc before and after the run for every process
    /// its state lists (web nodes, workers, HAProxy, Redis, NATS, the object server, and
    /// PostgreSQL with its backends, live and exited), as CPU-ms per request in total and
    /// per role with each role's share, and the load generator's own apart. Without
    /// --metrics, the web nodes' and workers' metrics endpoints come from it too.
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// Where the report goes.
    #[arg(long, default_value = "bench-out", value_name = "DIR")]
    out: PathBuf,
    /// After the run, serve the answers recorded from the target (the last one for each
    /// method and path, at most 10,000 or 256 MiB) from memory in this process through the
    /// same HTTP stack as `serve`, run the same scenario against them for as long with as
    /// many connections, and report the ceiling's req/s and p99, the fraction of it the
    /// target reached, and the share of requests that found no recorded answer.
    #[arg(long, conflicts_with = "rate")]
    ceiling: bool,
}

/// Flags of `ceiling`.
#[derive(Args, Debug)]
pub(crate) struct CeilingArgs {
    /// The server whose answers are served, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    from: String,
    /// A path with its query to fetch once and serve, e.g. /api/articles?limit=20; repeat it.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// A file of further paths, one a line (e.g. /api/articles/{slug} for seeded slugs).
    #[arg(long, value_name = "FILE")]
    paths_from: Option<PathBuf>,
    /// Fetch as the user of this token (`Authorization: Token T`).
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// Address to serve on; port 0 picks a free one (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
}

/// Flags of `tour`.
#[derive(Args, Debug)]
pub(crate) struct TourArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Where the comparison and each rung's report go.
    #[arg(long, default_value = "tour-out", value_name = "DIR")]
    out: PathBuf,
}

/// Flags of `regions-bench`.
#[derive(Args, Debug)]
pub(crate) struct RegionsBenchArgs {
    /// The run directory of the two-region topology (`crescendo up topologies/08-two-regions.toml`).
    #[arg(long, default_value = "crescendo-run", value_name = "DIR")]
    run_dir: PathBuf,
    /// How long each of the seven phases sends (reads from each users' namespace to each
    /// region, the social mix from both, writes from each).
    #[arg(long, default_value = "10s", value_parser = crescendo_bench::parse_duration)]
    phase: std::time::Duration,
    /// Connections of each load (closed loop).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// A request without an answer after this long counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = crescendo_bench::parse_duration)]
    timeout: std::time::Duration,
    /// Users to seed through region A (named bench_0, bench_1, …).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Articles to seed in all.
    #[arg(long, default_value_t = 500)]
    articles: usize,
    /// Do not seed: sign the seeded users in and load what is there.
    #[arg(long)]
    no_seed: bool,
    /// DESTRUCTIVE: at the end, kill every process of region A (SIGKILL) under a write load
    /// from users-a, fail over to region B (`crescendo failover --region b`), and measure
    /// the RTO (loss to the first write B acknowledges) and the RPO (writes A acknowledged
    /// that B lacks). The topology is left running with region B alone.
    #[arg(long)]
    failover: bool,
    /// With --failover: cut the WAN between the regions this long (e.g. 2s) before region A
    /// is killed, while A goes on taking its own users' writes: the link lost first, then
    /// the region. Asynchronous replication loses what A acknowledged meanwhile; synchronous
    /// commit acknowledges nothing A's replica in B has not got.
    #[arg(long, requires = "failover", value_parser = crescendo_bench::parse_duration)]
    cut_before_loss: Option<std::time::Duration>,
    /// Where regions.json goes.
    #[arg(long, default_value = "regions-out", value_name = "DIR")]
    out: PathBuf,
}

impl LoadArgs {
    fn options(
        &self,
        target: String,
        out: PathBuf,
    ) -> anyhow::Result<crescendo_bench::BenchOptions> {
        use crescendo_bench::load::Model;
        let mut seed = crescendo_bench::SeedPlan {
            users: self.users,
            follows_per_user: self.follows,
            articles: self.articles,
            favorites_per_user: self.favorites,
            comments: self.comments,
            concurrency: self.seed_concurrency,
            ..Default::default()
        };
        if let Some(path) = &self.graph {
            let (edges, users) = crescendo_bench::read_graph(path)?;
            seed.users = users;
            seed.graph = Some(edges);
        }
        Ok(crescendo_bench::BenchOptions {
            target,
            scenario: self.scenario,
            model: match self.rate {
                Some(rate) if rate > 0.0 => Model::Open {
                    rate,
                    max_in_flight: self.max_in_flight,
                },
                Some(_) => anyhow::bail!("--rate must be positive"),
                None => Model::Closed {
                    connections: self.connections.max(1),
                },
            },
            duration: self.duration,
            timeout: self.timeout,
            seed,
            seed_mode: crescendo_bench::SeedMode::Seed,
            metrics: Vec::new(),
            pid: None,
            run_dir: None,
            out,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            ceiling: false,
        })
    }
}

pub(crate) async fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let mut o = a.load.options(a.target.clone(), a.out.clone())?;
    o.seed_mode = match (a.seed_only, a.no_seed) {
        (true, _) => crescendo_bench::SeedMode::SeedOnly,
        (_, true) => crescendo_bench::SeedMode::NoSeed,
        _ => crescendo_bench::SeedMode::Seed,
    };
    o.metrics = a.metrics;
    o.pid = a.pid;
    o.run_dir = a.run_dir;
    o.ceiling = a.ceiling;
    if a.ceiling {
        // the ceiling's stack logs as `serve` does (its spans cost what they cost there)
        let log = Settings::default().log;
        crescendo_telemetry::init_logs(log.format, &log.filter);
    }
    if let Some(report) = crescendo_bench::bench(&o).await? {
        print!("{}", report.table());
        println!("report: {}", a.out.join("report.html").display());
    }
    Ok(())
}

pub(crate) async fn ceiling(a: CeilingArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let overrides = Overrides {
        listen: Some(a.listen),
        data_dir: None,
    };
    // the same settings as `serve` would load (CRESCENDO_* included): time-outs, limits, HSTS
    let settings = Settings::load(None, &overrides)?;
    crescendo_telemetry::init_logs(settings.log.format, &settings.log.filter);
    let mut paths = a.paths;
    if let Some(file) = &a.paths_from {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading paths from {}", file.display()))?;
        paths.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    let base = crescendo_bench::origin(&a.from);
    let answers = crescendo_bench::ceiling::fetch(&base, &paths, a.token.as_deref()).await?;
    eprintln!("serving {} answers from {base}", answers.len());
    let running = crescendo_server::serve_ceiling(
        &settings,
        std::sync::Arc::new(answers),
        crescendo_server::shutdown_signal(),
    )
    .await?;
    println!("listening on http://{}", running.addr);
    running.done.await?;
    Ok(())
}

pub(crate) async fn tour(a: TourArgs) -> anyhow::Result<()> {
    let o = a.load.options(String::new(), a.out.clone())?;
    let exe = std::env::current_exe()?;
    let t = crescendo_bench::tour::tour(&exe, &o, &a.out).await?;
    for r in &t.rungs {
        println!("{}", r.verdict);
    }
    println!("comparison: {}", a.out.join("tour.html").display());
    Ok(())
}

pub(crate) async fn regions_bench(a: RegionsBenchArgs) -> anyhow::Result<()> {
    let o = crescendo_bench::regions::RegionsOptions {
        run_dir: a.run_dir,
        connections: a.connections.max(1),
        phase: a.phase,
        timeout: a.timeout,
        seed: crescendo_bench::SeedPlan {
            users: a.users,
            articles: a.articles,
            comments: a.articles,
            sign_in_only: a.no_seed,
            ..Default::default()
        },
        failover: a.failover,
        cut_before_loss: a.cut_before_loss,
    };
    let r = tokio::task::spawn_blocking(move || crescendo_bench::regions::measure(&o)).await??;
    r.write(&a.out)?;
    print!("{}", r.table());
    println!("report: {}", a.out.join("regions.json").display());
    Ok(())
}
