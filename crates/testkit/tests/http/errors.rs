use crescendo_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::json;

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
    let bad = app
        .request(Method::POST, "/api/articles", Some(&t))
        .header("content-type", "application/json")
        .body("{\"article\":");
    let a = TestApp::answer(bad.send().await.unwrap()).await;
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
    assert_eq!(
        app.get("/api/articles", None).await.json["articlesCount"],
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn a_body_without_json_content_type_is_415() {
    let app = TestApp::spawn().await;
    let r = app
        .request(Method::POST, "/api/users", None)
        .header("content-type", "text/plain")
        .body("{}");
    let a = TestApp::answer(r.send().await.unwrap()).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_envelope(&a.json);
}

#[tokio::test]
async fn an_oversized_body_is_413_and_writes_nothing() {
    let app = TestApp::spawn_with(|s| s.http.body_limit_bytes = 64 * 1024).await;
    let t = app.register("jake").await;
    let big = "x".repeat(100 * 1024);
    let a = app
        .post(
            "/api/articles",
            Some(&t),
            json!({"article": {"title": "t", "description": "d", "body": big}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_envelope(&a.json);
    assert_eq!(
        app.get("/api/articles", None).await.json["articlesCount"],
        0
    );
}

#[tokio::test]
async fn oversized_fields_are_422() {
    let app = TestApp::spawn().await;
    let t = app.register("jake").await;
    let a = app
        .post(
            "/api/articles",
            Some(&t),
            json!({"article": {"title": "t".repeat(301), "description": "d", "body": "b"}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.json["errors"]["title"][0]
            .as_str()
            .unwrap()
            .contains("too long")
    );
    let tags: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let a = app
        .post(
            "/api/articles",
            Some(&t),
            json!({"article": {"title": "t", "description": "d", "body": "b", "tagList": tags}}),
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
