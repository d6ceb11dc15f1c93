//! The dashboard's line charts: series of `(time, value)` points in, an inline SVG out. Pure
//! functions, so they are tested without a browser or Prometheus. A chart with no finite
//! point says so in words instead of drawing empty axes.

use std::fmt::Write;

/// One line of a chart: its legend and its points as (Unix time in seconds, value). A
/// non-finite value (Prometheus's `NaN` for a quantile over no requests) is a gap.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// What the line is, e.g. `web p99`.
    pub label: String,
    /// Its points, oldest first.
    pub points: Vec<(f64, f64)>,
}

/// How a chart's values read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A rate per second (requests/s, errors/s).
    PerSecond,
    /// A duration given in seconds, shown in ms or s.
    Seconds,
    /// A ratio from 0 to 1, shown as a percentage.
    Ratio,
    /// A plain number (a count, queries per request).
    Number,
}

impl Unit {
    /// `v` as the axis and the legend show it.
    pub fn format(self, v: f64) -> String {
        // three significant digits at most, without trailing zeros
        let num = |v: f64| {
            let text = if v == 0.0 {
                return "0".to_string();
            } else if v.abs() >= 100.0 {
                return format!("{v:.0}");
            } else if v.abs() >= 10.0 {
                format!("{v:.1}")
            } else if v.abs() >= 0.01 {
                format!("{v:.2}")
            } else {
                return format!("{v:.1e}");
            };
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        };
        match self {
            Unit::PerSecond => format!("{}/s", num(v)),
            Unit::Seconds if v != 0.0 && v.abs() < 1.0 => format!("{} ms", num(v * 1000.0)),
            Unit::Seconds => format!("{} s", num(v)),
            Unit::Ratio => format!("{} %", num(v * 100.0)),
            Unit::Number => num(v),
        }
    }
}

/// The chart's size in SVG units; the page scales it to its column.
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 200.0;
/// The plot area inside it: room for the y labels on the left and the x labels below.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 472.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 176.0;
/// Line colours, one per series in turn (distinct for the common kinds of colour blindness).
const PALETTE: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442",
];

/// `text` safe inside XML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The smallest of 1, 2 or 5 times a power of ten at or above `v` (a round top for the
/// y axis); 1 for nothing above 0.
pub fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|c| *c >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// The runs of consecutive finite points of `points`: a gap splits a line.
fn segments(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for &(t, v) in points {
        if t.is_finite() && v.is_finite() {
            out.last_mut().expect("never empty").push((t, v));
        } else if !out.last().expect("never empty").is_empty() {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// How many finite points `series` hold in all.
pub fn finite_points(series: &[Series]) -> usize {
    series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter(|(t, v)| t.is_finite() && v.is_finite())
                .count()
        })
        .sum()
}

/// `series` drawn as lines over the time window `start..end` (Unix seconds), as one `<svg>`
/// whose `data-points` attribute counts the points drawn. Values below 0 are clipped to the
/// axis (every figure charted is a rate, a ratio or a count). Without any finite point the
/// SVG holds `no_data` as its text, in an element of class `no-data`.
pub fn render(
    title: &str,
    unit: Unit,
    series: &[Series],
    window: (f64, f64),
    no_data: &str,
) -> String {
    let (start, end) = window;
    let span = (end - start).max(1.0);
    let drawn = finite_points(series);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\" \
         data-points=\"{drawn}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(title)
    );
    let _ = write!(
        svg,
        "<rect class=\"plot\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#ccc\"/>",
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    if drawn == 0 {
        let _ = write!(
            svg,
            "<text class=\"no-data\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"14\" fill=\"#555\">{}</text></svg>",
            (LEFT + RIGHT) / 2.0,
            (TOP + BOTTOM) / 2.0,
            escape(no_data)
        );
        return svg;
    }
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let top = nice_ceiling(max);
    let x = |t: f64| LEFT + (t - start).clamp(0.0, span) / span * (RIGHT - LEFT);
    let y = |v: f64| BOTTOM - (v.clamp(0.0, top) / top) * (BOTTOM - TOP);
    for frac in [0.0, 0.5, 1.0] {
        let v = top * frac;
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\">{}</text>",
            LEFT - 4.0,
            y(v) + 4.0,
            escape(&unit.format(v)),
            py = y(v)
        );
    }
    let ago = if span < 120.0 {
        format!("-{span:.0} s")
    } else {
        format!("-{:.0} min", span / 60.0)
    };
    let _ = write!(
        svg,
        "<text x=\"{LEFT}\" y=\"{}\" font-size=\"11\">{ago}</text>\
         <text x=\"{RIGHT}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\">now</text>",
        BOTTOM + 16.0,
        BOTTOM + 16.0
    );
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        for seg in segments(&s.points) {
            if let [(t, v)] = seg[..] {
                let _ = write!(
                    svg,
                    "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{colour}\"/>",
                    x(t),
                    y(v)
                );
                continue;
            }
            let pts: Vec<String> = seg
                .iter()
                .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
                .collect();
            let _ = write!(
                svg,
                "<polyline class=\"line\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
                pts.join(" ")
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The legend under a chart: each series' colour, label and latest finite value.
pub fn legend(unit: Unit, series: &[Series]) -> String {
    let mut out = String::from("<ul class=\"legend\">");
    for (i, s) in series.iter().enumerate() {
        let last = s
            .points
            .iter()
            .rev()
            .map(|p| p.1)
            .find(|v| v.is_finite())
            .map_or("-".to_string(), |v| unit.format(v));
        let _ = write!(
            out,
            "<li><span style=\"color:{}\">&#9632;</span> {}: {}</li>",
            PALETTE[i % PALETTE.len()],
            escape(&s.label),
            escape(&last)
        );
    }
    out.push_str("</ul>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, points: &[(f64, f64)]) -> Series {
        Series {
            label: label.into(),
            points: points.to_vec(),
        }
    }

    /// The `points` attribute of each polyline of `svg`, as numbers.
    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.split(" points=\"")
            .skip(1)
            .map(|rest| {
                rest.split('"')
                    .next()
                    .unwrap()
                    .split(' ')
                    .map(|p| {
                        let (x, y) = p.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_series_is_a_line_scaled_into_the_plot_with_time_left_to_right() {
        let s = [series("web", &[(100.0, 0.0), (150.0, 5.0), (200.0, 10.0)])];
        let svg = render("Requests", Unit::PerSecond, &s, (100.0, 200.0), "none");
        assert!(svg.starts_with("<svg class=\"chart\""), "{svg}");
        assert!(svg.contains("data-points=\"3\""), "{svg}");
        assert!(!svg.contains("no-data"));
        let lines = polylines(&svg);
        assert_eq!(lines.len(), 1, "{svg}");
        let l = &lines[0];
        // the first point at the left bottom corner, the last at the right top (10 is the axis top)
        assert_eq!(l[0], (LEFT, BOTTOM));
        assert_eq!(l[2], (RIGHT, TOP));
        assert!(l[1].0 > l[0].0 && l[1].0 < l[2].0);
        assert!((l[1].1 - (TOP + BOTTOM) / 2.0).abs() < 0.1, "{l:?}");
        assert!(
            svg.contains(">10/s</text>"),
            "the axis top is labelled: {svg}"
        );
        assert!(
            svg.contains(">5/s</text>") && svg.contains(">-100 s</text>"),
            "{svg}"
        );
    }

    #[test]
    fn a_chart_with_no_finite_point_says_so_and_draws_no_line() {
        for s in [
            vec![],
            vec![series("web p99", &[])],
            vec![series("web p99", &[(1.0, f64::NAN), (2.0, f64::NAN)])],
        ] {
            let svg = render(
                "Latency",
                Unit::Seconds,
                &s,
                (0.0, 60.0),
                "no data in this window",
            );
            assert!(svg.contains("data-points=\"0\""), "{svg}");
            assert!(
                svg.contains("<text class=\"no-data\"") && svg.contains(">no data in this window<"),
                "{svg}"
            );
            assert!(
                !svg.contains("<polyline") && !svg.contains("<circle"),
                "{svg}"
            );
        }
    }

    #[test]
    fn gaps_split_a_line_and_a_lone_point_is_a_dot() {
        let s = [series(
            "web p50",
            &[
                (0.0, 1.0),
                (10.0, 2.0),
                (20.0, f64::NAN),
                (30.0, 3.0),
                (40.0, f64::INFINITY),
                (50.0, 1.0),
                (60.0, 1.5),
            ],
        )];
        let svg = render("p50", Unit::Seconds, &s, (0.0, 60.0), "none");
        assert_eq!(polylines(&svg).len(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        assert!(svg.contains("data-points=\"5\""));
    }

    #[test]
    fn every_series_gets_its_own_colour_and_labels_are_escaped() {
        let s = [
            series("<web>", &[(0.0, 1.0), (1.0, 1.0)]),
            series("haproxy \"public\"", &[(0.0, 2.0), (1.0, 2.0)]),
        ];
        let svg = render("a & b", Unit::Number, &s, (0.0, 1.0), "none");
        assert!(svg.contains(&format!("stroke=\"{}\"", PALETTE[0])));
        assert!(svg.contains(&format!("stroke=\"{}\"", PALETTE[1])));
        assert!(svg.contains("aria-label=\"a &amp; b\""));
        let l = legend(Unit::Number, &s);
        assert!(l.contains("&lt;web&gt;: 1<"), "{l}");
        assert!(l.contains("haproxy &quot;public&quot;: 2<"), "{l}");
    }

    #[test]
    fn all_zero_values_sit_on_the_axis_of_a_unit_scale() {
        let s = [series("errors", &[(0.0, 0.0), (30.0, 0.0)])];
        let svg = render("Errors", Unit::PerSecond, &s, (0.0, 30.0), "none");
        assert_eq!(polylines(&svg)[0], vec![(LEFT, BOTTOM), (RIGHT, BOTTOM)]);
        assert!(svg.contains(">1/s</text>"), "{svg}");
    }

    #[test]
    fn points_outside_the_window_or_below_zero_are_clipped_to_the_plot() {
        let s = [series("lag", &[(-50.0, -1.0), (200.0, 4.0)])];
        let svg = render("Lag", Unit::Seconds, &s, (0.0, 100.0), "none");
        let l = &polylines(&svg)[0];
        assert_eq!(l[0], (LEFT, BOTTOM));
        assert_eq!(l[1].0, RIGHT);
    }

    #[test]
    fn axis_tops_are_round_and_values_read_in_their_unit() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(0.0031), 0.005);
        assert_eq!(nice_ceiling(740.0), 1000.0);
        assert_eq!(Unit::Seconds.format(0.0123), "12.3 ms");
        assert_eq!(Unit::Seconds.format(2.5), "2.5 s");
        assert_eq!(Unit::Seconds.format(0.0005), "0.5 ms");
        assert_eq!(Unit::Number.format(10.0), "10");
        assert_eq!(Unit::Number.format(0.001), "1.0e-3");
        assert_eq!(Unit::Ratio.format(0.875), "87.5 %");
        assert_eq!(Unit::PerSecond.format(1234.0), "1234/s");
        assert_eq!(Unit::Number.format(0.0), "0");
    }
}
