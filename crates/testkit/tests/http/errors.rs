use crate::articles::post_article;
use crescendo_testkit::{Answer, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `POST path` with the raw `body` as `content_type`.
async fn post_raw(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &'static str,
) -> Answer {
    let r = app
        .request(Method::POST, path, token)
        .header("content-type", content_type)
        .body(body);
    TestApp::answer(r.send().await.unwrap()).await
}

/// How many articles the list counts.
async fn article_count(app: &TestApp) -> Value {
    app.get("/api/articles", None).await.json["articlesCount"].clone()
}

fn assert_envelope(json: &serde_json::Value) {
    assert!(
        json["errors"]["body"]
            .as_array()
            .is_some_and(|b| !b.is_empty()),
        "not in the error envelope: {json:?}"
    );
}

#[tokio::test]
async fn malformed_json_is_400_and_a_wrong_shape_is_422_in_the_error_envelope() {
    let app = TestApp::spawn().await;
    let t = app.register("jake").await;
    let truncated = "{\"article\":";
    let a = post_raw(
        &app,
        "/api/articles",
        Some(&t),
        "application/json",
        truncated,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_envelope(&a.json);
    for body in [
        json!({"article": {"title": 5}}),
        json!({"article": {"title": "t", "description": "d", "body": "b", "tagList": "notalist"}}),
        json!([1, 2]),
        json!({}),
    ] {
        let a = app.post("/api/articles", Some(&t), body.clone()).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_envelope(&a.json);
    }
    assert_eq!(article_count(&app).await, 0, "nothing was written");
}

#[tokio::test]
async fn a_body_without_json_content_type_is_415() {
    let app = TestApp::spawn().await;
    let a = post_raw(&app, "/api/users", None, "text/plain", "{}").await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_envelope(&a.json);
}

#[tokio::test]
async fn an_oversized_body_is_413_and_writes_nothing() {
    let app = TestApp::spawn_with(|s| s.http.body_limit_bytes = 64 * 1024).await;
    let t = app.register("jake").await;
    let big = "x".repeat(100 * 1024);
    let a = post_article(
        &app,
        &t,
        json!({"title": "t", "description": "d", "body": big}),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_envelope(&a.json);
    assert_eq!(article_count(&app).await, 0);
}

#[tokio::test]
async fn oversized_fields_are_422() {
    let app = TestApp::spawn().await;
    let t = app.register("jake").await;
    let a = post_article(
        &app,
        &t,
        json!({"title": "t".repeat(301), "description": "d", "body": "b"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = a.json["errors"]["title"][0].as_str().unwrap();
    assert!(message.contains("too long"), "{message}");
    let tags: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let a = post_article(
        &app,
        &t,
        json!({"title": "t", "description": "d", "body": "b", "tagList": tags}),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_in_the_envelope() {
    let app = TestApp::spawn().await;
    let a = app.get("/api/nothing-here", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_envelope(&a.json);
    let a = app.call(Method::PATCH, "/api/articles", None, None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_envelope(&a.json);
}
