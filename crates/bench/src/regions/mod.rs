//! Measuring a running two-region topology (rung 8) from its run directory, with every
//! client inside a namespace: nothing here sends traffic from the machine's own namespace
//! (where a namespace address would leave the machine by the default route), and the
//! bench's own scraping of a target, which runs where the bench runs, is not used.
//!
//! What [`measure`] does, each phase for the same fixed time:
//!
//! 1. Seeds once through region A, from `users-a` (skipped with [`RegionsOptions::seed`]
//!    `sign_in_only`).
//! 2. Reads (the `article` scenario, anonymous) from each users' namespace against each
//!    region: its own, as the geo DNS answers it, and the far one by its public address.
//! 3. The `social` mix from both users' namespaces at once, each against its own region,
//!    while region B's web nodes' replica lag gauge is read every 250 ms inside B's
//!    namespace, a probe times writes acknowledged by A until B serves them, and each
//!    region's invalidator's delay histogram is read before and after inside its own: the cross-region replication lag and invalidation delay
//!    under load.
//! 4. Writes (the `write` scenario) from each users' namespace against its own region.
//! 5. With [`RegionsOptions::failover`], the loss of region A ([`failover`](mod@failover)):
//!    RTO and RPO. It kills region A: the topology is left with B alone.

pub mod failover;
mod probe;
pub mod scrape;
mod table;

use crate::load::{self, Model, Progress, Run, Stats};
use crate::scenario::Scenario;
use crate::seed::{SeedPlan, Seeded};
use anyhow::Context;
use crescendo_topology::Role;
use crescendo_topology::netns;
use crescendo_topology::regions::{RegionPlan, RegionRecord};
use crescendo_topology::state::State;
use scrape::{Delay, Histogram};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What `crescendo regions-bench` and the tour's rung 8 take.
#[derive(Clone, Debug)]
pub struct RegionsOptions {
    /// The run directory of the two-region topology.
    pub run_dir: PathBuf,
    /// Connections of each load (closed loop).
    pub connections: usize,
    /// How long each phase sends.
    pub phase: Duration,
    /// A request without an answer after this long is a `timeout` error.
    pub timeout: Duration,
    /// What to seed through region A (`sign_in_only`: only sign the users in).
    pub seed: SeedPlan,
    /// Afterwards, kill region A and measure RTO and RPO (destructive).
    pub failover: bool,
    /// With `failover`: cut the WAN between the regions this long before region A is
    /// killed (A goes on taking its own users' writes meanwhile), as when the link fails
    /// first and the region after it.
    pub cut_before_loss: Option<Duration>,
}

/// One load's figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    /// Requests sent.
    pub requests: u64,
    /// Of which failed (HTTP ≥ 400 or no answer).
    pub errors: u64,
    /// Requests per second.
    pub throughput: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

impl Figures {
    fn of(stats: &Stats, secs: f64) -> Self {
        let n = stats.overall.count();
        Figures {
            requests: n,
            errors: stats.errors,
            throughput: n as f64 / secs.max(0.001),
            p50_ms: stats.overall.quantile_ms(0.5),
            p99_ms: stats.overall.quantile_ms(0.99),
        }
    }
}

/// A load from one users' namespace against one region.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PathRun {
    /// The users' namespace (`users-a`, `users-b`).
    pub users: String,
    /// The region (`a`, `b`).
    pub region: String,
    /// Whether it is the users' own region (found through the geo DNS), not the far one.
    pub near: bool,
    /// What was measured.
    pub figures: Figures,
}

/// Region B's replica lag as its web nodes saw it during the `social` phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Lag {
    /// Readings (every 250 ms, the largest over B's web nodes).
    pub samples: usize,
    /// Mean of the readings, ms.
    pub mean_ms: Option<f64>,
    /// Median reading, ms.
    pub p50_ms: Option<f64>,
    /// Largest reading, ms.
    pub max_ms: Option<f64>,
}

impl Lag {
    fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let ms = |s: f64| s * 1000.0;
        Lag {
            samples: n,
            mean_ms: (n > 0).then(|| ms(samples.iter().sum::<f64>() / n as f64)),
            p50_ms: samples.get(n / 2).copied().map(ms),
            max_ms: samples.last().copied().map(ms),
        }
    }
}

/// One region's cross-region invalidation delay during the `social` phase.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RegionDelay {
    /// The region whose invalidator applied the other region's rows.
    pub region: String,
    /// From the row's write to its application there.
    pub delay: Delay,
}

/// Everything measured on a two-region topology.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RegionsReport {
    /// Whether region A's primary waits for B's replica on each commit.
    pub synchronous: bool,
    /// Seconds each phase sent.
    pub phase_secs: f64,
    /// Connections of each load.
    pub connections: usize,
    /// Reads, from each users' namespace against each region.
    pub reads: Vec<PathRun>,
    /// Writes, from each users' namespace against its own region.
    pub writes: Vec<PathRun>,
    /// The `social` mix, from both users' namespaces at once, each against its own region.
    pub social: Vec<PathRun>,
    /// Both `social` loads together.
    pub social_all: Figures,
    /// Region B's replica lag during the `social` phase, as its web nodes' gauge said.
    pub replica_lag: Lag,
    /// During the `social` phase, from a write acknowledged by region A (from `users-a`)
    /// to region B serving it (to `users-b`, asked every 5 ms): replication seen end to end.
    pub visible_in_b: Lag,
    /// Each region's cross-region invalidation delay during the `social` phase.
    pub invalidation: Vec<RegionDelay>,
    /// Where the CPU went during the `social` phase (every process of both regions).
    pub cpu: Option<crate::cpu::CpuView>,
    /// RTO and RPO, when region A was killed.
    pub failover: Option<failover::Failover>,
}

/// The topology's layout as its run directory describes it.
pub(crate) struct Layout {
    state: State,
    /// The namespaces' prefix (`PREFIX-region-a`…).
    prefix: String,
    /// The site's name the geo DNS answers.
    pub(crate) site: String,
}

impl Layout {
    /// Reads `run_dir`'s state.
    pub(crate) fn read(run_dir: &std::path::Path) -> anyhow::Result<Self> {
        let state = State::read(run_dir)?;
        let prefix = crescendo_topology::regions::prefix(&state.regions)
            .map(str::to_string)
            .with_context(|| format!("{} is not a two-region topology", run_dir.display()))?;
        let site = crescendo_topology::regions::site(&state);
        Ok(Layout {
            state,
            prefix,
            site,
        })
    }

    /// The full name of namespace `name` (`users-a`…).
    pub(crate) fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Region `name`'s record.
    pub(crate) fn region(&self, name: &str) -> anyhow::Result<&RegionRecord> {
        self.state
            .regions
            .iter()
            .find(|r| r.name == name)
            .with_context(|| format!("no region {name}"))
    }

    /// Region `name`'s own state (its processes).
    fn region_state(&self, name: &str) -> anyhow::Result<State> {
        State::read(&self.region(name)?.run_dir)
    }
}

/// A current-thread runtime, for a thread inside a namespace.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The site's address as the geo DNS answers the calling namespace.
pub(crate) fn resolve(site: &str) -> anyhow::Result<Ipv4Addr> {
    let answer = crescendo_topology::geodns::query_a(
        crescendo_topology::regions::dns_addr(),
        site,
        None,
        Duration::from_secs(2),
    )?;
    answer
        .addrs
        .first()
        .copied()
        .with_context(|| format!("the geo DNS has no address for {site}"))
}

/// Runs `scenario` for `o.phase` inside namespace `ns` against `target` (`None`: the
/// site as the geo DNS answers there); the statistics and the address loaded.
fn load_in(
    ns: &str,
    site: &str,
    target: Option<SocketAddr>,
    port: u16,
    scenario: Scenario,
    data: &Arc<Seeded>,
    o: &RegionsOptions,
) -> anyhow::Result<(Stats, SocketAddr)> {
    let data = Arc::clone(data);
    netns::run_in(ns, move || {
        let addr = match target {
            Some(a) => a,
            None => SocketAddr::from((resolve(site)?, port)),
        };
        let run = Run {
            base: format!("http://{addr}"),
            scenario,
            data,
            model: Model::Closed {
                connections: o.connections.max(1),
            },
            duration: o.phase,
            timeout: o.timeout,
            record: None,
        };
        let stats = runtime()?.block_on(load::run(&run, Arc::new(Progress::default())))?;
        anyhow::Ok((stats, addr))
    })?
    .with_context(|| format!("a {scenario:?} load from {ns}"))
}

/// Measures the two-region topology running from `o.run_dir` (see the module's doc).
/// Blocking: every client runs on a thread of its own inside a namespace.
///
/// # Errors
/// Not a two-region topology, a namespace cannot be entered, seeding fails, or (with
/// `failover`) the failover does not complete.
pub fn measure(o: &RegionsOptions) -> anyhow::Result<RegionsReport> {
    let layout = Layout::read(&o.run_dir)?;
    let port = layout.region("a")?.public.port();
    let synchronous = RegionPlan::read(&layout.region("b")?.run_dir.join("region-plan.json"))
        .map(|p| p.synchronous)
        .unwrap_or(false);
    let seeded = {
        let (site, plan) = (layout.site.clone(), o.seed.clone());
        netns::run_in(&layout.ns("users-a"), move || {
            let base = format!("http://{}:{port}", resolve(&site)?);
            runtime()?.block_on(crate::seed::seed(&base, &plan))
        })?
        .context("seeding through region A")?
    };
    anyhow::ensure!(!seeded.tokens.is_empty(), "no users to send requests as");
    let data = Arc::new(seeded);
    let secs = o.phase.as_secs_f64();
    let mut reads = Vec::new();
    for users in ["a", "b"] {
        for region in ["a", "b"] {
            let near = users == region;
            let target = (!near).then(|| layout.region(region).map(|r| r.public));
            let (stats, _) = load_in(
                &layout.ns(&format!("users-{users}")),
                &layout.site,
                target.transpose()?,
                port,
                Scenario::Article,
                &data,
                o,
            )?;
            reads.push(path_run(users, region, Figures::of(&stats, secs)));
        }
    }
    let Social {
        runs: social,
        all: social_all,
        replica_lag,
        visible_in_b,
        invalidation,
        cpu,
    } = social(&layout, port, &data, o)?;
    let mut writes = Vec::new();
    for users in ["a", "b"] {
        let ns = layout.ns(&format!("users-{users}"));
        let (stats, _) = load_in(&ns, &layout.site, None, port, Scenario::Write, &data, o)?;
        writes.push(path_run(users, users, Figures::of(&stats, secs)));
    }
    let failover = match o.failover {
        true => Some(failover::measure(&layout, port, &data, o)?),
        false => None,
    };
    Ok(RegionsReport {
        synchronous,
        phase_secs: secs,
        connections: o.connections.max(1),
        reads,
        writes,
        social,
        social_all,
        replica_lag,
        visible_in_b,
        invalidation,
        cpu,
        failover,
    })
}

fn path_run(users: &str, region: &str, figures: Figures) -> PathRun {
    PathRun {
        users: format!("users-{users}"),
        region: region.into(),
        near: users == region,
        figures,
    }
}

/// What the `social` phase measured.
struct Social {
    /// Each users' namespace's load.
    runs: Vec<PathRun>,
    /// Both together.
    all: Figures,
    /// B's replica lag gauge.
    replica_lag: Lag,
    /// The end-to-end probe's delays.
    visible_in_b: Lag,
    /// Each region's invalidation delay.
    invalidation: Vec<RegionDelay>,
    /// Where the CPU went.
    cpu: Option<crate::cpu::CpuView>,
}

/// The `social` mix from both users' namespaces at once (each to its own region), with B's
/// replica lag read meanwhile and each region's invalidation delay read around it.
fn social(
    layout: &Layout,
    port: u16,
    data: &Arc<Seeded>,
    o: &RegionsOptions,
) -> anyhow::Result<Social> {
    let states = [layout.region_state("a")?, layout.region_state("b")?];
    let mut members = crate::cpu::members_of(&layout.state);
    members.extend(states.iter().flat_map(crate::cpu::members_of));
    let before = invalidation_histograms(layout, &states)?;
    let lag_urls: Vec<String> = states[1]
        .of(Role::Web)
        .map(|p| format!("http://{}/metrics", p.metrics_addr()))
        .collect();
    let stop = AtomicBool::new(false);
    let cpu_before = crate::cpu::sample(&members);
    let (a, b) = (layout.region("a")?.public, layout.region("b")?.public);
    let (users_a, users_b) = (layout.ns("users-a"), layout.ns("users-b"));
    let (runs, lag, visible) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            netns::run_in(&layout.ns("region-b"), || sample_lag(&lag_urls, &stop)).and_then(|r| r)
        });
        let prober =
            s.spawn(|| probe::visibility((&users_a, &users_b), (a, b), &data.tokens[0], &stop));
        let loads: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|users| {
                s.spawn(move || {
                    let ns = layout.ns(&format!("users-{users}"));
                    load_in(&ns, &layout.site, None, port, Scenario::Social, data, o)
                })
            })
            .collect();
        let runs: Vec<_> = loads
            .into_iter()
            .map(|h| h.join().expect("a load thread does not panic"))
            .collect();
        stop.store(true, Ordering::Relaxed);
        (
            runs,
            sampler.join().expect("the sampler does not panic"),
            prober.join().expect("the probe does not panic"),
        )
    });
    let cpu_after = crate::cpu::sample(&members);
    let mut social = Vec::new();
    let mut all = Stats::default();
    for (users, run) in ["a", "b"].into_iter().zip(runs) {
        let (stats, _) = run?;
        social.push(path_run(
            users,
            users,
            Figures::of(&stats, o.phase.as_secs_f64()),
        ));
        all.merge(stats);
    }
    let requests = all.overall.count();
    // the servers fold histogram samples into their buckets every 2 s
    std::thread::sleep(Duration::from_millis(2500));
    let after = invalidation_histograms(layout, &states)?;
    let invalidation = ["a", "b"]
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(region, (b, a))| RegionDelay {
            region: (*region).into(),
            delay: Delay::from(&a.since(b)),
        })
        .collect();
    let cpu = crate::cpu::CpuView::between(&cpu_before, &cpu_after, requests);
    Ok(Social {
        runs: social,
        all: Figures::of(&all, o.phase.as_secs_f64()),
        replica_lag: Lag::of(lag?),
        visible_in_b: Lag::of(visible?),
        invalidation,
        cpu,
    })
}

/// Reads the replica lag gauge of every URL every 250 ms until `stop`: the largest of
/// each reading. Runs inside region B's namespace.
fn sample_lag(urls: &[String], stop: &AtomicBool) -> anyhow::Result<Vec<f64>> {
    runtime()?.block_on(async {
        let client = reqwest::Client::new();
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut worst: Option<f64> = None;
            for url in urls {
                if let Some(text) = scrape::fetch(&client, url).await
                    && let Some(v) = scrape::gauge_max(&text, scrape::REPLICA_LAG)
                {
                    worst = Some(worst.map_or(v, |w: f64| w.max(v)));
                }
            }
            samples.extend(worst);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(samples)
    })
}

/// Each region's invalidators' delay histogram (summed), read inside its namespace; empty
/// when a region's invalidator has observed nothing yet.
fn invalidation_histograms(layout: &Layout, states: &[State; 2]) -> anyhow::Result<Vec<Histogram>> {
    ["a", "b"]
        .iter()
        .zip(states)
        .map(|(region, state)| {
            let urls: Vec<String> = state
                .of(Role::Invalidator)
                .map(|p| format!("http://{}/metrics", p.metrics_addr()))
                .collect();
            netns::run_in(&layout.ns(&format!("region-{region}")), || {
                runtime()?.block_on(async {
                    let client = reqwest::Client::new();
                    let mut sum = Histogram::default();
                    for url in &urls {
                        if let Some(text) = scrape::fetch(&client, url).await
                            && let Some(h) = Histogram::parse(&text, scrape::INVALIDATION_DELAY)
                        {
                            sum.add(&h);
                        }
                    }
                    anyhow::Ok(sum)
                })
            })?
        })
        .collect()
}

/// Creates an article through the site at `base` as the user of `token`: when its answer
/// arrived, and its slug when that answer was a success.
pub(crate) async fn post_article(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    title: &str,
    description: &str,
) -> (std::time::Instant, Option<String>) {
    let body = serde_json::json!({"article": {"title": title, "description": description, "body": "b", "tagList": []}});
    let sent = client
        .post(format!("{base}/api/articles"))
        .header("authorization", format!("Token {token}"))
        .json(&body)
        .send()
        .await;
    let answered = std::time::Instant::now();
    let slug = match sent {
        Ok(r) if r.status().is_success() => r
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["article"]["slug"].as_str().map(str::to_string)),
        _ => None,
    };
    (answered, slug)
}
