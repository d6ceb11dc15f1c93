//! The tour's comparison as files: `tour.json`, and `tour.html` with one row per rung, the
//! CPU chart, each rung's verdict, and rung 8's per-region table.

use super::TourReport;
use crate::report::{esc, page_head};
use std::path::{Path, PathBuf};

/// Writes `tour.json` and `tour.html`.
///
/// # Errors
/// The files cannot be written.
pub fn write(t: &TourReport, out: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("tour.json"),
        serde_json::to_vec_pretty(t).expect("reports serialise"),
    )?;
    let mut h = page_head(&format!("Crescendo tour: {} scenario", t.scenario));
    h.push_str(&format!(
        "<h1>The ladder, measured: {} scenario</h1>",
        esc(&t.scenario)
    ));
    h.push_str("<table><tr><th>rung</th><th>name</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th><th>errors</th><th>DB queries/request</th><th>DB queries/read request</th><th>near-cache hit ratio</th><th>cache-served ratio</th><th>primary share of DB reads</th><th>edge hit ratio</th><th>CPU ms/request</th><th>top roles: CPU ms/request (share)</th><th>load generator CPU ms/request</th><th>report</th></tr>");
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into());
    for r in &t.rungs {
        h.push_str(&format!(
            "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td>{:.0}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td><td>{}</td><td><a href=\"rung-{}/{}\">details</a></td></tr>",
            r.rung,
            esc(&r.name),
            r.throughput,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            opt(r.db_queries_per_request),
            opt(r.db_reads_per_read_request),
            opt(r.cache_hit_ratio),
            opt(r.cache_served_ratio),
            opt(r.primary_read_share),
            opt(r.edge_hit_ratio),
            opt(r.cpu_ms_per_request),
            esc(&r.cpu.as_ref().map(|c| c.top(3)).unwrap_or_else(|| "n/a".into())),
            opt(r.cpu.as_ref().map(|c| c.load_generator_cpu_ms_per_request)),
            r.rung,
            if r.regions.is_some() { "regions.json" } else { "report.html" }
        ));
    }
    h.push_str("</table>");
    h.push_str(&cpu_chart(t));
    for r in &t.rungs {
        if let Some(regions) = &r.regions {
            h.push_str(&format!(
                "<h2>Rung {}: per region, clients inside each users' namespace</h2>",
                r.rung
            ));
            h.push_str(&regions.html());
        }
    }
    h.push_str("<ul>");
    for r in &t.rungs {
        h.push_str(&format!("<li>{}</li>", esc(&r.verdict)));
    }
    h.push_str("</ul></body></html>\n");
    let path = out.join("tour.html");
    std::fs::write(&path, h)?;
    Ok(path)
}

/// "Where the CPU goes": one stacked bar per rung of the servers' CPU-ms per request by
/// role (the load generator's own is a column of the table, apart).
fn cpu_chart(t: &TourReport) -> String {
    let bars: Vec<crate::report::Bar> = t
        .rungs
        .iter()
        .filter_map(|r| {
            let c = r.cpu.as_ref()?;
            let segments = c
                .roles
                .iter()
                .map(|role| (role.role.clone(), role.cpu_ms_per_request))
                .collect();
            Some((format!("rung {}", r.rung), segments))
        })
        .collect();
    if bars.is_empty() {
        return String::new();
    }
    crate::report::stacked_bars(
        "Where the CPU goes: the servers' CPU-ms per request, by role",
        "ms",
        &bars,
    )
}
