//! Starting the WAN relay of a [`NetPlan`] in its namespace, and cutting and healing the
//! links between its ports while it runs.

use super::NetPlan;
use super::relay::applied_file;
use crate::state::{Process, Role};
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The cuts file of a run's relay, in the run directory.
pub const CUTS_FILE: &str = "wan-cuts";

/// How long a cut or heal may take to hold (the relay applies it on SIGHUP).
const APPLY_LIMIT: Duration = Duration::from_secs(10);

/// Starts `exe wan-relay` (the `crescendo` binary) in `plan`'s WAN namespace between every
/// host's port, with `delay_ms` one way and `loss_percent` loss between locations; its log
/// is `run_dir/wan.log` and its cuts file `run_dir/wan-cuts` (empty at start). Returns once
/// it has opened every port, with the process as the run's state records it (role `wan`,
/// name `wan`, its address the WAN namespace).
///
/// # Errors
/// The namespaces do not exist, or the relay exits or is not ready within 30 s (the error
/// holds its log).
pub fn start_relay(
    exe: &Path,
    run_dir: &Path,
    plan: &NetPlan,
    delay_ms: u64,
    loss_percent: f64,
) -> anyhow::Result<(Child, Process)> {
    let cuts = run_dir.join(CUTS_FILE);
    std::fs::write(&cuts, "")?;
    let applied = applied_file(&cuts);
    let _ = std::fs::remove_file(&applied);
    let log = run_dir.join("wan.log");
    let wan = plan.wan();
    let mut cmd = super::command(&wan, exe);
    cmd.arg("wan-relay");
    for (port, location) in plan.ports() {
        cmd.arg("--port").arg(format!("{port}={location}"));
    }
    cmd.arg("--delay-ms").arg(delay_ms.to_string());
    cmd.arg("--loss-percent").arg(loss_percent.to_string());
    cmd.arg("--cuts").arg(&cuts);
    let out = std::fs::File::create(&log)?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()?;
    let child = crate::await_ready(
        child,
        "the WAN relay",
        &log,
        Duration::from_secs(30),
        || applied.exists(),
    )?;
    let process = Process::new(Role::Wan, "wan", child.id(), &wan, log);
    Ok((child, process))
}

/// Cuts the links between each pair of ports (`("p0", "p2")`, both ways) on top of the cuts
/// in force: the relay at `pid` drops every frame between them until [`heal`]. Returns once
/// the relay has applied it.
///
/// # Errors
/// The file cannot be written, or the relay has not applied it within 10 s.
pub fn cut(cuts_file: &Path, pid: u32, pairs: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut cuts = read(cuts_file);
    cuts.extend(pairs.iter().map(|&(a, b)| ordered(a, b)));
    apply(cuts_file, pid, &cuts)
}

/// Heals the cuts between each pair of ports, or every cut when `pairs` is empty. Returns
/// once the relay has applied it.
///
/// # Errors
/// As [`cut`].
pub fn heal(cuts_file: &Path, pid: u32, pairs: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut cuts = read(cuts_file);
    if pairs.is_empty() {
        cuts.clear();
    }
    for &(a, b) in pairs {
        cuts.remove(&ordered(a, b));
    }
    apply(cuts_file, pid, &cuts)
}

fn ordered(a: &str, b: &str) -> (String, String) {
    (a.min(b).to_owned(), a.max(b).to_owned())
}

/// The cuts in the file now.
fn read(file: &Path) -> BTreeSet<(String, String)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(ordered(w.next()?, w.next()?))
        })
        .collect()
}

/// Writes `cuts` to the file, signals the relay and waits until its `.applied` file says the
/// same.
fn apply(file: &Path, pid: u32, cuts: &BTreeSet<(String, String)>) -> anyhow::Result<()> {
    let text: String = cuts.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, file)?;
    let applied = applied_file(file);
    let deadline = Instant::now() + APPLY_LIMIT;
    let mut signalled = Instant::now() - APPLY_LIMIT;
    while std::fs::read_to_string(&applied).ok().as_deref() != Some(&text) {
        anyhow::ensure!(
            crate::state::alive(pid) && Instant::now() < deadline,
            "the WAN relay (pid {pid}) has not applied {} within {APPLY_LIMIT:?}",
            file.display()
        );
        // signals do not queue: one sent while the relay was reading may be folded into that
        // read, so it is sent again until the file holds
        if signalled.elapsed() > Duration::from_millis(500) {
            crate::state::signal(pid, nix::sys::signal::Signal::SIGHUP);
            signalled = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
