//! The web tier's autoscaler, run by `crescendo autoscale` beside the worker autoscaler when
//! the topology's `[web]` has `max_nodes`: once per scrape interval it reads the tier's
//! request rate from the topology's Prometheus, decides with [`Hpa`] (Kubernetes' HPA
//! semantics) and, when the count changes, sets it through [`crate::scale::scale`], the path
//! `crescendo scale web=N` takes (a new node takes traffic once the balancer sees it up; a
//! leaving one is taken out of the balancer, then drains). Every decision goes to
//! `RUN_DIR/`[`DECISIONS_FILE`], which `status` prints, and each change of course to the
//! log.
//!
//! **The signal** is [`SIGNAL`]: the requests HAProxy's `web` backend sent to the nodes per
//! second, over four scrapes, divided by the nodes running. A request rate rather than CPU,
//! because on a small shared machine CPU per request moves with whatever else runs there
//! (and with a debug build), while the request rate is what clients send and what a node's
//! measured capacity is stated in. The balancer's counter rather than the nodes' own
//! `crescendo_http_requests_total`, because the tier's sum of the nodes' counters dips
//! exactly when the autoscaler acts: a leaving node's series go stale at once, and a new
//! node's rate needs two scrapes of its own; the balancer's counter counts the same
//! requests (health checks excluded) through every change of the tier.

use crate::hpa::{Hpa, Recommendation, WebScaling, Why, explain};
use crate::state::{Role, State, alive};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// The file in the run directory holding the web autoscaler's decisions.
pub const DECISIONS_FILE: &str = "web-autoscale.json";

/// The query for the tier's requests per second; `{window}` is four scrape intervals.
pub const SIGNAL: &str = "sum(rate(haproxy_backend_http_requests_total{proxy=\"web\"}[{window}]))";

/// How many changes of the count the decisions file keeps.
const EVENTS_KEPT: usize = 50;

/// Held while a tier of the topology is being resized: the worker and web autoscalers of one
/// supervisor each read, change and write `state.json`, and must not interleave.
pub(crate) static RESIZING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One look at the tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Web nodes running.
    pub current: usize,
    /// The tier's requests per second (`None`: Prometheus gave no figure).
    pub total_rps: Option<f64>,
    /// Requests per second per running node.
    pub observed_rps_per_node: Option<f64>,
    /// What each node should serve.
    pub target_rps_per_node: f64,
    /// The count before the windows and bounds (`ceil(current × observed ÷ target)`).
    pub recommended: usize,
    /// The count to run.
    pub desired: usize,
    /// Why, in a word (`none` without a figure).
    pub why: Option<Why>,
    /// Why, in a sentence.
    pub reason: String,
}

/// What `RUN_DIR/web-autoscale.json` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Decisions {
    /// The scaling it applies.
    pub scaling: Option<WebScaling>,
    /// The query it reads.
    pub signal: String,
    /// The latest look.
    pub last: Option<Decision>,
    /// Changes of the count made up.
    pub scale_ups: u64,
    /// Changes of the count made down.
    pub scale_downs: u64,
    /// The latest changes of the count, oldest first.
    pub events: Vec<Decision>,
}

impl Decisions {
    /// The decisions of the autoscaler of the topology in `run_dir`, when one has written
    /// them.
    pub fn read(run_dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(run_dir.join(DECISIONS_FILE)).ok()?).ok()
    }

    fn write(&self, run_dir: &Path) -> anyhow::Result<()> {
        let tmp = run_dir.join(format!(".{DECISIONS_FILE}.new"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, run_dir.join(DECISIONS_FILE))?;
        Ok(())
    }

    /// Keeps `d` as the latest look, and among the events when it changed the count.
    fn note(&mut self, d: Decision) {
        if d.desired != d.current {
            if d.desired > d.current {
                self.scale_ups += 1;
            } else {
                self.scale_downs += 1;
            }
            self.events.push(d.clone());
            let over = self.events.len().saturating_sub(EVENTS_KEPT);
            self.events.drain(..over);
        }
        self.last = Some(d);
    }
}

/// The signal's query for scrapes `interval_secs` apart.
pub fn signal(interval_secs: u64) -> String {
    SIGNAL.replace("{window}", &format!("{}s", 4 * interval_secs.max(1)))
}

/// `text` percent-encoded for a URL's query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The single value of an instant query's answer (Prometheus's `/api/v1/query` JSON).
///
/// # Errors
/// The answer is not a success, or holds no sample yet (too few scrapes).
pub fn sample(answer: &str) -> anyhow::Result<f64> {
    let v: serde_json::Value = serde_json::from_str(answer).context("Prometheus's answer")?;
    if v["status"] != "success" {
        bail!("Prometheus: {}", v["error"]);
    }
    let Some(value) = v["data"]["result"][0]["value"][1].as_str() else {
        bail!("no sample yet");
    };
    let x: f64 = value.parse().context("a sample's value")?;
    if !x.is_finite() {
        bail!("the rate is {value}");
    }
    Ok(x)
}

/// The tier's requests per second, from the Prometheus of the topology `state` in `run_dir`
/// (with the run's password).
///
/// # Errors
/// No Prometheus runs, it does not answer, or it has no figure yet.
pub fn tier_rate(run_dir: &Path, state: &State, query: &str) -> anyhow::Result<f64> {
    let p = state
        .of(Role::Prometheus)
        .next()
        .context("no Prometheus runs")?;
    let password = crate::prometheus::password(run_dir).context("Prometheus's password")?;
    let path = format!("/api/v1/query?query={}", encode(query));
    match crate::status::http_get_as(&p.addr, &path, Some((crate::prometheus::USER, &password))) {
        Some((200, body)) => sample(&body),
        Some((code, body)) => bail!("Prometheus answered {code}: {body}"),
        None => bail!("Prometheus at {} does not answer", p.addr),
    }
}

/// Now, ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `status`'s lines for the web autoscaler's decisions `d`, at `now_ms`: its bounds and
/// windows, how often it scaled, its latest look and its last three changes.
pub fn summary(d: &Decisions, now_ms: u64) -> String {
    let mut t = String::from("web autoscaler:");
    if let Some(s) = &d.scaling {
        let nodes = d
            .last
            .as_ref()
            .map_or(String::from("?"), |l| l.desired.to_string());
        t.push_str(&format!(
            " {nodes} nodes (min {}, max {}; windows: up {} s, down {} s)",
            s.min, s.max, s.scale_up_window_secs, s.scale_down_window_secs
        ));
    }
    t.push_str(&format!(
        "; scaled up {} times, down {}\n",
        d.scale_ups, d.scale_downs
    ));
    let ago = |at: u64| now_ms.saturating_sub(at) as f64 / 1000.0;
    if let Some(l) = &d.last {
        t.push_str(&format!("  now: {}\n", l.reason));
    }
    for e in d.events.iter().rev().take(3).rev() {
        t.push_str(&format!(
            "  {:.0} s ago: {} -> {} nodes: {}\n",
            ago(e.at_ms),
            e.current,
            e.desired,
            e.reason
        ));
    }
    t
}

/// Sizes the web tier of the topology in `run_dir` by its request rate, looking once per
/// scrape interval, until `stop` ends or the topology is gone. Without a figure from
/// Prometheus the tier stays as it is.
///
/// # Errors
/// No topology whose web tier scales runs from `run_dir`, or the decisions cannot be written.
pub async fn autoscale_web(
    run_dir: &Path,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = State::read(run_dir)?;
    let scaling = state
        .web_scaling
        .clone()
        .context("this topology's web tier does not scale (no [web] max_nodes)")?;
    let running = state.of(Role::Web).filter(|p| alive(p.pid)).count();
    let query = signal(scaling.interval_secs);
    tracing::info!(
        min = scaling.min,
        max = scaling.max,
        target_rps_per_node = scaling.target_rps_per_node,
        signal = %query,
        "autoscaling the web tier"
    );
    let mut decisions = Decisions {
        scaling: Some(scaling.clone()),
        signal: query.clone(),
        ..Decisions::default()
    };
    let mut hpa = Hpa::starting(running, Instant::now());
    let mut last_why = None;
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(scaling.interval_secs)) => {}
            () = &mut stop => break,
        }
        let Ok(state) = State::read(run_dir) else {
            tracing::info!("the topology is gone; stopping");
            break;
        };
        let current = state.of(Role::Web).filter(|p| alive(p.pid)).count();
        let dead = state.of(Role::Web).count() > current;
        let (rd, q) = (run_dir.to_path_buf(), query.clone());
        let rate = tokio::task::spawn_blocking(move || tier_rate(&rd, &state, &q)).await?;
        let d = match rate {
            Ok(total) => {
                let r = hpa.recommend(&scaling, current, total, Instant::now());
                decision(&scaling, current, Some(total), &r)
            }
            Err(e) => Decision {
                at_ms: now_ms(),
                current,
                total_rps: None,
                observed_rps_per_node: None,
                target_rps_per_node: scaling.target_rps_per_node,
                recommended: current,
                desired: current,
                why: None,
                reason: format!("no request rate from Prometheus ({e:#}); keeping {current}"),
            },
        };
        if d.why != last_why || d.desired != current {
            tracing::info!(
                current,
                desired = d.desired,
                total_rps = d.total_rps,
                reason = %d.reason,
                "web autoscaler"
            );
            last_why = d.why;
        }
        let desired = d.desired;
        decisions.note(d);
        decisions.write(run_dir)?;
        // `scale` also drops dead nodes from the state and the balancer
        if desired != current || dead {
            resize(run_dir, desired).await;
        }
    }
    Ok(())
}

/// The decision of recommendation `r` with `current` nodes running.
fn decision(s: &WebScaling, current: usize, total: Option<f64>, r: &Recommendation) -> Decision {
    Decision {
        at_ms: now_ms(),
        current,
        total_rps: total,
        observed_rps_per_node: Some(r.per_node),
        target_rps_per_node: s.target_rps_per_node,
        recommended: r.raw,
        desired: r.desired,
        why: Some(r.why),
        reason: explain(s, current, r),
    }
}

/// Sets the web tier to `nodes` through `crescendo scale`'s path; a failure is logged (the
/// next look sees what runs and decides again).
async fn resize(run_dir: &Path, nodes: usize) {
    let _resizing = RESIZING.lock().await;
    let rd = run_dir.to_path_buf();
    let started = Instant::now();
    let done = tokio::task::spawn_blocking(move || {
        crate::scale::scale(&rd, nodes, |line| tracing::info!("{line}"))
    })
    .await;
    match done {
        Ok(Ok(names)) => tracing::info!(
            nodes = names.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "web tier resized"
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), nodes, "the web tier was not resized")
        }
        Err(e) => tracing::warn!(error = %e, nodes, "the web tier was not resized"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signal_reads_the_balancers_backend_over_four_scrapes() {
        assert_eq!(
            signal(5),
            "sum(rate(haproxy_backend_http_requests_total{proxy=\"web\"}[20s]))"
        );
        assert!(signal(1).ends_with("[4s]))"));
        assert_eq!(
            encode("sum(x{a=\"b\"}[4s])"),
            "sum%28x%7Ba%3D%22b%22%7D%5B4s%5D%29"
        );
    }

    #[test]
    fn an_instant_querys_value_is_read_and_an_empty_answer_is_no_figure() {
        let ok = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"412.5"]}]}}"#;
        assert_eq!(sample(ok).unwrap(), 412.5);
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(format!("{:#}", sample(empty).unwrap_err()).contains("no sample"));
        let nan = r#"{"status":"success","data":{"result":[{"value":[1,"NaN"]}]}}"#;
        assert!(sample(nan).is_err());
        let bad = r#"{"status":"error","error":"parse error"}"#;
        assert!(format!("{:#}", sample(bad).unwrap_err()).contains("parse error"));
    }

    #[test]
    fn changes_of_the_count_are_counted_and_kept_and_every_look_is_the_last() {
        let look = |current, desired| Decision {
            at_ms: 1,
            current,
            total_rps: Some(1.0),
            observed_rps_per_node: Some(1.0),
            target_rps_per_node: 1.0,
            recommended: desired,
            desired,
            why: None,
            reason: String::new(),
        };
        let mut d = Decisions::default();
        d.note(look(1, 1));
        d.note(look(1, 3));
        d.note(look(3, 3));
        d.note(look(3, 1));
        assert_eq!((d.scale_ups, d.scale_downs, d.events.len()), (1, 1, 2));
        assert_eq!(d.last, Some(look(3, 1)));
        for _ in 0..60 {
            d.note(look(1, 2));
        }
        assert_eq!(d.events.len(), EVENTS_KEPT);
        let run = tempfile::tempdir().unwrap();
        d.write(run.path()).unwrap();
        assert_eq!(Decisions::read(run.path()).unwrap().scale_ups, 61);
    }

    #[test]
    fn status_shows_the_bounds_the_latest_look_and_the_last_changes_with_their_reasons() {
        let s = WebScaling {
            min: 1,
            max: 4,
            target_rps_per_node: 150.0,
            tolerance: 0.1,
            scale_up_window_secs: 0,
            scale_down_window_secs: 10,
            interval_secs: 1,
        };
        let look = |at_ms, current, desired, reason: &str| Decision {
            at_ms,
            current,
            total_rps: Some(400.0),
            observed_rps_per_node: Some(400.0 / current as f64),
            target_rps_per_node: 150.0,
            recommended: desired,
            desired,
            why: Some(Why::ScaleUp),
            reason: reason.into(),
        };
        let mut d = Decisions {
            scaling: Some(s),
            ..Decisions::default()
        };
        d.note(look(1_000, 1, 3, "three wanted"));
        d.note(look(2_000, 3, 3, "within"));
        let t = summary(&d, 11_000);
        assert_eq!(
            t,
            "web autoscaler: 3 nodes (min 1, max 4; windows: up 0 s, down 10 s); \
             scaled up 1 times, down 0\n  now: within\n  10 s ago: 1 -> 3 nodes: three wanted\n"
        );
    }
}
