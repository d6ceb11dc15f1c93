use crescendo_testkit::{Answer, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `POST /api/users/login` as `email` with `password`.
pub(crate) async fn log_in(app: &TestApp, email: &str, password: &str) -> Answer {
    let body = json!({"user": {"email": email, "password": password}});
    app.post("/api/users/login", None, body).await
}

/// `PUT /api/user` with `user` as the changes.
async fn update_user(app: &TestApp, token: &str, user: Value) -> Answer {
    app.put("/api/user", Some(token), json!({"user": user}))
        .await
}

/// Whether `viewer` follows `celeb`, as `celeb`'s profile tells `viewer`.
async fn following(app: &TestApp, viewer: Option<&str>) -> Value {
    let p = app.get("/api/profiles/celeb", viewer).await;
    p.json["profile"]["following"].clone()
}

/// The status `GET path` answers with `token`.
pub(crate) async fn get_status(app: &TestApp, path: &str, token: Option<&str>) -> StatusCode {
    app.get(path, token).await.status
}

#[tokio::test]
async fn register_answers_201_with_a_token_and_string_bio_and_image() {
    let app = TestApp::spawn().await;
    let a = app
        .post("/api/users", None, json!({"user": {"username": "Jake_the-1", "email": "Jake@Example.com", "password": "jakejake"}}))
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let u = &a.json["user"];
    assert_eq!(u["username"], "Jake_the-1");
    assert_eq!(u["email"], "jake@example.com");
    assert_eq!(u["bio"], "");
    assert_eq!(u["image"], "");
    let token = u["token"].as_str().unwrap();
    let me = app.get("/api/user", Some(token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["user"]["username"], "Jake_the-1");
}

#[tokio::test]
async fn register_rejects_blank_and_bad_fields_with_422_naming_each() {
    let app = TestApp::spawn().await;
    let a = app.post("/api/users", None, json!({"user": {}})).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body: Vec<&str> = a.json["errors"]["body"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(body.contains(&"username can't be blank"), "{body:?}");
    assert!(body.contains(&"email can't be blank"), "{body:?}");
    assert!(body.contains(&"password can't be blank"), "{body:?}");
    assert_eq!(a.json["errors"]["username"][0], "can't be blank");

    let a = app
        .post(
            "/api/users",
            None,
            json!({"user": {"username": "has space", "email": "nope", "password": "short"}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["username", "email", "password"] {
        assert!(a.json["errors"][field].is_array(), "{field}: {:?}", a.json);
    }
}

#[tokio::test]
async fn a_taken_username_or_email_is_422_naming_it_and_writes_nothing() {
    let app = TestApp::spawn().await;
    app.register("jake").await;
    let a = app.post("/api/users", None, json!({"user": {"username": "JAKE", "email": "other@example.com", "password": "password123"}})).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json["errors"]["username"][0], "has already been taken");
    let a = app.post("/api/users", None, json!({"user": {"username": "other", "email": "jake@example.com", "password": "password123"}})).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json["errors"]["email"][0], "has already been taken");
    // nothing half-written: neither rejected account can sign in or be seen
    let login = log_in(&app, "other@example.com", "password123").await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED);
    let other = get_status(&app, "/api/profiles/other", None).await;
    assert_eq!(other, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn login_works_with_the_right_password_only() {
    let app = TestApp::spawn().await;
    app.register("jake").await;
    let ok = log_in(&app, "JAKE@example.com", "password123").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.json["user"]["token"].is_string());
    for (email, pw) in [
        ("jake@example.com", "wrongpass"),
        ("nobody@example.com", "password123"),
    ] {
        let a = log_in(&app, email, pw).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{email}");
        assert_eq!(a.headers["www-authenticate"], "Token");
        assert!(a.json["errors"]["body"].is_array());
    }
    let blank = log_in(&app, "", "").await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn missing_or_bad_credentials_are_401() {
    let app = TestApp::spawn().await;
    let token = app.register("jake").await;
    let tampered = format!("{}x", token);
    for bad in [None, Some("garbage"), Some(tampered.as_str())] {
        let status = get_status(&app, "/api/user", bad).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    let wrong_scheme = app
        .request(reqwest::Method::GET, "/api/user", None)
        .header("authorization", format!("Basic {token}"));
    assert_eq!(
        TestApp::answer(wrong_scheme.send().await.unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // a bad token on an endpoint where auth is optional is still refused, not ignored
    let optional = get_status(&app, "/api/articles", Some("garbage")).await;
    assert_eq!(optional, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn update_user_changes_settings_and_the_new_password_works() {
    let app = TestApp::spawn().await;
    let token = app.register("jake").await;
    app.register("taken").await;
    let a = update_user(&app, &token, json!({"bio": "I like dogs", "image": "https://img.example/j.png", "username": "jacob", "password": "newpassword"})).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
    assert_eq!(a.json["user"]["bio"], "I like dogs");
    assert_eq!(a.json["user"]["username"], "jacob");
    assert_eq!(
        app.get("/api/profiles/jacob", None).await.json["profile"]["bio"],
        "I like dogs"
    );
    let old = get_status(&app, "/api/profiles/jake", None).await;
    assert_eq!(old, StatusCode::NOT_FOUND, "the old name is free");
    let login = log_in(&app, "jake@example.com", "newpassword").await;
    assert_eq!(login.status, StatusCode::OK);
    // the new password ended the old token; the answer carries a new one
    let old_token = get_status(&app, "/api/user", Some(&token)).await;
    assert_eq!(old_token, StatusCode::UNAUTHORIZED);
    let token = a.json["user"]["token"].as_str().unwrap().to_string();
    let clash = update_user(&app, &token, json!({"email": "taken@example.com"})).await;
    assert_eq!(clash.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(clash.json["errors"]["email"][0], "has already been taken");
    let cleared = update_user(&app, &token, json!({"bio": null})).await;
    assert_eq!(cleared.json["user"]["bio"], "");
    assert_eq!(
        cleared.json["user"]["image"], "https://img.example/j.png",
        "absent fields stay"
    );
    let bad = update_user(&app, &token, json!({"image": "javascript:alert(1)"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn following_is_per_viewer() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("ann").await, app.register("bob").await);
    app.register("celeb").await;
    let f = app
        .post("/api/profiles/celeb/follow", Some(&a), json!({}))
        .await;
    assert_eq!(f.status, StatusCode::OK);
    assert_eq!(f.json["profile"]["following"], true);
    assert_eq!(following(&app, Some(&a)).await, true);
    assert_eq!(following(&app, Some(&b)).await, false);
    assert_eq!(following(&app, None).await, false);
    let u = app.delete("/api/profiles/celeb/follow", Some(&a)).await;
    assert_eq!(u.json["profile"]["following"], false);
    assert_eq!(following(&app, Some(&a)).await, false);
    // whom to follow, as whom, and the status it gets
    let refused = [
        (
            "/api/profiles/nobody/follow",
            Some(&a),
            StatusCode::NOT_FOUND,
        ),
        ("/api/profiles/celeb/follow", None, StatusCode::UNAUTHORIZED),
        (
            "/api/profiles/ann/follow",
            Some(&a),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (path, token, status) in refused {
        let f = app.post(path, token.map(String::as_str), json!({})).await;
        assert_eq!(f.status, status, "{path}");
    }
    let nobody = get_status(&app, "/api/profiles/nobody", None).await;
    assert_eq!(nobody, StatusCode::NOT_FOUND);
}
