//! Load shedding and slow clients: a node bounds its requests in flight, its connections and
//! how long headers and bodies may take, and answers beyond the bounds at once.

use crescendo_testkit::TestApp;
use reqwest::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound that only turns a server that never answers into a failure instead of a hang.
const HANG: Duration = Duration::from_secs(60);

/// A sign-up body and the request head that announces it, asking for `100 Continue`.
fn sign_up(username: &str) -> (String, String) {
    let body = format!(
        r#"{{"user":{{"username":"{username}","email":"{username}@example.com","password":"password123"}}}}"#
    );
    let head = format!(
        "POST /api/users HTTP/1.1\r\nhost: crescendo\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    (head, body)
}

/// Reads from `conn` into `seen` until it holds `needle`.
async fn read_until(conn: &mut TcpStream, seen: &mut Vec<u8>, needle: &str) {
    let wait = async {
        while !String::from_utf8_lossy(seen).contains(needle) {
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(HANG, wait)
        .await
        .unwrap_or_else(|_| panic!("no {needle:?}: {}", String::from_utf8_lossy(seen)));
}

/// Opens a connection and starts a sign-up whose body is half sent: once the node answers
/// `100 Continue`, the handler is waiting for the rest of the body, in flight.
async fn half_sent_sign_up(app: &TestApp, username: &str) -> (TcpStream, String) {
    let (head, body) = sign_up(username);
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut conn, &mut seen, "100 Continue\r\n\r\n").await;
    let half = body.len() / 2;
    conn.write_all(&body.as_bytes()[..half]).await.unwrap();
    (conn, body[half..].to_string())
}

#[tokio::test]
async fn a_request_beyond_max_in_flight_gets_503_with_retry_after_until_a_slot_frees() {
    // arrange: a node serving two requests at once, both held by half-sent bodies
    let app = TestApp::spawn_with(|s| s.http.max_in_flight = 2).await;
    let (mut first, rest) = half_sent_sign_up(&app, "first").await;
    let (_second, _) = half_sent_sign_up(&app, "second").await;
    // act: a third request, while both are in flight
    let shed = app.get("/api/tags", None).await;
    let health = app.get("/health", None).await;
    // assert: shed at once, in the API's format, with a time to come back; probes still answer
    assert_eq!(
        shed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        shed.json
    );
    assert_eq!(shed.headers["retry-after"], "1");
    assert!(
        shed.json["errors"]["body"][0]
            .as_str()
            .is_some_and(|m| m.contains("overloaded")),
        "{:?}",
        shed.json
    );
    assert_eq!(health.status, StatusCode::OK);
    // act: the first request completes
    first.write_all(rest.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut first, &mut seen, "HTTP/1.1 201").await;
    // assert: its slot is free again
    let after = app.get("/api/tags", None).await;
    assert_eq!(after.status, StatusCode::OK, "{:?}", after.json);
}

#[tokio::test]
async fn a_body_slower_than_the_body_time_out_gets_408_and_frees_its_slot() {
    // arrange: one request at a time, bodies within a second of their headers
    let app = TestApp::spawn_with(|s| {
        s.http.max_in_flight = 1;
        s.http.body_read_timeout_secs = 1;
    })
    .await;
    let (mut slow, _rest) = half_sent_sign_up(&app, "slow").await;
    // act: the rest of the body never comes
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(HANG, slow.read_to_end(&mut seen)).await;
    // assert: 408 in the API's format, the connection closed, and the slot free again
    let text = String::from_utf8_lossy(&seen);
    let answer = text.split("100 Continue\r\n\r\n").nth(1).unwrap_or(&text);
    assert!(answer.starts_with("HTTP/1.1 408"), "{text}");
    assert!(answer.contains(r#"{"errors":{"body":["#), "{text}");
    assert!(matches!(closed, Ok(Ok(_))), "still open: {closed:?}");
    let after = app.get("/api/tags", None).await;
    assert_eq!(after.status, StatusCode::OK, "{:?}", after.json);
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_while_an_idle_connection_stays() {
    // arrange: headers within a second of their first byte; idle connections kept long
    let app = TestApp::spawn_with(|s| s.http.header_read_timeout_secs = 1).await;
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: crescendo\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut idle, &mut seen, "\r\n\r\nok").await;
    // act: another client sends half a request line, then nothing
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /hea").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(HANG, slow.read_to_end(&mut rest)).await;
    // assert: the node closed the slow one; the idle one, idle for longer, still serves
    assert!(matches!(closed, Ok(Ok(_))), "still open: {closed:?}");
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: crescendo\r\n\r\n")
        .await
        .unwrap();
    let mut again = Vec::new();
    read_until(&mut idle, &mut again, "\r\n\r\nok").await;
}

#[tokio::test]
async fn with_max_connections_open_the_next_connection_waits_until_one_closes() {
    // arrange: a node that keeps one connection open at a time, and that one in use
    let app = TestApp::spawn_with(|s| s.http.max_connections = 1).await;
    let get = b"GET /health HTTP/1.1\r\nhost: crescendo\r\n\r\n";
    let mut open = TcpStream::connect(app.addr).await.unwrap();
    let mut seen = Vec::new();
    open.write_all(get).await.unwrap();
    read_until(&mut open, &mut seen, "\r\n\r\nok").await;
    // act: a second connection sends its request, while the first goes on being served
    let mut waiting = TcpStream::connect(app.addr).await.unwrap();
    waiting.write_all(get).await.unwrap();
    for _ in 0..20 {
        let mut seen = Vec::new();
        open.write_all(get).await.unwrap();
        read_until(&mut open, &mut seen, "\r\n\r\nok").await;
    }
    // assert: the second got nothing so far; once the first closes, it is served
    let mut buf = [0u8; 64];
    assert!(
        matches!(waiting.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the connection beyond the limit was served"
    );
    drop(open);
    let mut answer = Vec::new();
    read_until(&mut waiting, &mut answer, "\r\n\r\nok").await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}
