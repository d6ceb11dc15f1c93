//! The worker autoscaler (`crescendo autoscale`, started by `up` when `[queue]` has
//! `max_workers`): every half second it reads the queue's backlog and sizes the worker tier
//! to it with [`desired_workers`], starting and stopping `crescendo worker` processes, and
//! writes its last decision to `RUN_DIR/autoscale.json` for `status`.

use crate::model::default_max_wait;
use crate::state::{Role, State, alive};
use crate::workers::{add_worker, remove_worker};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

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

/// The queue's backlog as the autoscaler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backlog {
    /// Jobs waiting or running.
    pub pending: u64,
    /// How long the oldest has waited, ms.
    pub oldest_ms: u64,
}

/// The settings the topology in `run_dir` gives its workers (to reach their queue): this
/// process's `CRESCENDO_*` environment, which `up` passed on to every node, under what `up`
/// set for the workers, over the nodes' secrets file.
///
/// # Errors
/// No topology runs from `run_dir`, it has no queue tier, or its worker settings do not load.
pub fn worker_settings(run_dir: &Path) -> anyhow::Result<crescendo_config::Settings> {
    let state = State::read(run_dir)?;
    if state.workers.is_none() {
        anyhow::bail!("this topology has no queue tier to scale");
    }
    Ok(crescendo_config::Settings::load_with_env(
        Some(&run_dir.join(crate::secret::NODE_SECRETS)),
        &crescendo_config::Overrides::default(),
        std::env::vars().chain(state.worker_env),
    )?)
}

/// Sizes the worker tier of the topology in `run_dir` to its queue's backlog, read every
/// half second with `backlog`, until `stop` ends or the topology is gone. A backlog that
/// cannot be read keeps the workers as they are.
///
/// # Errors
/// No topology with a queue tier runs from `run_dir`, or its state cannot be written.
pub async fn autoscale(
    run_dir: &Path,
    mut backlog: impl AsyncFnMut() -> anyhow::Result<Backlog>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let scaling = State::read(run_dir)?
        .workers
        .context("this topology has no queue tier to scale")?;
    tracing::info!(
        min = scaling.min,
        max = scaling.max,
        jobs_per_worker = scaling.jobs_per_worker,
        "autoscaling the worker tier"
    );
    let mut scaler = Scaler {
        run_dir,
        scaling,
        children: Vec::new(),
        low_since: None,
    };
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = &mut stop => break,
        }
        // reap the workers this process started that have exited
        scaler
            .children
            .retain_mut(|c| c.try_wait().ok().flatten().is_none());
        let Ok(state) = State::read(run_dir) else {
            tracing::info!("the topology is gone; stopping");
            break;
        };
        match backlog().await {
            Ok(b) => scaler.step(state, b).await?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the queue's depth; keeping the workers as they are");
            }
        }
    }
    Ok(())
}

/// The autoscaler between two looks at the queue.
struct Scaler<'a> {
    run_dir: &'a Path,
    scaling: WorkerScaling,
    /// Workers this process started, reaped once they exit.
    children: Vec<std::process::Child>,
    /// Since when the backlog has wanted fewer workers than run.
    low_since: Option<Instant>,
}

impl Scaler<'_> {
    /// One decision: starts or stops workers as [`desired_workers`] says, and writes it down.
    async fn step(&mut self, state: State, b: Backlog) -> anyhow::Result<()> {
        // the web autoscaler may have changed the state while this one waited
        let _resizing = crate::web_autoscale::RESIZING.lock().await;
        let state = State::read(self.run_dir).unwrap_or(state);
        let running: Vec<String> = state
            .of(Role::Worker)
            .filter(|p| alive(p.pid))
            .map(|p| p.name.clone())
            .collect();
        let (want, low) = desired_workers(
            &self.scaling,
            running.len(),
            b.pending,
            b.oldest_ms,
            self.low_since,
            Instant::now(),
        );
        self.low_since = low;
        let note = if want > running.len() {
            self.grow(running.len(), want, b).await?
        } else if want < running.len() {
            self.shrink(state, &running, want, b)?
        } else if self.low_since.is_some() {
            format!(
                "backlog small; one fewer after {} s",
                self.scaling.scale_down_after_secs
            )
        } else {
            String::from("steady")
        };
        let summary = serde_json::json!({
            "min": self.scaling.min, "max": self.scaling.max, "workers": want,
            "pending": b.pending, "oldest_ms": b.oldest_ms, "note": note,
        });
        std::fs::write(
            self.run_dir.join("autoscale.json"),
            serde_json::to_vec(&summary)?,
        )?;
        Ok(())
    }

    /// Starts workers from `from` up to `to`.
    async fn grow(&mut self, from: usize, to: usize, b: Backlog) -> anyhow::Result<String> {
        tracing::info!(from, to, pending = b.pending, "scaling the workers up");
        for _ in from..to {
            let rd = self.run_dir.to_path_buf();
            match tokio::task::spawn_blocking(move || {
                let mut st = State::read(&rd)?;
                add_worker(&rd, &mut st)
            })
            .await?
            {
                Ok((name, child)) => {
                    tracing::info!(worker = %name, "worker started");
                    self.children.push(child);
                }
                Err(e) => tracing::warn!(error = %e, "a worker did not start"),
            }
        }
        Ok(format!(
            "adding {} for {} jobs, the oldest {:.1} s old",
            to - from,
            b.pending,
            b.oldest_ms as f64 / 1000.0
        ))
    }

    /// Stops the newest of `running`: it finishes the jobs in hand.
    fn shrink(
        &mut self,
        mut state: State,
        running: &[String],
        to: usize,
        b: Backlog,
    ) -> anyhow::Result<String> {
        let number = |name: &String| {
            name.trim_start_matches("worker-")
                .parse::<usize>()
                .unwrap_or(0)
        };
        let Some(name) = running.iter().max_by_key(|n| number(n)).cloned() else {
            return Ok(String::from("steady"));
        };
        tracing::info!(from = running.len(), to, pending = b.pending, worker = %name, "scaling the workers down");
        remove_worker(self.run_dir, &mut state, &name)?;
        Ok(format!("removing {name}: the backlog stayed small"))
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
}
