//! `crescendo tour`: the same scenario against every rung that exists, each started and
//! stopped here, and one report comparing them, with the playbook's claim for each rung and
//! the number measured for or against it.
//!
//! Rungs join the tour as they land; today it has rung 1 (`crescendo serve`) and the
//! topologies of rungs 2 to 10 (`topologies/*.toml`, compiled in), each started with
//! `crescendo up`'s code in a temporary run directory. Rung 8's two regions live in network
//! namespaces, which only root can make: its row comes from [`crate::regions`] (clients
//! inside the users' namespaces, per region), not from one load at one address. Their PostgreSQL servers run with
//! `fsync` on, so every rung's writes are as durable as rung 1's. Behind a load balancer the
//! server's view is the sum of every web node's `/metrics`, read on each node's operators'
//! listener (`http.ops_listen`), which `up` records in the state.

mod page;
mod two_regions;

pub use page::write;

use crate::regions::RegionsReport;
use crate::report::Report;
use crate::{BenchOptions, bench};
use anyhow::{Context, bail};
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A rung the tour can start.
#[derive(Clone, Copy, Debug)]
pub struct Rung {
    /// Its number on the ladder.
    pub number: u8,
    /// Its name.
    pub name: &'static str,
    /// What the playbook claims for it.
    pub claim: &'static str,
}

/// The rungs that exist.
pub const RUNGS: &[Rung] = &[
    Rung {
        number: 1,
        name: "single server",
        claim: "one process on embedded defaults serves the whole API, with hot reads from its in-process cache",
    },
    Rung {
        number: 2,
        name: "separate database",
        claim: "a stateless web node on its own PostgreSQL server serves the same API with the data off the web tier",
    },
    Rung {
        number: 3,
        name: "load balancer",
        claim: "three web nodes behind HAProxy serve the same API through one public address",
    },
    Rung {
        number: 4,
        name: "replication",
        claim: "two replicas take the reads (the primary serves at most 10 % of them) while each user still reads their own writes",
    },
    Rung {
        number: 5,
        name: "cache tier",
        claim: "with a read-through cache on three Redis servers and a near cache in each node, a read request needs at most 0.1 database queries",
    },
    Rung {
        number: 6,
        name: "CDN edge",
        claim: "two Varnish edges in front of rung 7's tiers answer anonymous reads and assets from their store, and every write purges what it changed on both",
    },
    Rung {
        number: 7,
        name: "stateless web",
        claim: "with shared state in Redis any web node serves any request, and the replicas still take the reads",
    },
    Rung {
        number: 8,
        name: "two regions",
        claim: "users read from the region nearest them without crossing the 20 ms WAN, region B's writes cross it to A's primary, and B's replica and cache follow A's writes within a second",
    },
    Rung {
        number: 9,
        name: "message queue",
        claim: "uploads are answered at once while workers behind NATS JetStream make the variants, so upload latency stays flat as the backlog grows",
    },
    Rung {
        number: 10,
        name: "sharding",
        claim: "users and their rows spread over three PostgreSQL clusters serve the same API: each write goes to one of three primaries, and global lists and feeds merge every cluster",
    },
];

/// The topology file of each rung the tour starts that way.
fn topology(rung: u8) -> Option<(&'static str, &'static str)> {
    Some(match rung {
        2 => (
            "02-separate-db.toml",
            include_str!("../../../topologies/02-separate-db.toml"),
        ),
        3 => (
            "03-load-balancer.toml",
            include_str!("../../../topologies/03-load-balancer.toml"),
        ),
        4 => (
            "04-replication.toml",
            include_str!("../../../topologies/04-replication.toml"),
        ),
        5 => (
            "05-cache.toml",
            include_str!("../../../topologies/05-cache.toml"),
        ),
        6 => (
            "06-cdn.toml",
            include_str!("../../../topologies/06-cdn.toml"),
        ),
        7 => (
            "07-stateless.toml",
            include_str!("../../../topologies/07-stateless.toml"),
        ),
        8 => (
            "08-two-regions.toml",
            include_str!("../../../topologies/08-two-regions.toml"),
        ),
        9 => (
            "09-queue.toml",
            include_str!("../../../topologies/09-queue.toml"),
        ),
        10 => (
            "10-sharding.toml",
            include_str!("../../../topologies/10-sharding.toml"),
        ),
        _ => return None,
    })
}

/// One rung's line in the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct TourRow {
    /// Rung number.
    pub rung: u8,
    /// Rung name.
    pub name: String,
    /// The playbook's claim.
    pub claim: String,
    /// Requests per second.
    pub throughput: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Failed requests.
    pub errors: u64,
    /// Database queries per request, as the server counted them.
    pub db_queries_per_request: Option<f64>,
    /// Share of cache reads served locally.
    pub cache_hit_ratio: Option<f64>,
    /// Share of cache reads served by either cache tier.
    #[serde(default)]
    pub cache_served_ratio: Option<f64>,
    /// Database queries per read (GET) request.
    #[serde(default)]
    pub db_reads_per_read_request: Option<f64>,
    /// Share of database reads the primary served (PostgreSQL rungs).
    pub primary_read_share: Option<f64>,
    /// Behind a load balancer: whether a browser signed in through `web-1` was still signed
    /// in after `web-1` was killed (sticky in-memory sessions lose it; shared ones keep it).
    pub session_survives_node_loss: Option<bool>,
    /// Rung 9: a second run of the `upload` scenario: upload p50/p99 (ms), time from the
    /// answer to ready at p50/p99 (ms), and jobs the workers finished per second.
    #[serde(default)]
    pub uploads: Option<UploadFigures>,
    /// CPU milliseconds per request summed over every server process of the rung.
    #[serde(default)]
    pub cpu_ms_per_request: Option<f64>,
    /// Where the CPU goes: per role, and the load generator's own apart.
    #[serde(default)]
    pub cpu: Option<crate::cpu::CpuView>,
    /// Behind edges: the share of the answers that passed an edge it served from its store.
    #[serde(default)]
    pub edge_hit_ratio: Option<f64>,
    /// Rung 8: read and write latency per users' namespace and region, replication lag,
    /// cross-region invalidation delay.
    #[serde(default)]
    pub regions: Option<RegionsReport>,
    /// The claim against the numbers, in one sentence.
    pub verdict: String,
}

/// What the `upload` scenario measured on a rung with workers.
#[derive(Clone, Debug, Serialize)]
pub struct UploadFigures {
    /// Uploads per second answered.
    pub throughput: f64,
    /// Upload latency, median (ms).
    pub p50_ms: f64,
    /// Upload latency, 99th percentile (ms).
    pub p99_ms: f64,
    /// Failed uploads.
    pub errors: u64,
    /// From the answer to ready, median (ms).
    pub ready_p50_ms: f64,
    /// From the answer to ready, 99th percentile (ms).
    pub ready_p99_ms: f64,
    /// Jobs finished per second by all workers.
    pub jobs_per_second: f64,
}

/// The tour's comparison.
#[derive(Clone, Debug, Serialize)]
pub struct TourReport {
    /// The scenario every rung ran.
    pub scenario: String,
    /// One row per rung.
    pub rungs: Vec<TourRow>,
}

/// A server the tour started; stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
struct Started {
    /// Rung 1's `crescendo serve`.
    child: Option<Child>,
    /// A topology's processes, stopped when dropped.
    topology: Option<crescendo_topology::Running>,
    url: String,
    /// Each web node's metrics endpoint.
    metrics: Vec<String>,
    /// A topology's run directory, whose state lists every process whose CPU is sampled.
    run_dir: Option<PathBuf>,
    _data: tempfile::TempDir,
}

impl Drop for Started {
    fn drop(&mut self) {
        self.topology.take();
        if let Some(child) = &mut self.child {
            crescendo_topology::stop(
                child,
                Some(nix::sys::signal::Signal::SIGTERM),
                Duration::from_secs(10),
            );
        }
    }
}

/// Starts a rung: for 1, `crescendo serve` on a free port with a fresh data directory;
/// for the others, its topology on a free public port in a temporary run directory.
fn start_rung(exe: &Path, rung: u8) -> anyhow::Result<Started> {
    use crescendo_topology as topology;
    let data = tempfile::tempdir()?;
    if let Some((name, text)) = topology(rung) {
        // from a file, as `crescendo up FILE` reads it: two regions start each region's own
        // `up` from the topology's file
        let file = data.path().join(name);
        std::fs::write(&file, text)?;
        let t = topology::Topology::load(&file)?;
        let public = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let run_dir = data.path().join("run");
        let opts = topology::UpOptions {
            exe: exe.to_path_buf(),
            run_dir: run_dir.clone(),
            public: Some(public),
            progress: |_| {},
            region: None,
        };
        let running = topology::up(&t, &opts)?;
        let metrics = running
            .state
            .processes
            .iter()
            .filter(|p| {
                matches!(
                    p.role,
                    crescendo_topology::Role::Web | crescendo_topology::Role::Worker
                )
            })
            .map(|p| format!("http://{}/metrics", p.metrics_addr()))
            .collect();
        // let the balancer's first health checks pass before load starts
        std::thread::sleep(Duration::from_millis(800));
        return Ok(Started {
            child: None,
            url: running.state.url.clone(),
            topology: Some(running),
            metrics,
            run_dir: Some(run_dir),
            _data: data,
        });
    }
    if rung != 1 {
        bail!("rung {rung} cannot be started yet");
    }
    let mut child = Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    // the server prints its operators' address (where /metrics is) before its public one
    let mut metrics = Vec::new();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(ops) = line.strip_prefix("ops listening on ") {
                    metrics.push(format!("{}/metrics", ops.trim()));
                } else if let Some(url) = line.strip_prefix("listening on ") {
                    break url.trim().to_string();
                }
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("rung 1 exited before it listened");
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Started {
        child: Some(child),
        topology: None,
        url,
        metrics,
        run_dir: None,
        _data: data,
    })
}

/// Signs a browser up through the balancer, pinned to `web-1` when the balancer pins
/// (its cookie is harmless otherwise), kills `web-1`, and says whether the browser is still
/// signed in.
async fn session_survives(
    url: &str,
    running: &crescendo_topology::Running,
) -> anyhow::Result<bool> {
    // the bench's pool settings: the client gives an idle connection up before a server does
    let client = crate::client::builder(1)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut cookies = vec!["CRESCENDO_NODE=web-1".to_string()];
    let send = |r: reqwest::RequestBuilder, cookies: &Vec<String>| {
        r.header("cookie", cookies.join("; ")).send()
    };
    let page = send(client.get(format!("{url}/register")), &cookies).await?;
    let keep = |res: &reqwest::Response, cookies: &mut Vec<String>| {
        for c in res.headers().get_all("set-cookie") {
            if let Some(pair) = c.to_str().ok().and_then(|c| c.split(';').next()) {
                let name = pair.split('=').next().unwrap_or_default().to_string();
                cookies.retain(|k| !k.starts_with(&format!("{name}=")));
                cookies.push(pair.to_string());
            }
        }
    };
    keep(&page, &mut cookies);
    let body = page.text().await?;
    let marker = "name=\"csrf\" value=\"";
    let at = body.find(marker).context("no sign-up form")? + marker.len();
    let csrf = &body[at..at + body[at..].find('"').context("no token")?];
    let name = format!("tour{}", std::process::id());
    let form =
        format!("username={name}&email={name}%40example.com&password=password123&csrf={csrf}");
    let res = send(
        client
            .post(format!("{url}/register"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form),
        &cookies,
    )
    .await?;
    anyhow::ensure!(
        res.status() == reqwest::StatusCode::SEE_OTHER,
        "signing up answered {}",
        res.status()
    );
    keep(&res, &mut cookies);
    let web1 = running
        .state
        .processes
        .iter()
        .find(|p| p.name == "web-1")
        .context("no web-1")?;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(web1.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    // the balancer's checks mark it down within a second
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let res = send(client.get(format!("{url}/settings")), &cookies).await?;
    Ok(res.status() == reqwest::StatusCode::OK)
}

fn verdict(
    rung: &Rung,
    r: &Report,
    survives: Option<bool>,
    uploads: Option<&UploadFigures>,
) -> String {
    let hits = r
        .server
        .cache_hit_ratio
        .map(|h| format!(", {:.1} % of cache reads served in-process", h * 100.0))
        .unwrap_or_default();
    let served = match (r.server.cache_served_ratio, r.server.cache_hit_ratio) {
        (Some(s), Some(h)) if s > h => format!(" ({:.1} % from either cache tier)", s * 100.0),
        _ => String::new(),
    };
    let hits = hits + &served;
    let reads = r
        .server
        .db_reads_per_read_request
        .map(|q| format!(", {q:.3} database queries per read request"))
        .unwrap_or_default();
    let dbq = r
        .server
        .db_queries_per_request
        .map(|q| format!(", {q:.3} database queries per request"))
        .unwrap_or_default();
    let primary = r
        .server
        .primary_read_share
        .map(|p| format!(", the primary served {:.1} % of database reads", p * 100.0))
        .unwrap_or_default();
    let share_ok =
        !matches!(rung.number, 4 | 7) || r.server.primary_read_share.is_some_and(|p| p <= 0.10);
    let reads_ok = rung.number != 5
        || r.server
            .db_reads_per_read_request
            .is_some_and(|q| q <= 0.10);
    let uploads_ok = uploads.is_none_or(|u| u.errors == 0 && u.jobs_per_second > 0.0);
    let holds = if r.errors == 0 && share_ok && reads_ok && uploads_ok {
        "holds"
    } else {
        "holds only in part"
    };
    let uploads = uploads
        .map(|u| {
            format!(
                "; uploads: {:.0}/s at p50 {:.0} ms, p99 {:.0} ms, {} failed, ready {:.0} ms (p50) and {:.0} ms (p99) after the answer, {:.1} jobs/s done",
                u.throughput, u.p50_ms, u.p99_ms, u.errors, u.ready_p50_ms, u.ready_p99_ms, u.jobs_per_second
            )
        })
        .unwrap_or_default();
    let cpu = r
        .cpu
        .as_ref()
        .map(|c| {
            format!(
                ", {:.3} CPU-ms per request across the servers ({})",
                c.server_cpu_ms_per_request,
                c.top(3)
            )
        })
        .unwrap_or_default();
    let edge = r
        .edge_hit_ratio
        .map(|e| {
            format!(
                ", the edges answered {:.1} % of what passed them from their store",
                e * 100.0
            )
        })
        .unwrap_or_default();
    let sessions = match survives {
        Some(true) => "; a browser signed in through a node that was then killed stayed signed in",
        Some(false) => {
            "; a browser signed in through a node that was then killed was signed out (its session lived in that node's memory)"
        }
        None => "",
    };
    format!(
        "Rung {}: the claim that {} {holds}: {:.0} requests/s at p99 {:.1} ms with {} errors{edge}{hits}{dbq}{reads}{primary}{cpu}{sessions}{uploads}.",
        rung.number, rung.claim, r.throughput, r.latency.p99_ms, r.errors
    )
}

/// Runs `template` (its target is ignored) against every rung, writing each rung's report
/// into `out/rung-N/` and the comparison into `out/tour.json` and `out/tour.html`.
///
/// # Errors
/// A rung would not start, or a run failed.
pub async fn tour(exe: &Path, template: &BenchOptions, out: &Path) -> anyhow::Result<TourReport> {
    let mut rows = Vec::new();
    for rung in RUNGS {
        eprintln!("rung {}: {} — starting", rung.number, rung.name);
        let server = tokio::task::spawn_blocking({
            let (exe, number) = (exe.to_path_buf(), rung.number);
            move || start_rung(&exe, number)
        })
        .await??;
        if rung.number == 8 {
            let dir = server
                .run_dir
                .clone()
                .context("rung 8 runs from a run directory")?;
            let rung_out = out.join("rung-8");
            rows.push(two_regions::row(rung, template, &dir, &rung_out).await?);
            if let Err(e) = crescendo_topology::state::copy_logs(&dir, &rung_out.join("logs")) {
                eprintln!("rung 8: the servers' logs were not kept: {e}");
            }
            tokio::task::spawn_blocking(move || drop(server)).await?;
            continue;
        }
        let mut o = template.clone();
        o.target = server.url.clone();
        // rung 1's one process by its PID (peak memory too); a topology's processes through
        // its run directory
        o.pid = server.child.as_ref().map(Child::id);
        o.run_dir = server.run_dir.clone();
        o.metrics = server.metrics.clone();
        o.out = out.join(format!("rung-{}", rung.number));
        let report = bench(&o).await?.context("the tour does not seed only")?;
        eprint!("{}", report.table());
        // rung 9's point is the upload path: measure it too, on the data already seeded
        let uploads = if rung.number == 9 {
            let mut u = o.clone();
            u.scenario = crate::scenario::Scenario::Upload;
            u.seed_mode = crate::SeedMode::NoSeed;
            u.out = out.join("rung-9-upload");
            let r = bench(&u).await?.context("the upload run")?;
            eprint!("{}", r.table());
            let ready = r.upload_ready.unwrap_or_default();
            Some(UploadFigures {
                throughput: r.throughput,
                p50_ms: r.latency.p50_ms,
                p99_ms: r.latency.p99_ms,
                errors: r.errors,
                ready_p50_ms: ready.p50_ms,
                ready_p99_ms: ready.p99_ms,
                jobs_per_second: r.jobs_per_second.unwrap_or(0.0),
            })
        } else {
            None
        };
        // after the measurement: does a signed-in browser outlive its node?
        let survives = match &server.topology {
            Some(t) if t.state.lb.is_some() => Some(session_survives(&server.url, t).await?),
            _ => None,
        };
        // what the servers said, to read after the topology is gone
        if let Some(dir) = &server.run_dir
            && let Err(e) = crescendo_topology::state::copy_logs(dir, &o.out.join("logs"))
        {
            eprintln!("rung {}: the servers' logs were not kept: {e}", rung.number);
        }
        rows.push(TourRow {
            rung: rung.number,
            name: rung.name.into(),
            claim: rung.claim.into(),
            throughput: report.throughput,
            p50_ms: report.latency.p50_ms,
            p99_ms: report.latency.p99_ms,
            errors: report.errors,
            db_queries_per_request: report.server.db_queries_per_request,
            cache_hit_ratio: report.server.cache_hit_ratio,
            cache_served_ratio: report.server.cache_served_ratio,
            db_reads_per_read_request: report.server.db_reads_per_read_request,
            primary_read_share: report.server.primary_read_share,
            session_survives_node_loss: survives,
            cpu_ms_per_request: report.cpu.as_ref().map(|c| c.server_cpu_ms_per_request),
            cpu: report.cpu.clone(),
            edge_hit_ratio: report.edge_hit_ratio,
            regions: None,
            verdict: verdict(rung, &report, survives, uploads.as_ref()),
            uploads,
        });
        tokio::task::spawn_blocking(move || drop(server)).await?;
    }
    let t = TourReport {
        scenario: crate::report::scenario_name(template.scenario).into(),
        rungs: rows,
    };
    write(&t, out)?;
    Ok(t)
}
