//! The worker tier: `crescendo worker` processes taking jobs from the queue, each on its own
//! loopback address (127.0.5.N) for `/health`, `/ready` and `/metrics`, and the autoscaler
//! process that sizes the tier (see [`crate::autoscale`]) and the web tier (see
//! [`crate::web_autoscale`]).

use crate::autoscale::WorkerScaling;
use crate::launch::{Node, NodeSpec, free_addr, start_node};
use crate::model::QueueTier;
use crate::state::{Process, Role, State, alive};
use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a worker may take to finish the jobs in hand once asked to stop.
const DRAIN: Duration = Duration::from_secs(70);

/// Starts the tier's first workers with the nodes' settings as they stand (and `concurrency`
/// jobs at a time each), records them and the tier's scaling; from then on web nodes take
/// uploads and relay their jobs, and run no workers themselves.
pub(crate) fn start_tier(up: &mut crate::up::Up, q: &QueueTier) -> anyhow::Result<()> {
    let mut worker = up.node.clone();
    worker.queue.workers = q.concurrency;
    let env = worker.to_env();
    up.running.state.worker_env = env.clone();
    up.running.state.workers = Some(WorkerScaling {
        min: q.workers,
        max: q.max_workers.unwrap_or(q.workers).max(q.workers),
        jobs_per_worker: q.jobs_per_worker,
        scale_down_after_secs: q.scale_down_after_secs,
        max_wait_secs: q.max_wait_secs,
    });
    for n in 1..=q.workers {
        let addr = free_addr([127, 0, 5, n as u8])?;
        up.progress(&format!("starting worker-{n} on {addr}"));
        up.start_node(Role::Worker, n, addr, &env, DRAIN)?;
    }
    up.node.queue.workers = 0;
    Ok(())
}

/// Starts `crescendo autoscale` for the run directory when the worker tier may grow or the
/// web tier scales by load, and records it (the state is written again with it).
pub(crate) fn start_autoscaler(up: &mut crate::up::Up) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let state = &up.running.state;
    let mut tiers = Vec::new();
    if let Some(w) = state.workers.as_ref().filter(|w| w.max > w.min) {
        tiers.push(format!("{} to {} workers", w.min, w.max));
    }
    if let Some(w) = &state.web_scaling {
        tiers.push(format!(
            "{} to {} web nodes at {} req/s each",
            w.min, w.max, w.target_rps_per_node
        ));
    }
    if tiers.is_empty() {
        return Ok(());
    }
    up.progress(&format!("starting the autoscaler ({})", tiers.join("; ")));
    let mut cmd = Command::new(&up.o.exe);
    cmd.arg("autoscale").arg("--run-dir").arg(&up.o.run_dir);
    let (log_path, _) = crate::launch::own_log(&mut cmd, &up.o.run_dir, "autoscaler")?;
    let child = cmd
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", up.o.exe.display()))?;
    let p = Process::new(Role::Supervisor, "autoscaler", child.id(), "", log_path);
    up.running.record(p, Box::new(Node::new(child, DRAIN)));
    up.running.state.write(&up.o.run_dir)
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
    let n = state.next_number("worker-");
    let spec = NodeSpec {
        exe: &state.exe,
        run_dir,
        role: Role::Worker,
        n,
        addr: free_addr([127, 0, 5, n.min(250) as u8])?,
        env: &state.worker_env,
    };
    let (child, p) = start_node(&spec)?;
    let name = p.name.clone();
    state.processes.push(p);
    state.write(run_dir)?;
    Ok((name, child))
}

/// Removes worker `name` from the topology and sends it SIGTERM: it stops claiming and
/// finishes the jobs in hand (the caller reaps it; if it is killed first, its jobs go to
/// other workers one lease after it last extended them).
///
/// # Errors
/// No such worker, or the state cannot be written.
pub fn remove_worker(run_dir: &Path, state: &mut State, name: &str) -> anyhow::Result<()> {
    let Some(p) = state.take(Role::Worker, name) else {
        bail!("no worker {name}")
    };
    state.write(run_dir)?;
    if alive(p.pid) && p.is_ours() {
        p.signal(nix::sys::signal::Signal::SIGTERM);
    }
    Ok(())
}
