//! `crescendo`: one binary whose subcommand chooses its role.
//!
//! It only parses flags, loads [`Settings`] (defaults < `--config` TOML < `CRESCENDO_*`
//! environment < flags), sets up logging, and hands over to the library crates.

mod exporter;
mod kube;
mod logs;
mod measure;
mod shards;
mod witness;

use exporter::{AlertSinkArgs, DashboardArgs, NatsExporterArgs};
use logs::LogsArgs;
use measure::{BenchArgs, CeilingArgs, RegionsBenchArgs, TourArgs};
use shards::{ReshardArgs, ShardsArgs};
use witness::{RegionWatchArgs, WitnessArgs};

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
    /// Run the whole service in one process (rung 1): JSON API, web pages, embedded SQLite database,
    /// in-process cache and job queue, local files. Zero set-up: the first run creates
    /// everything under the data directory.
    Serve(Common),
    /// Run a stateless web node (rungs 2 and up): the JSON API and web pages on a PostgreSQL primary
    /// (`store.postgres_url`) and its replicas (`store.postgres_replica_urls`). Reads go to
    /// healthy replicas, writes to the primary; a promoted replica is followed without a
    /// restart.
    Web(Common),
    /// Run a worker process (rung 9): it takes jobs (image variants) from the queue
    /// (`queue.backend = "nats"`, `queue.nats_url`), `queue.workers` at a time, relays the
    /// outbox, and serves /health, /ready and /metrics on --listen. SIGTERM stops claiming
    /// and waits for the jobs in hand.
    Worker(Common),
    /// Run a region's cache invalidator (rung 8): it tails the cross-region invalidation
    /// stream on the region's database copy (the first of `store.postgres_replica_urls`, else
    /// `store.postgres_url`), applies other regions' rows to the region's cache ring
    /// (`cache.redis_urls`), empties that cache while the stream is lost
    /// (`region.lost_after_ms`), and serves /health, /ready and /metrics on --listen.
    Invalidator(Common),
    /// Promote the most advanced replica when the primary is gone, re-point the other
    /// replicas at it, and make one of them its synchronous standby. Refuses while a
    /// primary answers. Web nodes follow the new primary on their own. `--cluster c2`: the
    /// same for one cluster of a sharded store (rung 10; with a topology's settings,
    /// `--config RUN_DIR/postgres-admin.toml`). `--region b`: the same for a region of a
    /// two-region topology (rung 8), inside its namespace.
    Failover(FailoverArgs),
    /// Cut (`cut`) or heal (`heal`) the WAN link between the regions of a two-region
    /// topology (rung 8): frames between the regions are dropped both ways, while the users
    /// near each region and the geo DNS still reach both.
    Wan(WanArgs),
    /// Bring a lost region of a two-region topology (rung 8) back, after `failover --region`
    /// promoted the other one: what is left of it stops, and it starts again as a replica
    /// region of the other one's new primary (reads local, writes across the WAN).
    Rejoin(RejoinArgs),
    /// Print the shard map of a sharded store (rung 10): its epoch, and per cluster the
    /// logical shards it holds, its users, articles and rows. `--run-dir` reads a running
    /// topology's node settings; `--config` a node's settings file.
    Shards(ShardsArgs),
    /// Move logical shards between the clusters of a sharded store while it serves (rung
    /// 10): `--add CLUSTER` puts a configured, empty cluster on the consistent-hash ring
    /// (about 1/(N+1) of the shards move to it), `--move-shard N --to CLUSTER` moves one hot
    /// shard alone. Rows move by PostgreSQL's logical replication; each batch's writes pause
    /// for its cut-over. `--resume` finishes an interrupted run; `--abort` ends it by
    /// returning to the placement before it, moving the shards already cut over back.
    Reshard(ReshardArgs),
    /// Start every tier of a topology (`topologies/*.toml`) on this machine: PostgreSQL, web
    /// nodes, HAProxy, Redis, NATS and workers. Prints the public URL and a live status; Ctrl-C
    /// stops everything.
    Up(UpArgs),
    /// Stop the topology started from the run directory (`up --detach`).
    Down(RunDirArgs),
    /// Every process of the running topology: role, PID, address, health, req/s, p99, 5xx.
    Status(StatusArgs),
    /// Every process's log of the running topology (rotated files too) merged in time order;
    /// `--role`/`--name` choose processes as `status --json` names them, `--follow` goes on.
    Logs(LogsArgs),
    /// Set the number of web nodes behind the load balancer (`web=N`), without dropping
    /// requests: new nodes take traffic once ready; leaving ones are taken out, then drain.
    Scale(ScaleArgs),
    /// Rolling restart of the web tier: each node is replaced by a fresh one, one at a time,
    /// without dropping requests.
    Restart(RunDirArgs),
    /// Keep the worker tier of the topology in the run directory sized to its queue: more
    /// workers at once when jobs pile up (up to `[queue] max_workers`), one fewer at a time
    /// after the backlog has stayed small for `scale_down_after_secs`, and a replacement for
    /// a worker that died; and its web tier sized to its request rate (`[web] max_nodes`,
    /// Kubernetes' HPA semantics). `up` starts it for topologies that scale; `status` shows
    /// its decisions.
    Autoscale(RunDirArgs),
    /// Serve NATS's monitor figures (`/varz`, `/jsz`, JSON) as Prometheus text on `GET
    /// /metrics`, behind basic auth (user `crescendo`); `up` starts one per NATS server.
    NatsExporter(NatsExporterArgs),
    /// Serve the webhook Alertmanager sends alerts to (`POST /alerts`, basic auth, user
    /// `crescendo`): log each alert as a JSON line and keep the firing ones in a file that
    /// `status` reads; `up` starts one when monitoring is on.
    AlertSink(AlertSinkArgs),
    /// Print the URL of the running topology's dashboard (charts from its Prometheus, basic
    /// auth, user `crescendo`); `up` serves one with monitoring (`--serve`).
    Dashboard(DashboardArgs),
    /// Create or upgrade the database schema, then exit (`serve` also does this at start).
    Migrate(Common),
    /// Measure a running Crescendo: seed data through its API, drive a scenario at it, and
    /// write report.json and report.html (latency percentiles, throughput and errors over
    /// time, and the server's own view from its /metrics).
    Bench(BenchArgs),
    /// Serve, until interrupted, answers fetched once from a running Crescendo (GET each
    /// --path) from memory through the same HTTP stack as `serve` (listener, connection
    /// settings, request IDs, CORS, metrics): the in-process limit of that stack on this
    /// machine, for `wrk` to measure beside the real server. Prints `listening on http://ADDR`.
    Ceiling(CeilingArgs),
    /// Run one scenario against every rung that exists, each started and stopped here, and
    /// write a comparison (tour.json, tour.html) with the playbook's claim for each rung.
    Tour(TourArgs),
    /// Measure a running two-region topology (rung 8) from inside its namespaces: read
    /// p50/p99 from each users' namespace to each region, write p50/p99 from each region,
    /// region B's replication lag and the cross-region invalidation delay under the social
    /// mix; with --failover (which kills region A), RTO and RPO. Writes regions.json and
    /// prints a table. Needs root (it enters the namespaces).
    RegionsBench(RegionsBenchArgs),
    /// The WAN between rung 8's network namespaces, run in the WAN namespace by `up`: relay
    /// Ethernet frames between its ports, delaying (and dropping some of) those between
    /// locations. SIGHUP re-reads --cuts and prints the counts.
    #[command(hide = true)]
    WanRelay(WanRelayArgs),
    /// The witness of the automatic region failover (rung 8), run in the dns namespace by
    /// `up`: answers, to askers with its token, whether it reaches region A's primary.
    #[command(hide = true)]
    Witness(WitnessArgs),
    /// Region B's watcher (rung 8, `[regions] auto_failover`), run in B's namespace by its
    /// `up`: promotes B's replica once A's primary is lost from B and from the witness.
    #[command(hide = true)]
    RegionWatch(RegionWatchArgs),
    /// Render a topology as Kubernetes manifests (plain YAML and a kustomization) into
    /// --out; NOTES.txt there lists the Secrets to create. Writes no secret value.
    Kube(kube::KubeArgs),
}

/// Where a topology keeps its state.
#[derive(Args, Debug)]
struct RunDirArgs {
    /// The run directory: state, each process's configuration and log.
    #[arg(long, default_value = "crescendo-run", value_name = "DIR")]
    run_dir: PathBuf,
}

/// Flags of `up`.
#[derive(Args, Debug)]
struct UpArgs {
    /// The topology file, e.g. topologies/03-load-balancer.toml.
    file: PathBuf,
    /// Return once everything is ready (prints `url: http://ADDR`); `crescendo down` stops it.
    #[arg(long)]
    detach: bool,
    /// The public address, instead of the file's (default 127.0.0.1:8000).
    #[arg(long, value_name = "ADDR")]
    public: Option<SocketAddr>,
    /// One region of a two-region topology, as its plan file says (the two-region `up`
    /// runs this inside the region's network namespace).
    #[arg(long, value_name = "FILE", hide = true)]
    region_plan: Option<PathBuf>,
    #[command(flatten)]
    run: RunDirArgs,
}

/// Flags of `wan`.
#[derive(Args, Debug)]
struct WanArgs {
    /// `cut` or `heal`.
    #[arg(value_parser = ["cut", "heal"])]
    action: String,
    #[command(flatten)]
    run: RunDirArgs,
}

/// Flags of `rejoin`.
#[derive(Args, Debug)]
struct RejoinArgs {
    /// The region to bring back, e.g. `a`.
    #[arg(long, value_name = "NAME")]
    region: String,
    #[command(flatten)]
    run: RunDirArgs,
}

/// Flags of `scale`.
#[derive(Args, Debug)]
struct ScaleArgs {
    /// What to scale, e.g. web=5.
    #[arg(value_name = "TIER=COUNT")]
    target: String,
    #[command(flatten)]
    run: RunDirArgs,
}

/// Flags of `status`.
#[derive(Args, Debug)]
struct StatusArgs {
    /// Print JSON: {"processes":[{"role","name","pid","addr","healthy",…}]}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    run: RunDirArgs,
}

/// Flags of `wan-relay`.
#[derive(Args, Debug)]
struct WanRelayArgs {
    /// A port and its location, e.g. p0=a (at least two).
    #[arg(long = "port", value_name = "IFNAME=LOCATION", required = true)]
    ports: Vec<String>,
    /// The one-way delay between ports of different locations, in ms.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// The share of frames dropped between different locations, in percent.
    #[arg(long, default_value_t = 0.0)]
    loss_percent: f64,
    /// A file of `IF1 IF2` lines: frames between those ports are dropped both ways.
    #[arg(long, value_name = "FILE")]
    cuts: Option<PathBuf>,
}

impl WanRelayArgs {
    fn run(self) -> anyhow::Result<()> {
        let ports = self
            .ports
            .iter()
            .map(|p| match p.split_once('=') {
                Some((name, location)) if !name.is_empty() && !location.is_empty() => {
                    Ok((name.to_owned(), location.to_owned()))
                }
                _ => anyhow::bail!("--port {p}: expected IFNAME=LOCATION"),
            })
            .collect::<anyhow::Result<_>>()?;
        crescendo_topology::netns::relay::run(crescendo_topology::netns::relay::RelayConfig {
            ports,
            delay: std::time::Duration::from_millis(self.delay_ms),
            loss_percent: self.loss_percent,
            cuts: self.cuts,
        })
    }
}

/// Flags of `failover`.
#[derive(Args, Debug)]
struct FailoverArgs {
    #[command(flatten)]
    common: Common,
    /// Leave the new primary asynchronous (commits do not wait for a replica).
    #[arg(long)]
    asynchronous: bool,
    /// In a two-region topology (rung 8), promote this region's replica once the other
    /// region's primary is gone; run from the topology's --run-dir.
    #[arg(long, value_name = "NAME")]
    region: Option<String>,
    /// With a sharded store (rung 10), promote a replica of this cluster (a name in
    /// store.postgres_shards, or `catalogue`) once its primary is gone; the others are
    /// untouched.
    #[arg(long, value_name = "NAME", conflicts_with = "region")]
    cluster: Option<String>,
    /// The two-region topology's run directory (with --region).
    #[arg(long, default_value = "crescendo-run", value_name = "DIR")]
    run_dir: PathBuf,
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
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
        };
        Ok(Settings::load(self.config.as_deref(), &overrides)?)
    }
}

/// `crescendo invalidator`: runs until SIGTERM, printing where it listens (as `up` waits for).
async fn invalidator(common: Common) -> anyhow::Result<()> {
    let settings = common.settings()?;
    logs::init(&settings.log)?;
    let running =
        crescendo_server::invalidator::invalidator(settings, crescendo_server::shutdown_signal())
            .await?;
    println!("listening on http://{}", running.addr);
    running.done.await?
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::WanRelay(a) = cli.command {
        // its own threads and signal handling: no runtime of ours around it
        logs::init_from_env()?;
        return a.run();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(common) => serve(common.settings()?).await,
            Command::Web(common) => {
                let settings = common.settings()?;
                if settings.store.backend != crescendo_config::StoreBackend::Postgres {
                    anyhow::bail!(
                        "crescendo web runs on PostgreSQL: set store.backend = \"postgres\" and store.postgres_url \
                         (CRESCENDO_STORE__BACKEND, CRESCENDO_STORE__POSTGRES_URL); `crescendo serve` runs on SQLite"
                    );
                }
                serve(settings).await
            }
            Command::Worker(common) => {
                let settings = common.settings()?;
                logs::init(&settings.log)?;
                let _ = crescendo_telemetry::metrics_handle();
                let running = crescendo_server::work(settings, crescendo_server::shutdown_signal()).await?;
                tracing::info!(addr = %running.addr, "working");
                println!("listening on http://{}", running.addr);
                running.done.await??;
                Ok(())
            }
            Command::Invalidator(common) => invalidator(common).await,
            Command::Autoscale(a) => autoscale(a.run_dir).await,
            Command::Logs(a) => tokio::task::spawn_blocking(move || a.run()).await?,
            Command::NatsExporter(a) => tokio::task::spawn_blocking(move || a.run()).await?,
            Command::AlertSink(a) => tokio::task::spawn_blocking(move || a.run()).await?,
            Command::Dashboard(a) => tokio::task::spawn_blocking(move || a.run()).await?,
            Command::Failover(a) => failover(a).await,
            Command::Witness(a) => tokio::task::spawn_blocking(move || a.run()).await?,
            Command::RegionWatch(a) => a.run().await,
            Command::Wan(a) => wan(a).await,
            Command::Rejoin(a) => rejoin(a).await,
            Command::Reshard(a) => shards::reshard(a).await,
            Command::Shards(mut a) => {
                if let Some(dir) = &a.run_dir {
                    a.common.config = Some(dir.join(crescendo_topology::secret::NODE_SECRETS));
                }
                let settings = a.common.settings()?;
                shards::print(&settings, a.json).await
            }
            Command::Up(a) => up(a).await,
            Command::Down(a) => {
                let stopped = tokio::task::spawn_blocking(move || crescendo_topology::down(&a.run_dir)).await??;
                println!("stopped {}", stopped.join(", "));
                Ok(())
            }
            Command::Scale(a) => scale(a).await,
            Command::Restart(a) => {
                let names = tokio::task::spawn_blocking(move || {
                    crescendo_topology::restart_web(&a.run_dir, |line| eprintln!("  {line}"))
                })
                .await??;
                println!("web nodes: {}", names.join(", "));
                Ok(())
            }
            Command::Status(a) => {
                let s = tokio::task::spawn_blocking(move || crescendo_topology::status(&a.run.run_dir)).await??;
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                } else {
                    print!("{}", s.table());
                }
                Ok(())
            }
            Command::Migrate(common) => {
                let settings = common.settings()?;
                crescendo_telemetry::init_logs(settings.log.format, &settings.log.filter);
                crescendo_server::build(&settings).await?;
                println!("database in {} is up to date", settings.data_dir.display());
                Ok(())
            }
            Command::Bench(a) => measure::bench(a).await,
            Command::Ceiling(a) => measure::ceiling(a).await,
            Command::Tour(a) => measure::tour(a).await,
            Command::RegionsBench(a) => measure::regions_bench(a).await,
            Command::Kube(a) => a.run(),
            Command::WanRelay(_) => unreachable!("handled before the runtime starts"),
        }
    })
}

async fn scale(a: ScaleArgs) -> anyhow::Result<()> {
    let count = match a.target.split_once('=') {
        Some(("web", n)) => n
            .parse::<usize>()
            .map_err(|_| anyhow::anyhow!("{}: the count must be a number", a.target))?,
        _ => anyhow::bail!("{}: only the web tier scales for now, as web=N", a.target),
    };
    let run_dir = a.run.run_dir.clone();
    let names = tokio::task::spawn_blocking(move || {
        crescendo_topology::scale(&run_dir, count, |line| eprintln!("  {line}"))
    })
    .await??;
    println!("web nodes: {}", names.join(", "));
    Ok(())
}

async fn up(a: UpArgs) -> anyhow::Result<()> {
    use crescendo_topology as topology;
    let file = topology::Topology::load(&a.file)?;
    eprintln!("{} (rung {}): {}", file.name, file.rung, file.description);
    let opts = topology::UpOptions {
        exe: std::env::current_exe()?,
        run_dir: a.run.run_dir.clone(),
        public: a.public,
        progress: |line| eprintln!("  {line}"),
        region: a
            .region_plan
            .as_deref()
            .map(topology::regions::RegionPlan::read)
            .transpose()?,
    };
    let running = tokio::task::spawn_blocking(move || topology::up(&file, &opts)).await??;
    println!("url: {}", running.state.url);
    if let Some(https) = &running.state.https_url {
        let ca = running.run_dir().join(topology::tls::CA_FILE);
        println!("https: {https} (its authority: {})", ca.display());
    }
    if a.detach {
        running.detach();
        eprintln!(
            "running in the background; `crescendo status` to watch, `crescendo down` to stop"
        );
        return Ok(());
    }
    eprintln!("Ctrl-C stops everything");
    let run_dir = a.run.run_dir.clone();
    let watch = async {
        loop {
            let dir = run_dir.clone();
            if let Ok(Ok(s)) = tokio::task::spawn_blocking(move || topology::status(&dir)).await {
                eprint!("\n{}", s.table());
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        _ = crescendo_server::shutdown_signal() => {}
        _ = watch => {}
    }
    eprintln!("stopping…");
    tokio::task::spawn_blocking(move || drop(running)).await?;
    eprintln!("stopped");
    Ok(())
}

async fn rejoin(a: RejoinArgs) -> anyhow::Result<()> {
    let progress = |line: &str| eprintln!("  {line}");
    let region = a.region.clone();
    tokio::task::spawn_blocking(move || {
        crescendo_topology::regions::rejoin(&a.run.run_dir, &a.region, progress)
    })
    .await??;
    eprintln!("region {region} is back");
    Ok(())
}

async fn wan(a: WanArgs) -> anyhow::Result<()> {
    let cut = a.action == "cut";
    tokio::task::spawn_blocking(move || crescendo_topology::regions::wan(&a.run.run_dir, cut))
        .await??;
    eprintln!(
        "the WAN between the regions is {}",
        if cut { "cut" } else { "healed" }
    );
    Ok(())
}

async fn failover(a: FailoverArgs) -> anyhow::Result<()> {
    if let Some(region) = a.region {
        let run_dir = a.run_dir;
        let out = tokio::task::spawn_blocking(move || {
            crescendo_topology::regions::failover(&run_dir, &region)
        })
        .await??;
        print!("{out}");
        return Ok(());
    }
    let settings = a.common.settings()?;
    crescendo_telemetry::init_logs(settings.log.format, &settings.log.filter);
    let p =
        crescendo_server::ops::failover(&settings, a.cluster.as_deref(), a.asynchronous).await?;
    println!(
        "promoted {} (WAL position {}) in {} ms",
        p.primary,
        p.position,
        p.took.as_millis()
    );
    for r in &p.repointed {
        println!("re-pointed {r} at it");
    }
    println!(
        "web nodes follow it within one check; list it first in store.postgres_url when convenient"
    );
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    logs::init(&settings.log)?;
    let _ = crescendo_telemetry::metrics_handle();
    let data_dir = settings.data_dir.clone();
    let running = crescendo_server::serve(settings, crescendo_server::shutdown_signal()).await?;
    tracing::info!(addr = %running.addr, ops_addr = %running.ops_addr, data_dir = %data_dir.display(), "serving");
    // the ops line first: whoever waits for "listening on" finds both
    println!("ops listening on http://{}", running.ops_addr);
    println!("listening on http://{}", running.addr);
    running.done.await??;
    Ok(())
}

/// The worker and web autoscalers; see `Command::Autoscale`. Each tier that scales gets
/// its loop; the first to end (the topology is gone, or an error) ends the process.
async fn autoscale(run_dir: PathBuf) -> anyhow::Result<()> {
    logs::init_from_env()?;
    let state = crescendo_topology::State::read(&run_dir)?;
    let (workers, web) = (
        state.workers.is_some_and(|w| w.max > w.min),
        state.web_scaling.is_some(),
    );
    if !workers && !web {
        anyhow::bail!("neither the worker tier nor the web tier of this topology scales");
    }
    let worker_loop = async {
        if !workers {
            return std::future::pending().await;
        }
        let settings = crescendo_topology::worker_settings(&run_dir)?;
        let jobs = crescendo_server::ops::JobBacklog::open(&settings).await?;
        let backlog = async || {
            let (pending, oldest_ms) = jobs.read().await?;
            Ok(crescendo_topology::Backlog { pending, oldest_ms })
        };
        crescendo_topology::autoscale(&run_dir, backlog, std::future::pending()).await
    };
    let web_loop = async {
        if !web {
            return std::future::pending().await;
        }
        crescendo_topology::autoscale_web(&run_dir, std::future::pending()).await
    };
    tokio::select! {
        r = worker_loop => r,
        r = web_loop => r,
        () = crescendo_server::shutdown_signal() => Ok(()),
    }
}
