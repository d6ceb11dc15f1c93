//! Launchers for the real servers behind Crescendo's tiers, used by the test kit and by
//! `crescendo up`. Each launcher starts a private instance from the machine's own binaries
//! on a loopback port, in its own directory, waits until *its own* process answers (a port
//! another user's server holds must not pass for ours), and stops and reaps it when dropped.
//!
//! - [`pg::Postgres`]: PostgreSQL 15 from `/usr/lib/postgresql/15/bin`, run as the
//!   `postgres` user, started from a template data directory made once by `initdb`, and its
//!   streaming replicas.
//! - [`haproxy::Haproxy`]: HAProxy with a generated configuration, reloadable.
//! - [`redis::Redis`]: Redis with bounded memory and LRU eviction.
//! - [`nats::Nats`]: NATS with JetStream, stoppable and restartable on its own data.
//! - [`s3::S3`]: an S3-compatible object server (`s3s-fs`, a cargo binary) for blobs.
//! - [`varnish::Varnish`]: Varnish with a generated VCL, the CDN edge, and [`tls::Hitch`]
//!   terminating HTTPS in front of it.
//! - [`prometheus::Prometheus`]: Prometheus scraping every tier, behind basic auth, and the
//!   [`exporters`] it reads for servers without a `/metrics` of their own; its rules and
//!   Alertmanager in [`alerting`], delivering alerts to the [`alert_sink`]; the [`dashboard`]
//!   charts what it collects.
//! - [`geodns`]: the geo DNS of rung 8 (gdnsd), sending each client to its nearest healthy
//!   region, and a small DNS client to ask it.
//!
//! Around them, whole topologies from `topologies/*.toml` on one machine, one module per
//! concern: [`model`] (the file), [`up`] (start every tier: each launcher's module also starts
//! its tier, records its processes and tells the nodes how to reach it), [`web`] and
//! [`workers`] (the `crescendo` processes), [`state`] (`RUN_DIR/state.json`, [`Role`],
//! [`down`]), [`scale`], [`restart`], [`status`], [`autoscale`] (the workers),
//! [`web_autoscale`] (the web tier, deciding with [`hpa`]) and [`logs`] (every process's log
//! merged in time order).
//!
//! Rung 8's regions run in network namespaces joined by a WAN relay: [`netns`].
//!
//! Every server is started with credentials generated for it ([`secret`]) and answers no
//! client without them; its `url()` carries them.
//!
//! A missing binary is an error that names the Debian package to install.

pub mod alert_sink;
pub mod alerting;
pub mod autoscale;
pub mod dashboard;
pub mod exporters;
pub mod geodns;
pub mod haproxy;
pub mod hpa;
mod http_head;
mod invalidator;
mod launch;
pub mod logs;
pub mod logs_time;
pub mod model;
pub mod nats;
pub mod nats_metrics;
pub mod netns;
pub mod pg;
pub mod prometheus;
pub mod redis;
pub mod regions;
pub mod restart;
pub mod s3;
pub mod scale;
pub mod secret;
pub mod state;
pub mod status;
pub mod tls;
pub mod up;
pub mod varnish;
mod web;
pub mod web_autoscale;
pub mod workers;

pub use autoscale::{Backlog, WorkerScaling, autoscale, desired_workers, worker_settings};
pub use hpa::WebScaling;
pub use launch::{Running, UpOptions};
pub use model::Topology;
pub use restart::restart_web;
pub use scale::scale;
pub use state::{Process, Role, State, alive, down};
pub use status::{Status, http_get, http_get_as, status};
pub use up::up;
pub use web_autoscale::autoscale_web;
pub use workers::{add_worker, remove_worker};

use std::process::Child;
use std::time::{Duration, Instant};

/// Waits until a server we just started is ready, asking `ready` every 5 ms. Fails when it
/// exits first (the error holds its log, `log`) or is not ready within `limit` (then it is
/// killed and reaped). `what` names it in errors, e.g. "redis-server on 127.0.0.1:6379".
pub(crate) fn await_ready(
    mut child: Child,
    what: &str,
    log: &std::path::Path,
    limit: Duration,
    ready: impl Fn() -> bool,
) -> anyhow::Result<Child> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "{what} exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if ready() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{what} is not ready after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A server process a launcher started: stopped with SIGTERM (SIGKILL after `grace`) when
/// dropped or asked, unless detached, and replaced in place when the launcher restarts it.
pub(crate) struct Server {
    child: Option<Child>,
    pid: u32,
    grace: Duration,
}

impl Server {
    /// Holds `child`, which may take `grace` to stop.
    pub(crate) fn new(child: Child, grace: Duration) -> Self {
        Self {
            pid: child.id(),
            child: Some(child),
            grace,
        }
    }

    /// Its PID (the last one, once stopped or detached).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops it (SIGTERM) and reaps it; nothing when it is not ours to stop.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, Some(nix::sys::signal::Signal::SIGTERM), self.grace);
        }
    }

    /// SIGKILLs it (a crash) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Holds a new process in its place (after a restart).
    pub(crate) fn replace(&mut self, child: Child) {
        self.stop();
        self.pid = child.id();
        self.child = Some(child);
    }

    /// Leaves it running after this handle is gone; returns its PID.
    pub(crate) fn detach(&mut self) -> u32 {
        self.child = None;
        self.pid
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops a child we started: sends `signal` (unless `None`: it was sent already), waits up to
/// `limit` for it to exit, then SIGKILLs it and its process group; always reaps it.
pub fn stop(child: &mut Child, signal: Option<nix::sys::signal::Signal>, limit: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    if let Some(sig) = signal {
        let _ = nix::sys::signal::kill(pid, sig);
    }
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// What the launchers' tests share: speaking a server's own protocol by hand.
#[cfg(test)]
pub(crate) mod wire {
    use std::io::{Read, Write};

    /// Sends `text` on `conn` and returns the answer's first read, as text.
    pub(crate) fn say(conn: &mut std::net::TcpStream, text: &str) -> String {
        conn.write_all(text.as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        let n = conn.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}
