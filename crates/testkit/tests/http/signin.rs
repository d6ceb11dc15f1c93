//! The sign-in throttle over HTTP: failures limited per (account, client) and per client,
//! 429 with `Retry-After`, the owner elsewhere never locked out, successes never limited,
//! and the client's address taken from `X-Forwarded-For` only behind a trusted proxy.
//!
//! Clients at different addresses connect from different loopback addresses (127.0.0.x).
//! With `TEST_CACHE=redis` the counters live in a private Redis (`sessions.backend`).

use crate::web::sign_in_page;
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

/// A client at the loopback address `from`, sending `X-Forwarded-For: forwarded` if set.
#[derive(Clone, Copy)]
struct Client<'a> {
    app: &'a TestApp,
    from: [u8; 4],
    forwarded: Option<&'a str>,
}

impl<'a> Client<'a> {
    /// A client at `from` that forwards for nobody.
    fn at(app: &'a TestApp, from: [u8; 4]) -> Self {
        Self {
            app,
            from,
            forwarded: None,
        }
    }

    /// The same client, forwarding for `forwarded`.
    fn forwarding(self, forwarded: &'a str) -> Self {
        Self {
            forwarded: Some(forwarded),
            ..self
        }
    }

    /// `POST /api/users/login`.
    async fn sign_in(self, email: &str, password: &str) -> Answer {
        let client = reqwest::Client::builder()
            .local_address(IpAddr::from(self.from))
            .build()
            .expect("client");
        let mut r = client
            .post(self.app.url("/api/users/login"))
            .json(&json!({"user": {"email": email, "password": password}}));
        if let Some(f) = self.forwarded {
            r = r.header("x-forwarded-for", f);
        }
        TestApp::answer(r.send().await.expect("request sent")).await
    }

    /// Signs in as `email` with a wrong password `times` times, each refused with 401.
    async fn fail(self, email: &str, times: usize) {
        for i in 0..times {
            let a = self.sign_in(email, "wrong-password").await;
            assert_status(&a, StatusCode::UNAUTHORIZED, &format!("failure {i}"));
        }
    }

    /// Fails as `email` up to the per-(account, client) limit of [`small_limits`], then
    /// finds the next attempt throttled.
    async fn exhaust(self, email: &str) {
        self.fail(email, 3).await;
        assert_throttled(&self.sign_in(email, "wrong-password").await);
    }
}

/// A server with [`small_limits`] (and the private Redis to keep alive, if any) where `user`
/// has registered.
async fn spawn_with_user(
    user: &str,
) -> (
    TestApp,
    Option<(crescendo_topology::redis::Redis, tempfile::TempDir)>,
) {
    let (app, redis) = spawn(small_limits).await;
    app.register(user).await;
    (app, redis)
}

/// Asserts that `a` has `status`, showing `what` and the body otherwise.
fn assert_status(a: &Answer, status: StatusCode, what: &str) {
    assert_eq!(a.status, status, "{what}: {:?}", a.json);
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
    let (app, _redis) = spawn_with_user("ivan").await;
    let client = Client::at(&app, [127, 0, 0, 1]);
    client.exhaust("ivan@example.com").await;
    // the right password from the same client waits too: the guessing must stop
    assert_throttled(&client.sign_in("IVAN@example.com ", "password123").await);
}

#[tokio::test]
async fn the_owner_signs_in_from_another_address_while_an_attacker_is_throttled() {
    let (app, _redis) = spawn_with_user("judy").await;
    let attacker = Client::at(&app, [127, 0, 0, 2]);
    attacker.exhaust("judy@example.com").await;
    let owner = Client::at(&app, [127, 0, 0, 3])
        .sign_in("judy@example.com", "password123")
        .await;
    assert_status(&owner, StatusCode::OK, "the owner");
    assert_eq!(owner.json["user"]["username"], "judy");
}

#[tokio::test]
async fn failures_over_many_accounts_are_limited_per_client() {
    let (app, _redis) = spawn_with_user("karl").await;
    let client = Client::at(&app, [127, 0, 0, 4]);
    for i in 0..6 {
        client.fail(&format!("nobody{i}@example.com"), 1).await;
    }
    assert_throttled(&client.sign_in("karl@example.com", "password123").await);
    // another client is not affected
    let other = Client::at(&app, [127, 0, 0, 5]);
    let a = other.sign_in("karl@example.com", "password123").await;
    assert_status(&a, StatusCode::OK, "another client");
}

#[tokio::test]
async fn successful_sign_ins_are_never_throttled() {
    let (app, _redis) = spawn(small_limits).await;
    let users = ["lena", "mike", "nora"];
    for u in users {
        app.register(u).await;
    }
    let client = Client::at(&app, [127, 0, 0, 1]);
    // a failure or two on the way do not add up with the successes
    client.fail("lena@example.com", 2).await;
    for round in 0..5 {
        for u in users {
            let a = client
                .sign_in(&format!("{u}@example.com"), "password123")
                .await;
            assert_status(&a, StatusCode::OK, &format!("{u}, round {round}"));
        }
    }
}

#[tokio::test]
async fn a_forwarded_address_from_an_untrusted_peer_is_ignored() {
    let (app, _redis) = spawn_with_user("olga").await;
    let peer = Client::at(&app, [127, 0, 0, 6]);
    for i in 0..3 {
        let spoofed = format!("198.51.100.{i}");
        peer.forwarding(&spoofed).fail("olga@example.com", 1).await;
    }
    // a new forwarded address each time does not help: the peer is counted
    let spoofed = peer.forwarding("198.51.100.99");
    assert_throttled(&spoofed.sign_in("olga@example.com", "guess").await);
}

#[tokio::test]
async fn forwarded_clients_behind_a_trusted_proxy_are_counted_apart() {
    let (app, _redis) = spawn(|s| {
        small_limits(s);
        s.http.trusted_proxies = vec!["127.0.0.1".parse().expect("address")];
    })
    .await;
    app.register("pete").await;
    let proxy = Client::at(&app, [127, 0, 0, 1]);
    let first = proxy.forwarding("198.51.100.1");
    first.exhaust("pete@example.com").await;
    // another client behind the same proxy still gets answers of its own
    proxy
        .forwarding("198.51.100.2")
        .fail("pete@example.com", 1)
        .await;
    let a = proxy
        .forwarding("6.6.6.6, 198.51.100.2")
        .sign_in("pete@example.com", "password123")
        .await;
    assert_status(&a, StatusCode::OK, "the nearest forwarded client");
    // and the proxy's own requests count as the proxy's
    let a = proxy.sign_in("pete@example.com", "password123").await;
    assert_status(&a, StatusCode::OK, "the proxy");
}

#[tokio::test]
async fn the_pages_and_the_api_share_one_throttle() {
    let (app, _redis) = spawn_with_user("quinn").await;
    Client::at(&app, [127, 0, 0, 1])
        .fail("quinn@example.com", 3)
        .await;
    let mut b = Browser::new(&app);
    let csrf = b.csrf_from("/login").await;
    let p = sign_in_page(&mut b, "quinn@example.com", "password123", &csrf).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(p.body.contains("too many sign-in attempts"), "{}", p.body);
    assert_eq!(
        p.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("600")
    );
}
