//! The web autoscaler's decision, with the semantics of Kubernetes' Horizontal Pod
//! Autoscaler: `desired = ceil(current × observed ÷ target)` on the tier's request rate per
//! node, left alone while `observed ÷ target` is within the tolerance band around 1.0;
//! every raw recommendation is kept, and the count moves up only as far as the *lowest*
//! recommendation of the scale-up window and down only as far as the *highest* of the
//! scale-down window (stabilisation: a spike shorter than the up window adds nobody, a lull
//! shorter than the down window removes nobody); the result is held within min and max.
//! Pure: the caller brings the time, the count and the observation ([`crate::web_autoscale`]
//! brings them from the topology and Prometheus).

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How the autoscaler sizes the web tier (from the topology's `[web]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebScaling {
    /// Fewest web nodes.
    pub min: usize,
    /// Most web nodes.
    pub max: usize,
    /// Requests per second per node the tier aims at.
    pub target_rps_per_node: f64,
    /// How far `observed ÷ target` may stray from 1.0 before the count changes (0.1: ±10 %).
    pub tolerance: f64,
    /// How long a higher count must stay recommended before the tier grows to it, seconds
    /// (0: at once).
    pub scale_up_window_secs: u64,
    /// How long a lower count must stay recommended before the tier shrinks to it, seconds.
    pub scale_down_window_secs: u64,
    /// How often the autoscaler looks, seconds: the scrape interval (nothing new is known
    /// in between).
    pub interval_secs: u64,
}

/// Why the count is what it is after one look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    /// `observed ÷ target` is within the tolerance band: no change.
    WithinTolerance,
    /// The load per node is over the target: more nodes.
    ScaleUp,
    /// The load per node is under the target: fewer nodes.
    ScaleDown,
    /// More nodes are recommended, but not all through the scale-up window.
    UpWindow,
    /// Fewer nodes are recommended, but not all through the scale-down window.
    DownWindow,
    /// More nodes are wanted than `max` allows.
    AtMax,
    /// Fewer nodes are wanted than `min` allows.
    AtMin,
    /// The recommendation is the count that runs.
    Steady,
}

/// One look's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    /// Requests per second per running node.
    pub per_node: f64,
    /// `ceil(current × observed ÷ target)`, or `current` within the tolerance (before the
    /// windows and the bounds).
    pub raw: usize,
    /// The count to run now.
    pub desired: usize,
    /// Why.
    pub why: Why,
}

/// The recommendations of the longer of the two windows, oldest first.
#[derive(Debug, Default)]
pub struct Hpa {
    history: VecDeque<(Instant, usize)>,
}

impl Hpa {
    /// An autoscaler for a tier running `current` nodes since `now`: that count stands as
    /// its first recommendation (as Kubernetes seeds a new HPA's), so nodes running at start
    /// are not removed before the scale-down window has passed.
    pub fn starting(current: usize, now: Instant) -> Self {
        Self {
            history: VecDeque::from([(now, current)]),
        }
    }

    /// The count to run, now, with `current` nodes running and the tier serving `total_rps`
    /// requests per second; the raw recommendation is kept for the windows.
    pub fn recommend(
        &mut self,
        s: &WebScaling,
        current: usize,
        total_rps: f64,
        now: Instant,
    ) -> Recommendation {
        let target = s.target_rps_per_node.max(f64::MIN_POSITIVE);
        let total_rps = total_rps.max(0.0);
        let per_node = total_rps / current.max(1) as f64;
        let within = current > 0 && (per_node / target - 1.0).abs() <= s.tolerance;
        // current × (total ÷ current) ÷ target: the tier's rate over one node's target
        let raw = if within {
            current
        } else {
            (total_rps / target).ceil() as usize
        };
        let up = Duration::from_secs(s.scale_up_window_secs);
        let down = Duration::from_secs(s.scale_down_window_secs);
        let keep = up.max(down);
        while self
            .history
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > keep)
        {
            self.history.pop_front();
        }
        // this recommendation and those of the last `w` seconds before it
        let in_window = |w: Duration| {
            self.history
                .iter()
                .filter(move |(at, _)| now.duration_since(*at) < w)
                .map(|(_, n)| *n)
                .chain([raw])
        };
        let up_rec = in_window(up).min().unwrap_or(raw);
        let down_rec = in_window(down).max().unwrap_or(raw);
        self.history.push_back((now, raw));
        let stabilised = current.max(up_rec).min(down_rec);
        let (lo, hi) = (s.min, s.max.max(s.min));
        let desired = stabilised.clamp(lo, hi);
        let why = if desired > current {
            if stabilised < lo {
                Why::AtMin
            } else {
                Why::ScaleUp
            }
        } else if desired < current {
            if stabilised > hi {
                Why::AtMax
            } else {
                Why::ScaleDown
            }
        } else if within {
            Why::WithinTolerance
        } else if raw > current {
            if stabilised > current {
                Why::AtMax
            } else {
                Why::UpWindow
            }
        } else if raw < current {
            if stabilised < current {
                Why::AtMin
            } else {
                Why::DownWindow
            }
        } else {
            Why::Steady
        };
        Recommendation {
            per_node,
            raw,
            desired,
            why,
        }
    }

    /// How many recommendations are kept.
    pub fn kept(&self) -> usize {
        self.history.len()
    }
}

/// A sentence for `why`, with the figures of `r` and `s`.
pub fn explain(s: &WebScaling, current: usize, r: &Recommendation) -> String {
    let load = format!(
        "{:.1} req/s per node on {current} (target {}, ±{:.0} %)",
        r.per_node,
        s.target_rps_per_node,
        s.tolerance * 100.0
    );
    match r.why {
        Why::WithinTolerance => format!("{load}: within the tolerance"),
        Why::ScaleUp => format!("{load}: {} nodes wanted, scaling up", r.raw),
        Why::ScaleDown => format!(
            "{load}: no more than {} nodes wanted for the last {} s, scaling down",
            r.desired, s.scale_down_window_secs
        ),
        Why::UpWindow => format!(
            "{load}: {} nodes wanted, not yet for the whole {} s scale-up window",
            r.raw, s.scale_up_window_secs
        ),
        Why::DownWindow => format!(
            "{load}: {} nodes wanted, not yet for the whole {} s scale-down window",
            r.raw, s.scale_down_window_secs
        ),
        Why::AtMax => format!("{load}: {} nodes wanted, max_nodes is {}", r.raw, s.max),
        Why::AtMin => format!("{load}: {} nodes wanted, min_nodes is {}", r.raw, s.min),
        Why::Steady => format!("{load}: steady"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaling(up: u64, down: u64) -> WebScaling {
        WebScaling {
            min: 1,
            max: 5,
            target_rps_per_node: 100.0,
            tolerance: 0.1,
            scale_up_window_secs: up,
            scale_down_window_secs: down,
            interval_secs: 1,
        }
    }

    /// Feeds `rates` one per second from `t0` into a fresh autoscaler, starting with
    /// `current` nodes and running whatever it decides; returns each second's count.
    fn run(s: &WebScaling, mut current: usize, rates: &[f64]) -> Vec<usize> {
        let mut hpa = Hpa::default();
        let t0 = Instant::now();
        rates
            .iter()
            .enumerate()
            .map(|(i, rate)| {
                let at = t0 + Duration::from_secs(i as u64);
                current = hpa.recommend(s, current, *rate, at).desired;
                current
            })
            .collect()
    }

    #[test]
    fn desired_is_the_ceiling_of_current_times_observed_over_target() {
        let s = scaling(0, 0);
        let mut hpa = Hpa::default();
        let now = Instant::now();
        // 2 nodes at 175 req/s each: ceil(2 × 175 / 100) = 4
        let r = hpa.recommend(&s, 2, 350.0, now);
        assert_eq!(
            (r.per_node, r.raw, r.desired, r.why),
            (175.0, 4, 4, Why::ScaleUp)
        );
        // 4 nodes at 30 each: ceil(4 × 30 / 100) = 2
        let r = hpa.recommend(&s, 4, 120.0, now);
        assert_eq!((r.raw, r.desired, r.why), (2, 2, Why::ScaleDown));
        // exactly on target: ceil(3.0) is 3, not 4
        let r = hpa.recommend(&s, 2, 300.0, now);
        assert_eq!(r.desired, 3);
    }

    #[test]
    fn the_tolerance_band_around_one_keeps_the_count() {
        let s = scaling(0, 0);
        let mut hpa = Hpa::default();
        let now = Instant::now();
        for rate in [181.0, 200.0, 219.0] {
            let r = hpa.recommend(&s, 2, rate, now);
            assert_eq!((r.desired, r.why), (2, Why::WithinTolerance), "{rate}");
        }
        // 11 % over the target is out of the band: ceil(2 × 1.11) = 3
        let r = hpa.recommend(&s, 2, 222.0, now);
        assert_eq!((r.desired, r.why), (3, Why::ScaleUp));
        // 11 % under: ceil(2 × 0.89) = 2, which is the count: no change for another reason
        let r = hpa.recommend(&s, 2, 178.0, now);
        assert_eq!((r.raw, r.desired, r.why), (2, 2, Why::Steady));
        let wide = WebScaling {
            tolerance: 0.5,
            ..scaling(0, 0)
        };
        assert_eq!(hpa.recommend(&wide, 2, 290.0, now).desired, 2);
    }

    #[test]
    fn the_count_stays_within_min_and_max() {
        let s = scaling(0, 0);
        let mut hpa = Hpa::default();
        let now = Instant::now();
        let r = hpa.recommend(&s, 3, 2_000.0, now);
        assert_eq!((r.raw, r.desired, r.why), (20, 5, Why::ScaleUp));
        let r = hpa.recommend(&s, 5, 2_000.0, now);
        assert_eq!((r.desired, r.why), (5, Why::AtMax));
        let r = hpa.recommend(&s, 3, 0.0, now);
        assert_eq!((r.raw, r.desired, r.why), (0, 1, Why::ScaleDown));
        let r = hpa.recommend(&s, 1, 0.0, now);
        assert_eq!((r.desired, r.why), (1, Why::AtMin));
        // a node died below min: back to min whatever the load says
        let two = WebScaling {
            min: 2,
            ..scaling(0, 0)
        };
        let r = hpa.recommend(&two, 1, 0.0, now);
        assert_eq!((r.desired, r.why), (2, Why::AtMin));
        // none left: the tier's rate alone decides
        assert_eq!(hpa.recommend(&s, 0, 250.0, now).desired, 3);
    }

    #[test]
    fn scale_down_waits_for_the_highest_recommendation_of_its_window() {
        let s = scaling(0, 10);
        let mut rates = vec![400.0; 3];
        rates.extend([50.0; 15]);
        let counts = run(&s, 1, &rates);
        assert_eq!(&counts[..3], [4, 4, 4], "up at once");
        // the 400s stay in the window until 10 s after the last one (second 2)
        assert!(counts[3..12].iter().all(|n| *n == 4), "{counts:?}");
        assert_eq!(counts[12], 1, "{counts:?}");
        assert_eq!(counts.last(), Some(&1));
    }

    #[test]
    fn scale_up_waits_for_the_lowest_recommendation_of_its_window() {
        let s = scaling(3, 0);
        let mut hpa = Hpa::default();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(hpa.recommend(&s, 1, 100.0, at(0)).desired, 1);
        let r = hpa.recommend(&s, 1, 400.0, at(1));
        assert_eq!((r.raw, r.desired, r.why), (4, 1, Why::UpWindow));
        let r = hpa.recommend(&s, 1, 250.0, at(2));
        assert_eq!((r.desired, r.why), (1, Why::UpWindow));
        // second 0's 1 has left the window: the lowest of 4, 3, 4 is 3
        let r = hpa.recommend(&s, 1, 400.0, at(3));
        assert_eq!((r.desired, r.why), (3, Why::ScaleUp));
        let r = hpa.recommend(&s, 3, 400.0, at(5));
        assert_eq!((r.desired, r.why), (4, Why::ScaleUp));
    }

    #[test]
    fn a_spike_shorter_than_the_up_window_adds_nobody_and_a_dip_shorter_than_the_down_window_removes_nobody()
     {
        let s = scaling(4, 8);
        let mut rates = vec![100.0; 4];
        rates.extend([500.0; 3]);
        rates.extend([100.0; 6]);
        assert!(
            run(&s, 1, &rates).iter().all(|n| *n == 1),
            "a 3 s spike in a 4 s window"
        );
        let mut rates = vec![300.0; 4];
        rates.extend([50.0; 7]);
        rates.extend([300.0; 6]);
        assert!(
            run(&s, 3, &rates).iter().all(|n| *n == 3),
            "a 7 s dip in an 8 s window"
        );
    }

    #[test]
    fn a_noisy_load_near_a_boundary_does_not_flap() {
        // 3 nodes, the rate swinging 20 % either side of 2.5 nodes' worth
        let s = scaling(0, 5);
        let rates: Vec<f64> = (0..60)
            .map(|i| if i % 2 == 0 { 300.0 } else { 200.0 })
            .collect();
        let counts = run(&s, 3, &rates);
        let changes = counts.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(changes, 0, "{counts:?}");
        assert!(counts.iter().all(|n| *n == 3));
    }

    #[test]
    fn the_nodes_running_at_start_stay_through_the_first_scale_down_window() {
        let s = scaling(0, 10);
        let t0 = Instant::now();
        let mut hpa = Hpa::starting(2, t0);
        for secs in 1..10 {
            let r = hpa.recommend(&s, 2, 0.0, t0 + Duration::from_secs(secs));
            assert_eq!((r.desired, r.why), (2, Why::DownWindow), "second {secs}");
        }
        let r = hpa.recommend(&s, 2, 0.0, t0 + Duration::from_secs(10));
        assert_eq!((r.desired, r.why), (1, Why::ScaleDown));
        // without the seed, the first look alone decides
        assert_eq!(Hpa::default().recommend(&s, 2, 0.0, t0).desired, 1);
    }

    #[test]
    fn only_the_longer_windows_recommendations_are_kept() {
        let s = scaling(2, 5);
        let mut hpa = Hpa::default();
        let t0 = Instant::now();
        for i in 0..100 {
            hpa.recommend(&s, 2, 200.0, t0 + Duration::from_secs(i));
        }
        assert!(hpa.kept() <= 7, "{}", hpa.kept());
    }

    #[test]
    fn every_decision_explains_itself_with_its_figures() {
        let s = scaling(0, 30);
        let r = Recommendation {
            per_node: 250.0,
            raw: 3,
            desired: 3,
            why: Why::ScaleUp,
        };
        assert_eq!(
            explain(&s, 1, &r),
            "250.0 req/s per node on 1 (target 100, ±10 %): 3 nodes wanted, scaling up"
        );
        let held = Recommendation {
            per_node: 20.0,
            raw: 1,
            desired: 3,
            why: Why::DownWindow,
        };
        assert!(explain(&s, 3, &held).ends_with("not yet for the whole 30 s scale-down window"));
    }
}
