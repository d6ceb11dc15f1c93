//! When the Redis that holds the shared state (sessions, sign-in counters, idempotency
//! records, read fences) is full, it refuses writes rather than evicting (`noeviction`, as
//! `crescendo up` starts it): the requests that must write there get 503, reads go on, and
//! nothing kept there vanishes.

use crescendo_testkit::TestApp;
use crescendo_topology::redis::{Redis, USER, WhenFull};
use reqwest::StatusCode;
use serde_json::json;
use std::io::{Read, Write};

/// Sends `command` on `conn` and returns the first read of the answer.
fn say(conn: &mut std::net::TcpStream, command: &str) -> String {
    conn.write_all(command.as_bytes()).unwrap();
    let mut buf = [0u8; 256];
    let n = conn.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A connection to `redis`, authenticated.
fn connect(redis: &Redis) -> std::net::TcpStream {
    let mut conn = std::net::TcpStream::connect(redis.addr()).unwrap();
    let auth = say(&mut conn, &format!("AUTH {USER} {}\r\n", redis.password()));
    assert!(auth.starts_with("+OK"), "{auth}");
    conn
}

/// Writes `size`-byte values on `conn` until `redis` refuses one for memory.
fn write_until_full(conn: &mut std::net::TcpStream, size: usize, prefix: &str) {
    let value = "x".repeat(size);
    for i in 0..100_000 {
        // as a RESP array: an inline command is refused over 64 KiB when it arrives in parts
        let key = format!("{prefix}-{i}");
        let set = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        );
        let answer = say(conn, &set);
        if answer.starts_with("-OOM") {
            return;
        }
        assert!(answer.starts_with("+OK"), "{answer}");
    }
    panic!("never full");
}

/// Fills `redis` until it refuses even a small write, and returns the connection that did
/// it: large values first, then, on a fresh connection (a large command's buffer counts
/// while it lives), small ones. Closing the returned connection frees a little room.
fn fill(redis: &Redis) -> std::net::TcpStream {
    write_until_full(&mut connect(redis), 64 * 1024, "large");
    let mut conn = connect(redis);
    write_until_full(&mut conn, 16, "small");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shared_state_store_refuses_the_writes_that_need_it_and_reads_go_on() {
    // arrange: the shared state on a Redis of 4 MB that refuses writes when full
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start_with(dir.path(), [127, 0, 0, 1], 4, WhenFull::RefuseWrites).unwrap();
    let app = TestApp::spawn_with(|s| {
        s.sessions.backend = crescendo_config::SessionBackend::Redis;
        s.sessions.redis_url = redis.url();
    })
    .await;
    let token = app.register("ballast").await;
    let slug = app.article_slug(&token, "Before the flood").await;
    let keyed = |key: &'static str| {
        app.request(reqwest::Method::POST, "/api/articles", Some(&token))
            .header("idempotency-key", key)
            .json(&json!({"article": {"title": key, "description": "d", "body": "b"}}))
            .send()
    };
    assert_eq!(keyed("kept").await.unwrap().status(), StatusCode::CREATED);

    // act
    let _full = fill(&redis);

    // assert: writes that must keep something there are refused, in the API's format…
    let refused = TestApp::answer(keyed("refused").await.unwrap()).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.json
    );
    assert!(refused.json["errors"].is_object(), "{}", refused.json);
    let wrong = app
        .post(
            "/api/users/login",
            None,
            json!({"user": {"email": "ballast@example.com", "password": "wrong-password"}}),
        )
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        wrong.json
    );
    // …what was kept is still there: the first key's retry replays rather than writing again…
    let again = keyed("kept").await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    // …and reads go on
    let read = app
        .get(&format!("/api/articles/{slug}"), Some(&token))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.json);
    let listed = app.get("/api/articles?author=ballast", None).await;
    assert_eq!(listed.json["articlesCount"], 2, "{}", listed.json);
    app.stop().await;
}
