//! The HTML and SVG pieces the reports are built from: escaping, the page head with its
//! inline style, and line charts drawn as inline SVG.

use std::fmt::Write as _;

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The start of a self-contained HTML page.
pub fn page_head(title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#111}}\
pre{{background:#f4f4f5;padding:1rem;overflow-x:auto}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}th{{background:#f4f4f5}}\
figure{{margin:1.5rem 0}}</style></head><body>",
        esc(title)
    )
}

/// One line of a [`line_chart`]: its name in the legend, its colour, and its (x, y) points.
pub type Series<'a> = (&'a str, &'a str, &'a [(f64, f64)]);

/// A line chart as inline SVG. `x_ticks` replaces the numeric x labels.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    x_ticks: Option<&[(f64, &str)]>,
) -> String {
    let frame = Frame::fit(series, x_ticks);
    let Frame { w, h, .. } = frame;
    let mut s = format!(
        "<figure><figcaption><strong>{}</strong></figcaption><svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">",
        esc(title),
        esc(title)
    );
    frame.axes(&mut s);
    frame.x_labels(&mut s, x_ticks);
    frame.axis_titles(&mut s, x_label, y_label);
    frame.lines(&mut s, series);
    s.push_str("</svg></figure>");
    s
}

/// The plot area of a [`line_chart`] (its size and margins, in SVG units) and the largest
/// values its axes show.
#[derive(Clone, Copy)]
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x_max: f64,
    y_max: f64,
}

impl Frame {
    /// A frame that fits every point and tick, with 10 % room above the highest point.
    fn fit(series: &[Series<'_>], x_ticks: Option<&[(f64, &str)]>) -> Self {
        let (w, h, left, right, top, bottom) = (880.0, 280.0, 60.0, 20.0, 20.0, 40.0);
        let points = series.iter().flat_map(|(_, _, p)| p.iter());
        let (mut x_max, mut y_max) = (0.0f64, 0.0f64);
        for &(x, y) in points {
            x_max = x_max.max(x);
            y_max = y_max.max(y);
        }
        if let Some(t) = x_ticks {
            x_max = x_max.max(t.iter().map(|(x, _)| *x).fold(0.0, f64::max));
        }
        Self {
            w,
            h,
            left,
            right,
            top,
            bottom,
            x_max: if x_max > 0.0 { x_max } else { 1.0 },
            y_max: if y_max > 0.0 { y_max * 1.1 } else { 1.0 },
        }
    }

    /// The SVG x of value `x`.
    fn sx(&self, x: f64) -> f64 {
        self.left + x / self.x_max * (self.w - self.left - self.right)
    }

    /// The SVG y of value `y`.
    fn sy(&self, y: f64) -> f64 {
        self.top + (1.0 - y / self.y_max) * (self.h - self.top - self.bottom)
    }

    /// Both axes, and the y axis's labels with their grid lines.
    fn axes(&self, s: &mut String) {
        let Frame {
            w,
            h,
            left,
            right,
            top,
            bottom,
            y_max,
            ..
        } = *self;
        let _ = write!(
            s,
            "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>",
            h - bottom,
            w - right,
            h - bottom
        );
        let _ = write!(
            s,
            "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#888\"/>",
            h - bottom
        );
        for i in 0..=4 {
            let y = y_max * f64::from(i) / 4.0;
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><line x1=\"{left}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
                left - 4.0,
                self.sy(y) + 4.0,
                short(y),
                self.sy(y),
                w - right,
                self.sy(y)
            );
        }
    }

    /// The x axis's labels: `x_ticks`, or five numbers from 0 to the largest x.
    fn x_labels(&self, s: &mut String, x_ticks: Option<&[(f64, &str)]>) {
        let Frame { h, bottom, .. } = *self;
        match x_ticks {
            Some(ticks) => {
                for (x, label) in ticks {
                    let _ = write!(
                        s,
                        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                        self.sx(*x),
                        h - bottom + 14.0,
                        esc(label)
                    );
                }
            }
            None => {
                for i in 0..=4 {
                    let x = self.x_max * f64::from(i) / 4.0;
                    let _ = write!(
                        s,
                        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                        self.sx(x),
                        h - bottom + 14.0,
                        short(x)
                    );
                }
            }
        }
    }

    /// The axes' titles, the y one turned upright along its axis.
    fn axis_titles(&self, s: &mut String, x_label: &str, y_label: &str) {
        let Frame {
            w, h, left, right, ..
        } = *self;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            (left + w - right) / 2.0,
            h - 6.0,
            esc(x_label)
        );
        let _ = write!(
            s,
            "<text x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>",
            h / 2.0,
            h / 2.0,
            esc(y_label)
        );
    }

    /// One line per series, and its name in the legend at the top right.
    fn lines(&self, s: &mut String, series: &[Series<'_>]) {
        let Frame { w, right, top, .. } = *self;
        for (i, (name, color, pts)) in series.iter().enumerate() {
            let path: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", self.sx(x), self.sy(y)))
                .collect();
            let _ = write!(
                s,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
                path.join(" ")
            );
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{}</text>",
                w - right - 120.0,
                top + 14.0 * i as f64,
                w - right - 105.0,
                top + 9.0 + 14.0 * i as f64,
                esc(name)
            );
        }
    }
}

fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One bar of a [`stacked_bars`] chart: its label, and its segments as (name, value).
pub type Bar = (String, Vec<(String, f64)>);

/// The colours of [`stacked_bars`]' segments, one per name in order of first appearance.
const PALETTE: [&str; 10] = [
    "#2563eb", "#d97706", "#16a34a", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
    "#92400e", "#475569",
];

/// Horizontal stacked bars as inline SVG, one per `bars` entry, all on one scale (the
/// longest bar fills the width), each segment's name and value in its tooltip, its total at
/// its end, and a legend of the segments' names below (a name keeps its colour in every bar).
pub fn stacked_bars(title: &str, unit: &str, bars: &[Bar]) -> String {
    let (w, left, right, row, bar_h) = (880.0, 70.0, 110.0, 28.0, 18.0);
    let mut names: Vec<&str> = Vec::new();
    for (_, segments) in bars {
        for (name, _) in segments {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    let colour = |name: &str| {
        let i = names.iter().position(|n| *n == name).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let totals: Vec<f64> = bars
        .iter()
        .map(|(_, s)| s.iter().map(|(_, v)| v.max(0.0)).sum())
        .collect();
    let max = totals.iter().copied().fold(0.0, f64::max);
    let scale = if max > 0.0 {
        (w - left - right) / max
    } else {
        0.0
    };
    let per_line = 6;
    let legend_lines = names.len().div_ceil(per_line);
    let h = 10.0 + row * bars.len() as f64 + 18.0 * legend_lines as f64 + 10.0;
    let mut s = format!(
        "<figure><figcaption><strong>{}</strong></figcaption><svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">",
        esc(title),
        esc(title)
    );
    for (i, ((label, segments), total)) in bars.iter().zip(&totals).enumerate() {
        let y = 10.0 + row * i as f64;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + bar_h - 5.0,
            esc(label)
        );
        let mut x = left;
        for (name, value) in segments {
            let width = value.max(0.0) * scale;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{bar_h}\" fill=\"{}\"><title>{}: {value:.3} {}</title></rect>",
                colour(name),
                esc(name),
                esc(unit)
            );
            x += width;
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\">{total:.3} {}</text>",
            x + 6.0,
            y + bar_h - 5.0,
            esc(unit)
        );
    }
    let legend_top = 10.0 + row * bars.len() as f64 + 4.0;
    for (i, name) in names.iter().enumerate() {
        let (col, line) = ((i % per_line) as f64, (i / per_line) as f64);
        let (x, y) = (left + col * 120.0, legend_top + line * 18.0);
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            colour(name),
            x + 14.0,
            y + 9.0,
            esc(name)
        );
    }
    s.push_str("</svg></figure>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacked_bars_share_one_scale_and_keep_a_names_colour_in_every_bar() {
        let bars: Vec<Bar> = vec![
            (
                "rung 2".into(),
                vec![("web".into(), 0.36), ("pg".into(), 0.12)],
            ),
            (
                "rung <5>".into(),
                vec![("web".into(), 1.92), ("redis".into(), 0.8)],
            ),
        ];
        let svg = stacked_bars("Where the CPU goes", "ms", &bars);
        assert_eq!(svg.matches("<svg").count(), 1);
        assert_eq!(svg.matches("<title>web:").count(), 2);
        // the longest bar fills the 700 units between the margins
        assert!(svg.contains("width=\"494.1\""), "{svg}");
        assert!(svg.contains("width=\"205.9\""), "{svg}");
        assert_eq!(
            svg.matches(&format!("fill=\"{}\"", PALETTE[0])).count(),
            3,
            "web in both bars and the legend: {svg}"
        );
        assert!(
            svg.contains("2.720 ms") && svg.contains("0.480 ms"),
            "{svg}"
        );
        assert!(svg.contains("rung &lt;5&gt;") && !svg.contains("<5>"));
        assert!(!stacked_bars("none", "ms", &[]).contains("<rect"));
    }
}
