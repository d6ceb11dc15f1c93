//! The run state: every process a running topology holds, as `RUN_DIR/state.json` keeps it
//! for `down`, `status`, `scale`, `restart` and the autoscaler, and as `status --json` prints.

use crate::autoscale::WorkerScaling;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a process of a topology is; serialised as the role names `status --json` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Region B's watcher (`crescendo region-watch`, rung 8, with `[regions]
    /// auto_failover`): promotes B's replica once region A's primary is lost from B and from
    /// the witness; stopped first, so that a topology going down never looks like a lost
    /// region to it.
    RegionWatch,
    /// A region of a two-region topology (rung 8), brought down with everything in it; its
    /// processes are listed in the region's own state, with their region.
    Region,
    /// The autoscaler of the worker and web tiers (`crescendo autoscale`).
    Supervisor,
    /// Prometheus, scraping every tier.
    Prometheus,
    /// Alertmanager, routing Prometheus's alerts to the alert sink.
    Alertmanager,
    /// The webhook Alertmanager sends alerts to (`crescendo alert-sink`).
    AlertSink,
    /// The dashboard's charts of the topology (`crescendo dashboard --serve`).
    Dashboard,
    /// An exporter Prometheus scrapes for a server that has no `/metrics` of its own
    /// (PostgreSQL, Redis, Varnish, the host).
    Exporter,
    /// A web node (`crescendo web`).
    Web,
    /// The load balancer (HAProxy).
    Lb,
    /// The geo DNS (gdnsd): answers the site's name with the region nearest the client
    /// that passes its health checks (rung 8).
    Dns,
    /// The witness of the automatic region failover (`crescendo witness`, rung 8): from the
    /// dns namespace, tells region B's watcher whether it reaches region A's primary.
    Witness,
    /// A CDN edge (Varnish) in front of the balancer, or the TLS terminator (hitch) in
    /// front of an edge.
    Edge,
    /// A worker process (`crescendo worker`).
    Worker,
    /// A region's cache invalidator (`crescendo invalidator`, rung 8): it applies other
    /// regions' writes to its region's cache ring.
    Invalidator,
    /// The message queue (NATS with JetStream).
    Nats,
    /// The S3-compatible object server.
    S3,
    /// A Redis server (the cache ring or the shared state).
    Redis,
    /// A PostgreSQL streaming replica.
    PgReplica,
    /// The PostgreSQL primary.
    PgPrimary,
    /// The WAN relay between the regions' network namespaces (`crescendo wan-relay`, rung
    /// 8): it carries every tier's traffic across regions, so it stops last.
    Wan,
}

impl Role {
    /// Every role in the order a topology stops: what takes requests drains first, what
    /// holds data stops last.
    pub const STOP_ORDER: [Role; 21] = [
        Role::RegionWatch,
        Role::Region,
        Role::Supervisor,
        Role::Dashboard,
        Role::Prometheus,
        Role::Alertmanager,
        Role::AlertSink,
        Role::Exporter,
        Role::Dns,
        Role::Witness,
        Role::Edge,
        Role::Web,
        Role::Lb,
        Role::Worker,
        // after the web nodes (no writes left to apply), before the cache and databases
        Role::Invalidator,
        Role::Nats,
        Role::S3,
        Role::Redis,
        Role::PgReplica,
        Role::PgPrimary,
        Role::Wan,
    ];

    /// Whether a command line (`/proc/PID/cmdline`) runs this role's program; `name` is the
    /// process's name, which crescendo's own processes carry in their data directory.
    fn runs(self, cmd: &str, name: &str) -> bool {
        match self {
            Role::Web => cmd.contains("web") && cmd.contains(name),
            Role::Worker => cmd.contains("worker") && cmd.contains(name),
            Role::Invalidator => cmd.contains("invalidator") && cmd.contains(name),
            Role::Supervisor => cmd.contains("autoscale"),
            Role::Prometheus => cmd.contains("storage.tsdb.path"),
            Role::Alertmanager => cmd.contains("alertmanager"),
            Role::AlertSink => cmd.contains("alert-sink"),
            Role::Dashboard => cmd.contains("dashboard") && cmd.contains("--serve="),
            Role::Exporter => cmd.contains("-exporter"),
            Role::Nats => cmd.contains("nats-server"),
            Role::S3 => cmd.contains("s3s-fs"),
            Role::Lb => cmd.contains("haproxy"),
            Role::Dns => cmd.contains("gdnsd"),
            Role::Witness => cmd.contains("witness"),
            Role::RegionWatch => cmd.contains("region-watch"),
            Role::Edge => cmd.contains("varnishd") || cmd.contains("hitch"),
            Role::Redis => cmd.contains("redis-server"),
            Role::Wan => cmd.contains("wan-relay"),
            Role::PgReplica | Role::PgPrimary => cmd.contains("postgres"),
            Role::Region => false,
        }
    }

    /// The signal that stops it cleanly: PostgreSQL's fast shutdown is SIGINT.
    fn stop_signal(self) -> nix::sys::signal::Signal {
        match self {
            Role::PgReplica | Role::PgPrimary => nix::sys::signal::Signal::SIGINT,
            _ => nix::sys::signal::Signal::SIGTERM,
        }
    }
}

/// One process of a running topology, as `state.json` and `status --json` show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Process {
    /// What it is.
    pub role: Role,
    /// `web-1`, `pg-r1`…
    pub name: String,
    /// Its PID.
    pub pid: u32,
    /// Where it listens.
    pub addr: String,
    /// A web node's operators' listener (`http.ops_listen`), where its `/metrics` is; a
    /// worker serves its metrics on `addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_addr: Option<String>,
    /// Its log file.
    pub log: PathBuf,
    /// A directory of its own that `down` removes once it has stopped (database servers keep
    /// their data under the system temp dir, where the `postgres` user can reach it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// A database server's cluster: `main` unsharded; `catalogue` or the cluster's name
    /// (`c1`, `c2`…) with sharding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Its region (`a`, `b`), in a two-region topology (rung 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl Process {
    /// A process with no directory of its own.
    pub fn new(
        role: Role,
        name: impl Into<String>,
        pid: u32,
        addr: impl ToString,
        log: PathBuf,
    ) -> Self {
        Self {
            role,
            name: name.into(),
            pid,
            addr: addr.to_string(),
            ops_addr: None,
            log,
            dir: None,
            cluster: None,
            region: None,
        }
    }

    /// This process, a database server of cluster `name`.
    pub fn in_cluster(mut self, name: impl Into<String>) -> Self {
        self.cluster = Some(name.into());
        self
    }

    /// Where its `/metrics` is read: the operators' listener when it has one, else `addr`.
    pub fn metrics_addr(&self) -> &str {
        self.ops_addr.as_deref().unwrap_or(&self.addr)
    }

    /// The same process, owning `dir`.
    #[must_use]
    pub fn with_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Whether its PID still runs what was started (guards against a reused PID).
    pub fn is_ours(&self) -> bool {
        std::fs::read(format!("/proc/{}/cmdline", self.pid))
            .is_ok_and(|c| self.role.runs(&String::from_utf8_lossy(&c), &self.name))
    }

    /// Sends it `sig`.
    pub(crate) fn signal(&self, sig: nix::sys::signal::Signal) {
        signal(self.pid, sig);
    }
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
    /// The first edge's HTTPS URL, when the edges serve TLS (clients trust `RUN_DIR/ca.pem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_url: Option<String>,
    /// Every process, in start order.
    pub processes: Vec<Process>,
    /// What a web node is started with (for `scale` and `restart`): its settings as
    /// `CRESCENDO_*` variables, without the secrets, which every node reads from
    /// `RUN_DIR/node-secrets.toml` (see [`crate::secret`]).
    #[serde(default)]
    pub web_env: Vec<(String, String)>,
    /// The load balancer's address (the public one, unless edges hold it) and stickiness,
    /// when there is one.
    #[serde(default)]
    pub lb: Option<(SocketAddr, bool)>,
    /// The `crescendo` binary web nodes run.
    #[serde(default)]
    pub exe: PathBuf,
    /// What a worker process is started with (without the secrets, as `web_env`).
    #[serde(default)]
    pub worker_env: Vec<(String, String)>,
    /// The worker tier's scaling, when the topology has a queue.
    #[serde(default)]
    pub workers: Option<WorkerScaling>,
    /// The web tier's scaling, when the autoscaler sizes it (`[web] max_nodes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_scaling: Option<crate::hpa::WebScaling>,
    /// A two-region topology's regions (rung 8): each runs from a run directory of its
    /// own inside its network namespace, while this one holds what joins them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<crate::regions::RegionRecord>,
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

    /// Writes `run_dir/state.json` whole (a new file renamed over the old one), and, when
    /// Prometheus runs, its scrape targets from the same processes: every change to the
    /// process list goes through here, so the two never disagree.
    pub(crate) fn write(&self, run_dir: &Path) -> anyhow::Result<()> {
        let tmp = run_dir.join("state.json.new");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, run_dir.join("state.json"))?;
        crate::prometheus::write_targets(run_dir, self)
    }

    /// The processes of one role, in start order.
    pub fn of(&self, role: Role) -> impl Iterator<Item = &Process> {
        self.processes.iter().filter(move |p| p.role == role)
    }

    /// The names of the processes of one role.
    pub fn names(&self, role: Role) -> Vec<String> {
        self.of(role).map(|p| p.name.clone()).collect()
    }

    /// Removes process `name` of `role` from the state (the caller writes it) and returns it.
    pub(crate) fn take(&mut self, role: Role, name: &str) -> Option<Process> {
        let i = self
            .processes
            .iter()
            .position(|p| p.role == role && p.name == name)?;
        Some(self.processes.remove(i))
    }

    /// One more than the highest N of the processes named `{prefix}N`.
    pub(crate) fn next_number(&self, prefix: &str) -> usize {
        self.processes
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
}

/// Sends `sig` to `pid`.
pub(crate) fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Copies every server's log (each `*.log` under `run_dir`, at any depth) into `to`, keeping
/// its place under the run directory; returns how many were copied. For keeping what a
/// topology said after its run directory is gone (a failed test, a tour's rungs).
///
/// # Errors
/// `to` cannot be created or written.
pub fn copy_logs(run_dir: &Path, to: &Path) -> std::io::Result<usize> {
    let mut copied = 0;
    let mut dirs = vec![run_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                let at = to.join(path.strip_prefix(run_dir).unwrap_or(&path));
                std::fs::create_dir_all(at.parent().unwrap_or(to))?;
                std::fs::copy(&path, &at)?;
                copied += 1;
            }
        }
    }
    Ok(copied)
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

/// Stops every process of the topology in `run_dir`, role by role in [`Role::STOP_ORDER`]:
/// web nodes drain (SIGTERM), then the balancer, workers, and at last the database servers.
/// A two-region topology stops each region so, then the geo DNS and the WAN relay, and
/// removes its network namespaces. Returns the names stopped.
///
/// # Errors
/// No topology runs from `run_dir`.
pub fn down(run_dir: &Path) -> anyhow::Result<Vec<String>> {
    let state = State::read(run_dir)?;
    // a two-region topology's regions first, each from its own run directory, their
    // watchers before any of them
    crate::regions::stop_watchers(state.regions.iter().map(|r| r.run_dir.as_path()));
    let mut stopped = crate::regions::down_regions(&state);
    for role in Role::STOP_ORDER {
        let group: Vec<&Process> = state
            .of(role)
            .filter(|p| alive(p.pid) && p.is_ours())
            .collect();
        for p in &group {
            p.signal(role.stop_signal());
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
    crate::regions::remove_namespaces(&state);
    let _ = std::fs::remove_file(run_dir.join("state.json"));
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_nodes_metrics_are_read_on_its_ops_address_which_is_recorded_only_when_present() {
        let worker = Process::new(
            Role::Worker,
            "worker-1",
            1,
            "127.0.5.1:7000",
            "w.log".into(),
        );
        let json = serde_json::to_value(&worker).unwrap();
        assert!(json.get("ops_addr").is_none(), "{json}");
        assert_eq!(worker.metrics_addr(), "127.0.5.1:7000");

        let mut web = Process::new(Role::Web, "web-1", 2, "127.0.1.1:8000", "web.log".into());
        web.ops_addr = Some("127.0.0.1:9100".into());
        let json = serde_json::to_value(&web).unwrap();
        assert_eq!(json["ops_addr"], "127.0.0.1:9100");
        assert_eq!(web.metrics_addr(), "127.0.0.1:9100");
        let back: Process = serde_json::from_value(json).unwrap();
        assert_eq!(back, web);
        // state files written before the field existed still read
        let old: Process = serde_json::from_str(
            r#"{"role":"web","name":"web-1","pid":2,"addr":"127.0.1.1:8000","log":"web.log"}"#,
        )
        .unwrap();
        assert_eq!(old.ops_addr, None);
    }
}
