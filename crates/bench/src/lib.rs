//! `crescendo bench` and `crescendo tour`: the instrument that measures every rung.
//!
//! - [`client`]: the HTTP clients' pool settings, and seeding writes sent again safely.
//! - [`seed`](mod@seed): fills a running Crescendo through its API with data of realistic shape.
//! - [`scenario`]: what a load sends (`list`, `article`, `feed`, `profile`, `write`, `social`).
//! - [`load`]: drives a scenario, closed loop (N connections) or open loop (a fixed arrival
//!   rate, latency measured from the intended send time, so a stalled server cannot hide its
//!   stall), into HDR histograms ([`hist`]) per second and per request kind.
//! - [`server`]: the target's own view, from its `/metrics` and `/proc`, before and after.
//! - [`cpu`]: where the CPU goes: every process of a topology, per role and per request.
//! - [`ceiling`]: the target's answers recorded, served from memory by the stack of
//!   `serve`, and loaded the same way: the most this machine serves through that stack.
//! - [`report`]: `report.json` and a self-contained `report.html` with charts drawn here.
//! - [`regions`]: a running two-region topology (rung 8) measured from inside its
//!   namespaces: read and write latency per users' namespace and region, replication lag,
//!   cross-region invalidation delay, and the RTO and RPO of losing region A.
//! - [`tour`]: runs one scenario against every rung that exists and compares them.

pub mod ceiling;
pub mod client;
pub mod cpu;
pub mod hist;
pub mod load;
pub mod regions;
pub mod report;
pub mod scenario;
pub mod seed;
pub mod server;
pub mod tour;

pub use seed::{SeedPlan, Seeded, read_graph, seed};

use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether `bench` seeds before it loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedMode {
    /// Seed (idempotently), then load.
    Seed,
    /// Seed, then stop.
    SeedOnly,
    /// Only sign the seeded users in and collect slugs, then load.
    NoSeed,
}

/// Everything `crescendo bench` takes.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The target, e.g. `http://127.0.0.1:8080` (a trailing `/api` is fine).
    pub target: String,
    /// What to send.
    pub scenario: scenario::Scenario,
    /// How load is generated.
    pub model: load::Model,
    /// How long to send.
    pub duration: Duration,
    /// A request without an answer after this long is a `timeout` error.
    pub timeout: Duration,
    /// What to seed.
    pub seed: SeedPlan,
    /// Whether to seed.
    pub seed_mode: SeedMode,
    /// The target's metrics endpoints on its operators' listeners (`http.ops_listen`, printed
    /// at start as `ops listening on http://ADDR`), summed (one per web node behind a load
    /// balancer); empty: no server view in the report (the public listener has no `/metrics`).
    pub metrics: Vec<String>,
    /// PID of a local target, for CPU time and peak memory (its CPU is also counted as the
    /// role `server` in [`report::Report::cpu`]).
    pub pid: Option<u32>,
    /// The run directory of a topology `crescendo up` started on this machine: every process
    /// its `state.json` lists is sampled for CPU (see [`cpu`]), and when `metrics` is empty,
    /// its web nodes' and workers' metrics endpoints are read.
    pub run_dir: Option<PathBuf>,
    /// Where `report.json`, `report.html`, `tokens.txt` and `slugs.txt` go.
    pub out: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
    /// After the run, serve the answers recorded from the target through the stack of
    /// `serve` in this process and run the same load against them (see [`ceiling`]); the
    /// closed loop only.
    pub ceiling: bool,
}

/// The origin of a target URL: `http://h:p/api/` → `http://h:p`.
pub fn origin(target: &str) -> String {
    let t = target.trim_end_matches('/');
    t.strip_suffix("/api").unwrap_or(t).to_string()
}

/// Parses durations like `30s`, `2m`, `500ms`, `1h` (a bare number is seconds).
///
/// # Errors
/// Text that is not a number with one of those units.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 2m or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// The target's origin ([`origin`]), refused when it is a two-region topology's address and
/// this thread is not inside a namespace (see `crescendo_topology::netns`).
fn origin_to_load(target: &str) -> anyhow::Result<String> {
    let base = origin(target);
    if let Some(ip) = reqwest::Url::parse(&base)
        .ok()
        .and_then(|u| u.host_str()?.parse::<std::net::IpAddr>().ok())
    {
        crescendo_topology::netns::refuse_from_root(ip)?;
    }
    Ok(base)
}

/// Seeds, loads, scrapes the server before and after, and writes the report.
/// Returns `None` in seed-only mode.
///
/// # Errors
/// Seeding failed or the report could not be written.
pub async fn bench(o: &BenchOptions) -> anyhow::Result<Option<report::Report>> {
    let base = origin_to_load(&o.target)?;
    let mut plan = o.seed.clone();
    plan.sign_in_only = o.seed_mode == SeedMode::NoSeed;
    let seeded = seed::seed(&base, &plan).await.context("seeding")?;
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    std::fs::write(o.out.join("tokens.txt"), seeded.tokens.join("\n") + "\n")?;
    std::fs::write(o.out.join("slugs.txt"), seeded.slugs.join("\n") + "\n")?;
    if o.seed_mode == SeedMode::SeedOnly {
        eprintln!(
            "seeded {} users and {} articles; tokens and slugs in {}",
            seeded.tokens.len(),
            seeded.slugs.len(),
            o.out.display()
        );
        return Ok(None);
    }
    anyhow::ensure!(!seeded.tokens.is_empty(), "no users to send requests as");
    anyhow::ensure!(
        !o.ceiling || matches!(o.model, load::Model::Closed { .. }),
        "--ceiling compares closed-loop throughputs: use --connections, not --rate"
    );
    let state = match &o.run_dir {
        Some(dir) => Some(crescendo_topology::state::State::read(dir)?),
        None => None,
    };
    let metrics_urls = match &state {
        Some(state) if o.metrics.is_empty() => state_metrics(state),
        _ => o.metrics.clone(),
    };
    if metrics_urls.is_empty() {
        eprintln!(
            "no --metrics: the report has no server view (pass --metrics http://OPS_ADDR/metrics, \
             the address the server prints as `ops listening on`)"
        );
    }
    let before = server::scrape_all(&metrics_urls).await;
    let p_before = o.pid.and_then(server::sample_process);
    let topology_before = sample_topology(o, state.as_ref());

    let mut run = load::Run {
        base: base.clone(),
        scenario: o.scenario,
        data: Arc::new(seeded),
        model: o.model,
        duration: o.duration,
        timeout: o.timeout,
        record: o.ceiling.then(Arc::default),
    };
    if o.scenario == scenario::Scenario::Upload {
        // the image is made once, before the clock starts: on a busy machine making it took
        // longer than a short run, which then sent one upload and no probe at all
        scenario::upload_body();
    }
    let progress = Arc::new(load::Progress::default());
    let (bar, ticker) = progress_bar(o, &progress);
    let started = Instant::now();
    // the upload scenario: a probe measures how long uploads take to become ready
    let probe = (o.scenario == scenario::Scenario::Upload).then(|| {
        let (base, token) = (base.clone(), run.data.tokens[0].clone());
        let until = started + o.duration;
        tokio::spawn(probe_uploads(base, token, until))
    });
    let stats = load::run(&run, progress).await?;
    let elapsed = started.elapsed().as_secs_f64().max(
        o.duration
            .as_secs_f64()
            .min(started.elapsed().as_secs_f64()),
    );
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // the state again: processes started during the run (a scaled worker tier) count too
    let state = o
        .run_dir
        .as_deref()
        .map(crescendo_topology::state::State::read);
    let (cpu_after, edges_after) = sample_topology(o, state.and_then(Result::ok).as_ref());
    let after = server::scrape_all(&metrics_urls).await;
    let p_after = o.pid.and_then(server::sample_process);
    let view = server::ServerView::between(before.as_ref(), after.as_ref(), p_before, p_after);
    let mut report = report::Report::new(&base, o.scenario, o.model, elapsed, &stats, view);
    if o.pid.is_some() || o.run_dir.is_some() {
        report.cpu = cpu::CpuView::between(&topology_before.0, &cpu_after, report.requests);
    }
    report.edges = topology_before.1.zip(edges_after).map(|(b, a)| a.since(b));
    if let Some(p) = probe {
        report.upload_ready = Some(p.await?.summary());
        if let (Some(b), Some(a)) = (&before, &after) {
            report.jobs_per_second = Some((a.jobs_ok - b.jobs_ok) / elapsed);
        }
    }
    if let Some(recorder) = run.record.take() {
        let recorder = Arc::try_unwrap(recorder)
            .map_err(|_| anyhow::anyhow!("the recording is still shared after the run"))?;
        report.ceiling = Some(ceiling::measure(&run, recorder, report.throughput).await?);
    }
    report
        .write(&o.out)
        .with_context(|| format!("writing the report into {}", o.out.display()))?;
    Ok(Some(report))
}

/// With `o.progress`, a progress bar and the task that updates it from `progress` four
/// times a second (aborted, and the bar cleared, when the run ends).
fn progress_bar(
    o: &BenchOptions,
    progress: &Arc<load::Progress>,
) -> (
    Option<indicatif::ProgressBar>,
    Option<tokio::task::JoinHandle<()>>,
) {
    let bar = o.progress.then(|| {
        let bar = indicatif::ProgressBar::new(o.duration.as_secs().max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} s  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    });
    let ticker = bar.clone().map(|bar| {
        let progress = Arc::clone(progress);
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let (n, e) = (
                    progress.requests.load(std::sync::atomic::Ordering::Relaxed),
                    progress.errors.load(std::sync::atomic::Ordering::Relaxed),
                );
                let secs = start.elapsed().as_secs_f64();
                bar.set_position(secs as u64);
                bar.set_message(format!(
                    "{:.0} req/s, {e} errors",
                    n as f64 / secs.max(0.001)
                ));
            }
        })
    });
    (bar, ticker)
}

/// The metrics endpoints of a topology's web nodes and workers.
fn state_metrics(state: &crescendo_topology::state::State) -> Vec<String> {
    use crescendo_topology::Role;
    state
        .processes
        .iter()
        .filter(|p| matches!(p.role, Role::Web | Role::Worker))
        .map(|p| format!("http://{}/metrics", p.metrics_addr()))
        .collect()
}

/// The CPU of the processes a run counts, and every edge's counters summed (`None` without
/// edges), at one moment.
fn sample_topology(
    o: &BenchOptions,
    state: Option<&crescendo_topology::state::State>,
) -> (
    cpu::Sample,
    Option<crescendo_topology::varnish::EdgeCounters>,
) {
    let edges = o
        .run_dir
        .as_deref()
        .zip(state)
        .and_then(|(dir, state)| crescendo_topology::varnish::all_counters(dir, state));
    (cpu::sample(&cpu_members(o, state)), edges)
}

/// The processes whose CPU a run counts: the topology's, and a local target given by PID
/// (as the role `server`) unless the topology lists it.
fn cpu_members(
    o: &BenchOptions,
    state: Option<&crescendo_topology::state::State>,
) -> Vec<cpu::Member> {
    let mut members = state.map(cpu::members_of).unwrap_or_default();
    if let Some(pid) = o.pid
        && !members.iter().any(|m| m.pid == pid)
    {
        members.push(cpu::Member {
            role: "server".into(),
            name: format!("pid {pid}"),
            pid,
        });
    }
    members
}

/// Until `until`, starts a probe upload as `token` every 250 ms while fewer than
/// [`PROBES_AT_ONCE`] are waiting, each timed from its answer to `ready` (or `failed`) by
/// polling every 50 ms on its own task, so a slow one never delays the next; waits at most
/// a minute for each. The cap keeps the probes' polling from becoming load of its own.
async fn probe_uploads(base: String, token: String, until: Instant) -> hist::Latency {
    const PROBES_AT_ONCE: usize = 4;
    let client = client::builder(PROBES_AT_ONCE).build().unwrap_or_default();
    let (content_type, body) = scenario::upload_body();
    let mut probes: Vec<tokio::task::JoinHandle<Option<Duration>>> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    // at least one probe, however short the run
    while probes.is_empty() || Instant::now() < until {
        tick.tick().await;
        if probes.iter().filter(|p| !p.is_finished()).count() >= PROBES_AT_ONCE {
            continue;
        }
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        probes.push(tokio::spawn(async move {
            let res = client
                .post(format!("{base}/api/uploads"))
                .header("authorization", format!("Token {token}"))
                .header("content-type", content_type.as_str())
                .body(body.clone())
                .send()
                .await
                .ok()?;
            let v = res.json::<serde_json::Value>().await.ok()?;
            let id = v["upload"]["id"].as_str()?.to_string();
            let answered = Instant::now();
            while answered.elapsed() < Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let state = match client
                    .get(format!("{base}/api/uploads/{id}"))
                    .header("authorization", format!("Token {token}"))
                    .send()
                    .await
                {
                    Ok(r) => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["upload"]["state"].as_str().map(str::to_string)),
                    Err(_) => None,
                };
                if state.as_deref().is_some_and(|s| s != "processing") {
                    return Some(answered.elapsed());
                }
            }
            None
        }));
    }
    let mut h = hist::Latency::new();
    for p in probes {
        if let Ok(Some(took)) = p.await {
            h.record(took);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_origins_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3d").is_err());
        assert_eq!(
            origin("http://127.0.0.1:8080/api/"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
