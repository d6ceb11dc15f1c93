//! Rung 11's web autoscaler under a load step: an open-loop client steps from [`LOW`] to
//! [`HIGH`] requests per second and back through the balancer of a small rung-3 topology
//! whose web tier scales from 1 to 3 nodes at [`TARGET`] requests per second each, with a
//! 1 s scrape and a 10 s scale-down window. The tier grows to 3, and shrinks back to 1 once
//! the window has passed; no request fails, and the count only ever goes up, then down
//! (the scale events are counted: no flapping).

use super::*;

/// Requests per second before and after the step: one node's worth at a fraction of the
/// target.
const LOW: u64 = 50;
/// Requests per second during the step: three nodes' worth. One debug-build node served
/// about 400 req/s of `GET /api/articles` closed-loop with 16 connections on the shared
/// 2-core machine, so a node takes the step until the others join.
const HIGH: u64 = 300;
/// The autoscaler's target per node.
const TARGET: u64 = 100;
/// The scale-down window, seconds.
const DOWN_WINDOW: u64 = 10;

/// An open-loop client: requests go out at the set rate, whatever the answers do, each on
/// its own task; answers other than 2xx and transport errors are kept as failures.
struct OpenLoop {
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    sender: tokio::task::JoinHandle<()>,
}

impl OpenLoop {
    fn start(url: String, rate: u64) -> Self {
        let rate = Arc::new(AtomicU64::new(rate));
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let in_flight = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        // idle connections are given up before HAProxy's 10 s keep-alive ends (README)
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .unwrap();
        let (r, s, o, f, i) = (
            rate.clone(),
            stop.clone(),
            ok.clone(),
            failures.clone(),
            in_flight.clone(),
        );
        let sender = tokio::spawn(async move {
            let mut next = tokio::time::Instant::now();
            while !s.load(Ordering::Relaxed) {
                next += Duration::from_secs_f64(1.0 / r.load(Ordering::Relaxed) as f64);
                tokio::time::sleep_until(next).await;
                let (client, url, o, f, i) =
                    (client.clone(), url.clone(), o.clone(), f.clone(), i.clone());
                i.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let answer = match client.get(&url).send().await {
                        Ok(res) if res.status().is_success() => {
                            res.bytes().await.map(drop).map_err(|e| format!("{e:?}"))
                        }
                        Ok(res) => Err(res.status().to_string()),
                        Err(e) => Err(format!("{e:?}")),
                    };
                    match answer {
                        Ok(()) => o.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            f.lock().unwrap().push(e);
                            0
                        }
                    };
                    i.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            rate,
            stop,
            ok,
            in_flight,
            failures,
            sender,
        }
    }

    fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
    }

    /// Stops sending, waits for the answers still due; returns (ok, failures).
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.sender.await.unwrap();
        wait_for("the last answers", Duration::from_secs(20), || {
            self.in_flight.load(Ordering::SeqCst) == 0
        })
        .await;
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// The web nodes `state.json` holds: (name, operators' address).
fn web_nodes(run_dir: &Path) -> Vec<(String, String)> {
    let state = crescendo_topology::State::read(run_dir).unwrap();
    state
        .of(crescendo_topology::Role::Web)
        .map(|p| (p.name.clone(), p.metrics_addr().to_string()))
        .collect()
}

/// The web autoscaler's decisions file.
fn decisions(run_dir: &Path) -> Value {
    let text = std::fs::read(run_dir.join("web-autoscale.json")).unwrap_or_default();
    serde_json::from_slice(&text).unwrap_or(Value::Null)
}

/// Waits until a node other than `web-1` has answered a request of the load; returns how
/// long after `since`, and fails after `limit`. Never more than 3 nodes on the way.
async fn new_node_takes_traffic(run_dir: &Path, since: Instant, limit: Duration) -> Duration {
    loop {
        let nodes = web_nodes(run_dir);
        assert!(nodes.len() <= 3, "above max_nodes: {nodes:?}");
        for (name, ops) in nodes.iter().filter(|(n, _)| n != "web-1") {
            if metric(ops, "crescendo_http_requests_total", "/api/tags").await > 0.0 {
                eprintln!("web autoscaling: {name} answered the load");
                return since.elapsed();
            }
        }
        assert!(
            since.elapsed() < limit,
            "no new node took traffic within {limit:?}: {}",
            decisions(run_dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `state.json` holds `n` web nodes; returns how long after `since`, failing
/// after `limit`.
async fn nodes_become(run_dir: &Path, n: usize, since: Instant, limit: Duration) -> Duration {
    loop {
        let nodes = web_nodes(run_dir);
        assert!(nodes.len() <= 3, "above max_nodes: {nodes:?}");
        if nodes.len() == n {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "not {n} web nodes within {limit:?}: {nodes:?}; {}",
            decisions(run_dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The count changed only up, then only down, and at most twice each way (1 to 3 nodes and
/// back, in one or two steps each); returns the changes as `from->to`.
fn assert_no_flapping(d: &Value) -> Vec<String> {
    let events = d["events"].as_array().unwrap();
    let steps: Vec<(u64, u64)> = events
        .iter()
        .map(|e| {
            (
                e["current"].as_u64().unwrap(),
                e["desired"].as_u64().unwrap(),
            )
        })
        .collect();
    let first_down = steps.iter().position(|(a, b)| b < a).unwrap_or(steps.len());
    assert!(
        steps[..first_down].iter().all(|(a, b)| b > a)
            && steps[first_down..].iter().all(|(a, b)| b < a),
        "the count went back and forth: {steps:?}"
    );
    let (ups, downs) = (
        d["scale_ups"].as_u64().unwrap(),
        d["scale_downs"].as_u64().unwrap(),
    );
    assert!(
        (1..=2).contains(&ups) && (1..=2).contains(&downs),
        "{ups} up, {downs} down: {d}"
    );
    steps.iter().map(|(a, b)| format!("{a}->{b}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_step_scales_the_web_tier_out_and_back_in_without_failing_a_request() {
    let started = Instant::now();
    let spec = tempfile::tempdir().unwrap();
    let file = spec.path().join("web-autoscale.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"web autoscaling\"\nrung = 3\n\
             [web]\ncount = 1\nmax_nodes = 3\ntarget_rps_per_node = {TARGET}\n\
             scale_down_window_secs = {DOWN_WINDOW}\n\
             [postgres]\n[load_balancer]\n[monitoring]\nscrape_interval = \"1s\"\n"
        ),
    )
    .unwrap();
    let t = up(&file.to_string_lossy(), &[]);
    let run_dir = t.run_dir.clone();
    let load = OpenLoop::start(format!("{}/api/tags", t.url), LOW);
    // the low rate until the autoscaler has a figure, then a few looks more: no change
    wait_for(
        "a request rate from Prometheus",
        Duration::from_secs(30),
        || decisions(&run_dir)["last"]["total_rps"].is_number(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let d = decisions(&run_dir);
    assert_eq!(
        (web_nodes(&run_dir).len(), &d["scale_ups"]),
        (1, &json!(0)),
        "{d}"
    );
    assert!(
        ["steady", "at-min"].contains(&d["last"]["why"].as_str().unwrap()),
        "{d}"
    );

    load.set_rate(HIGH);
    let (step, step_ms) = (Instant::now(), now_ms());
    let taking = new_node_takes_traffic(&run_dir, step, Duration::from_secs(30)).await;
    let out = nodes_become(&run_dir, 3, step, Duration::from_secs(30)).await;
    let up_decided = decisions(&run_dir)["events"][0]["at_ms"].as_u64().unwrap();
    // hold the step a little, then drop back
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(web_nodes(&run_dir).len(), 3);
    load.set_rate(LOW);
    let drop = Instant::now();
    let drop_ms = now_ms();
    let back = nodes_become(&run_dir, 1, drop, Duration::from_secs(45)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, failures) = load.finish().await;

    let d = decisions(&run_dir);
    let steps = assert_no_flapping(&d);
    let first_down = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["desired"].as_u64() < e["current"].as_u64())
        .unwrap()["at_ms"]
        .as_u64()
        .unwrap();
    eprintln!(
        "web autoscaling: {LOW} -> {HIGH} -> {LOW} req/s, target {TARGET}/node: a new node took \
         traffic {taking:?} after the step (scale-out decided {:.1} s after it, 3 nodes after \
         {out:?}); back to 1 node {back:?} after the drop (first scale-down decided {:.1} s \
         after it; window {DOWN_WINDOW} s); changes {steps:?}; {ok} ok, {} failed; {:?} in all",
        up_decided.saturating_sub(step_ms) as f64 / 1000.0,
        first_down.saturating_sub(drop_ms) as f64 / 1000.0,
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(ok > 1_000, "{ok}");
    assert!(
        back >= Duration::from_secs(DOWN_WINDOW),
        "scaled in before the window: {back:?}"
    );
    let table = crescendo(&["status", "--run-dir", &run_dir.to_string_lossy()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("web autoscaler: 1 nodes (min 1, max 3"),
        "{table}"
    );
    assert!(
        table.contains("scaling up") && table.contains("scaling down"),
        "{table}"
    );
}

/// Now, ms since the Unix epoch (the decisions file's clock).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
