//! `Idempotency-Key`: a repeated write gets the first outcome and does not run twice.

use crescendo_testkit::{Answer, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Writes by one caller (`token`, or anonymous), each with an `Idempotency-Key`.
#[derive(Clone, Copy)]
struct Keyed<'a> {
    app: &'a TestApp,
    token: Option<&'a str>,
}

impl Keyed<'_> {
    /// Sends `method path` with `key` and, if given, the JSON `body`.
    async fn send(self, method: Method, path: &str, key: &str, body: Option<Value>) -> Answer {
        let mut r = self
            .app
            .request(method, path, self.token)
            .header("idempotency-key", key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        TestApp::answer(r.send().await.unwrap()).await
    }

    /// `POST path` with `key` and `body`.
    async fn post(self, path: &str, key: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, key, Some(body.clone())).await
    }

    /// The same request twice with the same key; asserts that both answer the same status,
    /// the first as itself and the second as its replay, and returns both.
    async fn twice(
        self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> [Answer; 2] {
        let first = self.send(method.clone(), path, key, body.clone()).await;
        let second = self.send(method, path, key, body).await;
        assert_eq!(first.status, second.status, "{}", second.json);
        assert!(!first.headers.contains_key("idempotency-replayed"));
        assert_eq!(second.headers["idempotency-replayed"], "true");
        [first, second]
    }
}

#[tokio::test]
async fn a_repeated_write_returns_the_first_outcome_and_runs_once() {
    let app = TestApp::spawn().await;
    let token = app.register("idem").await;
    let me = Keyed {
        app: &app,
        token: Some(&token),
    };
    let body = json!({"article": {"title": "Only once", "description": "d", "body": "b"}});
    let [first, second] = me
        .twice(Method::POST, "/api/articles", "k-1", Some(body.clone()))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.json, second.json, "the same answer, byte for byte");
    assert_eq!(
        app.get("/api/articles?author=idem", None).await.json["articlesCount"],
        1,
        "written once"
    );

    // another key is another write
    let third = me.post("/api/articles", "k-2", &body).await;
    assert_eq!(third.status, StatusCode::CREATED);
    assert_ne!(third.json["article"]["slug"], first.json["article"]["slug"]);

    // the same key on a different request is refused
    let other = json!({"article": {"title": "Something else", "description": "d", "body": "b"}});
    let err = me.post("/api/articles", "k-1", &other).await;
    assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = err.json["errors"]["Idempotency-Key"][0].as_str().unwrap();
    assert!(message.contains("different request"), "{message}");

    // keys are per user: someone else's k-1 is theirs
    let token2 = app.register("idem2").await;
    let someone = Keyed {
        app: &app,
        token: Some(&token2),
    };
    let theirs = someone.post("/api/articles", "k-1", &body).await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert!(!theirs.headers.contains_key("idempotency-replayed"));

    // a repeated delete answers as the first one did, not 404
    let slug = first.json["article"]["slug"].as_str().unwrap();
    let path = format!("/api/articles/{slug}");
    let [deleted, _] = me.twice(Method::DELETE, &path, "del-1", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn anonymous_sign_ups_are_keyed_by_route_and_errors_replay_too() {
    let app = TestApp::spawn().await;
    let anonymous = Keyed {
        app: &app,
        token: None,
    };
    let body = json!({"user": {"username": "once", "email": "once@example.com", "password": "password123"}});
    let [a, b] = anonymous
        .twice(Method::POST, "/api/users", "signup-1", Some(body))
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json["user"]["username"], b.json["user"]["username"]);
    // a validation error is an outcome like any other
    let bad = json!({"user": {"username": "", "email": "x", "password": "p"}});
    let [refused, _] = anonymous
        .twice(Method::POST, "/api/users", "signup-2", Some(bad))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    // reads ignore the header
    let r = anonymous.send(Method::GET, "/api/tags", "x", None).await;
    assert!(!r.headers.contains_key("idempotency-replayed"));
    // a key too long is refused
    let long = "k".repeat(300);
    let login = json!({"user": {"email": "a@b.c", "password": "x"}});
    let s = anonymous.post("/api/users/login", &long, &login).await;
    assert_eq!(s.status, StatusCode::UNPROCESSABLE_ENTITY);
}
