//! Whole topologies on one machine: what `crescendo up`, `down` and `status` run.
//!
//! A topology file (`topologies/*.toml`) names the tiers; [`up`] starts them in order
//! (PostgreSQL primary, its replicas, the web nodes, the load balancer), each on a private
//! loopback address and only the load balancer (or a lone web node) on the public one, and
//! records every process in `RUN_DIR/state.json`. Each process keeps its configuration and
//! log in the run directory. [`down`] stops what the state file names, by PID, checking
//! first that the PID still runs the program it started; [`status`] reports each process.

use crate::haproxy::{Backend, Haproxy, LbConfig};
use crate::nats::Nats;
use crate::pg::Postgres;
use crate::redis::Redis;
use crate::s3::S3;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A topology file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// A short name.
    pub name: String,
    /// Its rung on the ladder.
    pub rung: u8,
    /// What it shows, for `up`'s banner.
    #[serde(default)]
    pub description: String,
    /// The public address. [default: 127.0.0.1:8000]
    #[serde(default = "default_public")]
    pub public: SocketAddr,
    /// The web tier.
    pub web: WebTier,
    /// The database tier.
    pub postgres: PgTier,
    /// HAProxy in front of the web nodes; without it, the one web node is public.
    pub load_balancer: Option<LbTier>,
    /// Redis for state every web node shares (sessions, rate limits, idempotency records,
    /// read fences): the stateless rung.
    pub redis: Option<RedisTier>,
    /// Several Redis servers holding the read-through cache on a hash ring: the cache rung.
    pub cache: Option<CacheTier>,
    /// NATS JetStream for jobs, and worker processes taking them: the message-queue rung.
    pub queue: Option<QueueTier>,
    /// Where uploads and their variants are kept; without it, one directory on this machine
    /// that every process shares.
    pub blobs: Option<BlobsTier>,
}

/// The blob store.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobsTier {
    /// `s3`: an S3-compatible object server (`s3s-fs`) that every web node and worker
    /// reaches over HTTP, as they would reach S3 itself.
    pub backend: BlobsBackend,
}

/// Blob stores a topology can run.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BlobsBackend {
    /// An S3-compatible object server.
    S3,
}

/// The message queue and its workers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueTier {
    /// Worker processes (`crescendo worker`) at start, and the fewest the autoscaler keeps.
    pub workers: usize,
    /// The most worker processes the autoscaler starts; without it, the count stays fixed.
    #[serde(default)]
    pub max_workers: Option<usize>,
    /// Jobs waiting per worker process the autoscaler aims at.
    #[serde(default = "default_jobs_per_worker")]
    pub jobs_per_worker: u64,
    /// How long the backlog must stay small before a worker is removed, seconds.
    #[serde(default = "default_scale_down_after")]
    pub scale_down_after_secs: u64,
    /// How long the oldest job may wait before a worker is added whatever the depth, seconds.
    #[serde(default = "default_max_wait")]
    pub max_wait_secs: u64,
    /// Jobs each worker process runs at once.
    #[serde(default = "default_worker_concurrency")]
    pub concurrency: usize,
}

fn default_jobs_per_worker() -> u64 {
    4
}

fn default_scale_down_after() -> u64 {
    10
}

fn default_max_wait() -> u64 {
    30
}

/// How the autoscaler sizes the worker tier (from the topology's `[queue]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerScaling {
    /// Fewest worker processes.
    pub min: usize,
    /// Most worker processes.
    pub max: usize,
    /// Jobs waiting per worker the tier aims at.
    pub jobs_per_worker: u64,
    /// How long the backlog must stay small before a worker is removed, seconds.
    pub scale_down_after_secs: u64,
    /// How long the oldest job may wait before a worker is added whatever the depth, seconds.
    #[serde(default = "default_max_wait")]
    pub max_wait_secs: u64,
}

/// The autoscaler's decision for one look at the queue (`pending` jobs, the oldest
/// `oldest_ms` old): how many workers to run now, and since when the backlog has wanted fewer
/// than run (`None`: it does not). Up at once, to the count the backlog's depth needs, and by
/// one more while the oldest job has waited longer than `max_wait_secs`; down one worker at a
/// time, and only after the backlog has wanted fewer for `scale_down_after_secs` (hysteresis:
/// a short lull removes nobody).
pub fn desired_workers(
    s: &WorkerScaling,
    current: usize,
    pending: u64,
    oldest_ms: u64,
    low_since: Option<Instant>,
    now: Instant,
) -> (usize, Option<Instant>) {
    let per = s.jobs_per_worker.max(1);
    let mut want = pending.div_ceil(per) as usize;
    if pending > 0 && oldest_ms > s.max_wait_secs.saturating_mul(1000) {
        want = want.max(current + 1);
    }
    let want = want.clamp(s.min, s.max.max(s.min));
    if want > current {
        return (want, None);
    }
    if want == current {
        return (current, None);
    }
    match low_since {
        Some(since)
            if now.duration_since(since) >= Duration::from_secs(s.scale_down_after_secs) =>
        {
            (current - 1, Some(now))
        }
        Some(since) => (current, Some(since)),
        None => (current, Some(now)),
    }
}

fn default_worker_concurrency() -> usize {
    2
}

/// The cache servers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheTier {
    /// How many Redis servers share the keys.
    pub servers: usize,
    /// Most memory each uses, MiB (then it evicts least recently used keys).
    #[serde(default = "default_redis_mb")]
    pub maxmemory_mb: u32,
}

/// Redis.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTier {
    /// Most memory it uses, MiB (then it evicts least recently used keys).
    #[serde(default = "default_redis_mb")]
    pub maxmemory_mb: u32,
}

fn default_redis_mb() -> u32 {
    64
}

fn default_public() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}

/// Web nodes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebTier {
    /// How many.
    pub count: usize,
}

/// PostgreSQL.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgTier {
    /// Streaming replicas of the primary.
    #[serde(default)]
    pub replicas: usize,
    /// The primary waits for one replica on each commit (`ANY 1 (…)`).
    #[serde(default)]
    pub synchronous: bool,
}

/// HAProxy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbTier {
    /// Pin each browser to one web node with a cookie (the stateful rung).
    #[serde(default)]
    pub sticky: bool,
}

impl Topology {
    /// Reads and checks a topology file.
    ///
    /// # Errors
    /// Unreadable, not TOML, an unknown key, or tiers that do not fit together.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a topology's text; `origin` names it in errors.
    ///
    /// # Errors
    /// As [`Topology::load`].
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let t: Topology =
            toml::from_str(text).with_context(|| format!("{origin} is not a valid topology"))?;
        if t.web.count == 0 {
            bail!("{origin}: web.count must be at least 1");
        }
        if t.load_balancer.is_none() && t.web.count > 1 {
            bail!("{origin}: {} web nodes need a [load_balancer]", t.web.count);
        }
        if t.postgres.synchronous && t.postgres.replicas == 0 {
            bail!("{origin}: postgres.synchronous needs replicas");
        }
        if t.queue
            .as_ref()
            .is_some_and(|q| q.workers == 0 || q.workers > 200 || q.concurrency == 0)
        {
            bail!(
                "{origin}: queue.workers must be between 1 and 200, queue.concurrency at least 1"
            );
        }
        if t.cache
            .as_ref()
            .is_some_and(|c| c.servers == 0 || c.servers > 200)
        {
            bail!("{origin}: cache.servers must be between 1 and 200");
        }
        Ok(t)
    }
}

/// One process of a running topology, as `state.json` and `status --json` show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Process {
    /// `lb`, `web`, `pg-primary`, `pg-replica`.
    pub role: String,
    /// `web-1`, `pg-r1`…
    pub name: String,
    /// Its PID.
    pub pid: u32,
    /// Where it listens.
    pub addr: String,
    /// Its log file.
    pub log: PathBuf,
    /// A directory of its own that `down` removes once it has stopped (database servers keep
    /// their data under the system temp dir, where the `postgres` user can reach it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

/// What `state.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// The topology's name.
    pub name: String,
    /// Its rung.
    pub rung: u8,
    /// The public URL.
    pub url: String,
    /// Every process, in start order.
    pub processes: Vec<Process>,
    /// What a web node is started with (for `scale` and `restart`).
    #[serde(default)]
    pub web_env: Vec<(String, String)>,
    /// The load balancer's public address and stickiness, when there is one.
    #[serde(default)]
    pub lb: Option<(SocketAddr, bool)>,
    /// The `crescendo` binary web nodes run.
    #[serde(default)]
    pub exe: PathBuf,
    /// What a worker process is started with.
    #[serde(default)]
    pub worker_env: Vec<(String, String)>,
    /// The worker tier's scaling, when the topology has a queue.
    #[serde(default)]
    pub workers: Option<WorkerScaling>,
}

impl State {
    /// Reads `run_dir/state.json`.
    ///
    /// # Errors
    /// There is no running topology in `run_dir`.
    pub fn read(run_dir: &Path) -> anyhow::Result<Self> {
        let path = run_dir.join("state.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no topology is running from {} (no state.json)",
                run_dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }

    fn write(&self, run_dir: &Path) -> anyhow::Result<()> {
        let tmp = run_dir.join("state.json.new");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, run_dir.join("state.json"))?;
        Ok(())
    }
}

/// A web node this process started.
struct WebNode {
    child: Child,
}

/// A running topology started by this process; stopped when dropped unless detached.
pub struct Running {
    /// What was started.
    pub state: State,
    run_dir: PathBuf,
    lb: Option<Haproxy>,
    webs: Vec<WebNode>,
    workers: Vec<WebNode>,
    nats: Option<Nats>,
    s3: Option<S3>,
    redis: Vec<Redis>,
    replicas: Vec<Postgres>,
    primary: Option<Postgres>,
}

/// How `up` starts things.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The `crescendo` binary (web nodes run `EXE web`).
    pub exe: PathBuf,
    /// Where state, configuration and logs go.
    pub run_dir: PathBuf,
    /// Overrides the topology's public address.
    pub public: Option<SocketAddr>,
    /// Called with a line of progress for each step.
    pub progress: fn(&str),
}

/// A free port on `ip`.
fn free_port(ip: [u8; 4]) -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(SocketAddr::from((ip, 0)))?
        .local_addr()?
        .port())
}

/// The shared token key of a run directory, made on first use.
fn shared_secret(run_dir: &Path) -> anyhow::Result<String> {
    let path = run_dir.join("jwt.secret");
    if let Ok(s) = std::fs::read_to_string(&path)
        && s.trim().len() >= 32
    {
        return Ok(s.trim().to_string());
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &key)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(key)
}

/// Starts `exe web` as web node `n` listening on `addr` (port 0: any), and waits for its
/// "listening on" line.
fn start_web(
    o: &UpOptions,
    n: usize,
    addr: SocketAddr,
    env: &[(String, String)],
) -> anyhow::Result<(Child, SocketAddr, PathBuf)> {
    start_node(o, "web", n, addr, env)
}

/// Starts `crescendo ROLE` (`web` or `worker`) number `n` on `addr`, and waits until it listens.
fn start_node(
    o: &UpOptions,
    role: &str,
    n: usize,
    addr: SocketAddr,
    env: &[(String, String)],
) -> anyhow::Result<(Child, SocketAddr, PathBuf)> {
    use std::os::unix::process::CommandExt;
    let name = format!("{role}-{n}");
    let data = o.run_dir.join(&name);
    std::fs::create_dir_all(&data)?;
    let log_path = o.run_dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(&o.exe)
        .arg(role)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(&data)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", o.exe.display()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited ({status}):\n{}", tail(&log_path));
        }
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(a) = text
            .lines()
            .find_map(|l| l.strip_prefix("listening on http://"))
            .and_then(|a| a.trim().parse().ok())
        {
            return Ok((child, a, log_path));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} did not listen within 60 s:\n{}", tail(&log_path));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `crescendo autoscale` for the run directory.
fn start_autoscaler(o: &UpOptions) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(o.run_dir.join("autoscaler.log"))?;
    Command::new(&o.exe)
        .arg("autoscale")
        .arg("--run-dir")
        .arg(&o.run_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", o.exe.display()))
}

/// Starts one more worker process for the topology in `run_dir`; returns its name and the
/// process (the caller reaps it).
///
/// # Errors
/// The topology has no queue tier, or the worker does not come up.
pub fn add_worker(run_dir: &Path, state: &mut State) -> anyhow::Result<(String, Child)> {
    if state.workers.is_none() {
        bail!("this topology has no queue tier");
    }
    let n = next_number(state, "worker-");
    let ip = [127, 0, 5, n.min(250) as u8];
    let addr = SocketAddr::from((ip, free_port(ip)?));
    let o = UpOptions {
        exe: state.exe.clone(),
        run_dir: run_dir.to_path_buf(),
        public: None,
        progress: |_| {},
    };
    let (child, addr, log) = start_node(&o, "worker", n, addr, &state.worker_env)?;
    let name = format!("worker-{n}");
    state.processes.push(Process {
        role: "worker".into(),
        name: name.clone(),
        pid: child.id(),
        addr: addr.to_string(),
        log,
        dir: None,
    });
    state.write(run_dir)?;
    Ok((name, child))
}

/// Removes worker `name` from the topology and sends it SIGTERM: it stops claiming and
/// finishes the jobs in hand (the caller reaps it, or it outlives its leases and its jobs go
/// to other workers).
///
/// # Errors
/// No such worker, or the state cannot be written.
pub fn remove_worker(run_dir: &Path, state: &mut State, name: &str) -> anyhow::Result<()> {
    let Some(i) = state
        .processes
        .iter()
        .position(|p| p.role == "worker" && p.name == name)
    else {
        bail!("no worker {name}")
    };
    let p = state.processes.remove(i);
    state.write(run_dir)?;
    if alive(p.pid) && ours(&p) {
        signal(p.pid, nix::sys::signal::Signal::SIGTERM);
    }
    Ok(())
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Starts every tier of `t`.
///
/// # Errors
/// A topology is already running from the run directory, a server binary is missing (the
/// message names its package), or a process does not come up.
pub fn up(t: &Topology, o: &UpOptions) -> anyhow::Result<Running> {
    if let Ok(s) = State::read(&o.run_dir)
        && s.processes.iter().any(|p| alive(p.pid))
    {
        bail!(
            "{} is already running from {} ({}); run `crescendo down` first",
            s.name,
            o.run_dir.display(),
            s.url
        );
    }
    std::fs::create_dir_all(&o.run_dir)
        .with_context(|| format!("creating {}", o.run_dir.display()))?;
    let run_dir = o.run_dir.canonicalize()?;
    let o = UpOptions {
        run_dir: run_dir.clone(),
        ..o.clone()
    };
    let public = o.public.unwrap_or(t.public);
    let mut state = State {
        name: t.name.clone(),
        rung: t.rung,
        url: format!("http://{public}"),
        processes: Vec::new(),
        web_env: Vec::new(),
        lb: t.load_balancer.as_ref().map(|lb| (public, lb.sticky)),
        exe: o.exe.clone(),
        worker_env: Vec::new(),
        workers: None,
    };
    let mut running = Running {
        state: state.clone(),
        run_dir: run_dir.clone(),
        lb: None,
        webs: Vec::new(),
        workers: Vec::new(),
        nats: None,
        s3: None,
        redis: Vec::new(),
        replicas: Vec::new(),
        primary: None,
    };

    // the database: primary, then replicas streaming from it
    let names: Vec<String> = (1..=t.postgres.replicas).map(|i| format!("r{i}")).collect();
    let sync = format!("ANY 1 ({})", names.join(", "));
    let mut settings: Vec<(&str, &str)> = vec![("fsync", "on"), ("full_page_writes", "on")];
    if t.postgres.synchronous {
        settings.push(("synchronous_standby_names", sync.as_str()));
    }
    (o.progress)("starting PostgreSQL primary");
    let pg_parent = std::env::temp_dir();
    let primary = Postgres::start_in(&pg_parent, &settings)?;
    state.processes.push(Process {
        role: "pg-primary".into(),
        name: "pg-primary".into(),
        pid: primary.pid(),
        addr: format!("127.0.0.1:{}", primary.port()),
        log: primary.dir().join("postgres.log"),
        dir: Some(primary.dir().to_path_buf()),
    });
    let mut replica_urls = Vec::new();
    for n in &names {
        (o.progress)(&format!("starting PostgreSQL replica {n}"));
        let r = Postgres::replica_in(&pg_parent, &primary, n, &[("fsync", "on")])?;
        state.processes.push(Process {
            role: "pg-replica".into(),
            name: format!("pg-{n}"),
            pid: r.pid(),
            addr: format!("127.0.0.1:{}", r.port()),
            log: r.dir().join("postgres.log"),
            dir: Some(r.dir().to_path_buf()),
        });
        replica_urls.push(format!("\"{}\"", r.url("postgres")));
        running.replicas.push(r);
    }
    let mut env = vec![
        (
            "CRESCENDO_STORE__BACKEND".to_string(),
            "postgres".to_string(),
        ),
        (
            "CRESCENDO_STORE__POSTGRES_URL".to_string(),
            primary.url("postgres"),
        ),
        (
            "CRESCENDO_AUTH__JWT_SECRET".to_string(),
            shared_secret(&run_dir)?,
        ),
        // fail /ready for a second before closing, so HAProxy's checks see the drain
        (
            "CRESCENDO_HTTP__DRAIN_DELAY_MS".to_string(),
            if t.load_balancer.is_some() {
                "1000"
            } else {
                "0"
            }
            .to_string(),
        ),
    ];
    if !replica_urls.is_empty() {
        env.push((
            "CRESCENDO_STORE__POSTGRES_REPLICA_URLS".into(),
            format!("[{}]", replica_urls.join(", ")),
        ));
    }
    running.primary = Some(primary);

    if let Some(c) = &t.cache {
        let mut urls = Vec::new();
        for i in 1..=c.servers {
            (o.progress)(&format!("starting Redis cache-{i}"));
            let r = Redis::start(
                &run_dir.join(format!("cache-{i}")),
                [127, 0, 3, i as u8],
                c.maxmemory_mb,
            )?;
            state.processes.push(Process {
                role: "redis".into(),
                name: format!("cache-{i}"),
                pid: r.pid(),
                addr: r.addr().to_string(),
                log: r.log(),
                dir: None,
            });
            urls.push(format!("\"{}\"", r.url()));
            running.redis.push(r);
        }
        env.push(("CRESCENDO_CACHE__BACKEND".into(), "redis".into()));
        env.push((
            "CRESCENDO_CACHE__REDIS_URLS".into(),
            format!("[{}]", urls.join(", ")),
        ));
    } else if t.load_balancer.is_some() {
        // one node's cache cannot see another node's writes: without a shared cache tier,
        // they keep none (DESIGN.md's contract: no cache serves data older than the last
        // acknowledged write)
        env.push(("CRESCENDO_CACHE__BACKEND".into(), "none".into()));
    }

    if let Some(r) = &t.redis {
        (o.progress)("starting Redis (shared sessions)");
        let redis = Redis::start(&run_dir.join("redis"), [127, 0, 2, 1], r.maxmemory_mb)?;
        state.processes.push(Process {
            role: "redis".into(),
            name: "redis".into(),
            pid: redis.pid(),
            addr: redis.addr().to_string(),
            log: redis.log(),
            dir: None,
        });
        env.push(("CRESCENDO_SESSIONS__BACKEND".into(), "redis".into()));
        env.push(("CRESCENDO_SESSIONS__REDIS_URL".into(), redis.url()));
        running.redis.push(redis);
    }

    if t.blobs
        .as_ref()
        .is_some_and(|b| b.backend == BlobsBackend::S3)
    {
        (o.progress)("starting the S3 object server (uploads and their variants)");
        let s3 = S3::start(&run_dir.join("s3"), SocketAddr::from(([127, 0, 6, 1], 0)))?;
        state.processes.push(Process {
            role: "s3".into(),
            name: "s3".into(),
            pid: s3.pid(),
            addr: s3.addr().to_string(),
            log: s3.log(),
            dir: None,
        });
        env.push(("CRESCENDO_BLOBS__BACKEND".into(), "s3".into()));
        env.push(("CRESCENDO_BLOBS__S3_ENDPOINT".into(), s3.endpoint()));
        env.push((
            "CRESCENDO_BLOBS__S3_BUCKET".into(),
            crate::s3::BUCKET.into(),
        ));
        env.push((
            "CRESCENDO_BLOBS__S3_REGION".into(),
            crate::s3::REGION.into(),
        ));
        env.push((
            "CRESCENDO_BLOBS__S3_ACCESS_KEY".into(),
            s3.access_key().into(),
        ));
        env.push((
            "CRESCENDO_BLOBS__S3_SECRET_KEY".into(),
            s3.secret_key().into(),
        ));
        running.s3 = Some(s3);
    } else {
        // every process reads and writes the same files: one machine's shared blob directory
        env.push((
            "CRESCENDO_BLOBS__DIR".into(),
            run_dir.join("blobs").to_string_lossy().into_owned(),
        ));
    }

    if let Some(q) = &t.queue {
        (o.progress)("starting NATS with JetStream (the job queue)");
        let nats = Nats::start(&run_dir.join("nats"), [127, 0, 4, 1])?;
        state.processes.push(Process {
            role: "nats".into(),
            name: "nats".into(),
            pid: nats.pid(),
            addr: nats.addr().to_string(),
            log: nats.log(),
            dir: None,
        });
        env.push(("CRESCENDO_QUEUE__BACKEND".into(), "nats".into()));
        env.push(("CRESCENDO_QUEUE__NATS_URL".into(), nats.url()));
        running.nats = Some(nats);
        let mut worker_env = env.clone();
        worker_env.push(("CRESCENDO_QUEUE__WORKERS".into(), q.concurrency.to_string()));
        state.worker_env = worker_env.clone();
        state.workers = Some(WorkerScaling {
            min: q.workers,
            max: q.max_workers.unwrap_or(q.workers).max(q.workers),
            jobs_per_worker: q.jobs_per_worker,
            scale_down_after_secs: q.scale_down_after_secs,
            max_wait_secs: q.max_wait_secs,
        });
        for n in 1..=q.workers {
            let ip = [127, 0, 5, n as u8];
            let addr = SocketAddr::from((ip, free_port(ip)?));
            (o.progress)(&format!("starting worker-{n} on {addr}"));
            let (child, addr, log) = start_node(&o, "worker", n, addr, &worker_env)?;
            state.processes.push(Process {
                role: "worker".into(),
                name: format!("worker-{n}"),
                pid: child.id(),
                addr: addr.to_string(),
                log,
                dir: None,
            });
            running.workers.push(WebNode { child });
        }
        // the web nodes take uploads and relay their jobs; the workers do the work
        env.push(("CRESCENDO_QUEUE__WORKERS".into(), "0".into()));
    }

    // web nodes: each on its own loopback address, or the public one when it stands alone
    let mut backends = Vec::new();
    for n in 1..=t.web.count {
        let addr = if t.load_balancer.is_some() {
            let ip = [127, 0, 1, n as u8];
            SocketAddr::from((ip, free_port(ip)?))
        } else {
            public
        };
        (o.progress)(&format!("starting web-{n} on {addr}"));
        let (child, addr, log) = start_web(&o, n, addr, &env)?;
        state.processes.push(Process {
            role: "web".into(),
            name: format!("web-{n}"),
            pid: child.id(),
            addr: addr.to_string(),
            log,
            dir: None,
        });
        backends.push(Backend {
            name: format!("web-{n}"),
            addr,
        });
        running.webs.push(WebNode { child });
    }

    if let Some(lb) = &t.load_balancer {
        (o.progress)(&format!("starting HAProxy on {public}"));
        let h = Haproxy::start(
            &run_dir.join("haproxy"),
            &LbConfig {
                public,
                backends,
                sticky: lb.sticky,
            },
        )?;
        state.processes.push(Process {
            role: "lb".into(),
            name: "haproxy".into(),
            pid: h.pid(),
            addr: public.to_string(),
            log: run_dir.join("haproxy/haproxy.log"),
            dir: None,
        });
        running.lb = Some(h);
    }
    state.web_env = env;
    state.write(&run_dir)?;
    if let Some(w) = state.workers.as_ref().filter(|w| w.max > w.min) {
        (o.progress)(&format!(
            "starting the worker autoscaler ({} to {} workers)",
            w.min, w.max
        ));
        let child = start_autoscaler(&o)?;
        state.processes.push(Process {
            role: "supervisor".into(),
            name: "autoscaler".into(),
            pid: child.id(),
            addr: String::new(),
            log: run_dir.join("autoscaler.log"),
            dir: None,
        });
        running.workers.push(WebNode { child });
        state.write(&run_dir)?;
    }
    running.state = state;
    Ok(running)
}

/// The web nodes of `state`, as HAProxy backends.
fn backends(state: &State) -> Vec<Backend> {
    state
        .processes
        .iter()
        .filter(|p| p.role == "web")
        .filter_map(|p| {
            Some(Backend {
                name: p.name.clone(),
                addr: p.addr.parse().ok()?,
            })
        })
        .collect()
}

/// Rewrites HAProxy's configuration for `state`'s web nodes and reloads it.
fn reload_lb(run_dir: &Path, state: &State) -> anyhow::Result<()> {
    let (public, sticky) = state
        .lb
        .context("this topology has no load balancer to scale behind")?;
    let lb = state
        .processes
        .iter()
        .find(|p| p.role == "lb")
        .context("no load balancer process")?;
    Haproxy::reload_running(
        &run_dir.join("haproxy"),
        lb.pid,
        &LbConfig {
            public,
            backends: backends(state),
            sticky,
        },
    )
}

/// Waits until HAProxy reports `name` as `UP`.
fn wait_up(run_dir: &Path, name: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !Haproxy::backend_states(&run_dir.join("haproxy"))
        .iter()
        .any(|(n, s)| n == name && s == "UP")
    {
        if Instant::now() > deadline {
            bail!("{name} is not UP in the load balancer after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts one more web node behind the balancer and waits until it takes traffic.
/// One more than the highest N of the processes named `{prefix}N`.
fn next_number(state: &State, prefix: &str) -> usize {
    state
        .processes
        .iter()
        .filter_map(|p| {
            p.name
                .strip_prefix(prefix)
                .and_then(|n| n.parse::<usize>().ok())
        })
        .max()
        .unwrap_or(0)
        + 1
}

fn add_web(run_dir: &Path, state: &mut State, progress: fn(&str)) -> anyhow::Result<String> {
    let n = next_number(state, "web-");
    let ip = [127, 0, 1, n.min(250) as u8];
    let addr = SocketAddr::from((ip, free_port(ip)?));
    progress(&format!("starting web-{n} on {addr}"));
    let o = UpOptions {
        exe: state.exe.clone(),
        run_dir: run_dir.to_path_buf(),
        public: None,
        progress,
    };
    let (child, addr, log) = start_web(&o, n, addr, &state.web_env)?;
    let name = format!("web-{n}");
    state.processes.push(Process {
        role: "web".into(),
        name: name.clone(),
        pid: child.id(),
        addr: addr.to_string(),
        log,
        dir: None,
    });
    // it runs on after this process: `down` stops it by PID
    std::mem::forget(child);
    match state.lb {
        Some((public, false)) => {
            Haproxy::write_config(
                &run_dir.join("haproxy"),
                &LbConfig {
                    public,
                    backends: backends(state),
                    sticky: false,
                },
            )?;
            Haproxy::add_live(
                &run_dir.join("haproxy"),
                &Backend {
                    name: name.clone(),
                    addr,
                },
            )?;
        }
        _ => reload_lb(run_dir, state)?,
    }
    state.write(run_dir)?;
    wait_up(run_dir, &name, Duration::from_secs(15))?;
    Ok(name)
}

/// Takes web node `name` out of the balancer, then stops it (it drains in-flight requests).
fn remove_web(
    run_dir: &Path,
    state: &mut State,
    name: &str,
    progress: fn(&str),
) -> anyhow::Result<()> {
    let Some(i) = state
        .processes
        .iter()
        .position(|p| p.role == "web" && p.name == name)
    else {
        bail!("no web node {name}")
    };
    let p = state.processes.remove(i);
    progress(&format!("stopping {name}"));
    let live = matches!(state.lb, Some((_, false)));
    if live {
        // no new requests for it; those in flight finish
        let dir = run_dir.join("haproxy");
        Haproxy::drain_live(&dir, name)?;
        let (public, _) = state.lb.expect("a balancer");
        Haproxy::write_config(
            &dir,
            &LbConfig {
                public,
                backends: backends(state),
                sticky: false,
            },
        )?;
    } else {
        reload_lb(run_dir, state)?;
    }
    state.write(run_dir)?;
    // HAProxy finishes what it sent; the node then drains and exits
    std::thread::sleep(Duration::from_millis(500));
    if alive(p.pid) && ours(&p) {
        signal(p.pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(p.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if live {
        Haproxy::remove_live(&run_dir.join("haproxy"), name)?;
    }
    Ok(())
}

/// Drops web nodes that are no longer running from the state and the balancer.
fn prune(run_dir: &Path, state: &mut State) -> anyhow::Result<()> {
    let dead: Vec<String> = state
        .processes
        .iter()
        .filter(|p| p.role == "web" && !alive(p.pid))
        .map(|p| p.name.clone())
        .collect();
    if dead.is_empty() {
        return Ok(());
    }
    state.processes.retain(|p| p.role != "web" || alive(p.pid));
    match state.lb {
        Some((public, false)) => {
            let dir = run_dir.join("haproxy");
            for name in &dead {
                Haproxy::drain_live(&dir, name)?;
                Haproxy::remove_live(&dir, name)?;
            }
            Haproxy::write_config(
                &dir,
                &LbConfig {
                    public,
                    backends: backends(state),
                    sticky: false,
                },
            )?;
        }
        _ => reload_lb(run_dir, state)?,
    }
    state.write(run_dir)?;
    Ok(())
}

/// Sets the number of web nodes behind the balancer, adding or removing nodes without
/// dropping requests. Returns the web nodes' names afterwards.
///
/// # Errors
/// No topology runs from `run_dir`, it has no load balancer, or a node does not come up.
pub fn scale(run_dir: &Path, web: usize, progress: fn(&str)) -> anyhow::Result<Vec<String>> {
    if web == 0 {
        bail!("at least one web node must run");
    }
    let mut state = State::read(run_dir)?;
    prune(run_dir, &mut state)?;
    loop {
        let names: Vec<String> = state
            .processes
            .iter()
            .filter(|p| p.role == "web")
            .map(|p| p.name.clone())
            .collect();
        match names.len().cmp(&web) {
            std::cmp::Ordering::Less => {
                add_web(run_dir, &mut state, progress)?;
            }
            std::cmp::Ordering::Greater => remove_web(
                run_dir,
                &mut state,
                names.last().expect("more than one"),
                progress,
            )?,
            std::cmp::Ordering::Equal => return Ok(names),
        }
    }
}

/// Replaces every web node, one at a time: a new node starts and takes traffic before an
/// old one leaves the balancer and drains. Returns the new nodes' names.
///
/// # Errors
/// As [`scale`].
pub fn restart_web(run_dir: &Path, progress: fn(&str)) -> anyhow::Result<Vec<String>> {
    let mut state = State::read(run_dir)?;
    prune(run_dir, &mut state)?;
    let old: Vec<String> = state
        .processes
        .iter()
        .filter(|p| p.role == "web")
        .map(|p| p.name.clone())
        .collect();
    let mut new = Vec::new();
    for name in old {
        new.push(add_web(run_dir, &mut state, progress)?);
        remove_web(run_dir, &mut state, &name, progress)?;
    }
    Ok(new)
}

impl Running {
    /// Leaves everything running after this process exits; `crescendo down` stops it.
    pub fn detach(mut self) {
        if let Some(lb) = self.lb.take() {
            lb.detach();
        }
        for w in self.webs.drain(..).chain(self.workers.drain(..)) {
            std::mem::forget(w.child);
        }
        if let Some(n) = self.nats.take() {
            n.detach();
        }
        if let Some(s) = self.s3.take() {
            s.detach();
        }
        for r in self.redis.drain(..) {
            r.detach();
        }
        for r in self.replicas.drain(..) {
            r.detach();
        }
        if let Some(p) = self.primary.take() {
            p.detach();
        }
        // the state file stays: `down` and `status` read it
        std::mem::forget(self);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // web nodes drain first (SIGTERM), then the balancer and the database stop
        for w in &self.webs {
            signal(w.child.id(), nix::sys::signal::Signal::SIGTERM);
        }
        for w in &mut self.webs {
            crate::stop(&mut w.child, None, Duration::from_secs(15));
        }
        for w in &self.workers {
            signal(w.child.id(), nix::sys::signal::Signal::SIGTERM);
        }
        for w in &mut self.workers {
            crate::stop(&mut w.child, None, Duration::from_secs(70));
        }
        self.nats.take();
        self.s3.take();
        self.lb.take();
        self.redis.clear();
        self.replicas.clear();
        self.primary.take();
        let _ = std::fs::remove_file(self.run_dir.join("state.json"));
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Whether `pid` still runs what `p` started (guards against a reused PID).
fn ours(p: &Process) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", p.pid)) else {
        return false;
    };
    let cmd = String::from_utf8_lossy(&cmdline);
    match p.role.as_str() {
        "web" => cmd.contains("web") && cmd.contains(&p.name),
        "worker" => cmd.contains("worker") && cmd.contains(&p.name),
        "supervisor" => cmd.contains("autoscale"),
        "nats" => cmd.contains("nats-server"),
        "s3" => cmd.contains("s3s-fs"),
        "lb" => cmd.contains("haproxy"),
        "redis" => cmd.contains("redis-server"),
        _ => cmd.contains("postgres"),
    }
}

/// Stops every process of the topology in `run_dir`: web nodes drain (SIGTERM), then the
/// balancer and the database servers stop. Returns the names stopped.
///
/// # Errors
/// No topology runs from `run_dir`.
pub fn down(run_dir: &Path) -> anyhow::Result<Vec<String>> {
    let state = State::read(run_dir)?;
    let mut stopped = Vec::new();
    let order = [
        "supervisor",
        "web",
        "lb",
        "worker",
        "nats",
        "s3",
        "redis",
        "pg-replica",
        "pg-primary",
    ];
    for role in order {
        let group: Vec<&Process> = state
            .processes
            .iter()
            .filter(|p| p.role == role && alive(p.pid) && ours(p))
            .collect();
        for p in &group {
            let sig = if role.starts_with("pg") {
                nix::sys::signal::Signal::SIGINT
            } else {
                nix::sys::signal::Signal::SIGTERM
            };
            signal(p.pid, sig);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for p in group {
            while alive(p.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(p.pid) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(p.pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            stopped.push(p.name.clone());
        }
    }
    for p in &state.processes {
        if let Some(dir) = &p.dir
            && !alive(p.pid)
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let _ = std::fs::remove_file(run_dir.join("state.json"));
    Ok(stopped)
}

/// A process as `status` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessStatus {
    /// As recorded.
    #[serde(flatten)]
    pub process: Process,
    /// The process is alive and answers (web: `/ready` is 200; others: the port accepts).
    pub healthy: bool,
    /// Web nodes: requests per second over the sampling second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    /// Web nodes: 99th percentile latency since start, ms (from the histogram buckets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Web nodes: 5xx answers since start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<f64>,
    /// The load balancer's view of each web node (`UP`, `DOWN`…).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<(String, String)>,
}

/// The whole status report.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The topology's name.
    pub name: String,
    /// Its rung.
    pub rung: u8,
    /// The public URL.
    pub url: String,
    /// Every process.
    pub processes: Vec<ProcessStatus>,
    /// The worker autoscaler's last decision (`autoscale.json`), when one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<serde_json::Value>,
}

/// A plain HTTP/1.0 GET with a short time-out: (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let sock: SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

/// (requests, 5xx, p99 ms) from a node's `/metrics` text, leaving out the operators'
/// routes (health checks and scrapes are not traffic).
fn figures(metrics: &str) -> (f64, f64, Option<f64>) {
    let (mut total, mut errors) = (0.0, 0.0);
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        if [
            "route=\"/ready\"",
            "route=\"/health\"",
            "route=\"/metrics\"",
        ]
        .iter()
        .any(|r| series.contains(r))
        {
            continue;
        }
        if series.starts_with("crescendo_http_requests_total{") {
            total += v;
            if series.contains("status=\"5") {
                errors += v;
            }
        } else if series.starts_with("crescendo_http_request_duration_seconds_bucket{")
            && let Some(le) = series
                .split("le=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
        {
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(b) => b.1 += v,
                None => buckets.push((le, v)),
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let count = buckets.last().map_or(0.0, |b| b.1);
    let p99 = (count > 0.0).then(|| {
        buckets
            .iter()
            .find(|(_, c)| *c >= count * 0.99)
            .map_or(f64::NAN, |(le, _)| le * 1000.0)
    });
    (total, errors, p99)
}

/// Checks every process of the topology in `run_dir`, sampling web nodes' counters over
/// one second.
///
/// # Errors
/// No topology runs from `run_dir`.
pub fn status(run_dir: &Path) -> anyhow::Result<Status> {
    let state = State::read(run_dir)?;
    let first: Vec<Option<f64>> = state
        .processes
        .iter()
        .map(|p| {
            if p.role == "web" {
                http_get(&p.addr, "/metrics").map(|(_, m)| figures(&m).0)
            } else {
                None
            }
        })
        .collect();
    let started = Instant::now();
    if state.processes.iter().any(|p| p.role == "web") {
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut out = Vec::new();
    for (p, before) in state.processes.iter().zip(first) {
        let live = alive(p.pid);
        let mut s = ProcessStatus {
            process: p.clone(),
            healthy: false,
            rps: None,
            p99_ms: None,
            errors: None,
            backends: Vec::new(),
        };
        match p.role.as_str() {
            "worker" => {
                s.healthy = live && http_get(&p.addr, "/ready").is_some_and(|(code, _)| code == 200)
            }
            "supervisor" => s.healthy = live,
            "web" => {
                s.healthy =
                    live && http_get(&p.addr, "/ready").is_some_and(|(code, _)| code == 200);
                if let Some((_, m)) = http_get(&p.addr, "/metrics") {
                    let (total, errors, p99) = figures(&m);
                    s.rps = before.map(|b| (total - b) / started.elapsed().as_secs_f64());
                    s.errors = Some(errors);
                    s.p99_ms = p99;
                }
            }
            _ => {
                s.healthy = live
                    && p.addr.parse::<SocketAddr>().is_ok_and(|a| {
                        std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok()
                    });
                if p.role == "lb" {
                    s.backends = Haproxy::backend_states(&run_dir.join("haproxy"));
                }
            }
        }
        out.push(s);
    }
    let autoscale = std::fs::read(run_dir.join("autoscale.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Ok(Status {
        name: state.name,
        rung: state.rung,
        url: state.url,
        processes: out,
        autoscale,
    })
}

impl Status {
    /// A table for people.
    pub fn table(&self) -> String {
        let mut t = format!("{} (rung {}) at {}\n", self.name, self.rung, self.url);
        t.push_str(&format!(
            "{:<11} {:<11} {:>8} {:<22} {:<16} {:>8} {:>8} {:>7}\n",
            "ROLE", "NAME", "PID", "ADDRESS", "HEALTH", "REQ/S", "P99 MS", "5XX"
        ));
        for p in &self.processes {
            let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |x| format!("{x:.d$}"));
            let mut health = if p.healthy { "up" } else { "DOWN" }.to_string();
            if !p.backends.is_empty() {
                let up = p.backends.iter().filter(|(_, s)| s == "UP").count();
                health = format!("{health} ({up}/{} nodes)", p.backends.len());
            }
            t.push_str(&format!(
                "{:<11} {:<11} {:>8} {:<22} {:<16} {:>8} {:>8} {:>7}\n",
                p.process.role,
                p.process.name,
                p.process.pid,
                p.process.addr,
                health,
                f(p.rps, 1),
                f(p.p99_ms, 1),
                f(p.errors, 0)
            ));
        }
        if let Some(a) = &self.autoscale {
            t.push_str(&format!(
                "autoscaler: {} workers (min {}, max {}), {} jobs waiting or running; {}\n",
                a["workers"],
                a["min"],
                a["max"],
                a["pending"],
                a["note"].as_str().unwrap_or("")
            ));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_scale_up_at_once_and_down_one_at_a_time_after_a_quiet_spell() {
        let s = WorkerScaling {
            min: 1,
            max: 4,
            jobs_per_worker: 4,
            scale_down_after_secs: 10,
            max_wait_secs: 30,
        };
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(desired_workers(&s, 1, 0, 0, None, t0), (1, None));
        assert_eq!(
            desired_workers(&s, 1, 9, 0, None, t0),
            (3, None),
            "9 jobs need 3 workers, now"
        );
        assert_eq!(
            desired_workers(&s, 3, 100, 0, None, t0),
            (4, None),
            "never above max"
        );
        // the backlog drains: nobody leaves before the quiet spell, then one at a time
        let (n, low) = desired_workers(&s, 4, 0, 0, None, at(1));
        assert_eq!((n, low), (4, Some(at(1))));
        assert_eq!(desired_workers(&s, 4, 0, 0, low, at(5)), (4, low));
        let (n, low) = desired_workers(&s, 4, 0, 0, low, at(11));
        assert_eq!((n, low), (3, Some(at(11))));
        assert_eq!(
            desired_workers(&s, 3, 0, 0, low, at(15)).0,
            3,
            "the spell starts again after each step"
        );
        assert_eq!(desired_workers(&s, 3, 0, 0, low, at(21)).0, 2);
        // a burst during the spell resets it
        assert_eq!(
            desired_workers(&s, 3, 12, 0, Some(at(1)), at(30)),
            (3, None)
        );
        assert_eq!(
            desired_workers(&s, 1, 0, 0, Some(at(0)), at(100)),
            (1, None),
            "never below min"
        );
        // few jobs, but old ones: one more worker, and nobody leaves while they wait
        assert_eq!(
            desired_workers(&s, 1, 2, 31_000, None, t0),
            (2, None),
            "the oldest job waited 31 s"
        );
        assert_eq!(
            desired_workers(&s, 2, 2, 31_000, Some(t0), at(60)),
            (3, None)
        );
        assert_eq!(
            desired_workers(&s, 2, 2, 5_000, None, t0).0,
            2,
            "young jobs: the depth decides, and it waits to step down"
        );
    }

    #[test]
    fn the_topology_files_load_and_bad_ones_say_why() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../topologies");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let t =
                    Topology::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                assert!(
                    path.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(&format!("{:02}-", t.rung))
                );
                seen += 1;
            }
        }
        assert!(seen >= 3);
        let bad = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            bad.path(),
            "name = 'x'\nrung = 3\n[web]\ncount = 2\n[postgres]\n",
        )
        .unwrap();
        assert!(format!("{:#}", Topology::load(bad.path()).unwrap_err()).contains("load_balancer"));
        std::fs::write(bad.path(), "name = 'x'\nrung = 3\nwebs = 1\n").unwrap();
        assert!(format!("{:#}", Topology::load(bad.path()).unwrap_err()).contains("webs"));
    }

    #[test]
    fn node_figures_come_from_the_metrics_text() {
        let m = "crescendo_http_requests_total{method=\"GET\",route=\"/api/articles\",status=\"200\"} 98\n\
                 crescendo_http_requests_total{method=\"GET\",route=\"/api/articles\",status=\"503\"} 2\n\
                 crescendo_http_requests_total{method=\"GET\",route=\"/ready\",status=\"200\"} 500\n\
                 crescendo_http_request_duration_seconds_bucket{method=\"GET\",le=\"0.005\"} 90\n\
                 crescendo_http_request_duration_seconds_bucket{method=\"GET\",le=\"0.01\"} 99\n\
                 crescendo_http_request_duration_seconds_bucket{method=\"GET\",le=\"+Inf\"} 100\n";
        let (total, errors, p99) = figures(m);
        assert_eq!((total, errors), (100.0, 2.0));
        assert_eq!(p99, Some(10.0));
    }
}
