//! The tour's comparison shows where the CPU goes: its columns in the table, and a stacked
//! bar per rung.

use crescendo_bench::cpu::{CpuView, RoleCpu};
use crescendo_bench::tour::{TourReport, TourRow, write};

fn row(rung: u8, roles: &[(&str, f64)]) -> TourRow {
    let total: f64 = roles.iter().map(|(_, ms)| ms).sum();
    let cpu = CpuView {
        requests: 1000,
        server_cpu_ms_per_request: total,
        roles: roles
            .iter()
            .map(|(role, ms)| RoleCpu {
                role: (*role).into(),
                processes: 1,
                cpu_ms_per_request: *ms,
                share: ms / total,
            })
            .collect(),
        load_generator_cpu_ms_per_request: 0.25,
    };
    TourRow {
        rung,
        name: format!("rung {rung}"),
        claim: "a claim".into(),
        throughput: 100.0,
        p50_ms: 1.0,
        p99_ms: 2.0,
        errors: 0,
        db_queries_per_request: None,
        cache_hit_ratio: None,
        cache_served_ratio: None,
        db_reads_per_read_request: None,
        primary_read_share: None,
        session_survives_node_loss: None,
        uploads: None,
        cpu_ms_per_request: Some(total),
        cpu: Some(cpu),
        edge_hit_ratio: None,
        regions: None,
        verdict: format!("Rung {rung}: measured."),
    }
}

#[test]
fn the_tour_report_shows_cpu_per_request_by_role_for_every_rung() {
    let t = TourReport {
        scenario: "social".into(),
        rungs: vec![
            row(2, &[("web", 0.36), ("pg-primary", 0.12)]),
            row(5, &[("web", 1.93), ("redis", 0.79), ("pg-primary", 0.37)]),
        ],
    };
    let out = tempfile::tempdir().unwrap();

    let path = write(&t, out.path()).unwrap();

    let html = std::fs::read_to_string(path).unwrap();
    assert!(html.contains("<th>CPU ms/request</th>"), "{html}");
    assert!(html.contains("<td>0.480</td>") && html.contains("<td>3.090</td>"));
    assert!(html.contains("web 1.930 (62 %), redis 0.790 (26 %), pg-primary 0.370 (12 %)"));
    assert!(
        html.contains("<td>0.250</td>"),
        "the load generator's own: {html}"
    );
    assert!(html.contains("Where the CPU goes"));
    assert_eq!(html.matches("<title>pg-primary:").count(), 2, "{html}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("tour.json")).unwrap()).unwrap();
    assert_eq!(json["rungs"][1]["cpu"]["roles"][1]["role"], "redis");
    assert_eq!(json["rungs"][0]["cpu_ms_per_request"], 0.48);
}
