//! HAProxy 2.6 (Debian's `haproxy`) in front of the web nodes.
//!
//! The configuration is generated here: `leastconn`; health checks on `/ready` every 300 ms
//! (down after 2 failures, up after 2 successes), so a node that starts draining stops
//! getting requests before it closes. A check may take [`CHECK_TIMEOUT`]: a node that refuses
//! connections (dead) is out within about 0.6 s, while one that answers slowly under load
//! stays in (checks bounded by their 300 ms interval fail on a node that is only busy, and a
//! load spike could take every node out at once, leaving HAProxy to answer 503); `option redispatch` with `retry-on` for the errors of a
//! dead or broken node (no connection, no or a malformed answer, 500, 502, 504), so such a
//! request is sent to another one. Writes (POST, PUT, DELETE) are retried after they reached
//! a node only when they carry an `Idempotency-Key`, which makes the repeat safe; without
//! one, only connection failures are retried. With `sticky`, an inserted cookie pins a
//! browser to its node (the stateful rung).
//!
//! Overload: each node gets at most [`LbConfig::server_maxconn`] requests at once (its
//! `http.max_in_flight`); the rest wait in HAProxy's queue for up to [`QUEUE_WAIT`], then get
//! 503 (in the API's format, with `Retry-After`). A 503 from a node (load shed, or its own time-out) is not among the retried errors,
//! so a shed request is answered, not sent round again onto the same overload: shedding is
//! not multiplied by retries.
//!
//! Idle time-outs: clients must give an idle connection up before [`CLIENT_KEEP_ALIVE`];
//! with `http-reuse never` a connection to a node serves one client session, so it is idle
//! at most [`SERVER_IDLE_MAX`], less than a node's `http.idle_timeout_secs`: on both hops
//! the side that sends requests closes an idle connection first.
//!
//! It runs in master-worker mode (`-W`) in the foreground: the master's PID is the child's;
//! SIGUSR2 reloads the configuration without dropping connections, SIGTERM stops it.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long HAProxy keeps a client's idle connection open (`timeout http-keep-alive`).
pub const CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(10);
/// How long a request's headers may take to arrive (`timeout http-request`).
pub const REQUEST_HEADERS: Duration = Duration::from_secs(10);
/// The longest a connection from HAProxy to a node sits idle: its client session waits
/// [`CLIENT_KEEP_ALIVE`] for a request, then [`REQUEST_HEADERS`] for its headers.
pub const SERVER_IDLE_MAX: Duration =
    Duration::from_secs(CLIENT_KEEP_ALIVE.as_secs() + REQUEST_HEADERS.as_secs());

/// How long one health check of a node may take (`timeout check`) before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a request may wait in HAProxy's queue for a node's free slot (`timeout queue`)
/// before it is answered 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// One backend server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Its name in HAProxy (`web-1`).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The load balancer's configuration.
#[derive(Clone, Debug)]
pub struct LbConfig {
    /// The public address.
    pub public: SocketAddr,
    /// The web nodes.
    pub backends: Vec<Backend>,
    /// Pin each browser to one node with a cookie.
    pub sticky: bool,
    /// Requests in flight per node (`maxconn` of each server): the nodes'
    /// `http.max_in_flight`, so the balancer queues what a node would shed. 0: no limit.
    pub server_maxconn: usize,
    /// Where HAProxy's own Prometheus exporter answers, when Prometheus scrapes it.
    pub metrics: Option<LbMetrics>,
}

/// HAProxy's built-in Prometheus exporter, on a listener of its own behind basic auth.
#[derive(Clone, Debug)]
pub struct LbMetrics {
    /// Its loopback address.
    pub addr: SocketAddr,
    /// The password of user `crescendo` (the run's exporter password); the configuration
    /// that holds it is owner-only.
    pub password: String,
}

/// The metrics frontend and its user list, for `m`.
fn metrics_text(m: &LbMetrics) -> String {
    format!(
        "
frontend metrics
    bind {addr}
    no log
    http-request auth realm metrics unless {{ http_auth(scrapers) }}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    http-request return status 404

userlist scrapers
    user {user} insecure-password {password}
",
        addr = m.addr,
        user = crate::prometheus::USER,
        password = m.password,
    )
}

/// What every server carries beyond `check`, those added live included.
fn limits(cfg: &LbConfig) -> String {
    match cfg.server_maxconn {
        0 => String::new(),
        n => format!(" maxconn {n}"),
    }
}

/// The configuration file's text.
pub fn config_text(cfg: &LbConfig, admin_socket: &Path) -> String {
    let mut s = format!(
        "# generated by crescendo: do not edit, it is rewritten on every change
global
    stats socket {sock} mode 600 level admin expose-fd listeners
    maxconn 4096

defaults
    mode http
    option redispatch
    retries 3
    # not 503: a node's 503 is an overload or a time-out, which a retry would multiply
    retry-on conn-failure empty-response junk-response response-timeout 0rtt-rejected 500 502 504
    option forwardfor
    timeout connect 1s
    # a slow answer under load is not a dead node (a dead one refuses at once)
    timeout check {check}s
    timeout client 60s
    timeout server 60s
    # a request waits this long for a free slot on a node (maxconn), then gets 503
    timeout queue {queue}s
    # HAProxy's own 503 (queue wait over, no node up) in the API's format, like a node's
    http-error status 503 content-type application/json string '{{\"errors\":{{\"body\":[\"no server could take the request, retry later\"]}}}}' hdr retry-after 1
    # idle time-outs: see the module documentation (a node's idle time-out is longer)
    timeout http-request {headers}s
    timeout http-keep-alive {keep_alive}s
    http-reuse never

frontend public
    bind {public}
    default_backend web

backend web
    balance leastconn
    option httpchk GET /ready
    http-check expect status 200
    default-server inter 300ms fall 2 rise 2
    # a write that reached a node is repeated only when an Idempotency-Key makes it safe
    acl write method POST PUT DELETE PATCH
    acl keyed req.hdr(idempotency-key) -m found
    http-request disable-l7-retry if write !keyed
",
        sock = admin_socket.display(),
        public = cfg.public,
        headers = REQUEST_HEADERS.as_secs(),
        check = CHECK_TIMEOUT.as_secs(),
        keep_alive = CLIENT_KEEP_ALIVE.as_secs(),
        queue = QUEUE_WAIT.as_secs(),
    );
    if cfg.sticky {
        s.push_str("    cookie CRESCENDO_NODE insert indirect nocache httponly\n");
    }
    for b in &cfg.backends {
        let cookie = if cfg.sticky {
            format!(" cookie {}", b.name)
        } else {
            String::new()
        };
        let limits = limits(cfg);
        s.push_str(&format!(
            "    server {} {} check{limits}{cookie}\n",
            b.name, b.addr
        ));
    }
    if let Some(m) = &cfg.metrics {
        s.push_str(&metrics_text(m));
    }
    s
}

/// A running HAProxy master; stopped (SIGTERM) when dropped unless detached.
pub struct Haproxy {
    server: crate::Server,
    dir: PathBuf,
    public: SocketAddr,
}

fn binary() -> anyhow::Result<&'static str> {
    if Path::new("/usr/sbin/haproxy").is_file() {
        Ok("/usr/sbin/haproxy")
    } else {
        bail!("haproxy is missing: install the Debian package haproxy (apt-get install haproxy)")
    }
}

impl Haproxy {
    /// Writes the configuration into `dir/haproxy.cfg`, checks it, starts HAProxy and waits
    /// until the public address accepts connections.
    ///
    /// # Errors
    /// The binary is missing, the configuration is refused, or it does not listen in 10 s.
    pub fn start(dir: &Path, cfg: &LbConfig) -> anyhow::Result<Self> {
        let bin = binary()?;
        std::fs::create_dir_all(dir)?;
        Self::write_config(dir, cfg)?;
        let log = std::fs::File::create(dir.join("haproxy.log"))?;
        let child = Command::new(bin)
            .args(["-W", "-db", "-f"])
            .arg(dir.join("haproxy.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting haproxy")?;
        let child = crate::await_ready(
            child,
            &format!("haproxy on {}", cfg.public),
            &dir.join("haproxy.log"),
            Duration::from_secs(10),
            || std::net::TcpStream::connect(cfg.public).is_ok(),
        )?;
        Ok(Haproxy {
            server: crate::Server::new(child, Duration::from_secs(5)),
            dir: dir.to_path_buf(),
            public: cfg.public,
        })
    }

    /// Writes (and checks) the configuration without applying it: what a restart would read.
    ///
    /// # Errors
    /// The configuration is refused.
    pub fn write_config(dir: &Path, cfg: &LbConfig) -> anyhow::Result<()> {
        let path = dir.join("haproxy.cfg");
        let staged = dir.join("haproxy.cfg.new");
        // owner-only: it may hold the metrics listener's password
        let text = config_text(cfg, &dir.join("admin.sock"));
        crate::secret::write_file(&staged, text.as_bytes())?;
        let out = Command::new(binary()?)
            .args(["-c", "-q", "-f"])
            .arg(&staged)
            .output()
            .context("checking the haproxy configuration")?;
        if !out.status.success() {
            bail!(
                "haproxy refuses its configuration: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::rename(&staged, &path)?;
        Ok(())
    }

    /// Rewrites the configuration (new backends) and reloads without dropping connections.
    ///
    /// # Errors
    /// The new configuration is refused (the running one stays).
    pub fn reload(&self, cfg: &LbConfig) -> anyhow::Result<()> {
        Self::write_config(&self.dir, cfg)?;
        signal(self.server.pid(), nix::sys::signal::Signal::SIGUSR2);
        Ok(())
    }

    /// Rewrites the configuration of the HAProxy in `dir` whose master is `pid` (started by
    /// another process, e.g. `crescendo up --detach`) and reloads it gracefully: requests in
    /// flight finish on the old worker, but an idle keep-alive connection the old worker
    /// closes can meet a client's next request (so non-sticky balancers change servers
    /// through the admin socket instead).
    ///
    /// # Errors
    /// The new configuration is refused (the running one stays).
    pub fn reload_running(dir: &Path, pid: u32, cfg: &LbConfig) -> anyhow::Result<()> {
        Self::write_config(dir, cfg)?;
        signal(pid, nix::sys::signal::Signal::SIGUSR2);
        Ok(())
    }

    /// The master's PID.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The public address.
    pub fn public(&self) -> SocketAddr {
        self.public
    }

    /// Sends one command to the admin socket of the HAProxy in `dir` and returns its answer.
    ///
    /// # Errors
    /// The socket does not answer.
    pub fn admin(dir: &Path, command: &str) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(dir.join("admin.sock"))
            .context("connecting to HAProxy's admin socket")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(format!("{command}\n").as_bytes())?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text.trim().to_string())
    }

    /// Adds a web node to the running balancer through its admin socket, with health checks
    /// and `cfg`'s limit on requests in flight, ready for traffic: no reload, so no client
    /// connection is closed. (Dynamic servers take no cookie, so sticky balancers reload
    /// instead.)
    ///
    /// # Errors
    /// HAProxy refuses a step.
    pub fn add_live(dir: &Path, b: &Backend, cfg: &LbConfig) -> anyhow::Result<()> {
        let add = format!("add server web/{} {} check{}", b.name, b.addr, limits(cfg));
        let added = Self::admin(dir, &add)?;
        if !added.contains("New server registered") {
            bail!("HAProxy would not add {}: {added}", b.name);
        }
        for cmd in [
            format!("enable health web/{}", b.name),
            format!("set server web/{} state ready", b.name),
        ] {
            let answer = Self::admin(dir, &cmd)?;
            if !answer.is_empty() {
                bail!("HAProxy: {cmd}: {answer}");
            }
        }
        Ok(())
    }

    /// Stops sending new requests to a node (requests in flight finish).
    ///
    /// # Errors
    /// HAProxy refuses.
    pub fn drain_live(dir: &Path, name: &str) -> anyhow::Result<()> {
        let answer = Self::admin(dir, &format!("set server web/{name} state maint"))?;
        if !answer.is_empty() {
            bail!("HAProxy: maint {name}: {answer}");
        }
        Ok(())
    }

    /// Removes a drained node from the running balancer.
    ///
    /// # Errors
    /// HAProxy refuses.
    pub fn remove_live(dir: &Path, name: &str) -> anyhow::Result<()> {
        Self::admin(dir, &format!("shutdown sessions server web/{name}"))?;
        let answer = Self::admin(dir, &format!("del server web/{name}"))?;
        if !answer.contains("Server deleted") {
            bail!("HAProxy would not delete {name}: {answer}");
        }
        Ok(())
    }

    /// Each backend's state from the admin socket's `show stat` (`UP`, `DOWN`, `MAINT`…).
    pub fn backend_states(dir: &Path) -> Vec<(String, String)> {
        use std::io::{Read, Write};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(dir.join("admin.sock")) else {
            return Vec::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"show stat\n").is_err() {
            return Vec::new();
        }
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .filter(|l| l.starts_with("web,") && !l.starts_with("web,BACKEND"))
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                Some((f.get(1)?.to_string(), f.get(17)?.to_string()))
            })
            .collect()
    }

    /// Leaves it running after this handle is dropped (`crescendo up --detach`).
    pub fn detach(mut self) -> u32 {
        self.server.detach()
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

// In a topology: the load balancer, and the web nodes joining and leaving it.

impl crate::launch::Launched for Haproxy {
    fn server(&mut self) -> &mut crate::Server {
        &mut self.server
    }
}

/// Starts HAProxy on `addr` (the public address, unless edges hold it) in front of
/// `backends`, and records it.
pub(crate) fn start_tier(
    up: &mut crate::up::Up,
    tier: &crate::model::LbTier,
    addr: SocketAddr,
    backends: Vec<Backend>,
    metrics: Option<LbMetrics>,
) -> anyhow::Result<()> {
    use crate::state::{Process, Role};
    up.progress(&format!("starting HAProxy on {addr}"));
    let dir = up.o.run_dir.join("haproxy");
    let cfg = LbConfig {
        public: addr,
        backends,
        sticky: tier.sticky,
        server_maxconn: up.node.http.max_in_flight,
        metrics,
    };
    let h = Haproxy::start(&dir, &cfg)?;
    let mut p = Process::new(Role::Lb, "haproxy", h.pid(), addr, dir.join("haproxy.log"));
    p.ops_addr = cfg.metrics.as_ref().map(|m| m.addr.to_string());
    up.running.record(p, Box::new(h));
    Ok(())
}

/// The web nodes of `state`, as backends.
fn backends(state: &crate::state::State) -> Vec<Backend> {
    state
        .of(crate::state::Role::Web)
        .filter_map(|p| {
            Some(Backend {
                name: p.name.clone(),
                addr: p.addr.parse().ok()?,
            })
        })
        .collect()
}

/// The balancer's configuration for `state`'s web nodes (the topology in `run_dir` has
/// one), read from the nodes' settings as they start: their environment and their secrets
/// file.
fn config(run_dir: &Path, state: &crate::state::State) -> anyhow::Result<LbConfig> {
    let (public, sticky) = state
        .lb
        .context("this topology has no load balancer to scale behind")?;
    let node = crescendo_config::Settings::load_with_env(
        Some(&run_dir.join(crate::secret::NODE_SECRETS)),
        &Default::default(),
        state.web_env.clone(),
    )
    .context("reading the web nodes' settings")?;
    // the metrics listener stays where `up` put it, with the run's exporter password
    let metrics = state
        .of(crate::state::Role::Lb)
        .find_map(|p| p.ops_addr.as_ref()?.parse().ok())
        .zip(crate::prometheus::exporter_password(run_dir))
        .map(|(addr, password)| LbMetrics { addr, password });
    Ok(LbConfig {
        public,
        backends: backends(state),
        sticky,
        server_maxconn: node.http.max_in_flight,
        metrics,
    })
}

/// Whether nodes join and leave the running balancer through its runtime API (without
/// stickiness) rather than by a reload.
pub(crate) fn live(state: &crate::state::State) -> bool {
    matches!(state.lb, Some((_, false)))
}

/// Rewrites the configuration for `state`'s web nodes and reloads the running balancer.
fn reload(run_dir: &Path, state: &crate::state::State) -> anyhow::Result<()> {
    let lb = state
        .of(crate::state::Role::Lb)
        .next()
        .context("no load balancer process")?;
    Haproxy::reload_running(&run_dir.join("haproxy"), lb.pid, &config(run_dir, state)?)
}

/// Puts web node `b`, already in `state`, behind the balancer.
pub(crate) fn add_node(
    run_dir: &Path,
    state: &crate::state::State,
    b: &Backend,
) -> anyhow::Result<()> {
    if !live(state) {
        return reload(run_dir, state);
    }
    let dir = run_dir.join("haproxy");
    let cfg = config(run_dir, state)?;
    Haproxy::write_config(&dir, &cfg)?;
    Haproxy::add_live(&dir, b, &cfg)
}

/// Sends no new requests to the nodes `names`, already gone from `state` (those in flight
/// finish); [`forget_nodes`] drops them once they have stopped.
pub(crate) fn take_out(
    run_dir: &Path,
    state: &crate::state::State,
    names: &[String],
) -> anyhow::Result<()> {
    if !live(state) {
        return reload(run_dir, state);
    }
    let dir = run_dir.join("haproxy");
    for name in names {
        Haproxy::drain_live(&dir, name)?;
    }
    Haproxy::write_config(&dir, &config(run_dir, state)?)
}

/// Drops stopped nodes taken out by [`take_out`] from the running balancer.
pub(crate) fn forget_nodes(
    run_dir: &Path,
    state: &crate::state::State,
    names: &[String],
) -> anyhow::Result<()> {
    if live(state) {
        for name in names {
            Haproxy::remove_live(&run_dir.join("haproxy"), name)?;
        }
    }
    Ok(())
}

/// Waits until the balancer reports `name` as `UP`.
pub(crate) fn wait_up(run_dir: &Path, name: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    while !Haproxy::backend_states(&run_dir.join("haproxy"))
        .iter()
        .any(|(n, s)| n == name && s == "UP")
    {
        if std::time::Instant::now() > deadline {
            bail!("{name} is not UP in the load balancer after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
