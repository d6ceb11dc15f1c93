//! The regions report as text (`crescendo regions-bench`'s output), as `regions.json`, and
//! as the small per-region table of the tour's page.

use super::{PathRun, RegionsReport};
use crate::report::esc;
use std::fmt::Write as _;
use std::path::Path;

/// `12.3` for a value, `n/a` without one.
fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.1}"))
}

/// Where a load went, e.g. `users-a → region b (far)`.
fn path(r: &PathRun) -> String {
    format!(
        "{} → region {} ({})",
        r.users,
        r.region,
        if r.near { "own, by geo DNS" } else { "far" }
    )
}

impl RegionsReport {
    /// Every figure as a readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mode = if self.synchronous {
            "synchronous"
        } else {
            "asynchronous"
        };
        let _ = writeln!(
            t,
            "two regions, {mode} cross-region commit; {:.0} s per phase, {} connections per load",
            self.phase_secs, self.connections
        );
        let _ = writeln!(
            t,
            "{:<44} {:>9} {:>9} {:>9} {:>7}",
            "load", "req/s", "p50 ms", "p99 ms", "errors"
        );
        for (kind, runs) in [
            ("read", &self.reads),
            ("write", &self.writes),
            ("social", &self.social),
        ] {
            for r in runs {
                let f = &r.figures;
                let _ = writeln!(
                    t,
                    "{:<44} {:>9.0} {:>9.2} {:>9.2} {:>7}",
                    format!("{kind}: {}", path(r)),
                    f.throughput,
                    f.p50_ms,
                    f.p99_ms,
                    f.errors
                );
            }
        }
        let l = &self.replica_lag;
        let _ = writeln!(
            t,
            "region B's replica lag under the social mix: mean {} ms, p50 {} ms, max {} ms ({} readings)",
            opt(l.mean_ms),
            opt(l.p50_ms),
            opt(l.max_ms),
            l.samples
        );
        let v = &self.visible_in_b;
        let _ = writeln!(
            t,
            "a write acknowledged by region A served by region B after: mean {} ms, p50 {} ms, max {} ms ({} probes)",
            opt(v.mean_ms),
            opt(v.p50_ms),
            opt(v.max_ms),
            v.samples
        );
        for d in &self.invalidation {
            let _ = writeln!(
                t,
                "cross-region invalidation delay applied in region {}: mean {} ms, p50 {} ms, p99 {} ms ({} rows)",
                d.region,
                opt(d.delay.mean_ms),
                opt(d.delay.p50_ms),
                opt(d.delay.p99_ms),
                d.delay.count
            );
        }
        if let Some(f) = &self.failover {
            let _ = writeln!(
                t,
                "region A lost ({} process groups killed{}): geo DNS answered B after {} ms, B promoted after {} ms, RTO {} ms; RPO {} of {} acknowledged writes lost",
                f.killed,
                f.wan_cut_before_ms
                    .map(|ms| format!(", {:.1} s after the WAN was cut", ms / 1000.0))
                    .unwrap_or_default(),
                opt(f.dns_ms),
                opt(f.promoted_ms),
                opt(f.rto_ms),
                f.lost,
                f.acknowledged
            );
        }
        t
    }

    /// Writes `regions.json` into `dir`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("regions.json"),
            serde_json::to_vec_pretty(self).expect("reports serialise"),
        )
    }

    /// A small HTML table: read and write latency per users' namespace and region, then
    /// the lag, invalidation and failover figures.
    pub fn html(&self) -> String {
        let mut h = String::from(
            "<table><tr><th>load</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th><th>errors</th></tr>",
        );
        for (kind, runs) in [
            ("read", &self.reads),
            ("write", &self.writes),
            ("social", &self.social),
        ] {
            for r in runs {
                let f = &r.figures;
                let _ = write!(
                    h,
                    "<tr><td style=\"text-align:left\">{}</td><td>{:.0}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
                    esc(&format!("{kind}: {}", path(r))),
                    f.throughput,
                    f.p50_ms,
                    f.p99_ms,
                    f.errors
                );
            }
        }
        h.push_str("</table><ul>");
        for line in self
            .table()
            .lines()
            .skip(2 + self.reads.len() + self.writes.len() + self.social.len())
        {
            let _ = write!(h, "<li>{}</li>", esc(line));
        }
        h.push_str("</ul>");
        h
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Figures, Lag, RegionDelay, failover::Failover, scrape::Delay};
    use super::*;

    fn run(users: &str, region: &str, p50: f64) -> PathRun {
        PathRun {
            users: users.into(),
            region: region.into(),
            near: users.ends_with(region),
            figures: Figures {
                requests: 100,
                errors: 0,
                throughput: 20.0,
                p50_ms: p50,
                p99_ms: p50 * 2.0,
            },
        }
    }

    fn report() -> RegionsReport {
        RegionsReport {
            synchronous: true,
            phase_secs: 5.0,
            connections: 8,
            reads: vec![run("users-a", "a", 1.5), run("users-a", "b", 41.0)],
            writes: vec![run("users-b", "b", 130.0)],
            social: vec![],
            social_all: Figures::default(),
            replica_lag: Lag::of(vec![0.0, 0.02, 0.04]),
            visible_in_b: Lag::of(vec![0.05]),
            invalidation: vec![RegionDelay {
                region: "b".into(),
                delay: Delay {
                    count: 7,
                    mean_ms: Some(31.0),
                    p50_ms: Some(28.0),
                    p99_ms: Some(49.0),
                },
            }],
            cpu: None,
            failover: Some(Failover {
                killed: 9,
                wan_cut_before_ms: Some(2000.0),
                acknowledged: 120,
                lost: 0,
                dns_ms: Some(4100.0),
                promoted_ms: Some(900.0),
                rto_ms: Some(4300.0),
            }),
        }
    }

    #[test]
    fn the_table_names_each_path_and_the_cross_region_figures() {
        let t = report().table();
        assert!(t.contains("synchronous cross-region commit"), "{t}");
        assert!(t.contains("read: users-a → region b (far)"), "{t}");
        assert!(
            t.contains("write: users-b → region b (own, by geo DNS)"),
            "{t}"
        );
        assert!(t.contains("41.00") && t.contains("260.00"), "{t}");
        assert!(t.contains("replica lag under the social mix: mean 20.0 ms, p50 20.0 ms, max 40.0 ms (3 readings)"), "{t}");
        assert!(
            t.contains("applied in region b: mean 31.0 ms, p50 28.0 ms, p99 49.0 ms (7 rows)"),
            "{t}"
        );
        assert!(
            t.contains("RTO 4300.0 ms; RPO 0 of 120 acknowledged writes lost"),
            "{t}"
        );
        assert!(
            t.contains("(9 process groups killed, 2.0 s after the WAN was cut)"),
            "{t}"
        );
    }

    #[test]
    fn the_report_round_trips_through_json_and_renders_a_table() {
        let r = report();
        let dir = tempfile::tempdir().unwrap();
        r.write(dir.path()).unwrap();
        let back: RegionsReport =
            serde_json::from_slice(&std::fs::read(dir.path().join("regions.json")).unwrap())
                .unwrap();
        assert_eq!(back, r);
        let h = r.html();
        assert!(h.contains("<td>41.00</td><td>82.00</td>"), "{h}");
        assert!(
            h.contains("<li>region B&#39;s replica lag")
                || h.contains("<li>region B's replica lag"),
            "{h}"
        );
        assert!(h.contains("RPO 0 of 120"), "{h}");
    }
}
