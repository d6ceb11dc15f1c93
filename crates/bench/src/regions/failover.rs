//! The loss of region A, measured: RTO and RPO.
//!
//! Writers in `users-a` create articles through the region the geo DNS gives them (A) and
//! note every acknowledged write with the region that acknowledged it. Then every process
//! of region A is killed (SIGKILL to each process group its `state.json` lists) and
//! `crescendo failover --region b`'s code promotes B's replica, retried until it succeeds.
//! A writer whose request fails asks the geo DNS again (the authority itself, as a resolver
//! whose cached answer expired would), so it moves to B once the geo DNS answers B.
//!
//! With [`RegionsOptions::cut_before_loss`], the WAN between the regions is cut that long
//! before the kill (and healed once B took a write): the link lost first, then the region.
//!
//! - RTO: from the kill to the first write acknowledged by region B.
//! - RPO: writes acknowledged by region A that region B does not have, read from `users-b`
//!   through B after the promotion.

use super::{Layout, RegionsOptions, resolve, runtime};
use anyhow::Context;
use crescendo_topology::netns;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long after the kill the writers wait for region B to take a write.
const GIVE_UP: Duration = Duration::from_secs(90);

/// What the loss of region A cost.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Failover {
    /// Process groups of region A killed.
    pub killed: usize,
    /// How long before the kill the WAN between the regions was cut, ms (none: not cut).
    #[serde(default)]
    pub wan_cut_before_ms: Option<f64>,
    /// Writes region A acknowledged before it was lost.
    pub acknowledged: usize,
    /// RPO: of those, how many region B does not have after the promotion.
    pub lost: usize,
    /// From the kill to the geo DNS answering `users-a` with region B, ms.
    pub dns_ms: Option<f64>,
    /// From the kill to the promotion's end, ms.
    pub promoted_ms: Option<f64>,
    /// RTO: from the kill to the first write region B acknowledged, ms.
    pub rto_ms: Option<f64>,
}

/// One acknowledged write: its slug and the region address that answered.
type Ack = (String, Ipv4Addr, Instant);

/// Kills region A under a write load from `users-a`, fails over to B and measures.
///
/// # Errors
/// A namespace cannot be entered, the writers got no write acknowledged by A, or B took
/// none within [`GIVE_UP`].
pub(super) fn measure(
    layout: &Layout,
    port: u16,
    data: &super::Seeded,
    o: &RegionsOptions,
) -> anyhow::Result<Failover> {
    let (a_ip, b_ip) = (ip_of(layout, "a")?, ip_of(layout, "b")?);
    let acks: Mutex<Vec<Ack>> = Mutex::default();
    let dns_at: Mutex<Option<Instant>> = Mutex::default();
    let stop = AtomicBool::new(false);
    let writers = o.connections.clamp(1, 8);
    let (killed, lost_at, promoted) = std::thread::scope(|s| {
        let writing = s.spawn(|| {
            netns::run_in(&layout.ns("users-a"), || {
                runtime()?.block_on(write_until(
                    &layout.site,
                    port,
                    (b_ip, writers),
                    &data.tokens,
                    (&acks, &dns_at, &stop),
                ))
            })
            .and_then(|r| r)
        });
        std::thread::sleep(o.phase.max(Duration::from_secs(2)) / 2);
        if let Some(before) = o.cut_before_loss {
            if let Err(e) = crescendo_topology::regions::wan(&o.run_dir, true) {
                eprintln!("regions: the WAN was not cut: {e:#}");
            }
            std::thread::sleep(before);
        }
        let killed = kill_region(layout, "a");
        let lost_at = Instant::now();
        let promoted = promote(&o.run_dir, lost_at);
        // the writers go on until B acknowledged one, or give up
        while !stop.load(Ordering::Relaxed) && lost_at.elapsed() < GIVE_UP {
            let first_b = acks.lock().expect("acks").iter().any(|a| a.1 == b_ip);
            if first_b {
                std::thread::sleep(Duration::from_millis(500));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        let written = writing.join().expect("the writers do not panic");
        (killed.map(|k| (k, written)), lost_at, promoted)
    });
    if o.cut_before_loss.is_some() {
        crescendo_topology::regions::wan(&o.run_dir, false).context("healing the WAN")?;
    }
    let (killed, written) = killed?;
    written?;
    let promoted_ms = promoted.map(|d| d.as_secs_f64() * 1000.0);
    let acks = acks.into_inner().expect("acks");
    let from_a: Vec<String> = acks
        .iter()
        .filter(|a| a.1 == a_ip)
        .map(|a| a.0.clone())
        .collect();
    anyhow::ensure!(
        !from_a.is_empty(),
        "region A acknowledged no write before it was lost"
    );
    let rto_ms = acks
        .iter()
        .filter(|a| a.1 == b_ip)
        .map(|a| a.2.saturating_duration_since(lost_at))
        .min()
        .map(|d| d.as_secs_f64() * 1000.0);
    let rto_ms = rto_ms.context("region B acknowledged no write after region A was lost")?;
    let lost = missing_in_b(layout, SocketAddr::from((b_ip, port)), &from_a)?;
    Ok(Failover {
        killed,
        wan_cut_before_ms: o.cut_before_loss.map(|d| d.as_secs_f64() * 1000.0),
        acknowledged: from_a.len(),
        lost,
        dns_ms: dns_at
            .into_inner()
            .expect("dns_at")
            .map(|t| t.saturating_duration_since(lost_at).as_secs_f64() * 1000.0),
        promoted_ms,
        rto_ms: Some(rto_ms),
    })
}

/// Region `name`'s public address.
fn ip_of(layout: &Layout, name: &str) -> anyhow::Result<Ipv4Addr> {
    match layout.region(name)?.public.ip() {
        std::net::IpAddr::V4(ip) => Ok(ip),
        ip => anyhow::bail!("region {name} has a public address {ip} that is not IPv4"),
    }
}

/// `writers` tasks, each as its own seeded user, create articles through the site as the
/// geo DNS answers, asking it again after each failure, until `stop`; notes each
/// acknowledgement in `acks`, and in `dns_at` when the geo DNS first answered `b_ip`.
async fn write_until(
    site: &str,
    port: u16,
    (b_ip, writers): (Ipv4Addr, usize),
    tokens: &[String],
    (acks, dns_at, stop): (&Mutex<Vec<Ack>>, &Mutex<Option<Instant>>, &AtomicBool),
) -> anyhow::Result<()> {
    let client = crate::client::builder(writers)
        .timeout(Duration::from_secs(5))
        .build()?;
    let first = resolve(site)?;
    let tasks = (0..writers).map(|w| {
        let (client, token) = (client.clone(), tokens[w % tokens.len()].clone());
        async move {
            let mut ip = first;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let base = format!("http://{ip}:{port}");
                let title = format!("failover {w} {n}");
                let (_, slug) = super::post_article(&client, &base, &token, &title, "rto").await;
                match slug {
                    Some(slug) => acks.lock().expect("acks").push((slug, ip, Instant::now())),
                    None => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        // a short question: the geo DNS answers within milliseconds
                        if let Ok(answer) = resolve(site) {
                            ip = answer;
                            if ip == b_ip {
                                dns_at
                                    .lock()
                                    .expect("dns_at")
                                    .get_or_insert_with(Instant::now);
                            }
                        }
                    }
                }
            }
        }
    });
    futures_util::future::join_all(tasks).await;
    Ok(())
}

/// SIGKILLs every process group region `name`'s state lists; how many there were.
fn kill_region(layout: &Layout, name: &str) -> anyhow::Result<usize> {
    let state = layout.region_state(name)?;
    Ok(state
        .processes
        .iter()
        .filter(|p| {
            nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(p.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
        })
        .count())
}

/// Promotes region B, trying again every half second for a minute (the promotion refuses
/// while A's primary still answers); how long after `lost_at` it succeeded.
fn promote(run_dir: &std::path::Path, lost_at: Instant) -> Option<Duration> {
    loop {
        match crescendo_topology::regions::failover(run_dir, "b") {
            Ok(_) => return Some(lost_at.elapsed()),
            Err(e) if lost_at.elapsed() > Duration::from_secs(60) => {
                eprintln!("regions: the failover to B did not succeed: {e:#}");
                return None;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// How many of `slugs` region B (at `b`) does not serve, read from `users-b`, allowing
/// five seconds for what B's new primary still has to replay.
fn missing_in_b(layout: &Layout, b: SocketAddr, slugs: &[String]) -> anyhow::Result<usize> {
    netns::run_in(&layout.ns("users-b"), || {
        runtime()?.block_on(async {
            let client = crate::client::builder(4)
                .timeout(Duration::from_secs(5))
                .build()?;
            let started = Instant::now();
            let mut missing: Vec<&String> = slugs.iter().collect();
            loop {
                let mut still = Vec::new();
                for s in missing {
                    let r = client
                        .get(format!("http://{b}/api/articles/{s}"))
                        .send()
                        .await;
                    if !r.is_ok_and(|r| r.status().is_success()) {
                        still.push(s);
                    }
                }
                missing = still;
                if missing.is_empty() || started.elapsed() > Duration::from_secs(5) {
                    return anyhow::Ok(missing.len());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    })?
}
