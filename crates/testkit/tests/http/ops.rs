use crescendo_testkit::TestApp;
use reqwest::{Method, StatusCode};
use std::time::Duration;

#[tokio::test]
async fn health_ready_and_metrics_answer() {
    let app = TestApp::spawn().await;
    app.register("jake").await;
    app.get("/api/articles", None).await;
    assert_eq!(app.get("/health", None).await.status, StatusCode::OK);
    assert_eq!(app.get("/ready", None).await.status, StatusCode::OK);
    let text = reqwest::get(format!("http://{}/metrics", app.ops_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "crescendo_http_requests_total{",
        "crescendo_http_request_duration_seconds_bucket{",
        "crescendo_db_queries_total{role=",
        "crescendo_cache_misses_total{layer=\"local\"}",
        "crescendo_db_pool_connections_in_use{",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(
        text.contains("route=\"/api/articles\""),
        "routes are labelled by pattern"
    );
}

/// The request ID `GET /health` answers with when it brings `sent`.
async fn request_id(app: &TestApp, sent: Option<&str>) -> String {
    let mut r = app.request(Method::GET, "/health", None);
    if let Some(id) = sent {
        r = r.header("x-request-id", id);
    }
    let res = r.send().await.unwrap();
    res.headers()["x-request-id"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = TestApp::spawn().await;
    assert_eq!(request_id(&app, Some("abc-123")).await, "abc-123");
    assert_eq!(request_id(&app, None).await.len(), 16);
}

#[tokio::test]
async fn cors_lets_any_origin_send_tokens() {
    let app = TestApp::spawn().await;
    let r = app
        .request(Method::OPTIONS, "/api/user", None)
        .header("origin", "https://conduit.example")
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
}

#[tokio::test]
async fn shutting_down_fails_ready_first_then_stops() {
    let mut app = TestApp::spawn_with(|s| s.http.drain_delay_ms = 1500).await;
    assert_eq!(app.get("/ready", None).await.status, StatusCode::OK);
    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.get("/ready", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "draining nodes fail /ready"
    );
    assert_eq!(
        app.get("/health", None).await.status,
        StatusCode::OK,
        "and still serve meanwhile"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        reqwest::get(app.url("/health")).await.is_err(),
        "the listener is closed after the drain"
    );
}

#[tokio::test]
async fn an_acknowledged_write_survives_a_restart() {
    // on PostgreSQL (sharded or not) both runs must use one server
    let shared = crate::SharedStore::new().await;
    let setup = |s: &mut crescendo_config::Settings| shared.setup(s);
    let app = TestApp::spawn_with(setup).await;
    let t = app.register("jake").await;
    let slug = app.article_slug(&t, "Kept").await;
    app.stop().await;
    let app = TestApp::spawn_with(setup).await;
    assert_eq!(
        app.get(&format!("/api/articles/{slug}"), None).await.status,
        StatusCode::OK
    );
    // tokens survive too: the signing key was kept in the data directory
    assert_eq!(app.get("/api/user", Some(&t)).await.status, StatusCode::OK);
}
