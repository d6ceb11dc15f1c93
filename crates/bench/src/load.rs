//! Driving load: closed loop (N connections, each sending its next request when the last
//! answer arrives) or open loop (requests sent at a fixed rate whatever the server does).
//!
//! In the open loop a request's latency is measured from the moment it was *meant* to be
//! sent, not from when it went out: if the server stalls, the requests queued behind the
//! stall are charged for it (no coordinated omission).

use crate::ceiling::Recorder;
use crate::hist::Latency;
use crate::scenario::{Request, Scenario};
use crate::seed::{Rng, Seeded};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How load is generated.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "model", rename_all = "lowercase")]
pub enum Model {
    /// `connections` clients, each sending again as soon as it has an answer.
    Closed {
        /// Concurrent clients.
        connections: usize,
    },
    /// Requests at `rate` per second, at most `max_in_flight` outstanding.
    Open {
        /// Arrivals per second.
        rate: f64,
        /// Outstanding requests allowed; past it, sending waits (and latency keeps counting).
        max_in_flight: usize,
    },
}

/// How a request failed without an HTTP answer.
fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "other"
    }
}

/// One second of a run.
#[derive(Clone, Debug, Default)]
pub struct Second {
    /// Requests that finished in this second of the run (by their start).
    pub requests: u64,
    /// Of which failed (HTTP ≥ 400 or no answer).
    pub errors: u64,
    /// Their latencies.
    pub latency: Latency,
}

/// Everything measured in a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// All requests.
    pub overall: Latency,
    /// Per request kind (`feed`, `article`, `write.comment`…).
    pub per_kind: BTreeMap<&'static str, Latency>,
    /// Answers by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Failures without an answer, by kind (`timeout`, `connect`, `other`).
    pub by_error: BTreeMap<&'static str, u64>,
    /// Per second of the run.
    pub seconds: Vec<Second>,
    /// Requests answered 2xx/3xx.
    pub ok: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Per request kind: answers that came through an edge cache (they carry `X-Cache`), and
    /// of those, how many the edge answered from its store (`X-Cache: HIT`).
    pub edge: BTreeMap<&'static str, EdgeCount>,
}

/// Answers an edge cache passed on, and those it answered itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EdgeCount {
    /// Answers that carried `X-Cache`.
    pub answers: u64,
    /// Of which `X-Cache: HIT`.
    pub hits: u64,
}

impl EdgeCount {
    /// The share of answers the edge served from its store; `None` when none came through one.
    pub fn hit_ratio(self) -> Option<f64> {
        (self.answers > 0).then(|| self.hits as f64 / self.answers as f64)
    }
}

impl Stats {
    /// Notes what the edge said of an answer of `kind` (`None`: it did not pass an edge).
    pub fn note_edge(&mut self, kind: &'static str, hit: Option<bool>) {
        if let Some(hit) = hit {
            let e = self.edge.entry(kind).or_default();
            e.answers += 1;
            e.hits += u64::from(hit);
        }
    }

    /// Every kind's edge answers together.
    pub fn edge_total(&self) -> EdgeCount {
        self.edge
            .values()
            .fold(EdgeCount::default(), |a, e| EdgeCount {
                answers: a.answers + e.answers,
                hits: a.hits + e.hits,
            })
    }

    /// Records a request that started `offset` into the run.
    pub fn record(
        &mut self,
        offset: Duration,
        kind: &'static str,
        latency: Duration,
        outcome: Result<u16, &'static str>,
    ) {
        let failed = match outcome {
            Ok(status) => {
                *self.by_status.entry(status).or_default() += 1;
                status >= 400
            }
            Err(kind) => {
                *self.by_error.entry(kind).or_default() += 1;
                true
            }
        };
        if failed {
            self.errors += 1;
        } else {
            self.ok += 1;
        }
        self.overall.record(latency);
        self.per_kind.entry(kind).or_default().record(latency);
        let s = offset.as_secs() as usize;
        if self.seconds.len() <= s {
            self.seconds.resize_with(s + 1, Second::default);
        }
        let sec = &mut self.seconds[s];
        sec.requests += 1;
        sec.errors += u64::from(failed);
        sec.latency.record(latency);
    }

    /// Adds another run's statistics (of the same run, from another worker).
    pub fn merge(&mut self, other: Stats) {
        self.overall.merge(&other.overall);
        for (k, h) in other.per_kind {
            self.per_kind.entry(k).or_default().merge(&h);
        }
        for (k, n) in other.by_status {
            *self.by_status.entry(k).or_default() += n;
        }
        for (k, n) in other.by_error {
            *self.by_error.entry(k).or_default() += n;
        }
        if self.seconds.len() < other.seconds.len() {
            self.seconds
                .resize_with(other.seconds.len(), Second::default);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(other.seconds) {
            mine.requests += theirs.requests;
            mine.errors += theirs.errors;
            mine.latency.merge(&theirs.latency);
        }
        self.ok += other.ok;
        self.errors += other.errors;
        for (k, e) in other.edge {
            let mine = self.edge.entry(k).or_default();
            mine.answers += e.answers;
            mine.hits += e.hits;
        }
    }
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests finished.
    pub requests: AtomicU64,
    /// Of which failed.
    pub errors: AtomicU64,
}

/// Sends one request; the status, or how it failed, and whether an edge cache answered it
/// from its store (`None`: no edge passed it on). With `record`, the answer is kept there
/// for the ceiling run.
async fn send(
    client: &reqwest::Client,
    base: &str,
    r: Request,
    record: Option<&Recorder>,
) -> (Result<u16, &'static str>, Option<bool>) {
    let key = record.map(|_| (r.method.clone(), r.path.clone()));
    let mut b = client.request(r.method, format!("{base}{}", r.path));
    if let Some(t) = r.token {
        b = b.header("authorization", format!("Token {t}"));
    }
    if let Some(body) = r.body {
        b = b.json(&body);
    }
    if let Some((content_type, bytes)) = r.raw {
        b = b
            .header("content-type", content_type.as_str())
            .body(bytes.clone());
    }
    let res = match b.send().await {
        Ok(res) => res,
        Err(e) => return (Err(error_kind(&e)), None),
    };
    let edge = res
        .headers()
        .get("x-cache")
        .map(|v| v.as_bytes().starts_with(b"HIT"));
    (answer(res, key, record).await, edge)
}

/// Reads the whole answer (a request is done when its body has arrived); its status.
async fn answer(
    res: reqwest::Response,
    key: Option<(reqwest::Method, String)>,
    record: Option<&Recorder>,
) -> Result<u16, &'static str> {
    let status = res.status().as_u16();
    let content_type = key
        .as_ref()
        .and_then(|_| res.headers().get(reqwest::header::CONTENT_TYPE).cloned());
    match res.bytes().await {
        Ok(body) => {
            if let (Some(record), Some((method, path))) = (record, key) {
                record.record(method, path, status, content_type, body);
            }
            Ok(status)
        }
        Err(e) => Err(error_kind(&e)),
    }
}

/// What a run needs.
#[derive(Clone)]
pub struct Run {
    /// Origin of the target, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// What to send.
    pub scenario: Scenario,
    /// The seeded data to draw from.
    pub data: Arc<Seeded>,
    /// How load is generated.
    pub model: Model,
    /// How long to send.
    pub duration: Duration,
    /// A request without an answer after this long is a `timeout` error.
    pub timeout: Duration,
    /// Where the answers are recorded for a ceiling run, if one follows.
    pub record: Option<Arc<Recorder>>,
}

/// Runs the load and returns what was measured.
///
/// # Errors
/// The HTTP client could not be built.
pub async fn run(r: &Run, progress: Arc<Progress>) -> anyhow::Result<Stats> {
    let pool = match r.model {
        Model::Closed { connections } => connections,
        Model::Open { max_in_flight, .. } => max_in_flight.min(1024),
    };
    let client = crate::client::builder(pool).timeout(r.timeout).build()?;
    let t0 = Instant::now();
    match r.model {
        Model::Closed { connections } => {
            let mut tasks = tokio::task::JoinSet::new();
            for c in 0..connections.max(1) {
                let (client, run, progress) = (client.clone(), r.clone(), Arc::clone(&progress));
                tasks.spawn(async move {
                    let mut rng = Rng(0x5eed ^ (c as u64) << 32);
                    let mut stats = Stats::default();
                    let mut n = c as u64;
                    while t0.elapsed() < run.duration {
                        let req = run.scenario.next(&mut rng, &run.data, n);
                        n += connections as u64;
                        let kind = req.kind;
                        let start = Instant::now();
                        let (outcome, edge) =
                            send(&client, &run.base, req, run.record.as_deref()).await;
                        let latency = start.elapsed();
                        stats.record(start - t0, kind, latency, outcome);
                        stats.note_edge(kind, edge);
                        progress.requests.fetch_add(1, Ordering::Relaxed);
                        if !matches!(outcome, Ok(s) if s < 400) {
                            progress.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    stats
                });
            }
            let mut all = Stats::default();
            while let Some(s) = tasks.join_next().await {
                all.merge(s?);
            }
            Ok(all)
        }
        Model::Open {
            rate,
            max_in_flight,
        } => {
            let stats = Arc::new(Mutex::new(Stats::default()));
            let rng = Arc::new(Mutex::new(Rng(0x5eed)));
            let run_ = r.clone();
            open_loop(rate, r.duration, max_in_flight, |i, intended| {
                let req = run_
                    .scenario
                    .next(&mut rng.lock().expect("rng lock"), &run_.data, i);
                let (client, base, stats, progress, record) = (
                    client.clone(),
                    run_.base.clone(),
                    Arc::clone(&stats),
                    Arc::clone(&progress),
                    run_.record.clone(),
                );
                async move {
                    let kind = req.kind;
                    let (outcome, edge) = send(&client, &base, req, record.as_deref()).await;
                    // charged from when it was meant to go, not from when it went
                    let latency = intended.elapsed();
                    let mut stats = stats.lock().expect("stats lock");
                    stats.record(intended - t0, kind, latency, outcome);
                    stats.note_edge(kind, edge);
                    drop(stats);
                    progress.requests.fetch_add(1, Ordering::Relaxed);
                    if !matches!(outcome, Ok(s) if s < 400) {
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .await;
            let stats = std::mem::take(&mut *stats.lock().expect("stats lock"));
            Ok(stats)
        }
    }
}

/// Calls `send(i, intended)` for the i-th arrival at `start + i / rate` for `duration`,
/// each on its own task, with at most `max_in_flight` unfinished; waits for all to finish.
/// Returns how many were sent. When the bound is reached, the next send waits for a slot;
/// its `intended` time does not move, so the wait counts in its latency.
pub async fn open_loop<F, Fut>(
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    mut send: F,
) -> u64
where
    F: FnMut(u64, Instant) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    assert!(rate > 0.0, "the arrival rate must be positive");
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate);
    let total = (duration.as_secs_f64() * rate).floor() as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let intended = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(intended).await;
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("semaphore open");
        let fut = send(i, intended);
        tasks.spawn(async move {
            fut.await;
            drop(permit);
        });
        // reap finished tasks as we go so the set stays small
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn arrivals_follow_the_schedule_exactly() {
        let times = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let t = Arc::clone(&times);
        let sent = open_loop(100.0, Duration::from_secs(2), 1000, move |i, intended| {
            t.lock()
                .unwrap()
                .push((i, intended - t0, Instant::now() - t0));
            async {}
        })
        .await;
        assert_eq!(sent, 200);
        let times = times.lock().unwrap();
        assert_eq!(times.len(), 200);
        for &(i, intended, actual) in times.iter() {
            assert_eq!(intended, Duration::from_millis(10 * i), "arrival {i}");
            assert_eq!(actual, intended, "sent on time with a paused clock");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_is_charged_to_the_requests_queued_behind_it() {
        // one slot: a 1 s stall at request 10 holds up everything meant to go during it
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let l = Arc::clone(&latencies);
        open_loop(100.0, Duration::from_secs(2), 1, move |i, intended| {
            let l = Arc::clone(&l);
            async move {
                if i == 10 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                l.lock().unwrap().push((i, intended.elapsed()));
            }
        })
        .await;
        let lat = latencies.lock().unwrap();
        let of = |i: u64| lat.iter().find(|(j, _)| *j == i).unwrap().1;
        assert_eq!(of(9), Duration::ZERO);
        assert_eq!(of(10), Duration::from_secs(1));
        // request 11 was meant for 110 ms and could only go at 1.1 s
        assert!(of(11) >= Duration::from_millis(990), "{:?}", of(11));
        // a closed loop would have reported one slow request; here about a hundred are slow
        let slow = lat
            .iter()
            .filter(|(_, d)| *d >= Duration::from_millis(100))
            .count();
        assert!(slow >= 90, "{slow} slow requests");
    }

    #[test]
    fn edge_answers_are_counted_per_kind_and_merged() {
        let (mut a, mut b) = (Stats::default(), Stats::default());
        for hit in [true, true, false] {
            a.note_edge("article", Some(hit));
        }
        a.note_edge("feed", None);
        b.note_edge("article", Some(true));
        b.note_edge("list", Some(false));
        a.merge(b);
        assert_eq!(
            a.edge["article"],
            EdgeCount {
                answers: 4,
                hits: 3
            }
        );
        assert_eq!(a.edge["article"].hit_ratio(), Some(0.75));
        assert!(!a.edge.contains_key("feed"));
        assert_eq!(
            a.edge_total(),
            EdgeCount {
                answers: 5,
                hits: 3
            }
        );
        assert_eq!(Stats::default().edge_total().hit_ratio(), None);
    }

    #[test]
    fn stats_count_statuses_errors_and_seconds() {
        let mut s = Stats::default();
        s.record(
            Duration::from_millis(100),
            "feed",
            Duration::from_millis(2),
            Ok(200),
        );
        s.record(
            Duration::from_millis(1500),
            "feed",
            Duration::from_millis(4),
            Ok(503),
        );
        s.record(
            Duration::from_millis(1600),
            "write.comment",
            Duration::from_millis(9),
            Err("timeout"),
        );
        assert_eq!((s.ok, s.errors), (1, 2));
        assert_eq!(s.by_status, BTreeMap::from([(200, 1), (503, 1)]));
        assert_eq!(s.by_error, BTreeMap::from([("timeout", 1)]));
        assert_eq!(s.seconds.len(), 2);
        assert_eq!((s.seconds[1].requests, s.seconds[1].errors), (2, 2));
        assert_eq!(s.per_kind["feed"].count(), 2);
        let mut t = Stats::default();
        t.record(
            Duration::from_millis(2500),
            "feed",
            Duration::from_millis(1),
            Ok(200),
        );
        s.merge(t);
        assert_eq!((s.ok, s.seconds.len(), s.overall.count()), (2, 3, 4));
    }
}
