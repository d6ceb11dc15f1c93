//! Rung 11's dashboard, checked inside a test that already brings a topology up: it listens
//! on a loopback ops address of its own (not the public one), refuses a request without its
//! password (kept owner-only), and after some load every chart has data points, as headless
//! Chromium renders the page.

use super::*;

/// How long the charts may take to have data after the load: two scrapes (5 s apart) for a
/// rate, the rules' next evaluation (5 s), with room for a loaded machine.
const DATA_BOUND: Duration = Duration::from_secs(60);

/// The dashboard's address in status `s`.
fn dashboard_addr(s: &Value) -> String {
    addr_where(s, "role", "dashboard")
}

/// The panels of a page that have no data point: the IDs of their figures.
fn empty_panels(html: &str) -> Vec<String> {
    html.split("<figure class=\"panel\" id=\"")
        .skip(1)
        .filter(|f| f.contains("data-points=\"0\""))
        .map(|f| f.split('"').next().unwrap().to_string())
        .collect()
}

/// Some traffic through `url` as the user of `token`: articles written, then read (the
/// cache's hits and misses, the database's queries, every tier's request rate).
async fn load(url: &str, token: &str) {
    let client = reqwest::Client::new();
    let mut slugs = Vec::new();
    for i in 0..5 {
        let v: Value = client
            .post(format!("{url}/api/articles"))
            .header("authorization", format!("Token {token}"))
            .json(
                &json!({"article": {"title": format!("Charted {i}"), "description": "d",
                "body": "b", "tagList": ["dash"]}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        slugs.push(v["article"]["slug"].as_str().unwrap().to_string());
    }
    for i in 0..200 {
        let path = match i % 3 {
            0 => "/api/articles".to_string(),
            1 => format!("/api/articles/{}", slugs[i % slugs.len()]),
            _ => "/api/tags".to_string(),
        };
        let res = client.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
}

/// The dashboard of the topology in `run_dir` (status `s`, public `url`, a user's `token`):
/// `crescendo dashboard` prints its URL; it refuses requests without its password, which is
/// in an owner-only file; the public address does not serve it; after [`load`] every chart
/// has data within [`DATA_BOUND`], also as Chromium renders the page.
pub async fn charts_every_figure(s: &Value, run_dir: &Path, url: &str, token: &str) {
    use std::os::unix::fs::PermissionsExt;
    let started = Instant::now();
    let addr = dashboard_addr(s);
    let out = crescendo(&["dashboard", "--run-dir", &run_dir.to_string_lossy()]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && printed.contains(&format!("http://{addr}/")),
        "{printed}"
    );
    let file = run_dir.join("dashboard/password");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();

    // only with the password, and only on its own loopback address
    let get = |u: String, p: Option<&str>| {
        let req = reqwest::Client::new().get(u);
        let req = match p {
            Some(p) => req.basic_auth("crescendo", Some(p)),
            None => req,
        };
        async move { req.send().await }
    };
    let dash = format!("http://{addr}/");
    assert_eq!(
        get(dash.clone(), None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let wrong = get(dash.clone(), Some("wrong")).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let public: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    assert_ne!(
        addr.split(':').next(),
        Some(public.ip().to_string().as_str())
    );
    let page = get(format!("{url}/"), Some(&password)).await.unwrap();
    assert!(!page.text().await.unwrap().contains("Crescendo dashboard"));
    let port = addr.rsplit_once(':').unwrap().1;
    if let Ok(res) = get(format!("http://{}:{port}/", public.ip()), Some(&password)).await {
        let body = res.text().await.unwrap_or_default();
        assert!(
            !body.contains("Crescendo dashboard"),
            "served on the public address"
        );
    }

    load(url, token).await;
    let loaded = Instant::now();
    let html = loop {
        let res = get(dash.clone(), Some(&password)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let html = res.text().await.unwrap();
        let empty = empty_panels(&html);
        if empty.is_empty() {
            break html;
        }
        assert!(
            loaded.elapsed() < DATA_BOUND,
            "charts without data {DATA_BOUND:?} after the load: {empty:?}\n{html}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!("every chart had data {:?} after the load", loaded.elapsed());
    assert!(
        html.contains("<meta http-equiv=\"refresh\""),
        "it refreshes itself"
    );
    in_the_browser(&addr, &password).await;
    eprintln!("the dashboard's checks took {:?}", started.elapsed());
}

/// Headless Chromium renders the dashboard (credentials in the URL): ten charts, each with a
/// line or a dot drawn, none saying it has no data.
async fn in_the_browser(addr: &str, password: &str) {
    let driver = crescendo_testkit::webdriver::Driver::start().await;
    let tab = driver.open().await;
    tab.goto(&format!("http://crescendo:{password}@{addr}/"))
        .await;
    tab.find("figure.panel svg.chart").await;
    let charts = tab
        .run(
            "return Array.from(document.querySelectorAll('figure.panel')).map(f => [f.id, \
             f.querySelectorAll('svg.chart polyline, svg.chart circle').length, \
             f.querySelectorAll('.no-data').length])",
        )
        .await;
    let charts = charts.as_array().unwrap();
    assert_eq!(charts.len(), 10, "{charts:?}");
    for c in charts {
        assert!(
            c[1].as_u64().unwrap() > 0 && c[2] == 0,
            "{c} has no line: {charts:?}"
        );
    }
    assert!(tab.source().await.contains("Firing alerts"));
    tab.close().await;
}
