//! What is public: metrics only on the operators' listener, uploads only to their owner,
//! HSTS on an HTTPS site, and expired tokens refused.

use crate::uploads::{png, upload};
use crescendo_testkit::TestApp;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn metrics_answer_on_the_ops_listener_and_404_on_the_public_one() {
    let app = TestApp::spawn().await;
    app.get("/api/articles", None).await;

    let public = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let body = public.text().await.unwrap();
    assert!(
        !body.contains("crescendo_http_requests_total"),
        "no metric leaks on the public listener"
    );

    let ops = reqwest::get(format!("http://{}/metrics", app.ops_addr))
        .await
        .unwrap();
    assert_eq!(ops.status(), StatusCode::OK);
    assert!(
        ops.text()
            .await
            .unwrap()
            .contains("crescendo_http_requests_total{"),
        "the ops listener serves the metrics"
    );
    // the load balancer's probes stay on the public listener, and are on the ops one too
    for path in ["/health", "/ready"] {
        assert_eq!(app.get(path, None).await.status, StatusCode::OK, "{path}");
        let ops = reqwest::get(format!("http://{}{path}", app.ops_addr))
            .await
            .unwrap();
        assert_eq!(ops.status(), StatusCode::OK, "ops {path}");
    }
}

#[tokio::test]
async fn an_upload_is_shown_to_its_owner_only_and_others_cannot_tell_it_exists() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let other = app.register("other").await;
    let (status, body) = upload(&app, Some(&owner), "file", "a.png", &png(40, 30)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["upload"]["id"].as_str().unwrap().to_string();
    let path = format!("/api/uploads/{id}");

    let mine = app.get(&path, Some(&owner)).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.json);
    assert_eq!(mine.json["upload"]["id"], id.as_str());

    let theirs = app.get(&path, Some(&other)).await;
    let missing = app.get("/api/uploads/999999", Some(&other)).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.json);
    assert_eq!(
        theirs.json, missing.json,
        "another's upload answers like one that does not exist"
    );
    assert!(theirs.json["errors"].is_object(), "{}", theirs.json);

    let anonymous = app.get(&path, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.json["errors"].is_object(), "{}", anonymous.json);
}

#[tokio::test]
async fn an_https_site_sends_hsts_on_every_answer() {
    let app = TestApp::spawn_with(|s| s.web.secure_cookies = true).await;
    let token = app.register("secure").await;
    let answers = [
        app.get("/api/articles", None).await,
        app.get("/api/user", Some(&token)).await,
        app.get("/api/user", None).await,
        app.get("/no/such/page", None).await,
        app.get("/", None).await,
        app.get("/ready", None).await,
    ];
    for a in &answers {
        assert_eq!(
            a.headers
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=31536000"),
            "{} {:?}",
            a.status,
            a.json
        );
    }
    let preflight = app
        .request(Method::OPTIONS, "/api/user", None)
        .header("origin", "https://conduit.example")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}

#[tokio::test]
async fn a_plain_http_site_sends_no_hsts() {
    let app = TestApp::spawn().await;
    for path in ["/api/articles", "/", "/no/such/page"] {
        let a = app.get(path, None).await;
        assert!(
            a.headers.get("strict-transport-security").is_none(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_expired_token_gets_401_in_the_apis_format() {
    // every token expires the second it is issued
    let app = TestApp::spawn_with(|s| s.auth.token_ttl_secs = 0).await;
    let token = app.register("fleeting").await;

    let a = app.get("/api/user", Some(&token)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.json);
    assert!(a.json["errors"].is_object(), "{}", a.json);
    assert_eq!(a.headers["www-authenticate"], "Token");

    let write = app
        .post(
            "/api/articles",
            Some(&token),
            serde_json::json!({"article": {"title": "t", "description": "d", "body": "b"}}),
        )
        .await;
    assert_eq!(write.status, StatusCode::UNAUTHORIZED, "{}", write.json);
}
