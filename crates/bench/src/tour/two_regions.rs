//! Rung 8's row: the two regions measured from inside their namespaces with
//! [`crate::regions::measure`], each phase as long as the tour's duration but at most
//! [`PHASE`], so the rung adds little more than its start to the tour.

use super::{Rung, TourRow};
use crate::BenchOptions;
use crate::load::Model;
use crate::regions::{RegionsOptions, RegionsReport};
use std::path::Path;
use std::time::Duration;

/// The longest phase of rung 8 (it has seven, one after another).
pub(super) const PHASE: Duration = Duration::from_secs(5);

/// Measures the two regions running from `run_dir` with the template's seed and
/// connections; writes `out/regions.json`.
///
/// # Errors
/// The measurement failed.
pub(super) async fn row(
    rung: &Rung,
    template: &BenchOptions,
    run_dir: &Path,
    out: &Path,
) -> anyhow::Result<TourRow> {
    let o = RegionsOptions {
        run_dir: run_dir.to_path_buf(),
        connections: match template.model {
            Model::Closed { connections } => connections,
            Model::Open { .. } => 32,
        },
        phase: template.duration.min(PHASE),
        timeout: template.timeout,
        seed: template.seed.clone(),
        failover: false,
        cut_before_loss: None,
    };
    let r = tokio::task::spawn_blocking(move || crate::regions::measure(&o)).await??;
    eprint!("{}", r.table());
    r.write(out)?;
    let all = &r.social_all;
    Ok(TourRow {
        rung: rung.number,
        name: rung.name.into(),
        claim: rung.claim.into(),
        throughput: all.throughput,
        p50_ms: all.p50_ms,
        p99_ms: all.p99_ms,
        errors: all.errors,
        db_queries_per_request: None,
        cache_hit_ratio: None,
        cache_served_ratio: None,
        db_reads_per_read_request: None,
        primary_read_share: None,
        session_survives_node_loss: None,
        uploads: None,
        cpu_ms_per_request: r.cpu.as_ref().map(|c| c.server_cpu_ms_per_request),
        cpu: r.cpu.clone(),
        edge_hit_ratio: None,
        verdict: verdict(rung, &r),
        regions: Some(r),
    })
}

/// The claim against rung 8's numbers: it holds when nothing failed, each users'
/// namespace reads its own region faster than the far one, and B's replica lag (its gauge
/// and the end-to-end probe) and each region's invalidation delay stayed under a second.
pub(super) fn verdict(rung: &Rung, r: &RegionsReport) -> String {
    let p50 = |users: &str, near: bool| {
        r.reads
            .iter()
            .find(|x| x.users == users && x.near == near)
            .map(|x| x.figures.p50_ms)
    };
    let nearer = ["users-a", "users-b"]
        .iter()
        .all(|u| matches!((p50(u, true), p50(u, false)), (Some(n), Some(f)) if n < f));
    let errors: u64 = [&r.reads, &r.writes, &r.social]
        .into_iter()
        .flatten()
        .map(|x| x.figures.errors)
        .sum();
    let lag_ok = r.replica_lag.max_ms.is_some_and(|m| m < 1000.0)
        && r.visible_in_b.max_ms.is_some_and(|m| m < 1000.0);
    let inv_ok = r
        .invalidation
        .iter()
        .all(|d| d.delay.p99_ms.is_none_or(|p| p < 1000.0));
    let holds = if errors == 0 && nearer && lag_ok && inv_ok {
        "holds"
    } else {
        "holds only in part"
    };
    let reads: Vec<String> = r
        .reads
        .iter()
        .map(|x| {
            format!(
                "{} to {} region {} p50 {:.1} ms",
                x.users,
                if x.near { "its own" } else { "the far" },
                x.region,
                x.figures.p50_ms
            )
        })
        .collect();
    let writes: Vec<String> = r
        .writes
        .iter()
        .map(|x| {
            format!(
                "in region {} p50 {:.1} ms, p99 {:.1} ms",
                x.region, x.figures.p50_ms, x.figures.p99_ms
            )
        })
        .collect();
    let ms = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.0} ms"));
    let inv: Vec<String> = r
        .invalidation
        .iter()
        .map(|d| format!("into {} p99 {}", d.region, ms(d.delay.p99_ms)))
        .collect();
    format!(
        "Rung {}: the claim that {} {holds}: reads {}; writes {}; under the social mix ({:.0} requests/s, {errors} errors) B's replica lag gauge peaked at {}, a write acknowledged by A was served by B after {} at the median and {} at most, and cross-region invalidation took {}.",
        rung.number,
        rung.claim,
        reads.join(", "),
        writes.join(", "),
        r.social_all.throughput,
        ms(r.replica_lag.max_ms),
        ms(r.visible_in_b.p50_ms),
        ms(r.visible_in_b.max_ms),
        inv.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regions::{Figures, Lag, PathRun};

    fn read(users: &str, region: &str, p50_ms: f64) -> PathRun {
        PathRun {
            users: users.into(),
            region: region.into(),
            near: users.ends_with(region),
            figures: Figures {
                requests: 10,
                p50_ms,
                ..Figures::default()
            },
        }
    }

    fn report(far_ms: f64) -> RegionsReport {
        RegionsReport {
            synchronous: false,
            phase_secs: 1.0,
            connections: 4,
            reads: vec![
                read("users-a", "a", 1.0),
                read("users-a", "b", far_ms),
                read("users-b", "a", far_ms),
                read("users-b", "b", 1.0),
            ],
            writes: vec![],
            social: vec![],
            social_all: Figures::default(),
            replica_lag: Lag::default(),
            visible_in_b: Lag::default(),
            invalidation: vec![],
            cpu: None,
            failover: None,
        }
    }

    #[test]
    fn the_claim_holds_only_when_the_near_region_reads_faster_and_lag_was_seen() {
        let rung = super::super::RUNGS.iter().find(|r| r.number == 8).unwrap();
        let mut r = report(41.0);
        r.replica_lag = Lag {
            samples: 3,
            max_ms: Some(0.0),
            ..Lag::default()
        };
        r.visible_in_b = Lag {
            samples: 3,
            max_ms: Some(45.0),
            ..Lag::default()
        };
        let v = verdict(rung, &r);
        assert!(v.starts_with("Rung 8: ") && v.contains(" holds: "), "{v}");
        assert!(v.contains("users-a to the far region b p50 41.0 ms"), "{v}");
        // the far region answering as fast as the near one: no geography to speak of
        r.reads[1].figures.p50_ms = 0.5;
        assert!(verdict(rung, &r).contains("holds only in part"));
        // no reading of the lag at all is not a pass either
        let v = verdict(rung, &report(41.0));
        assert!(v.contains("holds only in part"), "{v}");
    }
}
