//! Writes run to the end once started: a write held at a step (after its commit, before its
//! cache invalidation; or with its outcome, before its idempotency record is kept) while its
//! client leaves or its time-out fires still invalidates the cache and keeps its outcome for
//! a retry with the same `Idempotency-Key`, which never applies it twice.
//!
//! A client leaves by half-closing its connection and reading until the server has closed
//! it: hyper closes a connection whose client left mid-request and drops the request with
//! it, so once the read ends the request is gone. Only then is the write let go, and
//! `writes.idle()` waits until every write has ended (at once for one that was dropped).

use crescendo_app::{Pause, WriteStep};
use crescendo_testkit::{Browser, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `method path` with `headers` (each `name: value`) and `body` on a connection of
/// its own, and returns the connection without reading the answer.
async fn send_raw(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[String],
    body: &str,
) -> TcpStream {
    let mut conn = TcpStream::connect(app.addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: crescendo\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    conn.write_all(head.as_bytes()).await.expect("request head");
    conn.write_all(body.as_bytes()).await.expect("request body");
    conn
}

/// The client leaves: half-closes its side, then reads until the server has closed the
/// connection. Returns what the server sent before closing.
async fn leave(mut conn: TcpStream) -> Vec<u8> {
    conn.shutdown().await.expect("half-close");
    let mut seen = Vec::new();
    // a reset instead of a close ends the connection just the same
    let _ = conn.read_to_end(&mut seen).await;
    seen
}

/// A JSON write over HTTP with an `Idempotency-Key`.
async fn keyed(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = app
        .request(method, path, Some(token))
        .header("idempotency-key", key)
        .json(body);
    let a = TestApp::answer(r.send().await.expect("request sent")).await;
    (a.status, a.headers, a.json)
}

/// Holds the next write to reach `step` on `app` until the test releases it (set once the
/// test's own set-up has written: registering a user is a write too).
fn hold_next(app: &TestApp, step: WriteStep) -> Arc<Pause> {
    let pause = Pause::new(step);
    app.app.pause_writes_at(Arc::clone(&pause));
    pause
}

/// Sends `method path` with `headers` and `body`, and has its client leave once the write
/// reaches `step` (held there until the client has gone, then let go); returns when every
/// write has ended.
async fn leave_at(
    app: &TestApp,
    step: WriteStep,
    (method, path): (&str, &str),
    headers: &[String],
    body: &str,
) {
    let pause = hold_next(app, step);
    let conn = send_raw(app, method, path, headers, body).await;
    pause.reached().await;
    assert!(
        leave(conn).await.is_empty(),
        "the client left before any answer"
    );
    pause.release();
    app.writes.idle().await;
}

/// The headers of a JSON write by `token` under the `Idempotency-Key` `key`.
fn json_headers(token: &str, key: &str) -> [String; 3] {
    [
        format!("authorization: Token {token}"),
        "content-type: application/json".into(),
        format!("idempotency-key: {key}"),
    ]
}

/// `value` encoded for an `application/x-www-form-urlencoded` body.
fn form_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn comment_bodies(list: &Value) -> Vec<String> {
    list["comments"]
        .as_array()
        .expect("comments")
        .iter()
        .map(|c| c["body"].as_str().expect("body").to_string())
        .collect()
}

#[tokio::test]
async fn a_comment_whose_client_leaves_after_the_commit_is_invalidated_and_its_retry_replays_it() {
    // arrange: an article whose (empty) comment list is cached
    let app = TestApp::spawn().await;
    let token = app.register("finisher").await;
    let slug = app.article_slug(&token, "Finish").await;
    let path = format!("/api/articles/{slug}/comments");
    assert_eq!(
        comment_bodies(&app.get(&path, None).await.json),
        Vec::<String>::new()
    );
    let body = json!({"comment": {"body": "Still here"}});

    // act: the comment commits, its client leaves before the cache is invalidated
    leave_at(
        &app,
        WriteStep::Committed,
        ("POST", &path),
        &json_headers(&token, "c-1"),
        &body.to_string(),
    )
    .await;

    // assert: the list shows the comment, and a retry gets the first outcome, not a second comment
    assert_eq!(
        comment_bodies(&app.get(&path, None).await.json),
        ["Still here"]
    );
    let (status, headers, replay) = keyed(&app, Method::POST, &path, &token, "c-1", &body).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(headers["idempotency-replayed"], "true");
    assert_eq!(replay["comment"]["body"], "Still here");
    assert_eq!(
        comment_bodies(&app.get(&path, None).await.json),
        ["Still here"]
    );
}

#[tokio::test]
async fn an_article_whose_client_leaves_before_its_idempotency_record_is_kept_is_replayed_to_a_retry()
 {
    // arrange: the author's (empty) article list is cached
    let app = TestApp::spawn().await;
    let token = app.register("keeper").await;
    let list = "/api/articles?author=keeper";
    assert_eq!(app.get(list, None).await.json["articlesCount"], 0);
    let body = json!({"article": {"title": "Kept", "description": "d", "body": "b"}});

    // act: the article is written and answered; its client leaves before the record is kept
    leave_at(
        &app,
        WriteStep::Answered,
        ("POST", "/api/articles"),
        &json_headers(&token, "a-1"),
        &body.to_string(),
    )
    .await;

    // assert: a retry gets the first outcome (not 409 for a record left pending), written once
    let (status, headers, replay) =
        keyed(&app, Method::POST, "/api/articles", &token, "a-1", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{replay}");
    assert_eq!(headers["idempotency-replayed"], "true");
    assert_eq!(replay["article"]["title"], "Kept");
    let listed = app.get(list, None).await.json;
    assert_eq!(listed["articlesCount"], 1, "{listed}");
    assert_eq!(listed["articles"][0]["slug"], replay["article"]["slug"]);
}

#[tokio::test]
async fn an_update_whose_request_times_out_runs_to_the_end_and_a_retry_meanwhile_gets_409() {
    // arrange: requests time out after a second; the article is cached under its old title
    let app = TestApp::spawn_with(|s| s.http.request_timeout_secs = 1).await;
    // registered behind the API: hashing a password may take longer than the time-out
    let token = app
        .app
        .register("patient", "patient@example.com", "password123")
        .await
        .expect("registered")
        .token;
    let slug = app.article_slug(&token, "Before").await;
    let path = format!("/api/articles/{slug}");
    assert_eq!(
        app.get(&path, None).await.json["article"]["title"],
        "Before"
    );
    let body = json!({"article": {"title": "After"}});

    // act: the update commits and is held until its time-out has answered
    let pause = hold_next(&app, WriteStep::Committed);
    let first = {
        let r = app
            .request(Method::PUT, &path, Some(&token))
            .header("idempotency-key", "u-1")
            .json(&body);
        tokio::spawn(r.send())
    };
    pause.reached().await;
    let timed_out = first.await.expect("request task").expect("answered");
    let (retry_status, _, retry) = keyed(&app, Method::PUT, &path, &token, "u-1", &body).await;
    pause.release();
    app.writes.idle().await;

    // assert: the time-out answered, a retry while the write ran got 409, and the write ended:
    // the article reads as updated and a retry now gets the outcome
    assert_eq!(timed_out.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_status, StatusCode::CONFLICT, "{retry}");
    assert_eq!(app.get(&path, None).await.json["article"]["title"], "After");
    let (status, headers, replay) = keyed(&app, Method::PUT, &path, &token, "u-1", &body).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(headers["idempotency-replayed"], "true");
    assert_eq!(replay["article"]["title"], "After");
}

#[tokio::test]
async fn a_comment_form_whose_browser_leaves_after_the_commit_shows_on_the_article() {
    // arrange: a signed-in browser on an article whose (empty) comment list is cached
    let app = TestApp::spawn().await;
    let token = app.register("author").await;
    let slug = app.article_slug(&token, "Forms").await;
    let mut browser = Browser::new(&app);
    browser.sign_up("reader").await;
    let csrf = browser.csrf_from(&format!("/article/{slug}")).await;
    let api = format!("/api/articles/{slug}/comments");
    assert_eq!(
        comment_bodies(&app.get(&api, None).await.json),
        Vec::<String>::new()
    );

    // act: the form's comment commits, and the browser leaves before the cache is invalidated
    leave_at(
        &app,
        WriteStep::Committed,
        ("POST", &format!("/article/{slug}/comments")),
        &[
            format!("cookie: {}", browser.cookie().expect("session cookie")),
            "content-type: application/x-www-form-urlencoded".into(),
        ],
        &format!("body=From+a+form&csrf={}", form_value(&csrf)),
    )
    .await;

    // assert: the comment is there once, on the page and in the API
    assert_eq!(
        comment_bodies(&app.get(&api, None).await.json),
        ["From a form"]
    );
    let page = browser.get(&format!("/article/{slug}")).await;
    assert_eq!(page.body.matches("From a form").count(), 1, "{}", page.body);
}
