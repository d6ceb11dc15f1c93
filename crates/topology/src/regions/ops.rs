//! What operators do to a running two-region topology: its status, gathered inside each
//! region's namespace, and a region failover.

use super::RegionRecord;
use crate::netns;
use crate::state::{Role, State, alive};
use crate::status::{ProcessStatus, Status};
use anyhow::{Context, bail};
use std::path::Path;

/// The namespaces' prefix of a run (`PREFIX-region-a`…).
pub fn prefix(regions: &[RegionRecord]) -> Option<&str> {
    regions
        .first()
        .and_then(|r| r.netns.split_once("-region-"))
        .map(|(p, _)| p)
}

/// Every process of both regions (each region's status taken inside its namespace, both at
/// once), with its region, after the relay and the geo DNS.
///
/// # Errors
/// A region's namespace cannot be entered.
pub fn status(state: State) -> anyhow::Result<Status> {
    let dns_ns = prefix(&state.regions).map(|p| format!("{p}-dns"));
    let mut processes: Vec<ProcessStatus> = state
        .processes
        .iter()
        .map(|p| {
            let healthy = alive(p.pid)
                && match (p.role, &dns_ns) {
                    (Role::Dns, Some(ns)) => dns_answers(ns, &state),
                    _ => true,
                };
            ProcessStatus::new(p.clone(), healthy)
        })
        .collect();
    let mut alerts = Vec::new();
    let regions = std::thread::scope(|scope| {
        let handles: Vec<_> = state
            .regions
            .iter()
            .map(|r| {
                scope.spawn(move || {
                    netns::run_in(&r.netns, || crate::status::status(&r.run_dir))
                        .and_then(|s| s)
                        .with_context(|| format!("region {}", r.name))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a region's status panicked"))
            })
            .collect::<Vec<_>>()
    });
    for (r, s) in state.regions.iter().zip(regions) {
        let s = s?;
        processes.extend(s.processes.into_iter().map(|mut p| {
            p.process.region = Some(r.name.clone());
            p
        }));
        alerts.extend(s.alerts);
    }
    Ok(Status {
        name: state.name,
        rung: state.rung,
        url: state.url,
        processes,
        autoscale: None,
        web_autoscale: None,
        prometheus: None,
        alerts,
        region_failover: state
            .regions
            .iter()
            .find_map(|r| super::watch::Decision::read(&r.run_dir)),
    })
}

/// The site's name, which the geo DNS answers, from a two-region topology's state.
pub fn site(state: &State) -> String {
    state
        .url
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Whether the geo DNS answers for the site, asked from inside its own namespace.
fn dns_answers(ns: &str, state: &State) -> bool {
    let site = site(state);
    netns::run_in(ns, || {
        crate::geodns::query_a(
            super::dns_addr(),
            &site,
            None,
            std::time::Duration::from_secs(2),
        )
        .is_ok()
    })
    .unwrap_or(false)
}

/// Promotes region `name`'s replica once the other region's primary is gone: runs
/// `crescendo failover --asynchronous` on the region's own settings inside its namespace
/// (the failover refuses while the primary still answers). Its web nodes follow the new
/// primary within one check, and the geo DNS already sends everyone to the region that
/// answers its health checks. Returns what the failover printed.
///
/// # Errors
/// No such region, or the failover fails (its output says why).
pub fn failover(run_dir: &Path, name: &str) -> anyhow::Result<String> {
    let state = State::read(run_dir)?;
    let Some(r) = state.regions.iter().find(|r| r.name == name) else {
        bail!(
            "{} has no region {name} (it has {})",
            run_dir.display(),
            state
                .regions
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let out = netns::command(&r.netns, &state.exe)
        .arg("failover")
        .arg("--config")
        .arg(r.run_dir.join(crate::pg::ADMIN_FILE))
        .arg("--asynchronous")
        .env("RUST_LOG", "warn")
        .output()
        .context("running crescendo failover in the region")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("failover in region {name} failed: {}", text.trim());
    }
    record_promoted(r)?;
    Ok(text)
}

/// Writes, in the promoted region's run directory, how the other region reaches its new
/// primary (see [`crate::pg::region::record_promoted`]), from the region's plan.
fn record_promoted(promoted: &RegionRecord) -> anyhow::Result<()> {
    let plan = super::RegionPlan::read(&promoted.run_dir.join(super::PLAN_FILE))?;
    let was = plan
        .upstream
        .context("this region held the primary already")?;
    crate::pg::region::record_promoted(&promoted.run_dir, &was, plan.private)
}

/// Cuts (`cut`) or heals the WAN link between the two regions: frames between them are
/// dropped both ways, while each region's users and the geo DNS still reach both. Returns
/// once the relay applies it.
///
/// # Errors
/// Not a two-region topology, or the relay does not apply it.
pub fn wan(run_dir: &Path, cut: bool) -> anyhow::Result<()> {
    let state = State::read(run_dir)?;
    let prefix = prefix(&state.regions).context("not a two-region topology")?;
    let relay = state
        .of(Role::Wan)
        .next()
        .context("the WAN relay is not recorded")?;
    let plan = netns::NetPlan {
        prefix: prefix.to_string(),
        hosts: super::up::hosts(),
    };
    let (a, b) = (
        plan.port("region-a").context("no port of region a")?,
        plan.port("region-b").context("no port of region b")?,
    );
    let file = run_dir.join(netns::CUTS_FILE);
    let pair = [(a.as_str(), b.as_str())];
    match cut {
        true => netns::cut(&file, relay.pid, &pair),
        false => netns::heal(&file, relay.pid, &pair),
    }
}
