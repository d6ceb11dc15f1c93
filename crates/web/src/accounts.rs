//! Accounts: the sign-up and sign-in forms, signing in (under the app's sign-in throttle,
//! the same as the API's: failures limited per account and client address, and per client
//! address), and signing out. The forms of anonymous visitors carry the token of a signed
//! CSRF cookie rather than a stored session's, so showing them stores nothing.

use crate::Web;
use crate::session::Session;
use crate::shared::{
    Chrome, TokenForm, check_csrf, chrome, error_page, failed, html, problems, redirect,
};
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use crescendo_app::{AppError, ClientAddr};
use http::StatusCode;
use serde::Deserialize;

/// The routes of signing up, in and out.
pub(crate) fn router() -> Router<Web> {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/register", get(register_form).post(register))
        .route("/logout", post(logout))
}

#[derive(Template)]
#[template(path = "auth.html")]
struct Auth {
    chrome: Chrome,
    register: bool,
    errors: Vec<String>,
    username: String,
    email: String,
}

async fn auth_page(
    w: &Web,
    mut s: Session,
    register: bool,
    status: StatusCode,
    errors: Vec<String>,
    username: String,
    email: String,
) -> Response {
    s.ensure_anonymous_csrf(&w.keys);
    let (title, here) = if register {
        ("Sign up", "register")
    } else {
        ("Sign in", "login")
    };
    let t = Auth {
        chrome: chrome(w, &s, title, here).await,
        register,
        errors,
        username,
        email,
    };
    html(&s, status, t.render())
}

async fn login_form(State(w): State<Web>, s: Session) -> Response {
    auth_page(
        &w,
        s,
        false,
        StatusCode::OK,
        Vec::new(),
        String::new(),
        String::new(),
    )
    .await
}

async fn register_form(State(w): State<Web>, s: Session) -> Response {
    auth_page(
        &w,
        s,
        true,
        StatusCode::OK,
        Vec::new(),
        String::new(),
        String::new(),
    )
    .await
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(w): State<Web>,
    mut s: Session,
    client: Option<Extension<ClientAddr>>,
    Form(f): Form<LoginForm>,
) -> Response {
    s.ensure_anonymous_csrf(&w.keys);
    check_csrf!(w, s, f.csrf);
    let client = client.map_or(ClientAddr::UNKNOWN, |c| c.0);
    match w.app.login(&f.email, &f.password, client).await {
        Ok(user) => match s.start(&w.app, &w.keys, Some(user.id)).await {
            Ok(()) => redirect(&s, "/"),
            Err(_) => {
                error_page(
                    &w,
                    &s,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again in a moment",
                    "Sessions are unavailable.",
                )
                .await
            }
        },
        Err(AppError::Throttled { retry_after }) => {
            let minutes = retry_after.as_secs().div_ceil(60).max(1);
            let msg = format!("too many sign-in attempts: wait {minutes} minutes, then try again");
            let mut page = auth_page(
                &w,
                s,
                false,
                StatusCode::TOO_MANY_REQUESTS,
                vec![msg],
                String::new(),
                f.email,
            )
            .await;
            page.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(retry_after.as_secs().max(1)),
            );
            page
        }
        Err(e @ (AppError::Unauthorized | AppError::Validation(_))) => {
            auth_page(
                &w,
                s,
                false,
                StatusCode::UNPROCESSABLE_ENTITY,
                problems(&e),
                String::new(),
                f.email,
            )
            .await
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

#[derive(Deserialize)]
struct RegisterForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn register(State(w): State<Web>, mut s: Session, Form(f): Form<RegisterForm>) -> Response {
    s.ensure_anonymous_csrf(&w.keys);
    check_csrf!(w, s, f.csrf);
    match w.app.register(&f.username, &f.email, &f.password).await {
        Ok(user) => match s.start(&w.app, &w.keys, Some(user.id)).await {
            Ok(()) => redirect(&s, "/"),
            Err(_) => {
                error_page(
                    &w,
                    &s,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again in a moment",
                    "Sessions are unavailable.",
                )
                .await
            }
        },
        Err(e @ (AppError::Validation(_) | AppError::Conflict { .. })) => {
            auth_page(
                &w,
                s,
                true,
                StatusCode::UNPROCESSABLE_ENTITY,
                problems(&e),
                f.username,
                f.email,
            )
            .await
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

async fn logout(State(w): State<Web>, mut s: Session, Form(f): Form<TokenForm>) -> Response {
    check_csrf!(w, s, f.csrf);
    let _ = s.end(&w.app, &w.keys).await;
    redirect(&s, "/")
}
