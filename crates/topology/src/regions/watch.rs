//! Region B's watcher (`crescendo region-watch`, role `region-watch`), the automatic mode of
//! the region failover (`[regions] auto_failover = true`). Started by region B's own `up`
//! inside B's namespace, it checks region A's primary every second, from B and through the
//! [witness](super::witness) in the third namespace, each with the same PostgreSQL-level
//! [`probe`](super::witness::probe). It promotes B's replica (what `crescendo failover` does,
//! with B's admin settings) only when A's primary has been unreachable from B for
//! [`LOSS_BOUND`] **and** the witness has answered, every time for as long, that it cannot
//! reach it either. A witness that still reaches A (a WAN cut between the regions alone), or
//! that does not answer, holds it back, and it says why. It promotes once at most: after a
//! promotion it only waits to be stopped (a failed promotion is tried again after another
//! full bound).
//!
//! Each check's outcome goes to `RUN_DIR/`[`DECISION_FILE`] (B's run directory), which
//! `crescendo status` shows, and each change of state to its log.

use super::witness::{PROBE_TIMEOUT, Reach, ask, probe};
use crate::state::{Process, Role, State, alive};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// The decision file, in region B's run directory.
pub const DECISION_FILE: &str = "region-failover.json";

/// How long A's primary must have been out of reach, from B and from the witness alike,
/// before B's replica is promoted.
pub const LOSS_BOUND: Duration = Duration::from_secs(5);

/// How often the watcher checks.
const INTERVAL: Duration = Duration::from_secs(1);

/// Where the watcher stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// A's primary is reachable from B, or has not been lost for [`LOSS_BOUND`] yet.
    Watching,
    /// A's primary has been lost from B for the bound, but the witness does not confirm it:
    /// no promotion.
    Holding,
    /// Both lost it for the bound: B's replica is being promoted.
    Promoting,
    /// B's replica was promoted; the watcher decides nothing more.
    Promoted,
    /// The promotion failed; it is tried again after another full bound.
    Failed,
}

/// The watcher's last decision, as [`DECISION_FILE`] and `status --json` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Where it stands.
    pub state: Verdict,
    /// When this was written (RFC 3339).
    pub at: String,
    /// Why, in words.
    pub reasons: Vec<String>,
    /// Region A's primary, as B and the witness check it.
    pub primary: SocketAddr,
    /// How long A's primary has been out of B's reach, ms.
    pub lost_from_b_ms: Option<u64>,
    /// How long the witness has said, at each check, that it cannot reach it, ms.
    pub lost_from_witness_ms: Option<u64>,
    /// After a promotion: what the failover said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<String>,
}

impl Decision {
    /// Reads region `dir`'s decision file, when a watcher runs there.
    pub fn read(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join(DECISION_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// What the checks so far add up to: since when A's primary has been lost from B and from
/// the witness (each `None` once it is seen again; a witness that does not answer counts
/// as seeing it, so it never helps a promotion).
#[derive(Debug)]
pub struct Tally {
    bound: Duration,
    lost_here: Option<Instant>,
    lost_witness: Option<Instant>,
}

impl Tally {
    /// Nothing lost yet; promotion after `bound`.
    pub fn new(bound: Duration) -> Self {
        Self {
            bound,
            lost_here: None,
            lost_witness: None,
        }
    }

    /// Adds one round of checks made at `now`: B's own, and the witness's answer (an error
    /// when it could not be asked). Returns the verdict and its reasons.
    pub fn observe(
        &mut self,
        now: Instant,
        here: &Reach,
        witness: &Result<Reach, String>,
    ) -> (Verdict, Vec<String>) {
        self.lost_here = match here.reachable {
            true => None,
            false => self.lost_here.or(Some(now)),
        };
        self.lost_witness = match witness {
            Ok(r) if !r.reachable => self.lost_witness.or(Some(now)),
            _ => None,
        };
        let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        let (here_for, witness_for) = self.lost_for(now);
        let mut reasons = vec![match here_for {
            None => format!("B reaches A's primary ({})", here.detail),
            Some(d) => format!(
                "A's primary unreachable from B for {} ({})",
                secs(d),
                here.detail
            ),
        }];
        reasons.push(match (witness, witness_for) {
            (Err(e), _) => format!("the witness did not answer ({e}): no promotion without it"),
            (Ok(r), None) => format!(
                "the witness reaches A's primary ({}): the regions are cut from each other, \
                 region A is not lost",
                r.detail
            ),
            (Ok(r), Some(d)) => format!(
                "the witness has not reached A's primary for {} ({})",
                secs(d),
                r.detail
            ),
        });
        let verdict = match (here_for, witness_for) {
            (Some(h), Some(w)) if h >= self.bound && w >= self.bound => Verdict::Promoting,
            (Some(h), _) if h >= self.bound => Verdict::Holding,
            _ => Verdict::Watching,
        };
        (verdict, reasons)
    }

    /// How long A's primary has been lost from B and from the witness, at `now`.
    fn lost_for(&self, now: Instant) -> (Option<Duration>, Option<Duration>) {
        (
            self.lost_here.map(|t| now.duration_since(t)),
            self.lost_witness.map(|t| now.duration_since(t)),
        )
    }

    /// Starts over (after a failed promotion).
    fn reset(&mut self) {
        (self.lost_here, self.lost_witness) = (None, None);
    }
}

/// Watches region A's primary for the region whose run directory is `run_dir` (its plan
/// there names A's primary and the witness) and calls `promote` (which returns what the
/// failover said) as the module's doc says; returns when `stop` completes.
///
/// # Errors
/// The plan has no upstream or no witness, or the witness's token cannot be read.
pub async fn watch<F, Fut>(
    run_dir: &Path,
    mut promote: F,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let plan = super::RegionPlan::read(&run_dir.join(super::PLAN_FILE))?;
    let up = plan.upstream.context("this region holds the primary")?;
    let witness = plan.witness.context("the plan names no witness")?;
    let token = std::fs::read_to_string(&witness.token_file)?
        .trim()
        .to_string();
    let primary = SocketAddr::from((up.host, up.port));
    tracing::info!(%primary, witness = %witness.addr, bound_secs = LOSS_BOUND.as_secs(), "watching region A's primary");
    let mut tally = Tally::new(LOSS_BOUND);
    let mut last = None;
    let checks = async {
        loop {
            let next = tokio::time::Instant::now() + INTERVAL;
            let (here, seen) = tokio::join!(
                tokio::task::spawn_blocking(move || probe(primary, PROBE_TIMEOUT)),
                tokio::task::spawn_blocking({
                    let token = token.clone();
                    move || ask(witness.addr, &token, PROBE_TIMEOUT).map(|a| a.reach)
                }),
            );
            let seen = seen?.map_err(|e| format!("{e:#}"));
            let now = Instant::now();
            let (verdict, reasons) = tally.observe(now, &here?, &seen);
            let (b, w) = tally.lost_for(now);
            let mut d = Decision {
                state: verdict,
                at: crate::logs_time::now(),
                reasons,
                primary,
                lost_from_b_ms: b.map(|d| d.as_millis() as u64),
                lost_from_witness_ms: w.map(|d| d.as_millis() as u64),
                promoted: None,
            };
            record(run_dir, &d, &mut last)?;
            if verdict == Verdict::Promoting {
                match promote().await {
                    Ok(said) => {
                        // for `rejoin` of the other region, as after a manual failover
                        crate::pg::region::record_promoted(run_dir, &up, plan.private)?;
                        (d.state, d.promoted) = (Verdict::Promoted, Some(said.trim().to_string()));
                        record(run_dir, &d, &mut last)?;
                        return anyhow::Ok(());
                    }
                    Err(e) => {
                        d.state = Verdict::Failed;
                        d.reasons.push(format!("the promotion failed: {e:#}"));
                        record(run_dir, &d, &mut last)?;
                        tally.reset();
                    }
                }
            }
            tokio::time::sleep_until(next).await;
        }
    };
    tokio::pin!(stop);
    tokio::select! {
        r = checks => {
            r?;
            // promoted: nothing more to decide
            stop.await;
        }
        () = &mut stop => {}
    }
    Ok(())
}

/// Writes the decision file (0600: it is the operators' to read) and logs a change of state.
fn record(run_dir: &Path, d: &Decision, last: &mut Option<Verdict>) -> anyhow::Result<()> {
    if *last != Some(d.state) {
        let reasons = d.reasons.join("; ");
        match d.state {
            Verdict::Watching => tracing::info!(reasons, "watching"),
            Verdict::Holding => tracing::warn!(reasons, "not promoting region B"),
            Verdict::Promoting => tracing::warn!(reasons, "promoting region B's replica"),
            Verdict::Promoted => tracing::warn!(said = d.promoted, "promoted region B's replica"),
            Verdict::Failed => tracing::error!(reasons, "the promotion failed"),
        }
        *last = Some(d.state);
    }
    crate::secret::write_file(&run_dir.join(DECISION_FILE), &serde_json::to_vec_pretty(d)?)
}

/// Starts the watcher of the region `up` starts (its plan names a witness) and records it.
///
/// # Errors
/// It cannot be started.
pub(crate) fn start(up: &mut crate::up::Up) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    up.progress(&format!(
        "starting the region watcher (promotes this region once A's primary has been lost \
         from here and from the witness for {} s)",
        LOSS_BOUND.as_secs()
    ));
    let mut cmd = std::process::Command::new(&up.o.exe);
    cmd.arg("region-watch").arg("--run-dir").arg(&up.o.run_dir);
    let (log, _) = crate::launch::own_log(&mut cmd, &up.o.run_dir, "region-watch")?;
    let child = cmd
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", up.o.exe.display()))?;
    let p = Process::new(Role::RegionWatch, "region-watch", child.id(), "", log);
    let node = crate::launch::Node::new(child, PROBE_TIMEOUT * 3);
    up.running.record(p, Box::new(node));
    Ok(())
}

/// Stops the watchers of the regions run from `dirs` (before the regions themselves, so that
/// no watcher sees a region stopping as a region lost).
pub(crate) fn stop_watchers<'a>(dirs: impl IntoIterator<Item = &'a Path>) {
    for dir in dirs {
        let Ok(s) = State::read(dir) else {
            continue;
        };
        for p in s
            .of(Role::RegionWatch)
            .filter(|p| alive(p.pid) && p.is_ours())
        {
            p.signal(nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + PROBE_TIMEOUT * 3;
            while alive(p.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(p.pid) {
                p.signal(nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// The watchers of the regions run from these directories, stopped first when a two-region
/// `up` that was not detached stops.
pub(super) struct Watchers(pub Vec<std::path::PathBuf>);

impl crate::launch::Part for Watchers {
    fn detach(self: Box<Self>) {
        // they run on; `crescendo down` stops them
        std::mem::forget(*self);
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        stop_watchers(self.0.iter().map(std::path::PathBuf::as_path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(reachable: bool) -> Reach {
        Reach {
            reachable,
            detail: String::new(),
        }
    }

    /// Feeds one round a second for `secs` seconds; returns the verdicts.
    fn rounds(
        t: &mut Tally,
        start: Instant,
        secs: std::ops::Range<u64>,
        here: bool,
        witness: Result<bool, ()>,
    ) -> Vec<Verdict> {
        secs.map(|s| {
            let w = witness.map(reach).map_err(|()| "timed out".to_string());
            t.observe(start + Duration::from_secs(s), &reach(here), &w)
                .0
        })
        .collect()
    }

    #[test]
    fn a_cut_between_the_regions_alone_never_promotes() {
        let (mut t, start) = (Tally::new(LOSS_BOUND), Instant::now());
        let v = rounds(&mut t, start, 0..60, false, Ok(true));
        assert!(!v.contains(&Verdict::Promoting), "{v:?}");
        assert_eq!(v[10], Verdict::Holding);
        // nor a witness that does not answer
        let v = rounds(&mut t, start, 60..120, false, Err(()));
        assert!(!v.contains(&Verdict::Promoting), "{v:?}");
    }

    #[test]
    fn a_primary_lost_from_both_places_for_the_bound_is_promoted_and_not_before() {
        let (mut t, start) = (Tally::new(LOSS_BOUND), Instant::now());
        assert_eq!(
            rounds(&mut t, start, 0..3, true, Ok(true)),
            vec![Verdict::Watching; 3]
        );
        let v = rounds(&mut t, start, 3..9, false, Ok(false));
        // lost at 3 s: 5 s later, at 8 s
        assert_eq!(v[..5], [Verdict::Watching; 5]);
        assert_eq!(v[5], Verdict::Promoting);
    }

    #[test]
    fn the_witness_must_have_lost_it_for_the_whole_bound() {
        let (mut t, start) = (Tally::new(LOSS_BOUND), Instant::now());
        // B loses it first; the witness only from 6 s (a cut, then A dies)
        let v = rounds(&mut t, start, 0..6, false, Ok(true));
        assert_eq!(v[5], Verdict::Holding);
        let v = rounds(&mut t, start, 6..12, false, Ok(false));
        assert_eq!(v[..5], [Verdict::Holding; 5], "{v:?}");
        assert_eq!(v[5], Verdict::Promoting);
        // one unanswered question starts the witness's count again
        let mut t = Tally::new(LOSS_BOUND);
        rounds(&mut t, start, 0..4, false, Ok(false));
        rounds(&mut t, start, 4..5, false, Err(()));
        let v = rounds(&mut t, start, 5..11, false, Ok(false));
        assert_eq!(v[..5], [Verdict::Holding; 5], "{v:?}");
        assert_eq!(v[5], Verdict::Promoting);
    }
}
