//! The ceiling over HTTP: recorded answers come back byte for byte through the stack of
//! `serve`, and anything not recorded is a 404 in the API's format.

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, StatusCode};
use crescendo_server::{Answer, Answers, serve_ceiling};
use std::sync::Arc;

#[tokio::test]
async fn a_recorded_answer_comes_back_byte_for_byte_with_the_stacks_headers() {
    // arrange: one recorded answer, served on port 0
    let body = Bytes::from_static(b"{\"articles\":[],\"articlesCount\":0}\n");
    let mut answers = Answers::new();
    answers.insert(
        Method::GET,
        "/api/articles?limit=20",
        Answer {
            status: StatusCode::OK,
            content_type: Some(HeaderValue::from_static("application/json")),
            body: body.clone(),
        },
    );
    let answers = Arc::new(answers);
    let mut settings = crescendo_config::Settings::default();
    settings.http.listen = "127.0.0.1:0".parse().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ceiling = serve_ceiling(&settings, Arc::clone(&answers), async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let base = format!("http://{}", ceiling.addr);
    let client = reqwest::Client::new();

    // act
    let hit = client
        .get(format!("{base}/api/articles?limit=20"))
        .header("origin", "http://example.test")
        .send()
        .await
        .unwrap();
    let headers = hit.headers().clone();
    let (status, got) = (hit.status(), hit.bytes().await.unwrap());
    let miss = client
        .get(format!("{base}/api/articles?limit=21"))
        .send()
        .await
        .unwrap();
    let miss_status = miss.status();
    let miss_body: serde_json::Value = miss.json().await.unwrap();

    // assert
    assert_eq!(status, 200);
    assert_eq!(got, body, "the body is the recorded one, byte for byte");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-request-id"].len(), 16, "a request ID was made");
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(miss_status, 404);
    assert!(
        miss_body["errors"]["body"][0]
            .as_str()
            .unwrap()
            .contains("/api/articles?limit=21"),
        "{miss_body}"
    );
    assert_eq!(answers.misses(), 1);
    stop.send(()).unwrap();
    ceiling.done.await.unwrap();
}
