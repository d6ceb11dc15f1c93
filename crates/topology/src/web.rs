//! The web tier: `crescendo web` nodes, each on its own loopback address (127.0.1.N) behind
//! the balancer, or one on the public address when it stands alone; and nodes joining and
//! leaving a running topology (what `scale` and `restart` are made of).

use crate::haproxy::{self, Backend};
use crate::launch::{NodeSpec, free_addr, start_node};
use crate::state::{Role, State, alive};
use anyhow::bail;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a web node may take to drain once asked to stop.
const DRAIN: Duration = Duration::from_secs(15);

/// Starts `count` web nodes with the nodes' settings as they stand, and records them;
/// returns them as the balancer's backends.
pub(crate) fn start_tier(
    up: &mut crate::up::Up,
    count: usize,
    balanced: bool,
) -> anyhow::Result<Vec<Backend>> {
    let env = up.node.to_env();
    let mut backends = Vec::new();
    for n in 1..=count {
        let addr = if balanced {
            free_addr([127, 0, 1, n as u8])?
        } else {
            up.public
        };
        up.progress(&format!("starting web-{n} on {addr}"));
        let p = up.start_node(Role::Web, n, addr, &env, DRAIN)?;
        backends.push(Backend {
            name: p.name,
            addr: p.addr.parse()?,
        });
    }
    Ok(backends)
}

/// Starts one more web node behind the balancer and waits until it takes traffic; it runs
/// on after this process (`down` stops it by PID). Returns its name.
pub(crate) fn add(run_dir: &Path, state: &mut State, progress: fn(&str)) -> anyhow::Result<String> {
    let n = state.next_number("web-");
    let addr = free_addr([127, 0, 1, n.min(250) as u8])?;
    progress(&format!("starting web-{n} on {addr}"));
    let spec = NodeSpec {
        exe: &state.exe,
        run_dir,
        role: Role::Web,
        n,
        addr,
        env: &state.web_env,
    };
    let (child, p) = start_node(&spec)?;
    std::mem::forget(child);
    let (name, backend) = (
        p.name.clone(),
        Backend {
            name: p.name.clone(),
            addr: p.addr.parse()?,
        },
    );
    state.processes.push(p);
    haproxy::add_node(run_dir, state, &backend)?;
    state.write(run_dir)?;
    haproxy::wait_up(run_dir, &name, Duration::from_secs(15))?;
    Ok(name)
}

/// Takes web node `name` out of the balancer, then stops it (it drains in-flight requests).
pub(crate) fn remove(
    run_dir: &Path,
    state: &mut State,
    name: &str,
    progress: fn(&str),
) -> anyhow::Result<()> {
    let Some(p) = state.take(Role::Web, name) else {
        bail!("no web node {name}")
    };
    progress(&format!("stopping {name}"));
    let names = [name.to_string()];
    haproxy::take_out(run_dir, state, &names)?;
    state.write(run_dir)?;
    // HAProxy finishes what it sent; the node then drains and exits
    std::thread::sleep(Duration::from_millis(500));
    if alive(p.pid) && p.is_ours() {
        p.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(p.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    haproxy::forget_nodes(run_dir, state, &names)
}

/// Drops web nodes that are no longer running from the state and the balancer.
pub(crate) fn prune(run_dir: &Path, state: &mut State) -> anyhow::Result<()> {
    let dead: Vec<String> = state
        .of(Role::Web)
        .filter(|p| !alive(p.pid))
        .map(|p| p.name.clone())
        .collect();
    if dead.is_empty() {
        return Ok(());
    }
    state
        .processes
        .retain(|p| p.role != Role::Web || alive(p.pid));
    haproxy::take_out(run_dir, state, &dead)?;
    haproxy::forget_nodes(run_dir, state, &dead)?;
    state.write(run_dir)
}
