//! The ceiling in the same run: the answers the target gave are recorded during the measured
//! run ([`Recorder`]), then served from memory in this process by the same HTTP stack as
//! `serve` (`crescendo_server::serve_ceiling`), and the same scenario is run against them
//! for as long with as many connections. The target's throughput divided by the ceiling's
//! is the fraction of the in-process limit it reaches, which moves far less between machines
//! than either figure.

use crate::load;
use bytes::Bytes;
use crescendo_server::{Answer, Answers};
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// At most this many distinct requests (method and path with query) are recorded.
pub const MAX_ANSWERS: usize = 10_000;
/// At most this many body bytes are recorded in all.
pub const MAX_BYTES: usize = 256 << 20;

/// The last answer to each distinct request of a run, within [`MAX_ANSWERS`] and
/// [`MAX_BYTES`]. Shared by every connection of the run: the lock is held for one map
/// look-up, and a body is kept by reference, not copied.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Recording>,
}

#[derive(Debug, Default)]
struct Recording {
    answers: HashMap<(Method, String), Answer>,
    /// Body bytes held.
    bytes: usize,
    /// Distinct requests left out because a bound was reached.
    left_out: HashSet<(Method, String)>,
}

impl Recorder {
    /// Keeps `body` as the last answer to `method` on `path` (with its query), unless it is a
    /// new request and a bound is reached.
    pub fn record(
        &self,
        method: Method,
        path: String,
        status: u16,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) {
        let mut r = self.inner.lock().expect("recording lock is never poisoned");
        let key = (method, path);
        let held = r.answers.get(&key).map(|a| a.body.len());
        let bytes = r.bytes - held.unwrap_or(0) + body.len();
        if bytes > MAX_BYTES || (held.is_none() && r.answers.len() >= MAX_ANSWERS) {
            if held.is_none() && r.left_out.len() < MAX_ANSWERS {
                r.left_out.insert(key);
            }
            return;
        }
        r.bytes = bytes;
        let answer = Answer {
            status: reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::OK),
            content_type,
            body,
        };
        r.answers.insert(key, answer);
    }

    /// The recorded answers, their body bytes, and how many distinct requests were left out.
    fn into_answers(self) -> (Answers, usize, usize) {
        let r = self
            .inner
            .into_inner()
            .expect("recording lock is never poisoned");
        let mut answers = Answers::new();
        for ((method, path), answer) in r.answers {
            answers.insert(method, &path, answer);
        }
        (answers, r.bytes, r.left_out.len())
    }
}

/// What the ceiling run measured, beside the target's run.
#[derive(Clone, Debug, Serialize)]
pub struct CeilingReport {
    /// Distinct answers recorded from the target and served by the ceiling.
    pub recorded: usize,
    /// Their body bytes.
    pub recorded_bytes: usize,
    /// Distinct requests not recorded because a bound ([`MAX_ANSWERS`], [`MAX_BYTES`]) was
    /// reached (counted up to [`MAX_ANSWERS`]).
    pub not_recorded: usize,
    /// Requests sent to the ceiling.
    pub requests: u64,
    /// The ceiling's requests per second.
    pub throughput: f64,
    /// The ceiling's median latency, ms.
    pub p50_ms: f64,
    /// The ceiling's 99th percentile latency, ms.
    pub p99_ms: f64,
    /// The target's throughput divided by the ceiling's.
    pub fraction: f64,
    /// The share of the ceiling run's requests that found no recorded answer (a 404 from
    /// the ceiling): near 0 for reads; writes that create new paths raise it.
    pub missing_share: f64,
}

impl CeilingReport {
    /// The lines the run's summary table adds.
    pub fn table(&self) -> String {
        format!(
            "  ceiling    {:>10.1} req/s   p50 {:.2} ms   p99 {:.2} ms   ({} recorded answers, \
             {:.1} MiB, served from memory by the same stack; {} left out)\n  \
             fraction of the ceiling {:.3}   ceiling requests without a recorded answer {:.2} %\n",
            self.throughput,
            self.p50_ms,
            self.p99_ms,
            self.recorded,
            self.recorded_bytes as f64 / (1024.0 * 1024.0),
            self.not_recorded,
            self.fraction,
            self.missing_share * 100.0
        )
    }
}

/// Serves what `recorder` holds through the stack of `serve` on a loopback port, runs
/// `run`'s scenario against it (same duration and load model), and compares its throughput
/// with the target's `target_throughput`.
///
/// # Errors
/// No loopback port could be bound, or the HTTP client could not be built.
pub async fn measure(
    run: &load::Run,
    recorder: Recorder,
    target_throughput: f64,
) -> anyhow::Result<CeilingReport> {
    let (answers, recorded_bytes, not_recorded) = recorder.into_answers();
    let recorded = answers.len();
    let answers = Arc::new(answers);
    let mut settings = crescendo_config::Settings::default();
    settings.http.listen = ([127, 0, 0, 1], 0).into();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = crescendo_server::serve_ceiling(&settings, Arc::clone(&answers), async {
        let _ = stopped.await;
    })
    .await?;
    let ceiling_run = load::Run {
        base: format!("http://{}", server.addr),
        record: None,
        ..run.clone()
    };
    let started = Instant::now();
    let stats = load::run(&ceiling_run, Arc::new(load::Progress::default())).await;
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    let _ = server.done.await;
    let stats = stats?;
    let requests = stats.ok + stats.errors;
    let throughput = requests as f64 / elapsed.max(f64::EPSILON);
    let latency = stats.overall.summary();
    Ok(CeilingReport {
        recorded,
        recorded_bytes,
        not_recorded,
        requests,
        throughput,
        p50_ms: latency.p50_ms,
        p99_ms: latency.p99_ms,
        fraction: if throughput > 0.0 {
            target_throughput / throughput
        } else {
            0.0
        },
        missing_share: answers.misses() as f64 / requests.max(1) as f64,
    })
}

/// Fetches each of `paths` (each with its query, from `/`) once with `GET` from `base`, as
/// the user of `token` if given, and returns the answers: what `crescendo ceiling` serves.
///
/// # Errors
/// A path does not start with `/`, a request got no answer, or no path was given.
pub async fn fetch(base: &str, paths: &[String], token: Option<&str>) -> anyhow::Result<Answers> {
    use anyhow::Context;
    anyhow::ensure!(!paths.is_empty(), "no path to fetch: give at least one");
    let client = crate::client::builder(1).build()?;
    let mut answers = Answers::new();
    for path in paths {
        anyhow::ensure!(
            path.starts_with('/'),
            "{path:?}: a path starts with / (e.g. /api/articles?limit=20)"
        );
        let mut req = client.get(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Token {t}"));
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("fetching {base}{path}"))?;
        let status = res.status();
        let content_type = res.headers().get(reqwest::header::CONTENT_TYPE).cloned();
        let body = res
            .bytes()
            .await
            .with_context(|| format!("reading {base}{path}"))?;
        let answer = Answer {
            status,
            content_type,
            body,
        };
        answers.insert(Method::GET, path, answer);
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_answer_is_kept_and_the_bound_leaves_new_requests_out() {
        let r = Recorder::default();
        let body = |s: &'static str| Bytes::from_static(s.as_bytes());
        r.record(Method::GET, "/a".into(), 200, None, body("first"));
        r.record(Method::GET, "/a".into(), 200, None, body("second"));
        for i in 0..MAX_ANSWERS + 5 {
            r.record(Method::GET, format!("/n/{i}"), 200, None, body("x"));
        }
        let (answers, bytes, left_out) = r.into_answers();
        assert_eq!(answers.len(), MAX_ANSWERS);
        assert_eq!(left_out, 6, "/n/9999 and beyond");
        assert_eq!(bytes, "second".len() + (MAX_ANSWERS - 1));
    }
}
