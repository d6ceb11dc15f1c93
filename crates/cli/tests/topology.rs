//! `crescendo up`, `status` and `down` with the rung-3 topology: HAProxy in front of three
//! web nodes on PostgreSQL, all real processes. Through the load balancer: the RealWorld
//! collection passes, and under steady load a node stopped with SIGTERM fails no request
//! and a node killed with SIGKILL fails no read.

#[path = "topology/dashboard.rs"]
mod dashboard;
#[path = "topology/edge.rs"]
mod edge;
#[path = "topology/logs.rs"]
mod logs;
#[path = "topology/monitoring.rs"]
mod monitoring;
#[path = "topology/web_autoscale.rs"]
mod web_autoscale;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `GET url` with `client`, its body as JSON (the test fails on any error).
async fn get_json(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// GETs `url` as the user of `token` and decodes the answer.
async fn get_json_as(client: &reqwest::Client, url: impl reqwest::IntoUrl, token: &str) -> Value {
    let req = client
        .get(url)
        .header("authorization", format!("Token {token}"));
    req.send().await.unwrap().json().await.unwrap()
}

/// How long a reader without the writer's read fence may take to see another node's write
/// at rungs 5 and 7 (the invalidation delay: the README gives it, well under a millisecond
/// on loopback; this allows for a loaded machine).
const REPORT_BOUND: Duration = Duration::from_secs(1);

/// How long a sharded feed may take to show a follow's or a post's articles: the feed job goes
/// from the write's outbox through the relay and the queue to a worker.
const FAN_OUT_BOUND: Duration = Duration::from_secs(15);

/// GETs `url` anonymously until the JSON at `pointer` is `want`, for at most
/// [`REPORT_BOUND`]; returns the last answer.
async fn seen_within(client: &reqwest::Client, url: String, pointer: &str, want: &str) -> Value {
    let started = Instant::now();
    loop {
        let v = get_json(client, url.as_str()).await;
        if v.pointer(pointer).and_then(Value::as_str) == Some(want)
            || started.elapsed() > REPORT_BOUND
        {
            return v;
        }
        tokio::task::yield_now().await;
    }
}

fn crescendo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_crescendo"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("crescendo runs")
}

fn topology(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../topologies")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Stops the topology however the test ends.
struct Down(PathBuf);

/// A topology brought up by `crescendo up --detach` for one test; stopped (`down`), then its
/// run directory removed, when dropped.
struct Deployed {
    _down: Down,
    /// The temporary directory that holds `run_dir`, for whatever else a test keeps.
    root: tempfile::TempDir,
    run_dir: PathBuf,
    public: std::net::SocketAddr,
    url: String,
    /// What `up` printed.
    stdout: String,
}

/// `crescendo up FILE` on a free public port, with `env` set for every process it starts;
/// asserts that it succeeded.
fn up(file: &str, env: &[(&str, &str)]) -> Deployed {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().join("run");
    let public = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crescendo"))
        .args([
            "up",
            file,
            "--detach",
            "--public",
            &public.to_string(),
            "--run-dir",
            &run_dir.to_string_lossy(),
        ])
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("crescendo runs");
    let down = Down(run_dir.clone());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Deployed {
        _down: down,
        root: run,
        run_dir,
        public,
        url: format!("http://{public}"),
        stdout,
    }
}

/// The topology's status once its balancer sees `nodes` web nodes up, or after 5 s.
async fn status_with_nodes_up(run_dir: &Path, nodes: usize) -> Value {
    let mut s = status(run_dir);
    for _ in 0..50 {
        if up_nodes(&s) == nodes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = status(run_dir);
    }
    s
}

/// Runs the RealWorld collection against `url` with users named after `tag`; asserts that
/// every request and assertion passed.
fn realworld_collection(url: &str, tag: &str) {
    realworld_collection_with(url, tag, &[]);
}

/// [`realworld_collection`] with newman given `extra` arguments too.
fn realworld_collection_with(url: &str, tag: &str, extra: &[&str]) {
    crescendo_testkit::realworld::run_collection(url, tag, extra);
}

/// Registers `name` through the API at `url`; returns its token.
async fn register(url: &str, name: &str) -> String {
    let reg: Value = reqwest::Client::new()
        .post(format!("{url}/api/users"))
        .json(&json!({"user": {"username": name, "email": format!("{name}@example.com"), "password": "password123"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reg["user"]["token"].as_str().unwrap().to_string()
}

/// The address of the process of status `s` whose `field` is `value` (the first one).
fn addr_where(s: &Value, field: &str, value: &str) -> String {
    s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[field] == value)
        .unwrap_or_else(|| panic!("no process with {field} {value} in {s}"))["addr"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The roles of the topology's tiers, in start order: Prometheus, its exporters,
/// Alertmanager, the alert sink and the dashboard, which every topology from rung 2 runs,
/// are left out (`monitoring` and `dashboard` check them).
fn roles(s: &Value) -> Vec<String> {
    s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap().to_string())
        .filter(|r| {
            ![
                "exporter",
                "prometheus",
                "alertmanager",
                "alert-sink",
                "dashboard",
            ]
            .contains(&r.as_str())
        })
        .collect()
}

impl Drop for Down {
    fn drop(&mut self) {
        let _ = crescendo(&["down", "--run-dir", &self.0.to_string_lossy()]);
        if std::thread::panicking() {
            keep_logs(&self.0);
        }
    }
}

/// Copies the logs of a failed test's topology (its run directory is removed afterwards) to
/// a directory that stays, and says where.
fn keep_logs(run_dir: &Path) {
    let kept = std::env::temp_dir().join(format!(
        "crescendo-failed-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    ));
    match crescendo_topology::state::copy_logs(run_dir, &kept) {
        Ok(n) => eprintln!(
            "the failed topology's {n} logs are kept in {}",
            kept.display()
        ),
        Err(e) => eprintln!("the failed topology's logs could not be kept: {e}"),
    }
}

fn status(run_dir: &Path) -> Value {
    let out = crescendo(&["status", "--json", "--run-dir", &run_dir.to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

fn web_pid(s: &Value, name: &str) -> u32 {
    s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()["pid"]
        .as_u64()
        .unwrap() as u32
}

fn up_nodes(s: &Value) -> usize {
    let lb = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "lb")
        .unwrap();
    lb["backends"]
        .as_array()
        .map_or(0, |b| b.iter().filter(|x| x[1] == "UP").count())
}

/// Readers and writers through the load balancer until stopped; failures are kept.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed_reads: Arc<Mutex<Vec<String>>>,
    failed_writes: Arc<AtomicU64>,
    acked: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, token: &str, phase: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed_reads = Arc::new(Mutex::new(Vec::new()));
        let failed_writes = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (stop, ok, failed_reads, failed_writes, acked) = (
                stop.clone(),
                ok.clone(),
                failed_reads.clone(),
                failed_writes.clone(),
                acked.clone(),
            );
            let phase = phase.to_string();
            let (url, token) = (url.to_string(), token.to_string());
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if i < 2 && n % 4 == 0 {
                        // a writer: each write has its own Idempotency-Key, and a failed one is
                        // retried with the same key until it succeeds
                        let title = format!("load {phase} {i} {n}");
                        for _ in 0..10 {
                            let r = client
                                .post(format!("{url}/api/articles"))
                                .header("authorization", format!("Token {token}"))
                                .header("idempotency-key", format!("{phase}-{i}-{n}"))
                                .json(&json!({"article": {"title": title, "description": "d", "body": "b"}}))
                                .send()
                                .await;
                            if matches!(&r, Ok(r) if r.status() == StatusCode::CREATED) {
                                ok.fetch_add(1, Ordering::Relaxed);
                                acked.lock().unwrap().push(title.clone());
                                break;
                            }
                            failed_writes.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        continue;
                    }
                    let path = if n % 2 == 0 { "/api/articles?limit=5" } else { "/api/tags" };
                    match client.get(format!("{url}{path}")).send().await {
                        Ok(r) if r.status() == StatusCode::OK => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            // who answered: a node's error or the balancer's own
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            let body: String = body.chars().take(160).collect();
                            failed_reads.lock().unwrap().push(format!("{path}: {status} {body}"));
                        }
                        Err(e) => failed_reads.lock().unwrap().push(format!("{path}: {e}")),
                    }
                }
            }));
        }
        Load {
            stop,
            ok,
            failed_reads,
            failed_writes,
            acked,
            tasks,
        }
    }

    async fn finish(self) -> (u64, Vec<String>, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed_reads.lock().unwrap().clone(),
            self.failed_writes.load(Ordering::Relaxed),
            acked,
        )
    }
}

/// Every title of `author`'s articles, through the API.
async fn titles(url: &str, author: &str) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    loop {
        let page: Value = get_json(
            &client,
            format!(
                "{url}/api/articles?author={author}&limit=100&offset={}",
                out.len()
            ),
        )
        .await;
        let items = page["articles"].as_array().unwrap();
        if items.is_empty() {
            return out;
        }
        out.extend(
            items
                .iter()
                .map(|a| a["title"].as_str().unwrap().to_string()),
        );
    }
}

/// A browser without JavaScript: keeps cookies, posts forms, does not follow redirects.
struct Visitor {
    client: reqwest::Client,
    url: String,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Visitor {
    fn new(url: &str) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Visitor {
            client,
            url: url.to_string(),
            cookies: Default::default(),
        }
    }

    async fn send(&mut self, r: reqwest::RequestBuilder) -> (StatusCode, String) {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let res = r.header("cookie", cookie.join("; ")).send().await.unwrap();
        for c in res.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap().split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies.insert(k.trim().to_string(), v.to_string());
            }
        }
        (res.status(), res.text().await.unwrap())
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let r = self.client.get(format!("{}{path}", self.url));
        self.send(r).await
    }

    async fn sign_up(&mut self, name: &str) {
        let (_, page) = self.get("/register").await;
        let marker = "name=\"csrf\" value=\"";
        let at = page.find(marker).unwrap() + marker.len();
        let csrf = page[at..at + page[at..].find('"').unwrap()].to_string();
        let form = format!(
            "username={name}&email={name}%40example.com&password=password123&csrf={}",
            csrf.replace('+', "%2B")
        );
        let r = self
            .client
            .post(format!("{}/register", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        let (status, body) = self.send(r).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    }

    /// Whether the visitor is still signed in.
    async fn signed_in(&mut self) -> bool {
        self.get("/settings").await.0 == StatusCode::OK
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rung_three_comes_up_serves_through_the_balancer_and_survives_losing_nodes() {
    // info, not warn: the nodes log each registration, which the logs check looks for
    let t = up(&topology("03-load-balancer.toml"), &[("RUST_LOG", "info")]);
    let (run_dir, public) = (t.run_dir.clone(), t.public);
    let url = t
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("url: "))
        .expect("up prints the URL")
        .trim()
        .to_string();
    assert_eq!(url, t.url);

    // every process is there and healthy; the balancer sees three nodes up
    let s = status_with_nodes_up(&run_dir, 3).await;
    assert_eq!(roles(&s), ["pg-primary", "web", "web", "web", "lb"]);
    assert_eq!(up_nodes(&s), 3, "{s}");
    assert!(
        s["processes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["healthy"] == true),
        "{s}"
    );
    for p in s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "web")
    {
        assert!(
            p["addr"].as_str().unwrap().starts_with("127.0.1."),
            "web nodes are on private addresses: {p}"
        );
    }
    let table = crescendo(&["status", "--run-dir", &run_dir.to_string_lossy()]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("3/3 nodes"));

    // the RealWorld collection through the balancer
    realworld_collection(&url, "lb");
    // every node's JSON log, merged in time order, with the request IDs
    logs::web_nodes_log_the_request_id(&run_dir, &url, &["web-1", "web-2", "web-3"]).await;

    // a user and some data, then steady load
    let token = register(&url, "loader").await;
    // a browser pinned to web-1 by HAProxy's cookie, with its session in web-1's memory
    let mut pinned = Visitor::new(&url);
    pinned
        .cookies
        .insert("CRESCENDO_NODE".into(), "web-1".into());
    pinned.sign_up("pinned").await;
    assert!(pinned.signed_in().await);

    let load = Load::start(&url, &token, "term");
    tokio::time::sleep(Duration::from_millis(800)).await;

    // SIGTERM: the node fails /ready, HAProxy stops sending, in-flight requests finish
    let pid = web_pid(&s, "web-1");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for(
        "web-1 exits after draining",
        Duration::from_secs(20),
        || !alive(pid),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed_reads, failed_writes, mut acked) = load.finish().await;
    eprintln!(
        "SIGTERM of one node: {ok} requests ok, {} reads failed, {failed_writes} writes failed",
        failed_reads.len()
    );
    assert!(
        failed_reads.is_empty() && failed_writes == 0,
        "a drained node fails no request: {failed_reads:?}, {failed_writes} writes"
    );
    assert!(ok > 20, "load ran: {ok}");
    assert!(
        !pinned.signed_in().await,
        "rung 3 keeps sessions in a node's memory: web-1's browser is signed out"
    );

    // SIGKILL: requests in flight on the node are retried elsewhere; no read fails
    let load = Load::start(&url, &token, "kill");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pid = web_pid(&s, "web-2");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, failed_reads, failed_writes, acked_kill) = load.finish().await;
    eprintln!(
        "SIGKILL of one node: {ok} requests ok, {} reads failed, {failed_writes} write attempts failed visibly and were retried",
        failed_reads.len()
    );
    assert!(
        failed_reads.is_empty(),
        "no read fails when a node dies: {failed_reads:?}"
    );
    // every acknowledged write is stored; at this rung idempotency records live in each
    // node's memory, so a retry that lands on another node may apply a write again
    acked.extend(acked_kill);
    let stored = titles(&url, "loader").await;
    let missing: Vec<&String> = acked.iter().filter(|t| !stored.contains(t)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing: {missing:?}"
    );
    eprintln!(
        "rung 3: {} writes acknowledged, {} stored",
        acked.len(),
        stored.len()
    );
    let s = status(&run_dir);
    assert_eq!(
        up_nodes(&s),
        1,
        "the balancer marked both gone nodes down: {s}"
    );
    // the killed node's member-down alert reaches the alert sink, and status shows it
    monitoring::member_down_alert_reaches_the_sink(&run_dir, "web-2", killed).await;

    // down stops everything it started
    let pids: Vec<u32> = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap() as u32)
        .collect();
    let out = crescendo(&["down", "--run-dir", &run_dir.to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pids.iter().all(|p| !alive(*p)), "no process is left behind");
    assert!(std::net::TcpStream::connect(public).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rung_seven_keeps_sessions_and_reads_your_writes_on_any_node() {
    let t = up(&topology("07-stateless.toml"), &[]);
    let (run_dir, url) = (t.run_dir.clone(), t.url.clone());
    let s = status_with_nodes_up(&run_dir, 3).await;
    assert_eq!(
        roles(&s),
        [
            "pg-primary",
            "pg-replica",
            "pg-replica",
            "redis",
            "redis",
            "redis",
            "redis",
            "web",
            "web",
            "web",
            "lb"
        ]
    );
    assert_eq!(up_nodes(&s), 3, "{s}");

    // API clients read their own writes whichever node answers (positions are in Redis)
    let client = reqwest::Client::new();
    let token = register(&url, "anywhere").await;
    for i in 0..20 {
        let a: Value = client
            .post(format!("{url}/api/articles"))
            .header("authorization", format!("Token {token}"))
            .json(&json!({"article": {"title": format!("Everywhere {i}"), "description": "d", "body": "b"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let slug = a["article"]["slug"].as_str().unwrap();
        let got = client
            .get(format!("{url}/api/articles/{slug}"))
            .header("authorization", format!("Token {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.status(),
            StatusCode::OK,
            "round {i}: the author reads the new article at once"
        );
        let bio = format!("bio {i}");
        client
            .put(format!("{url}/api/user"))
            .header("authorization", format!("Token {token}"))
            .json(&json!({"user": {"bio": bio}}))
            .send()
            .await
            .unwrap();
        let me = get_json_as(&client, format!("{url}/api/user"), &token).await;
        assert_eq!(me["user"]["bio"], bio.as_str(), "round {i}");
    }

    // a write through one node is seen at once through another that had read the old value
    let addr_of = |name: &str| {
        s["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["addr"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (b, c) = (addr_of("web-2"), addr_of("web-3"));
    let a: Value = client
        .post(format!("{url}/api/articles"))
        .header("authorization", format!("Token {token}"))
        .json(&json!({"article": {"title": "Before", "description": "d", "body": "b"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slug = a["article"]["slug"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let seen: Value = get_json(&client, format!("http://{c}/api/articles/{slug}")).await;
        assert_eq!(seen["article"]["title"], "Before");
    }
    let put = client
        .put(format!("http://{b}/api/articles/{slug}"))
        .header("authorization", format!("Token {token}"))
        .json(&json!({"article": {"title": "After"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    // the writer (their read fence is in Redis) sees it at once: their request checks near
    // copies until node C has every change report sent before the write ended; others see
    // it once it is reported
    let seen = get_json_as(&client, format!("http://{c}/api/articles/{slug}"), &token).await;
    assert_eq!(
        seen["article"]["title"], "After",
        "no node serves the writer data older than their acknowledged write"
    );
    let url_c = format!("http://{c}/api/articles/{slug}");
    let seen = seen_within(&client, url_c, "/article/title", "After").await;
    assert_eq!(
        seen["article"]["title"], "After",
        "reported within the bound"
    );

    // a browser session, started on whichever node answered
    let mut visitor = Visitor::new(&url);
    visitor.sign_up("stateless").await;
    assert!(
        !visitor.cookies.contains_key("CRESCENDO_NODE"),
        "nobody is pinned"
    );
    for _ in 0..6 {
        let (status, page) = visitor.get("/settings").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "every node knows the session; the page: {page}"
        );
    }

    // SIGKILL under load: no read fails, and a write retried with its key is applied once,
    // even when the retry lands on another node (the records are in Redis)
    let load = Load::start(&url, &token, "kill7");
    tokio::time::sleep(Duration::from_millis(800)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(web_pid(&s, "web-1") as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, failed_reads, failed_writes, acked) = load.finish().await;
    eprintln!(
        "rung 7, SIGKILL of one node: {ok} requests ok, {} reads failed, {failed_writes} write attempts retried",
        failed_reads.len()
    );
    assert!(
        failed_reads.is_empty(),
        "no read fails when a node dies: {failed_reads:?}"
    );
    // each write succeeded once, or failed visibly (a retry that meets the key of a request
    // that died on the killed node gets 409) and is stored at most once: never twice
    let stored: Vec<String> = titles(&url, "anywhere")
        .await
        .into_iter()
        .filter(|t| t.starts_with("load "))
        .collect();
    let mut unique = stored.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        stored.len(),
        "a write was applied twice: {stored:?}"
    );
    let missing: Vec<&String> = acked.iter().filter(|t| !stored.contains(t)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing: {missing:?}"
    );
    eprintln!(
        "rung 7: {} writes acknowledged, {} stored, none twice",
        acked.len(),
        stored.len()
    );

    // scale out and in, then a rolling restart of every node, under load: nothing fails
    let load = Load::start(&url, &token, "roll");
    let run = run_dir.to_string_lossy().to_string();
    let out = crescendo(&["scale", "web=4", "--run-dir", &run]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s4 = status(&run_dir);
    let webs4: Vec<&Value> = s4["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "web")
        .collect();
    assert_eq!(
        webs4.len(),
        4,
        "the killed web-1 is dropped and two nodes are added: {s4}"
    );
    assert!(webs4.iter().all(|p| p["healthy"] == true), "{s4}");
    let out = crescendo(&["restart", "--run-dir", &run]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crescendo(&["scale", "web=2", "--run-dir", &run]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, failed_reads, failed_writes, acked) = load.finish().await;
    eprintln!(
        "rung 7, scale to 4, rolling restart, scale to 2: {ok} requests ok, {} reads failed, {failed_writes} write attempts failed",
        failed_reads.len()
    );
    assert!(
        failed_reads.is_empty() && failed_writes == 0,
        "no request fails: {failed_reads:?}, {failed_writes} writes"
    );
    assert!(!acked.is_empty());
    let s = status(&run_dir);
    let webs: Vec<&Value> = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "web")
        .collect();
    assert_eq!(webs.len(), 2, "{s}");
    assert!(webs.iter().all(|p| p["healthy"] == true), "{s}");
    assert_eq!(up_nodes(&s), 2, "{s}");
    assert!(
        visitor.signed_in().await,
        "the session outlives every node it started on"
    );

    // and losing one of the two nodes left
    let last = webs[0]["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(last),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for _ in 0..6 {
        assert!(
            visitor.signed_in().await,
            "still signed in after its nodes are gone"
        );
    }
}

/// Where the process listening on `addr` serves `/metrics`, from a status report: a web
/// node's operators' listener (`ops_addr`), else `addr` itself.
fn metrics_addr(status: &Value, addr: &str) -> String {
    let p = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["addr"] == addr)
        .unwrap_or_else(|| panic!("no process at {addr}: {status}"));
    p["ops_addr"].as_str().unwrap_or(addr).to_string()
}

/// The sum of a metric's series on one node (its metrics address) whose labels contain
/// `filter`.
async fn metric(addr: &str, name: &str, filter: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(filter)
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rung_five_caches_on_a_redis_ring_that_survives_losing_a_server() {
    let t = up(&topology("05-cache.toml"), &[]);
    let (run_dir, url) = (t.run_dir.clone(), t.url.clone());
    let s = status_with_nodes_up(&run_dir, 3).await;
    assert_eq!(
        roles(&s),
        [
            "pg-primary",
            "pg-replica",
            "pg-replica",
            "redis",
            "redis",
            "redis",
            "web",
            "web",
            "web",
            "lb"
        ]
    );
    assert_eq!(up_nodes(&s), 3, "{s}");
    let addr_of = |name: &str| {
        s["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["addr"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let webs: Vec<String> = (1..=3).map(|i| addr_of(&format!("web-{i}"))).collect();
    let client = reqwest::Client::new();
    let token = register(&url, "cached").await;
    let auth = format!("Token {token}");
    let create = |title: String| {
        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
        async move {
            let a: Value = client
                .post(format!("{url}/api/articles"))
                .header("authorization", auth)
                .json(&json!({"article": {"title": title, "description": "d", "body": "b", "tagList": ["cached"]}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            a["article"]["slug"].as_str().unwrap().to_string()
        }
    };

    // A write through any node is read at once through every node, each of which had the old
    // value in its near cache and in Redis: the article itself, and the lists it is in.
    let slug = create("t start".into()).await;
    let mut title = "t start".to_string();
    for round in 0..9 {
        for w in &webs {
            for _ in 0..2 {
                let got: Value = get_json(&client, format!("http://{w}/api/articles/{slug}")).await;
                assert_eq!(
                    got["article"]["title"],
                    title.as_str(),
                    "round {round}, {w}"
                );
            }
            let list: Value = get_json(
                &client,
                format!("http://{w}/api/articles?tag=cached&limit=5"),
            )
            .await;
            assert_eq!(
                list["articles"][0]["title"],
                title.as_str(),
                "round {round}, {w}"
            );
        }
        title = format!("t {round}");
        let put = client
            .put(format!("http://{}/api/articles/{slug}", webs[round % 3]))
            .header("authorization", &auth)
            .json(&json!({"article": {"title": title}}))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::OK);
        // rung 5 keeps read fences in each node's memory, so readers on other nodes see the
        // write once its report arrives (README: the invalidation delay)
        for w in &webs {
            let url = format!("http://{w}/api/articles/{slug}");
            let got = seen_within(&client, url, "/article/title", &title).await;
            assert_eq!(
                got["article"]["title"],
                title.as_str(),
                "round {round}: {w} served data older than an acknowledged write"
            );
            let url = format!("http://{w}/api/articles?tag=cached&limit=5");
            let list = seen_within(&client, url, "/articles/0/title", &title).await;
            assert_eq!(
                list["articles"][0]["title"],
                title.as_str(),
                "round {round}: {w}'s list is stale"
            );
        }
    }
    let near_hits: f64 = {
        let mut n = 0.0;
        for w in &webs {
            n += metric(
                &metrics_addr(&s, w),
                "crescendo_cache_hits_total",
                "layer=\"local\"",
            )
            .await;
        }
        n
    };
    assert!(
        near_hits > 0.0,
        "unchanged entries are served from the near caches"
    );
    // and, the servers reporting every change, mostly without asking Redis: a read confirms
    // a copy its own fill's report made untrusted, and the reads after it need no round trip
    let mut unchecked = 0.0;
    for w in &webs {
        for _ in 0..5 {
            get_json(&client, format!("http://{w}/api/articles/{slug}")).await;
        }
        let m = metrics_addr(&s, w);
        unchecked += metric(&m, "crescendo_cache_unchecked_hits_total", "").await;
    }
    assert!(unchecked > 0.0, "near hits are served with no round trip");

    // Stampede: 1,000 concurrent reads of one cold key over three nodes make one load: one
    // node holds the key's load lease, the others wait for its fill.
    let cold = create("a cold one".into()).await;
    // the write's change reports reach every node within the stated bound first; they would
    // only make near copies be checked once (a write stops a fill, its report never does),
    // but the count below is then of the stampede's loads and nothing else
    tokio::time::sleep(REPORT_BOUND).await;
    let mut loads_before = Vec::new();
    for w in &webs {
        loads_before.push(metric(&metrics_addr(&s, w), "crescendo_cache_loads_total", "").await);
    }
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (client, w, cold) = (client.clone(), webs[i % 3].clone(), cold.clone());
        tasks.push(tokio::spawn(async move {
            client
                .get(format!("http://{w}/api/articles/{cold}"))
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), StatusCode::OK);
    }
    let mut loads = Vec::new();
    for (w, before) in webs.iter().zip(&loads_before) {
        loads.push(metric(&metrics_addr(&s, w), "crescendo_cache_loads_total", "").await - before);
    }
    eprintln!(
        "rung 5, 1,000 concurrent reads of a cold article over 3 nodes: store loads per node {loads:?}"
    );
    assert_eq!(
        loads.iter().sum::<f64>(),
        1.0,
        "one load for all three nodes: {loads:?}"
    );

    // SIGKILL one Redis server under load: no request fails, it leaves every node's ring
    // within a second, and it rejoins when a server is back on its address.
    let victim = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cache-2")
        .unwrap()
        .clone();
    let victim_addr: std::net::SocketAddr = victim["addr"].as_str().unwrap().parse().unwrap();
    let member = format!("node=\"{victim_addr}\"");
    for w in &webs {
        assert_eq!(
            metric(&metrics_addr(&s, w), "crescendo_cache_ring_member", &member).await,
            1.0
        );
    }
    let load = Load::start(&url, &token, "cachekill");
    tokio::time::sleep(Duration::from_millis(800)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim["pid"].as_u64().unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    for w in &webs {
        while metric(&metrics_addr(&s, w), "crescendo_cache_ring_member", &member).await != 0.0 {
            assert!(
                killed.elapsed() < Duration::from_secs(1),
                "{w} still has the dead server in its ring"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let left = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let dir = t.root.path().join("cache-2-again");
    let password = crescendo_topology::redis::password_in(&run_dir.join("cache-2")).unwrap();
    let again = tokio::task::spawn_blocking(move || {
        crescendo_topology::redis::Redis::start_at(&dir, victim_addr, 64, &password)
    })
    .await
    .unwrap()
    .unwrap();
    let back = Instant::now();
    for w in &webs {
        while metric(&metrics_addr(&s, w), "crescendo_cache_ring_member", &member).await != 1.0 {
            assert!(
                back.elapsed() < Duration::from_secs(3),
                "{w} did not take the server back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let rejoined = back.elapsed();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (ok, failed_reads, failed_writes, acked) = load.finish().await;
    eprintln!(
        "rung 5, SIGKILL of a Redis server: left every ring {left:?} after, rejoined {rejoined:?} after a restart; {ok} requests ok, {} reads failed, {failed_writes} writes failed",
        failed_reads.len()
    );
    assert!(failed_reads.is_empty(), "reads failed: {failed_reads:?}");
    assert_eq!(failed_writes, 0, "no write fails when a cache server dies");
    let stored = titles(&url, "cached").await;
    let missing: Vec<&String> = acked.iter().filter(|t| !stored.contains(t)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing: {missing:?}"
    );
    // and the cache is still exact with the server back in the ring
    title = "after the outage".into();
    client
        .put(format!("http://{}/api/articles/{slug}", webs[0]))
        .header("authorization", &auth)
        .json(&json!({"article": {"title": title}}))
        .send()
        .await
        .unwrap();
    for w in &webs {
        let url = format!("http://{w}/api/articles/{slug}");
        let got = seen_within(&client, url, "/article/title", &title).await;
        assert_eq!(got["article"]["title"], title.as_str());
    }
    drop(again);
}

/// A PNG of `w` × `h` pixels of noise (so it does not compress to nothing).
fn noise_png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        image::Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn upload(url: &str, token: &str, png: Vec<u8>) -> (StatusCode, Value) {
    let boundary = "b0undary-crescendo";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n").into_bytes();
    body.extend(png);
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let res = reqwest::Client::new()
        .post(format!("{url}/api/uploads"))
        .header("authorization", format!("Token {token}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// An upload's state, as its owner (`token`) sees it.
async fn upload_state(url: &str, token: &str, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{url}/api/uploads/{id}"))
        .header("authorization", format!("Token {token}"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["upload"]
        .clone()
}

async fn all_ready(url: &str, token: &str, ids: &[String], limit: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let mut states = Vec::new();
        for id in ids {
            states.push(upload_state(url, token, id).await);
        }
        if states.iter().all(|s| s["state"] != "processing") || started.elapsed() > limit {
            return states;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rung_nine_processes_uploads_on_workers_and_keeps_jobs_while_the_broker_is_down() {
    // the default lease (15 s, extended while a job runs): a job whose worker dies is
    // delivered again within 15 s, and a slow job is never delivered twice
    let t = up(&topology("09-queue.toml"), &[]);
    let (run_dir, url) = (t.run_dir.clone(), t.url.clone());
    let s = status_with_nodes_up(&run_dir, 3).await;
    let roles = roles(&s);
    assert_eq!(
        roles.iter().filter(|r| *r == "worker").count(),
        2,
        "{roles:?}"
    );
    assert!(roles.contains(&"nats".to_string()));
    assert!(
        roles.contains(&"s3".to_string()),
        "uploads go to the S3 object server: {roles:?}"
    );
    let workers_up = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "worker" && p["healthy"] == true)
        .count();
    assert_eq!(workers_up, 2, "{s}");

    let token = register(&url, "photog").await;

    // uploads through the balancer are processed by the workers; any node serves the files
    let mut ids = Vec::new();
    for i in 0..4 {
        let (status, body) = upload(&url, &token, noise_png(300, 200, i)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["upload"]["id"].as_str().unwrap().to_string());
    }
    let states = all_ready(&url, &token, &ids, Duration::from_secs(30)).await;
    assert!(states.iter().all(|s| s["state"] == "ready"), "{states:?}");
    for s in &states {
        let res = reqwest::get(format!("{url}{}", s["variants"]["320"].as_str().unwrap()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "image/jpeg");
        // written by a worker, served by a web node: both through the S3 API
        let key = s["variants"]["320"]
            .as_str()
            .unwrap()
            .trim_start_matches("/media/");
        assert!(
            run_dir
                .join("s3/objects")
                .join(crescendo_topology::s3::BUCKET)
                .join(key)
                .is_file(),
            "{key} is an object in the bucket"
        );
    }
    assert!(
        !run_dir.join("blobs").exists(),
        "no blob is kept on a shared local directory"
    );

    // the broker stops: uploads are still taken, their jobs wait in the outbox
    let nats = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "nats")
        .unwrap()
        .clone();
    let nats_addr: std::net::SocketAddr = nats["addr"].as_str().unwrap().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(nats["pid"].as_u64().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for("the broker stops", Duration::from_secs(10), || {
        !alive(nats["pid"].as_u64().unwrap() as u32)
    })
    .await;
    let mut waiting = Vec::new();
    for i in 0..5 {
        let (status, body) = upload(&url, &token, noise_png(200, 200, 100 + i)).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "uploads are taken while the broker is down: {body}"
        );
        waiting.push(body["upload"]["id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = all_ready(&url, &token, &waiting, Duration::ZERO).await;
    assert!(
        during.iter().all(|s| s["state"] == "processing"),
        "nothing can be processed without the broker: {during:?}"
    );

    // it comes back on its own data: every waiting job flows, none is lost
    let dir = run_dir.join("nats");
    let again = tokio::task::spawn_blocking(move || {
        crescendo_topology::nats::Nats::start_at(&dir, nats_addr)
    })
    .await
    .unwrap()
    .unwrap();
    let back = Instant::now();
    let after = all_ready(&url, &token, &waiting, Duration::from_secs(60)).await;
    eprintln!(
        "rung 9: 5 uploads taken while the broker was down were all processed {:?} after it returned",
        back.elapsed()
    );
    assert!(after.iter().all(|s| s["state"] == "ready"), "{after:?}");

    // a worker SIGKILLed in the middle of a job: the job is delivered again and done once
    let workers: Vec<Value> = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "worker")
        .cloned()
        .collect();
    let ok_jobs =
        |addr: String| async move { metric(&addr, "crescendo_jobs_total", "outcome=\"ok\"").await };
    let (status, body) = upload(&url, &token, big_png(2000, 2000)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let big = body["upload"]["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let (victim, survivor) = loop {
        let mut busy = None;
        for (i, w) in workers.iter().enumerate() {
            if metric(
                w["addr"].as_str().unwrap(),
                "crescendo_jobs_in_progress",
                "",
            )
            .await
                > 0.0
            {
                busy = Some(i);
            }
        }
        if let Some(i) = busy {
            break (workers[i].clone(), workers[1 - i].clone());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no worker took the job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let survivor_ok = ok_jobs(survivor["addr"].as_str().unwrap().to_string()).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim["pid"].as_u64().unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    assert_eq!(
        upload_state(&url, &token, &big).await["state"],
        "processing",
        "killed mid-job"
    );
    let done = all_ready(&url, &token, &[big.clone()], Duration::from_secs(90)).await;
    eprintln!(
        "rung 9: a job whose worker was SIGKILLed mid-job was done by the other worker {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(done[0]["state"], "ready", "{done:?}");
    // the survivor counts the job once it has acknowledged it, just after the state it wrote
    let counted = Instant::now();
    let mut by_survivor = 0.0;
    while counted.elapsed() < Duration::from_secs(10) {
        by_survivor = ok_jobs(survivor["addr"].as_str().unwrap().to_string()).await - survivor_ok;
        if by_survivor >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(by_survivor, 1.0, "done once, by the survivor");
    let res = reqwest::get(format!(
        "{url}{}",
        done[0]["variants"]["1280"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(again);
}

/// A smooth PNG (it compresses well) with many pixels: slow to decode in a debug build.
fn big_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x / 12) as u8, (y / 12) as u8, ((x + y) / 24) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_uploads_adds_workers_and_they_leave_when_the_queue_drains() {
    let spec = tempfile::tempdir().unwrap();
    let file = spec.path().join("autoscale.toml");
    std::fs::write(
        &file,
        "name = \"autoscaling\"\nrung = 9\n[web]\ncount = 1\n[postgres]\n\
         [queue]\nworkers = 1\nmax_workers = 3\njobs_per_worker = 2\nscale_down_after_secs = 2\nconcurrency = 1\n",
    )
    .unwrap();
    let t = up(&file.to_string_lossy(), &[]);
    let (run_dir, url) = (t.run_dir.clone(), t.url.clone());
    let workers = |s: &Value| {
        s["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["role"] == "worker" && p["healthy"] == true)
            .count()
    };
    let s = status(&run_dir);
    assert_eq!(workers(&s), 1, "{s}");
    assert!(
        s["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["role"] == "supervisor" && p["healthy"] == true),
        "{s}"
    );

    let token = register(&url, "burst").await;
    let mut ids = Vec::new();
    // made once: a debug build takes a while to encode it, and the burst must be quick
    let png = big_png(1200, 1200);
    for _ in 0..14 {
        let (status, body) = upload(&url, &token, png.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["upload"]["id"].as_str().unwrap().to_string());
    }
    let burst = Instant::now();
    let mut most = 1;
    let mut seen_autoscale = Value::Null;
    while burst.elapsed() < Duration::from_secs(60) {
        let s = status(&run_dir);
        most = most.max(workers(&s));
        if most == 3 {
            seen_autoscale = s["autoscale"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "autoscaling: 3 workers {:?} after a burst of 14 uploads ({seen_autoscale})",
        burst.elapsed()
    );
    assert_eq!(most, 3, "the burst raised the worker count to its maximum");
    let states = all_ready(&url, &token, &ids, Duration::from_secs(120)).await;
    assert!(states.iter().all(|s| s["state"] == "ready"), "{states:?}");
    let drained = Instant::now();
    loop {
        let s = status(&run_dir);
        if workers(&s) == 1
            && s["processes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["role"] == "worker")
                .count()
                == 1
        {
            break;
        }
        assert!(
            drained.elapsed() < Duration::from_secs(40),
            "the workers did not fall back: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "autoscaling: back to 1 worker {:?} after the queue drained",
        drained.elapsed()
    );
    let out = crescendo(&["status", "--run-dir", &run_dir.to_string_lossy()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("autoscaler: 1 workers (min 1, max 3)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// What a server at `addr` answers `request` with, on a fresh connection (`greeting`: it
/// speaks first, as NATS does, and that line is skipped).
fn answer(addr: &str, request: &str, greeting: bool) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    if greeting {
        let _ = s.read(&mut buf).unwrap();
    }
    s.write_all(request.as_bytes()).unwrap();
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The password in a URL `scheme://user:password@host…`.
fn url_password(url: &str) -> String {
    let userinfo = url.split_once("://").unwrap().1.rsplit_once('@').unwrap().0;
    userinfo.split_once(':').unwrap().1.to_string()
}

/// Every secret a run directory's settings files hold: passwords and keys.
fn secrets_of(run_dir: &Path) -> Vec<String> {
    use crescendo_config::{Overrides, Settings};
    let load = |name: &str| {
        Settings::load_with_env(Some(&run_dir.join(name)), &Overrides::default(), [])
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let (node, admin) = (load("node-secrets.toml"), load("postgres-admin.toml"));
    let mut urls = vec![
        node.store.postgres_url.clone(),
        node.sessions.redis_url.clone(),
    ];
    urls.extend(node.store.postgres_replica_urls.iter().cloned());
    urls.extend(node.cache.redis_urls.iter().cloned());
    urls.push(node.queue.nats_url.clone());
    urls.push(admin.store.postgres_url.clone());
    let mut secrets: Vec<String> = urls.iter().map(|u| url_password(u)).collect();
    secrets.push(node.auth.jwt_secret.unwrap().expose().to_string());
    secrets.push(node.blobs.s3_secret_key.unwrap().expose().to_string());
    // Prometheus's password, the one it gives the exporters, Alertmanager's, the sink's and
    // the dashboard's
    for file in [
        "prometheus/password",
        "prometheus/exporters.password",
        "alertmanager/password",
        "alertmanager/sink.password",
        "dashboard/password",
    ] {
        let text = std::fs::read_to_string(run_dir.join(file)).unwrap();
        secrets.push(text.trim().to_string());
    }
    secrets.sort();
    secrets.dedup();
    secrets
}

/// The regular files under `dir`, all levels down.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            files_under(&entry.path(), out);
        } else if ty.is_file() {
            out.push(entry.path());
        }
    }
}

/// Every database, Redis, NATS and S3 server among `processes` refuses a client without
/// credentials (and Redis one with a wrong password).
async fn refuses_strangers(processes: &[Value]) {
    let of = |role: &str| -> Vec<Value> {
        processes
            .iter()
            .filter(|p| p["role"] == role)
            .cloned()
            .collect()
    };
    let pgs: Vec<Value> = of("pg-primary")
        .into_iter()
        .chain(of("pg-replica"))
        .collect();
    assert!(
        pgs.len() >= 3,
        "rungs 9 and 10 run three database servers or more"
    );
    for p in &pgs {
        let addr: std::net::SocketAddr = p["addr"].as_str().unwrap().parse().unwrap();
        for user in ["postgres", "crescendo"] {
            let out = Command::new("/usr/lib/postgresql/15/bin/psql")
                .args([
                    "-X",
                    "-w",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &addr.port().to_string(),
                ])
                .args(["-U", user, "-d", "postgres", "-c", "SELECT 1"])
                .env("PGPASSFILE", "/nonexistent")
                .env_remove("PGPASSWORD")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && err.contains("password"),
                "{user} at {addr} without a password: {err}"
            );
        }
    }
    let redis = of("redis");
    assert_eq!(redis.len(), 4, "three cache servers and the shared one");
    for r in &redis {
        let addr = r["addr"].as_str().unwrap();
        let ping = answer(addr, "PING\r\n", false);
        assert!(ping.starts_with("-NOAUTH"), "{addr}: {ping}");
        let wrong = answer(addr, "AUTH crescendo wrong\r\nPING\r\n", false);
        assert!(wrong.starts_with("-WRONGPASS"), "{addr}: {wrong}");
    }
    // the broker and the object server, where the topology has them (rung 9)
    for n in of("nats") {
        let refused = answer(
            n["addr"].as_str().unwrap(),
            "CONNECT {\"verbose\":true}\r\nPING\r\n",
            true,
        );
        assert!(refused.contains("Authorization Violation"), "{refused}");
    }
    for s3 in of("s3") {
        let unsigned = reqwest::get(format!("http://{}/crescendo", s3["addr"].as_str().unwrap()))
            .await
            .unwrap();
        assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
    }
}

/// Every file under `run_dir` or in a database server's directory that holds one of
/// `secrets` is owner-only; `state.json` and the servers' command lines hold none (but
/// s3s-fs's, which takes its keys only as arguments).
fn keeps_secrets(run_dir: &Path, processes: &[Value], secrets: &[String]) {
    use std::os::unix::fs::PermissionsExt;
    let pgs = processes
        .iter()
        .filter(|p| p["role"] == "pg-primary" || p["role"] == "pg-replica");
    let mut files = Vec::new();
    files_under(run_dir, &mut files);
    for p in pgs {
        let dir = PathBuf::from(p["dir"].as_str().unwrap());
        files.extend(["pgpass", "postgres.log"].map(|f| dir.join(f)));
        files.extend(["postgresql.auto.conf", "pg_hba.conf"].map(|f| dir.join("data").join(f)));
    }
    let mut holding = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        if secrets.iter().any(|s| text.contains(s.as_str())) {
            holding += 1;
            let mode = std::fs::metadata(f).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} holds a secret, mode {mode:o}",
                f.display()
            );
        }
    }
    assert!(
        holding >= 5,
        "the secrets are kept somewhere: {holding} files"
    );
    let state = std::fs::read_to_string(run_dir.join("state.json")).unwrap();
    for secret in secrets {
        assert!(
            !state.contains(secret.as_str()),
            "state.json holds a secret"
        );
    }
    for p in processes.iter().filter(|p| p["role"] != "s3") {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", p["pid"])).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        for secret in secrets {
            assert!(
                !cmdline.contains(secret.as_str()),
                "{} shows a secret",
                p["name"]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_up_starts_requires_credentials_kept_in_owner_only_files() {
    // rung 9 has every kind of server: PostgreSQL and replicas, the cache ring and the
    // shared-state Redis, NATS and the object server
    let t = up(&topology("09-queue.toml"), &[]);
    let (run_dir, url) = (t.run_dir.clone(), t.url.clone());
    let s = status_with_nodes_up(&run_dir, 3).await;
    let processes = s["processes"].as_array().unwrap().clone();
    let secrets = secrets_of(&run_dir);
    assert!(secrets.len() >= 8, "{secrets:?}");

    // (a) no server answers without credentials
    assert_eq!(
        roles(&s)
            .iter()
            .filter(|r| *r == "nats" || *r == "s3")
            .count(),
        2
    );
    refuses_strangers(&processes).await;
    // Prometheus scrapes every tier (workers too) and answers no one without its password
    monitoring::scrapes_every_tier(&s, &run_dir).await;
    // (b) every file holding a secret is owner-only, and state.json holds none
    keeps_secrets(&run_dir, &processes, &secrets);
    // a replica whose replay is paused raises the replica-lag alert
    monitoring::replica_lag_alert_reaches_the_sink(&run_dir, &processes, &url).await;

    // (c) the web nodes still reach every tier: a sign-up through the balancer works
    let token = register(&url, "credentialed").await;
    let me = get_json_as(&reqwest::Client::new(), format!("{url}/api/user"), &token).await;
    assert_eq!(me["user"]["username"], "credentialed");

    // (d) the shared state never evicts (a flood cannot push out sign-in counters or
    // idempotency records); the cache ring does
    for p in processes.iter().filter(|p| p["role"] == "redis") {
        let name = p["name"].as_str().unwrap();
        let password = crescendo_topology::redis::password_in(&run_dir.join(name)).unwrap();
        let policy = memory_policy(p["addr"].as_str().unwrap(), &password);
        let want = if name == "redis" {
            "noeviction"
        } else {
            "allkeys-lru"
        };
        assert!(policy.contains(want), "{name}: {policy}");
    }

    // (e) after some load, the dashboard charts every figure, for its password only
    dashboard::charts_every_figure(&s, &run_dir, &url, &token).await;
}

/// What the Redis at `addr` does when full (`CONFIG GET maxmemory-policy`), asked as its
/// user with `password`.
fn memory_policy(addr: &str, password: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    let mut ask = |command: String| {
        s.write_all(command.as_bytes()).unwrap();
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let auth = ask(format!("AUTH crescendo {password}\r\n"));
    assert!(auth.starts_with("+OK"), "{addr}: {auth}");
    // the reply, `*2 $16 maxmemory-policy $N POLICY`, is five lines; it may come in parts
    let mut reply = ask("CONFIG GET maxmemory-policy\r\n".into());
    while reply.matches("\r\n").count() < 5 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{addr}: the reply ended early: {reply}");
        reply.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    reply
}

/// `crescendo shards --json` of the topology in `run_dir`.
fn shards(run_dir: &Path) -> Value {
    let out = crescendo(&["shards", "--json", "--run-dir", &run_dir.to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("shards --json is JSON")
}

/// `GET url` (with `token`): the status, whether the answer is marked partial, and the
/// body.
async fn get_marked(url: &str, token: &str) -> (StatusCode, bool, Value) {
    let res = reqwest::Client::new()
        .get(url)
        .header("authorization", format!("Token {token}"))
        .send()
        .await
        .unwrap();
    let partial = res.headers().get("x-crescendo-partial").is_some();
    (
        res.status(),
        partial,
        res.json().await.unwrap_or(Value::Null),
    )
}

/// The cluster of rung 10's first map that a user signing up as `name` lives on.
fn cluster_of(name: &str) -> String {
    let map = crescendo_store::shard_map::ShardMap::place(&["c1", "c2", "c3"], 1);
    map.cluster_of(crescendo_domain::LogicalShard::for_new_user(name))
        .to_string()
}

/// The first of `prefix0`, `prefix1`… whose user would live on `cluster`.
fn name_on(prefix: &str, cluster: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| cluster_of(n) == cluster)
        .unwrap()
}

/// Posts an article titled `title` as `token`.
async fn post_article(url: &str, token: &str, title: &str) {
    let res = reqwest::Client::new()
        .post(format!("{url}/api/articles"))
        .header("authorization", format!("Token {token}"))
        .json(&json!({"article": {"title": title, "description": "d", "body": "b", "tagList": []}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}

/// Follows `name` as `token`.
async fn follow(url: &str, token: &str, name: &str) {
    let res = reqwest::Client::new()
        .post(format!("{url}/api/profiles/{name}/follow"))
        .header("authorization", format!("Token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// Kills cluster c3's server of `role` (`pg-primary`, `pg-replica`), as listed by `status`.
fn kill_c3(processes: &[Value], role: &str) {
    let pid = processes
        .iter()
        .find(|p| p["cluster"] == "c3" && p["role"] == role)
        .map(|p| p["pid"].as_u64().unwrap() as i32)
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// Posts an article as `token`; the answer's status.
async fn try_post(url: &str, token: &str, title: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{url}/api/articles"))
        .header("authorization", format!("Token {token}"))
        .json(&json!({"article": {"title": title, "description": "d", "body": "b", "tagList": []}}))
        .send()
        .await
        .unwrap()
        .status()
}

/// Rung 10's rung-4 rules, per cluster: c3's primary killed, c3's writes fail at once while
/// its replica serves its reads (global lists whole) and the other clusters' writes go on;
/// `failover --cluster c3` promotes the replica and c3's writes are back.
async fn lose_c3s_primary_and_fail_over(
    run_dir: &Path,
    url: &str,
    processes: &[Value],
    other: &str,
    (scribe_name, scribe): (&str, &str),
) {
    post_article(url, scribe, "scribe before").await;
    kill_c3(processes, "pg-primary");
    let lost = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        match try_post(url, scribe, &format!("scribe try {n}")).await {
            StatusCode::SERVICE_UNAVAILABLE => break,
            s => assert!(lost.elapsed() < Duration::from_secs(20), "{s}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "rung 10: c3's writes refused {:?} after its primary was killed",
        lost.elapsed()
    );
    post_article(url, other, "another cluster's write").await;
    // a reader whose fence names another cluster (who just wrote on c1) is served c3's
    // part by c3's replica, marked stale where only the lost primary could have served it.
    // On a loaded machine the replica may miss its monitor's checks as its primary dies, and
    // a list then leaves c3 out, marked partial, until the next check of the clusters (each
    // second) finds the replica answering: whole within a bound
    let whole = Instant::now();
    loop {
        let (status, partial, list) =
            get_marked(&format!("{url}/api/articles?tag=sharded&limit=20"), other).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        if !partial {
            assert_eq!(
                list["articlesCount"], 12,
                "c3's replica answers for c3: {list}"
            );
            break;
        }
        assert!(
            whole.elapsed() < Duration::from_secs(20),
            "global lists leave c3 out while its replica answers: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "rung 10: global lists whole from c3's replica {:?} after its writes were refused",
        whole.elapsed()
    );
    let config = run_dir.join("postgres-admin.toml");
    let out = crescendo(&[
        "failover",
        "--cluster",
        "c3",
        "--config",
        &config.to_string_lossy(),
    ]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && said.contains("promoted"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("rung 10: {said}");
    let promoted = Instant::now();
    while try_post(url, scribe, "scribe after").await != StatusCode::CREATED {
        assert!(
            promoted.elapsed() < Duration::from_secs(20),
            "c3's writes are back after its failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "rung 10: c3's writes back {:?} after the failover",
        promoted.elapsed()
    );
    // no refused write was half made, and nothing acknowledged was lost
    let mine = titles(url, scribe_name).await;
    assert_eq!(
        mine.first().map(String::as_str),
        Some("scribe after"),
        "{mine:?}"
    );
    assert!(mine.contains(&"scribe before".to_string()), "{mine:?}");
    assert!(
        !mine.iter().any(|t| t.starts_with("scribe try")),
        "{mine:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rung_ten_spreads_users_over_three_clusters_and_survives_losing_one() {
    let t = up(&topology("10-sharding.toml"), &[]);
    let (run_dir, url) = (t.run_dir.clone(), t.url.clone());
    let s = status_with_nodes_up(&run_dir, 3).await;
    let processes = s["processes"].as_array().unwrap().clone();
    let clusters: Vec<(&str, &str)> = processes
        .iter()
        .filter(|p| p["role"].as_str().unwrap().starts_with("pg-"))
        .map(|p| (p["cluster"].as_str().unwrap(), p["role"].as_str().unwrap()))
        .collect();
    let mut want = Vec::new();
    for c in ["catalogue", "c1", "c2", "c3"] {
        want.extend([(c, "pg-primary"), (c, "pg-replica")]);
    }
    assert_eq!(clusters, want);
    refuses_strangers(&processes).await;
    realworld_collection(&url, "shard");

    // users spread over every cluster; a reader follows them all and the feed merges them
    let reader_name = name_on("reader", "c1");
    let reader = register(&url, &reader_name).await;
    let client = reqwest::Client::new();
    let mut titles = Vec::new();
    for i in 0..12 {
        let name = format!("writer{i}");
        let token = register(&url, &name).await;
        let res = client
            .post(format!("{url}/api/articles"))
            .header("authorization", format!("Token {token}"))
            .json(&json!({"article": {"title": format!("post {i}"), "description": "d", "body": "b", "tagList": ["sharded"]}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        follow(&url, &reader, &name).await;
        titles.insert(0, format!("post {i}"));
    }
    let map = shards(&run_dir);
    assert_eq!(map["epoch"], 1);
    let per_cluster = map["clusters"].as_array().unwrap();
    let shares: Vec<u64> = per_cluster
        .iter()
        .map(|c| c["shards"].as_u64().unwrap())
        .collect();
    assert_eq!(shares.iter().sum::<u64>(), 4096, "{map}");
    for c in per_cluster {
        let name = c["cluster"].as_str().unwrap();
        let here = (0..12)
            .map(|i| format!("writer{i}"))
            .chain([reader_name.clone()])
            .filter(|n| cluster_of(n) == name)
            .count() as u64;
        assert!(c["users"].as_u64().unwrap() >= here, "{name}: {map}");
    }
    // the feed is filled by fan-out on write: each follow back-fills the followee's articles
    // into the reader's timeline through a feed job, so it is complete within a bound
    let fanned = Instant::now();
    loop {
        let (status, partial, feed) =
            get_marked(&format!("{url}/api/articles/feed?limit=20"), &reader).await;
        assert_eq!((status, partial), (StatusCode::OK, false));
        let got: Vec<String> = feed["articles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["title"].as_str().unwrap().to_string())
            .collect();
        if got == titles {
            eprintln!(
                "rung 10: the feed held every followee's post {:?} after the last follow",
                fanned.elapsed()
            );
            break;
        }
        assert!(
            fanned.elapsed() < FAN_OUT_BOUND,
            "the feed merges every cluster, newest first, within {FAN_OUT_BOUND:?}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // one hot shard moved online, from c1 to c2: its user's articles stay readable and
    // writable throughout, on the new home
    let mover = name_on("mover", "c1");
    let token = register(&url, &mover).await;
    post_article(&url, &token, "before the move").await;
    let shard = crescendo_domain::LogicalShard::for_new_user(&mover).get();
    let moved = crescendo(&[
        "reshard",
        "--run-dir",
        &run_dir.to_string_lossy(),
        "--move-shard",
        &shard.to_string(),
        "--to",
        "c2",
    ]);
    let said = String::from_utf8_lossy(&moved.stdout).into_owned();
    assert!(
        moved.status.success() && said.contains("moved 1 logical shards"),
        "{said}{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    eprintln!("{said}");
    let after = shards(&run_dir);
    assert_eq!((&after["epoch"], &after["moving"]), (&json!(2), &json!(0)));
    post_article(&url, &token, "after the move").await;
    let (_, _, by) = get_marked(&format!("{url}/api/articles?author={mover}"), &reader).await;
    let titles_by: Vec<&str> = by["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles_by, ["after the move", "before the move"]);

    // one more followee on c3, whose articles nobody has read yet
    let late = name_on("late", "c3");
    register(&url, &late).await;
    follow(&url, &reader, &late).await;

    let scribe_name = name_on("scribe", "c3");
    let scribe = register(&url, &scribe_name).await;
    lose_c3s_primary_and_fail_over(&run_dir, &url, &processes, &reader, (&scribe_name, &scribe))
        .await;

    // every server of c3 lost (its promoted replica too): the others' users are served;
    // global reads are partial
    kill_c3(&processes, "pg-replica");
    let list_url = format!("{url}/api/articles?tag=sharded&limit=20");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, partial, list) = loop {
        let answer = get_marked(&list_url, &reader).await;
        if answer.1 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((status, partial), (StatusCode::OK, true), "{list}");
    let listed: Vec<&str> = list["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["author"]["username"].as_str().unwrap())
        .collect();
    let on_up = (0..12)
        .map(|i| format!("writer{i}"))
        .filter(|n| cluster_of(n) != "c3")
        .count();
    assert_eq!(
        listed.len(),
        on_up,
        "every article of c1 and c2: {listed:?}"
    );
    assert!(listed.iter().all(|a| cluster_of(a) != "c3"), "{listed:?}");
    // single-shard reads of the clusters that are up work
    let (status, _, me) = get_marked(&format!("{url}/api/user"), &reader).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    // the feed is the reader's timeline, on c1, filled by fan-out on write: it answers without
    // c3, in full where c3's articles are cached, and marked partial if it leaves any out
    let (status, partial, feed) = get_marked(&format!("{url}/api/articles/feed"), &reader).await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    let authors: Vec<&str> = feed["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["author"]["username"].as_str().unwrap())
        .collect();
    let missing: Vec<String> = (0..12)
        .map(|i| format!("writer{i}"))
        .filter(|w| !authors.contains(&w.as_str()))
        .collect();
    assert_eq!(partial, !missing.is_empty(), "{feed}");
    assert!(missing.iter().all(|w| cluster_of(w) == "c3"), "{missing:?}");
    let s = status_with_nodes_up(&run_dir, 3).await;
    assert_eq!(
        up_nodes(&s),
        3,
        "no web node leaves the balancer for one lost cluster"
    );
}
