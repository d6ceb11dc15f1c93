//! The sign-in throttle over HTTP: failures limited per (account, client) and per client,
//! 429 with `Retry-After`, the owner elsewhere never locked out, successes never limited,
//! and the client's address taken from `X-Forwarded-For` only behind a trusted proxy.
//!
//! Clients at different addresses connect from different loopback addresses (127.0.0.x).
//! With `TEST_CACHE=redis` the counters live in a private Redis (`sessions.backend`).

use crescendo_config::{SessionBackend, Settings};
use crescendo_testkit::{Answer, Browser, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use std::net::IpAddr;

/// A server with `tweak` applied; with `TEST_CACHE=redis` its small shared state (the
/// sign-in counters) is on a private Redis, returned to be kept alive.
async fn spawn(
    tweak: impl FnOnce(&mut Settings),
) -> (
    TestApp,
    Option<(crescendo_topology::redis::Redis, tempfile::TempDir)>,
) {
    let redis = if std::env::var("TEST_CACHE").as_deref() == Ok("redis") {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("sessions");
        let r = tokio::task::spawn_blocking(move || {
            crescendo_topology::redis::Redis::start(&root, [127, 0, 0, 1], 32)
        })
        .await
        .expect("launcher thread")
        .expect("a private Redis for sessions starts");
        Some((r, dir))
    } else {
        None
    };
    let url = redis.as_ref().map(|(r, _)| r.url());
    let app = TestApp::spawn_with(|s| {
        if let Some(url) = url {
            s.sessions.backend = SessionBackend::Redis;
            s.sessions.redis_url = url;
        }
        tweak(s);
    })
    .await;
    (app, redis)
}

/// Limits small enough to reach in a test: 3 failures per (account, client), 6 per client.
fn small_limits(s: &mut Settings) {
    s.auth.signin_max_failures_per_account_client = 3;
    s.auth.signin_max_failures_per_client = 6;
    s.auth.signin_window_secs = 600;
}

/// `POST /api/users/login` from the loopback address `from`, with an optional
/// `X-Forwarded-For`.
async fn sign_in(
    app: &TestApp,
    from: [u8; 4],
    forwarded: Option<&str>,
    email: &str,
    password: &str,
) -> Answer {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::from(from))
        .build()
        .expect("client");
    let mut r = client
        .post(app.url("/api/users/login"))
        .json(&json!({"user": {"email": email, "password": password}}));
    if let Some(f) = forwarded {
        r = r.header("x-forwarded-for", f);
    }
    TestApp::answer(r.send().await.expect("request sent")).await
}

fn assert_throttled(a: &Answer) {
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", a.json);
    let retry = a
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(retry, Some(600), "Retry-After is the window");
    let msg = a.json["errors"]["body"][0].as_str().unwrap_or("");
    assert!(msg.contains("too many failed sign-ins"), "{:?}", a.json);
}

#[tokio::test]
async fn api_sign_in_answers_429_with_retry_after_after_repeated_failures() {
    let (app, _redis) = spawn(small_limits).await;
    app.register("ivan").await;
    let from = [127, 0, 0, 1];
    for _ in 0..3 {
        let a = sign_in(&app, from, None, "ivan@example.com", "wrong-password").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{:?}", a.json);
    }
    let a = sign_in(&app, from, None, "ivan@example.com", "wrong-password").await;
    assert_throttled(&a);
    // the right password from the same client waits too: the guessing must stop
    let a = sign_in(&app, from, None, "IVAN@example.com ", "password123").await;
    assert_throttled(&a);
}

#[tokio::test]
async fn the_owner_signs_in_from_another_address_while_an_attacker_is_throttled() {
    let (app, _redis) = spawn(small_limits).await;
    app.register("judy").await;
    let attacker = [127, 0, 0, 2];
    for _ in 0..3 {
        sign_in(&app, attacker, None, "judy@example.com", "guess").await;
    }
    assert_throttled(&sign_in(&app, attacker, None, "judy@example.com", "guess").await);
    let owner = sign_in(
        &app,
        [127, 0, 0, 3],
        None,
        "judy@example.com",
        "password123",
    )
    .await;
    assert_eq!(owner.status, StatusCode::OK, "{:?}", owner.json);
    assert_eq!(owner.json["user"]["username"], "judy");
}

#[tokio::test]
async fn failures_over_many_accounts_are_limited_per_client() {
    let (app, _redis) = spawn(small_limits).await;
    app.register("karl").await;
    let from = [127, 0, 0, 4];
    for i in 0..6 {
        let a = sign_in(&app, from, None, &format!("nobody{i}@example.com"), "guess").await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "attempt {i}: {:?}",
            a.json
        );
    }
    assert_throttled(&sign_in(&app, from, None, "karl@example.com", "password123").await);
    // another client is not affected
    let a = sign_in(
        &app,
        [127, 0, 0, 5],
        None,
        "karl@example.com",
        "password123",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
}

#[tokio::test]
async fn successful_sign_ins_are_never_throttled() {
    let (app, _redis) = spawn(small_limits).await;
    let users = ["lena", "mike", "nora"];
    for u in users {
        app.register(u).await;
    }
    let from = [127, 0, 0, 1];
    // a failure or two on the way do not add up with the successes
    for _ in 0..2 {
        sign_in(&app, from, None, "lena@example.com", "typo").await;
    }
    for round in 0..5 {
        for u in users {
            let a = sign_in(&app, from, None, &format!("{u}@example.com"), "password123").await;
            assert_eq!(a.status, StatusCode::OK, "{u}, round {round}: {:?}", a.json);
        }
    }
}

#[tokio::test]
async fn a_forwarded_address_from_an_untrusted_peer_is_ignored() {
    let (app, _redis) = spawn(small_limits).await;
    app.register("olga").await;
    let from = [127, 0, 0, 6];
    for i in 0..3 {
        let spoofed = format!("198.51.100.{i}");
        let a = sign_in(&app, from, Some(&spoofed), "olga@example.com", "guess").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{:?}", a.json);
    }
    // a new forwarded address each time does not help: the peer is counted
    let a = sign_in(
        &app,
        from,
        Some("198.51.100.99"),
        "olga@example.com",
        "guess",
    )
    .await;
    assert_throttled(&a);
}

#[tokio::test]
async fn forwarded_clients_behind_a_trusted_proxy_are_counted_apart() {
    let (app, _redis) = spawn(|s| {
        small_limits(s);
        s.http.trusted_proxies = vec!["127.0.0.1".parse().expect("address")];
    })
    .await;
    app.register("pete").await;
    let proxy = [127, 0, 0, 1];
    for _ in 0..3 {
        sign_in(
            &app,
            proxy,
            Some("198.51.100.1"),
            "pete@example.com",
            "guess",
        )
        .await;
    }
    let a = sign_in(
        &app,
        proxy,
        Some("198.51.100.1"),
        "pete@example.com",
        "guess",
    )
    .await;
    assert_throttled(&a);
    // another client behind the same proxy still gets answers of its own
    let a = sign_in(
        &app,
        proxy,
        Some("198.51.100.2"),
        "pete@example.com",
        "guess",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{:?}", a.json);
    let a = sign_in(
        &app,
        proxy,
        Some("6.6.6.6, 198.51.100.2"),
        "pete@example.com",
        "password123",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
    // and the proxy's own requests count as the proxy's
    let a = sign_in(&app, proxy, None, "pete@example.com", "password123").await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
}

#[tokio::test]
async fn the_pages_and_the_api_share_one_throttle() {
    let (app, _redis) = spawn(small_limits).await;
    app.register("quinn").await;
    for _ in 0..3 {
        sign_in(&app, [127, 0, 0, 1], None, "quinn@example.com", "guess").await;
    }
    let mut b = Browser::new(&app);
    let csrf = b.csrf_from("/login").await;
    let p = b
        .post(
            "/login",
            &[
                ("email", "quinn@example.com"),
                ("password", "password123"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(p.body.contains("too many sign-in attempts"), "{}", p.body);
    assert_eq!(
        p.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("600")
    );
}
