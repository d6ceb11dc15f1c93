//! The settings page asks for the current password before it changes the email or the
//! password, so a session left open (or stolen) cannot take the account over; a name, bio
//! or picture changes without it. A password change, on the page or through the API, ends
//! every token and session issued before it.

use crate::web::sign_in_page;
use crescendo_testkit::{Browser, TestApp};
use reqwest::StatusCode;
use serde_json::json;

/// Posts the settings form of `b` (signed in as `sam`) with `email`, `password` and
/// `current`; returns the status and the page.
async fn post_settings(
    b: &mut Browser,
    (email, password, current): (&str, &str, &str),
) -> (StatusCode, String) {
    let csrf = b.csrf_from("/settings").await;
    let p = b
        .post(
            "/settings",
            &[
                ("username", "sam"),
                ("bio", "still sam"),
                ("email", email),
                ("password", password),
                ("current_password", current),
                ("csrf", &csrf),
            ],
        )
        .await;
    (p.status, p.body)
}

/// The status of an API sign-in with `email` and `password`.
pub(crate) async fn sign_in(app: &TestApp, email: &str, password: &str) -> StatusCode {
    let body = json!({"user": {"email": email, "password": password}});
    app.post("/api/users/login", None, body).await.status
}

#[tokio::test]
async fn a_new_password_or_email_takes_the_current_password_and_nothing_else_does() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    b.sign_up("sam").await;
    let (email, old) = ("sam@example.com", "password123");

    // a bio alone needs no password
    assert_eq!(
        post_settings(&mut b, (email, "", "")).await.0,
        StatusCode::SEE_OTHER
    );

    // a new password without the current one, or with a wrong one, is refused
    for current in ["", "not-my-password"] {
        let (status, page) = post_settings(&mut b, (email, "brand-new-pass", current)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
        assert!(page.contains("current password"), "{page}");
        assert!(
            !page.contains("brand-new-pass"),
            "the typed password is not shown again"
        );
    }
    assert_eq!(sign_in(&app, email, old).await, StatusCode::OK, "unchanged");

    // …and so is a new email
    let (status, page) = post_settings(&mut b, ("sam2@example.com", "", "")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert_eq!(
        sign_in(&app, "sam2@example.com", old).await,
        StatusCode::UNAUTHORIZED
    );

    // with the current password both change
    let (status, page) = post_settings(&mut b, ("sam2@example.com", "brand-new-pass", old)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    assert_eq!(
        sign_in(&app, "sam2@example.com", "brand-new-pass").await,
        StatusCode::OK
    );
    assert_eq!(sign_in(&app, email, old).await, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Whether `b` is signed in: its settings page shows rather than sending it to sign in.
async fn signed_in(b: &mut Browser) -> bool {
    b.get("/settings").await.status == StatusCode::OK
}

#[tokio::test]
async fn a_password_change_ends_older_tokens_and_sessions_and_nothing_else_does() {
    let app = TestApp::spawn().await;
    let token = app.register("pat").await;
    let email = "pat@example.com";
    let user = |t: &str| {
        let t = t.to_string();
        let app = &app;
        async move { app.get("/api/user", Some(&t)).await.status }
    };
    let put = |body: serde_json::Value, t: String| {
        let app = &app;
        async move { app.put("/api/user", Some(&t), body).await }
    };

    // a browser signed in through the page, beside the API token
    let mut other = Browser::new(&app);
    let csrf = other.csrf_from("/login").await;
    let page = sign_in_page(&mut other, email, "password123", &csrf).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(signed_in(&mut other).await);

    // a new bio ends nothing
    let bio = put(json!({"user": {"bio": "hi"}}), token.clone()).await;
    assert_eq!(bio.status, StatusCode::OK, "{}", bio.json);
    assert_eq!(user(&token).await, StatusCode::OK);
    assert!(signed_in(&mut other).await);

    // a new password through the API: its answer's token works, every older one does not
    let changed = put(json!({"user": {"password": "second-pass"}}), token.clone()).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.json);
    let fresh = changed.json["user"]["token"].as_str().unwrap().to_string();
    assert_eq!(user(&fresh).await, StatusCode::OK);
    let old = app.get("/api/user", Some(&token)).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.json);
    assert!(old.json["errors"].is_object(), "{}", old.json);
    assert!(!signed_in(&mut other).await, "the older session is ended");

    // a new password on the page: that browser stays signed in, the API token ends
    let mut b = Browser::new(&app);
    let csrf = b.csrf_from("/login").await;
    let page = sign_in_page(&mut b, email, "second-pass", &csrf).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let csrf = b.csrf_from("/settings").await;
    let fields = [
        ("username", "pat"),
        ("bio", "hi"),
        ("email", email),
        ("password", "third-pass"),
        ("current_password", "second-pass"),
        ("csrf", csrf.as_str()),
    ];
    let page = b.post("/settings", &fields).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(
        signed_in(&mut b).await,
        "the browser that changed it stays in"
    );
    assert_eq!(user(&fresh).await, StatusCode::UNAUTHORIZED);
    app.stop().await;
}
