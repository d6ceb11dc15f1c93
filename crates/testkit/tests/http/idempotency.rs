//! `Idempotency-Key`: a repeated write gets the first outcome and does not run twice.

use crescendo_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    key: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, reqwest::header::HeaderMap, serde_json::Value) {
    let mut r = app
        .request(method, path, token)
        .header("idempotency-key", key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let a = TestApp::answer(r.send().await.unwrap()).await;
    (a.status, a.headers, a.json)
}

#[tokio::test]
async fn a_repeated_write_returns_the_first_outcome_and_runs_once() {
    let app = TestApp::spawn().await;
    let token = app.register("idem").await;
    let body = json!({"article": {"title": "Only once", "description": "d", "body": "b"}});
    let (s1, h1, first) = send(
        &app,
        Method::POST,
        "/api/articles",
        Some(&token),
        "k-1",
        Some(body.clone()),
    )
    .await;
    let (s2, h2, second) = send(
        &app,
        Method::POST,
        "/api/articles",
        Some(&token),
        "k-1",
        Some(body.clone()),
    )
    .await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first, second, "the same answer, byte for byte");
    assert!(!h1.contains_key("idempotency-replayed"));
    assert_eq!(h2["idempotency-replayed"], "true");
    assert_eq!(
        app.get("/api/articles?author=idem", None).await.json["articlesCount"],
        1,
        "written once"
    );

    // another key is another write
    let (s3, _, third) = send(
        &app,
        Method::POST,
        "/api/articles",
        Some(&token),
        "k-2",
        Some(body.clone()),
    )
    .await;
    assert_eq!(s3, StatusCode::CREATED);
    assert_ne!(third["article"]["slug"], first["article"]["slug"]);

    // the same key on a different request is refused
    let other = json!({"article": {"title": "Something else", "description": "d", "body": "b"}});
    let (s4, _, err) = send(
        &app,
        Method::POST,
        "/api/articles",
        Some(&token),
        "k-1",
        Some(other),
    )
    .await;
    assert_eq!(s4, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        err["errors"]["Idempotency-Key"][0]
            .as_str()
            .unwrap()
            .contains("different request")
    );

    // keys are per user: someone else's k-1 is theirs
    let token2 = app.register("idem2").await;
    let (s5, h5, _) = send(
        &app,
        Method::POST,
        "/api/articles",
        Some(&token2),
        "k-1",
        Some(body),
    )
    .await;
    assert_eq!(s5, StatusCode::CREATED);
    assert!(!h5.contains_key("idempotency-replayed"));

    // a repeated delete answers as the first one did, not 404
    let slug = first["article"]["slug"].as_str().unwrap();
    let (d1, _, _) = send(
        &app,
        Method::DELETE,
        &format!("/api/articles/{slug}"),
        Some(&token),
        "del-1",
        None,
    )
    .await;
    let (d2, h, _) = send(
        &app,
        Method::DELETE,
        &format!("/api/articles/{slug}"),
        Some(&token),
        "del-1",
        None,
    )
    .await;
    assert_eq!((d1, d2), (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT));
    assert_eq!(h["idempotency-replayed"], "true");
}

#[tokio::test]
async fn anonymous_sign_ups_are_keyed_by_route_and_errors_replay_too() {
    let app = TestApp::spawn().await;
    let body = json!({"user": {"username": "once", "email": "once@example.com", "password": "password123"}});
    let (s1, _, a) = send(
        &app,
        Method::POST,
        "/api/users",
        None,
        "signup-1",
        Some(body.clone()),
    )
    .await;
    let (s2, _, b) = send(
        &app,
        Method::POST,
        "/api/users",
        None,
        "signup-1",
        Some(body),
    )
    .await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED), "{b}");
    assert_eq!(a["user"]["username"], b["user"]["username"]);
    // a validation error is an outcome like any other
    let bad = json!({"user": {"username": "", "email": "x", "password": "p"}});
    let (e1, _, _) = send(
        &app,
        Method::POST,
        "/api/users",
        None,
        "signup-2",
        Some(bad.clone()),
    )
    .await;
    let (e2, h, _) = send(
        &app,
        Method::POST,
        "/api/users",
        None,
        "signup-2",
        Some(bad),
    )
    .await;
    assert_eq!(
        (e1, e2),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::UNPROCESSABLE_ENTITY
        )
    );
    assert_eq!(h["idempotency-replayed"], "true");
    // reads ignore the header
    let r = app
        .request(Method::GET, "/api/tags", None)
        .header("idempotency-key", "x")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("idempotency-replayed"));
    // a key too long is refused
    let long = "k".repeat(300);
    let (s, _, _) = send(
        &app,
        Method::POST,
        "/api/users/login",
        None,
        &long,
        Some(json!({"user": {"email": "a@b.c", "password": "x"}})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}
