//! `crescendo up`: starts every tier of a topology in order — PostgreSQL, the cache ring,
//! the shared-state Redis, the object server, NATS and its workers, the web nodes, the load
//! balancer, the CDN edges, the autoscaler — each on a private loopback address and only the
//! first edge (or the balancer, or a lone web node) on the public one. Each tier's module starts its servers, records them and
//! writes what the nodes need to reach them into the nodes' typed [`Settings`]; a node's
//! environment is those settings written out ([`Settings::to_env`]), never variable names
//! typed by hand.

use crate::launch::{Node, NodeSpec, Running, UpOptions, shared_secret, start_node};
use crate::model::Topology;
use crate::state::{Process, Role, State, alive};
use crate::{haproxy, nats, pg, prometheus, redis, s3, secret, varnish, web, workers};
use anyhow::{Context, bail};
use crescendo_config::{Secret, Settings};
use std::net::SocketAddr;
use std::time::Duration;

/// A topology being started: what each tier's module adds to.
pub(crate) struct Up {
    /// The options, with the run directory made absolute.
    pub o: UpOptions,
    /// The public address.
    pub public: SocketAddr,
    /// What has started so far.
    pub running: Running,
    /// The settings every web node and worker gets; tiers add how to reach them.
    pub node: Settings,
}

impl Up {
    /// Prints a line of progress.
    pub fn progress(&self, line: &str) {
        (self.o.progress)(line);
    }

    /// Starts `crescendo ROLE` number `n` on `addr` with the settings `env`, waits until it
    /// listens, and records it (given `drain` to stop); returns its record.
    pub fn start_node(
        &mut self,
        role: Role,
        n: usize,
        addr: SocketAddr,
        env: &[(String, String)],
        drain: Duration,
    ) -> anyhow::Result<Process> {
        let spec = NodeSpec {
            exe: &self.o.exe,
            run_dir: &self.o.run_dir,
            role,
            n,
            addr,
            env,
        };
        let (child, p) = start_node(&spec)?;
        self.running
            .record(p.clone(), Box::new(Node::new(child, drain)));
        Ok(p)
    }
}

/// Starts every tier of `t`.
///
/// # Errors
/// A topology is already running from the run directory, a server binary is missing (the
/// message names its package), or a process does not come up.
pub fn up(t: &Topology, o: &UpOptions) -> anyhow::Result<Running> {
    if t.regions.is_some() && o.region.is_none() {
        return crate::regions::up(t, o);
    }
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
    let public = match &o.region {
        Some(plan) => plan.public,
        None => o.public.unwrap_or(t.public),
    };
    let lb_addr = match t.edge {
        Some(_) => varnish::balancer_addr(public),
        None => public,
    };
    let state = State {
        name: t.name.clone(),
        rung: t.rung,
        url: format!("http://{public}"),
        https_url: None,
        processes: Vec::new(),
        web_env: Vec::new(),
        lb: t.load_balancer.as_ref().map(|lb| (lb_addr, lb.sticky)),
        exe: o.exe.clone(),
        worker_env: Vec::new(),
        workers: None,
        web_scaling: t.web_scaling()?,
        regions: Vec::new(),
    };
    let mut node = Settings::default();
    node.auth.jwt_secret = Some(Secret::new(shared_secret(&run_dir)?));
    if t.load_balancer.is_some() {
        // fail /ready for a second before closing, so HAProxy's checks see the drain
        node.http.drain_delay_ms = 1000;
        // HAProxy connects to the nodes from loopback and names the client in X-Forwarded-For
        node.http.trusted_proxies = vec![std::net::IpAddr::from([127, 0, 0, 1]).into()];
    }
    let mut up = Up {
        o: UpOptions {
            run_dir: run_dir.clone(),
            ..o.clone()
        },
        public,
        running: Running::new(state, run_dir.clone()),
        node,
    };
    if let Some(plan) = &up.o.region {
        // writes record their cache keys for the other region's invalidator
        up.node.region.name = plan.name.clone();
    }
    let monitoring = match t.monitoring() {
        Some(_) => Some(prometheus::plan(&up)?),
        None => None,
    };
    pg::start_tier(&mut up, &t.postgres)?;
    redis::start_cache_tier(&mut up, t.cache.as_ref(), t.load_balancer.is_some())?;
    if let Some(r) = &t.redis {
        redis::start_sessions_tier(&mut up, r)?;
    }
    s3::start_tier(&mut up, t.blobs.as_ref())?;
    if t.queue.is_some() {
        nats::start_tier(&mut up)?;
    }
    let edges = match &t.edge {
        Some(e) => varnish::plan_tier(&mut up, e)?,
        None => Vec::new(),
    };
    // every server runs: their credentials go to a 0600 file, not to state.json
    secret::seal_node_secrets(&mut up)?;
    if let Some(q) = &t.queue {
        workers::start_tier(&mut up, q)?;
    }
    if up.o.region.is_some() && t.cache.is_some() {
        // the other region's writes reach this region's cache ring through it
        crate::invalidator::start(&mut up)?;
    }
    if up.o.region.as_ref().is_some_and(|r| r.witness.is_some()) {
        // `[regions] auto_failover`: this region promotes itself once A is lost
        crate::regions::start_watch(&mut up)?;
    }
    let backends = web::start_tier(&mut up, t.web.count, t.load_balancer.is_some())?;
    if let Some(lb) = &t.load_balancer {
        let metrics = monitoring.as_ref().map(prometheus::Plan::lb);
        haproxy::start_tier(&mut up, lb, lb_addr, backends, metrics)?;
    }
    varnish::start_tier(&mut up, edges)?;
    if let (Some(plan), Some(tier)) = (&monitoring, t.monitoring()) {
        prometheus::start_tier(&mut up, plan, tier)?;
    }
    up.running.state.web_env = up.node.to_env();
    up.running.state.write(&run_dir)?;
    workers::start_autoscaler(&mut up)?;
    Ok(up.running)
}
