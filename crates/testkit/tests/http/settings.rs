//! The settings page asks for the current password before it changes the email or the
//! password, so a session left open (or stolen) cannot take the account over; a name, bio
//! or picture changes without it.

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
