//! Anonymous visitors leave no state on the server: the sign-in and sign-up forms carry the
//! token of a signed CSRF cookie instead of a stored session's, a session is stored only at
//! sign-in, and the in-process session store keeps at most `sessions.max_entries` entries.

use crescendo_testkit::{Browser, TestApp};
use reqwest::StatusCode;

/// How many entries the server's in-process `Sessions` store holds.
async fn entries(app: &TestApp) -> u64 {
    app.app
        .session_store_entries()
        .await
        .expect("store reachable")
        .expect("the in-process store counts its entries")
}

/// A client that keeps no cookies and does not follow redirects.
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The `name=value` of the `Set-Cookie` header for cookie `name`, if the page sets one.
fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_string())
        .find(|pair| pair.starts_with(&format!("{name}=")))
}

#[tokio::test]
async fn showing_the_sign_in_and_sign_up_forms_stores_nothing() {
    let app = TestApp::spawn().await;
    let before = entries(&app).await;
    let client = bare_client();
    for i in 0..200 {
        let path = if i % 2 == 0 { "/login" } else { "/register" };
        let res = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(
        entries(&app).await,
        before,
        "200 anonymous form views store nothing"
    );
    let res = client.get(app.url("/login")).send().await.unwrap();
    let cookie = set_cookie(res.headers(), "crescendo_csrf").expect("a signed CSRF cookie");
    assert!(
        set_cookie(res.headers(), "crescendo_sid").is_none(),
        "no session cookie before sign-in"
    );
    let set = res.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"),
        "{set}: {cookie}"
    );

    let mut b = Browser::new(&app);
    b.sign_up("ann").await;
    assert!(
        entries(&app).await > before,
        "signing up stores the session"
    );
    assert!(
        b.get("/settings")
            .await
            .body
            .contains("value=\"ann@example.com\""),
        "and it signs the browser in"
    );
}

#[tokio::test]
async fn anonymous_forms_need_the_signed_cookie_and_its_token() {
    let app = TestApp::spawn().await;
    app.register("bea").await;
    let client = bare_client();
    let form = client.get(app.url("/login")).send().await.unwrap();
    let cookie = set_cookie(form.headers(), "crescendo_csrf").expect("a signed CSRF cookie");
    let body = form.text().await.unwrap();
    let at = body.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    let token = body[at..at + body[at..].find('"').unwrap()].to_string();
    assert!(
        cookie.starts_with(&format!("crescendo_csrf={token}.")),
        "the form carries the cookie's token"
    );
    let (_, mac) = cookie.split_once('.').unwrap();
    let another = "A".repeat(token.len());
    let sign_in = |cookie: Option<String>, token: String| {
        let mut r = client
            .post(app.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "email=bea%40example.com&password=password123&csrf={}",
                token
            ));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    let refused = [
        (None, token.clone(), "without the cookie"),
        (Some(cookie.clone()), String::new(), "without the token"),
        (Some(cookie.clone()), another.clone(), "with another token"),
        (
            Some(format!("crescendo_csrf={another}.{mac}")),
            another.clone(),
            "with a forged cookie",
        ),
    ];
    for (cookie, token, what) in refused {
        let res = sign_in(cookie, token).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{what}");
        assert!(
            set_cookie(res.headers(), "crescendo_sid").is_none(),
            "{what}: not signed in"
        );
        assert!(res.text().await.unwrap().contains("Form expired"), "{what}");
    }
    let ok = sign_in(Some(cookie), token).await.unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookie(ok.headers(), "crescendo_sid").is_some(),
        "signed in"
    );

    // sign-up through the form, as a browser does
    let mut b = Browser::new(&app);
    b.sign_up("cal").await;
}

#[tokio::test]
async fn the_in_process_session_store_keeps_at_most_its_bound() {
    const MAX: u64 = 16;
    let app = TestApp::spawn_with(|s| s.sessions.max_entries = MAX as usize).await;
    app.register("dan").await;
    let mut browsers = Vec::new();
    for _ in 0..MAX * 3 {
        let mut b = Browser::new(&app);
        let csrf = b.csrf_from("/login").await;
        let p = super::web::sign_in_page(&mut b, "dan@example.com", "password123", &csrf).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        browsers.push(b);
        let n = entries(&app).await;
        assert!(n <= MAX, "{n} entries in a store bounded to {MAX}");
    }
    for b in browsers.iter_mut().rev().take(4) {
        assert!(
            b.get("/settings")
                .await
                .body
                .contains("value=\"dan@example.com\""),
            "the latest sessions are kept"
        );
    }
    let first = browsers[0].get("/settings").await;
    assert_eq!(
        first.location.as_deref(),
        Some("/login"),
        "the least recently used session made room"
    );
}

#[tokio::test]
async fn anonymous_writes_that_need_an_account_keep_no_idempotency_record() {
    let app = TestApp::spawn().await;
    let before = entries(&app).await;
    let post = |key: String, title: &str| {
        app.request(reqwest::Method::POST, "/api/articles", None)
            .header("idempotency-key", key)
            .json(
                &serde_json::json!({"article": {"title": title, "description": "d", "body": "b"}}),
            )
            .send()
    };
    for i in 0..100 {
        let res = post(format!("anon-{i}"), "A").await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        entries(&app).await,
        before,
        "no records for anonymous writes"
    );
    // the same key on another body is no conflict: nothing was recorded
    let res = post("anon-0".into(), "B").await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(!res.headers().contains_key("idempotency-replayed"));

    // sign-up, the write that needs no account, still keeps its record
    let join = || {
        app.request(reqwest::Method::POST, "/api/users", None)
            .header("idempotency-key", "join")
            .json(&serde_json::json!({"user": {"username": "eve", "email": "eve@example.com", "password": "password123"}}))
            .send()
    };
    let (a, b) = (join().await.unwrap(), join().await.unwrap());
    assert_eq!(
        (a.status(), b.status()),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(b.headers()["idempotency-replayed"], "true");
}
