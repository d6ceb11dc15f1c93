//! Rung 11's monitoring, checked inside the tests that already bring a topology up:
//! Prometheus scrapes every process that should be scraped (and an exporter for every
//! server that has no `/metrics` of its own), answers no one without its password, and a
//! node that `scale` adds is a target within [`NEW_TARGET_BOUND`]; a web node killed
//! raises `TierMemberDown`, which Alertmanager delivers to the alert sink within
//! [`ALERT_BOUND`].

use super::*;

/// How long a node `scale` adds may take to be a healthy target: Prometheus applies new
/// targets on a 5 s tick and scrapes every 5 s.
pub const NEW_TARGET_BOUND: Duration = Duration::from_secs(15);

/// How long a member-down alert may take from the kill to the alert sink: a failed scrape
/// (up to 5 s), the rule's evaluation (5 s), its `for: 15s`, Alertmanager's `group_wait: 1s`,
/// with room for a loaded machine.
pub const ALERT_BOUND: Duration = Duration::from_secs(60);

/// Prometheus of the topology in `run_dir`: its address and password.
pub fn prometheus(s: &Value, run_dir: &Path) -> (String, String) {
    let addr = addr_where(s, "role", "prometheus");
    let password = std::fs::read_to_string(run_dir.join("prometheus/password")).unwrap();
    (addr, password.trim().to_string())
}

/// Every active target Prometheus reports healthy, as `name@instance` (its `name` label and
/// the address it scrapes).
async fn healthy_targets(addr: &str, password: &str) -> Vec<String> {
    let v: Value = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/targets?state=active"))
        .basic_auth("crescendo", Some(password))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["health"] == "up")
        .map(|t| {
            let label = |k: &str| t["labels"][k].as_str().unwrap_or_default().to_string();
            format!("{}@{}", label("name"), label("instance"))
        })
        .collect()
}

/// Process `p` of a status as a target: `name@address` where its metrics are read.
fn target(p: &Value) -> String {
    let field = |k: &str| p[k].as_str().map(str::to_string);
    let at = match p["role"].as_str().unwrap() {
        "web" | "lb" => field("ops_addr"),
        _ => field("addr"),
    };
    format!("{}@{}", field("name").unwrap(), at.unwrap())
}

/// Polls Prometheus until every one of `names` (as [`target`] gives them) is a healthy
/// target, failing after `limit`; returns how long that took.
pub async fn targets_up_within(
    addr: &str,
    password: &str,
    names: &[String],
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let up = healthy_targets(addr, password).await;
        let missing: Vec<&String> = names.iter().filter(|n| !up.contains(n)).collect();
        if missing.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not healthy targets after {limit:?}: {missing:?} (healthy: {up:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The processes of status `s` Prometheus must scrape, as targets: every web node, worker,
/// balancer, exporter and Prometheus itself; and the exporter each database server, Redis
/// server, edge and NATS server must have.
pub fn must_scrape(s: &Value) -> Vec<String> {
    let processes = s["processes"].as_array().unwrap();
    let name = |p: &Value| p["name"].as_str().unwrap().to_string();
    let scraped = |p: &&Value| {
        ["web", "worker", "lb", "exporter", "prometheus"].contains(&p["role"].as_str().unwrap())
    };
    let names: Vec<String> = processes.iter().filter(scraped).map(name).collect();
    for p in processes {
        let kind = match p["role"].as_str().unwrap() {
            "pg-primary" | "pg-replica" => "postgres",
            "redis" => "redis",
            "nats" => "nats",
            "edge" if p["name"].as_str().unwrap().starts_with("edge-") => "varnish",
            _ => continue,
        };
        let exporter = format!("{kind}-exporter-{}", name(p));
        assert!(names.contains(&exporter), "{} has no {exporter}", name(p));
    }
    assert!(names.contains(&"node-exporter".to_string()), "{names:?}");
    processes.iter().filter(scraped).map(target).collect()
}

/// Every process that should be scraped is a healthy target within 30 s of `up`; Prometheus,
/// the balancer's metrics listener and the exporters that support it refuse a request
/// without the password (401), and `status` names Prometheus's URL.
pub async fn scrapes_every_tier(s: &Value, run_dir: &Path) {
    let (addr, password) = prometheus(s, run_dir);
    let names = must_scrape(s);
    let took = targets_up_within(&addr, &password, &names, Duration::from_secs(30)).await;
    eprintln!("{} targets up {took:?} after status", names.len());
    let bare = |url: String| async move { reqwest::get(url).await.unwrap().status() };
    let api = format!("http://{addr}/api/v1/targets");
    assert_eq!(bare(api).await, StatusCode::UNAUTHORIZED);
    for p in s["processes"].as_array().unwrap() {
        let at = match (p["role"].as_str().unwrap(), p["name"].as_str().unwrap()) {
            ("lb", _) => p["ops_addr"].as_str().unwrap(),
            ("exporter", n)
                if ["node-", "postgres-", "nats-"]
                    .iter()
                    .any(|k| n.starts_with(k)) =>
            {
                p["addr"].as_str().unwrap()
            }
            _ => continue,
        };
        let code = bare(format!("http://{at}/metrics")).await;
        assert_eq!(
            code,
            StatusCode::UNAUTHORIZED,
            "{} without a password",
            p["name"]
        );
    }
    // every database server's exporter reports its replay lag in seconds (ReplicaLagHigh)
    let pgs = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "pg-primary" || p["role"] == "pg-replica")
        .count();
    let started = Instant::now();
    while query(&addr, &password, "count(pg_replication_lag)").await != Some(pgs as f64) {
        assert!(
            started.elapsed() < NEW_TARGET_BOUND,
            "pg_replication_lag is not reported for {pgs} servers after {NEW_TARGET_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Alertmanager and the alert sink refuse a request without their passwords
    for (role, path) in [
        ("alertmanager", "/api/v2/status"),
        ("alert-sink", "/alerts"),
    ] {
        let p = s["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["role"] == role)
            .unwrap_or_else(|| panic!("no {role} in {s}"));
        let code = bare(format!("http://{}{path}", p["addr"].as_str().unwrap())).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{role} without a password");
    }
    let table = crescendo(&["status", "--run-dir", &run_dir.to_string_lossy()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!("prometheus: http://{addr}")),
        "{table}"
    );
}

/// The `TierMemberDown` alert for web node `name`, killed at `killed`, reaches the alert
/// sink (its firing alerts file) within [`ALERT_BOUND`], with the node's job, role and
/// name; the sink's log holds it as a JSON line, and `status` (table and `--json`) shows it.
pub async fn member_down_alert_reaches_the_sink(run_dir: &Path, name: &str, killed: Instant) {
    let is_it = |a: &crescendo_topology::alert_sink::FiringAlert| {
        a.name == "TierMemberDown" && a.labels.get("name").map(String::as_str) == Some(name)
    };
    let alert = loop {
        let firing = crescendo_topology::alert_sink::firing(run_dir);
        if let Some(a) = firing.iter().find(|a| is_it(a)) {
            break a.clone();
        }
        assert!(
            killed.elapsed() < ALERT_BOUND,
            "no TierMemberDown for {name} after {ALERT_BOUND:?}: {firing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "TierMemberDown for {name} reached the alert sink {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(alert.labels["job"], "web");
    assert_eq!(alert.labels["role"], "web");
    assert_eq!(alert.labels["severity"], "page");
    assert_eq!(alert.summary, format!("{name} (web) is down"));
    let log = std::fs::read_to_string(run_dir.join("alertmanager/sink.log")).unwrap();
    let logged = log.lines().any(|l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| {
            v["alert"] == "TierMemberDown" && v["status"] == "firing" && v["labels"]["name"] == name
        })
    });
    assert!(logged, "the sink logs the alert: {log}");
    let table = crescendo(&["status", "--run-dir", &run_dir.to_string_lossy()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("ALERT TierMemberDown since "), "{table}");
    assert!(table.contains(&format!("name={name}")), "{table}");
    let s = status(run_dir);
    let listed = s["alerts"]
        .as_array()
        .unwrap_or_else(|| panic!("no alerts in {s}"));
    assert!(
        listed
            .iter()
            .any(|a| a["name"] == "TierMemberDown" && a["labels"]["name"] == name),
        "{s}"
    );
}

/// The web nodes `scale` just started (those of `after` not in `before`; a name may come
/// back on a new address) are healthy targets within [`NEW_TARGET_BOUND`].
pub async fn scrapes_new_nodes(before: &Value, after: &Value, run_dir: &Path) {
    let web = |s: &Value| -> Vec<String> {
        s["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["role"] == "web")
            .map(target)
            .collect()
    };
    let old = web(before);
    let new: Vec<String> = web(after)
        .into_iter()
        .filter(|n| !old.contains(n))
        .collect();
    assert!(!new.is_empty(), "scale started no node");
    let (addr, password) = prometheus(after, run_dir);
    let took = targets_up_within(&addr, &password, &new, NEW_TARGET_BOUND).await;
    eprintln!("new web nodes {new:?} were healthy targets {took:?} after scale");
}

/// The value of the PromQL `query` (a single number), as Prometheus at `addr` answers it now;
/// `None` while it has no sample.
async fn query(addr: &str, password: &str, query: &str) -> Option<f64> {
    let v: Value = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/query?query={query}"))
        .basic_auth("crescendo", Some(password))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// The edges' hits, misses and origin fetches reach Prometheus (through each edge's
/// varnish exporter) once traffic has gone through them: each is above 0 within 15 s.
pub async fn counts_edge_traffic(s: &Value, run_dir: &Path) {
    let (addr, password) = prometheus(s, run_dir);
    for series in [
        "varnish_main_cache_hit",
        "varnish_main_cache_miss",
        "varnish_main_backend_req",
    ] {
        let q = format!("sum({series})");
        let started = Instant::now();
        while query(&addr, &password, &q).await.unwrap_or(0.0) <= 0.0 {
            assert!(
                started.elapsed() < NEW_TARGET_BOUND,
                "{q} is not above 0 after {NEW_TARGET_BOUND:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The alert named `alert` whose label `key` is `value` is in the alert sink's file within
/// `limit` of `since`; returns how long it took.
async fn alert_within(
    run_dir: &Path,
    (alert, key, value): (&str, &str, &str),
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        let firing = crescendo_topology::alert_sink::firing(run_dir);
        if firing
            .iter()
            .any(|a| a.name == alert && a.labels.get(key).map(String::as_str) == Some(value))
        {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "no {alert} for {key}={value} after {limit:?}: {firing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// With WAL replay paused on a replica of `processes` and a write through `url`, the
/// replica falls behind what it has received, and `ReplicaLagHigh` names it in the alert
/// sink within [`ALERT_BOUND`] after its lag passes 10 s; replay is resumed afterwards.
pub async fn replica_lag_alert_reaches_the_sink(run_dir: &Path, processes: &[Value], url: &str) {
    use crescendo_config::{Overrides, Settings};
    let replica = processes
        .iter()
        .find(|p| p["role"] == "pg-replica")
        .expect("a replica");
    let name = replica["name"].as_str().unwrap();
    let addr: std::net::SocketAddr = replica["addr"].as_str().unwrap().parse().unwrap();
    let admin = Settings::load_with_env(
        Some(&run_dir.join("postgres-admin.toml")),
        &Overrides::default(),
        [],
    )
    .unwrap()
    .store
    .postgres_url;
    let userinfo = admin
        .split_once("://")
        .unwrap()
        .1
        .rsplit_once('@')
        .unwrap()
        .0;
    let (user, password) = userinfo.split_once(':').unwrap();
    let psql = |sql: &str| {
        let out = Command::new("/usr/lib/postgresql/15/bin/psql")
            .args([
                "-X",
                "-w",
                "-h",
                "127.0.0.1",
                "-p",
                &addr.port().to_string(),
            ])
            .args(["-U", user, "-d", "postgres", "-Atc", sql])
            .env("PGPASSWORD", password)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql("SELECT pg_wal_replay_pause()");
    let paused = Instant::now();
    // a write the replica receives but does not replay
    register(url, "lagging-behind").await;
    let took = alert_within(
        run_dir,
        ("ReplicaLagHigh", "of", name),
        paused,
        Duration::from_secs(10) + ALERT_BOUND,
    )
    .await;
    psql("SELECT pg_wal_replay_resume()");
    eprintln!("ReplicaLagHigh for {name} reached the alert sink {took:?} after replay paused");
}
