//! Accounts: the sign-up and sign-in forms, signing in (under the app's sign-in throttle,
//! the same as the API's: failures limited per account and client address, and per client
//! address), and signing out. The forms of anonymous visitors carry the token of a signed
//! CSRF cookie rather than a stored session's, so showing them stores nothing.

use crate::Web;
use crate::session::Session;
use crate::shared::sessions_unavailable;
use crate::shared::{Chrome, TokenForm, check_csrf, chrome, failed, html, problems, redirect};
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use crescendo_app::{AppError, ClientAddr};
use crescendo_domain::Id;
use http::StatusCode;
use serde::Deserialize;

/// The routes of signing up, in and out.
pub(crate) fn router() -> Router<Web> {
    Router::new()
        .route("/login", get(auth_form::<false>).post(login))
        .route("/register", get(auth_form::<true>).post(register))
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

/// The fields of the sign-up form; the sign-in form has no username.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AccountForm {
    username: String,
    email: String,
    password: String,
    csrf: String,
}

/// The sign-up (`register`) or sign-in form, filled with `f`'s names and showing `errors`.
async fn auth_page(
    w: &Web,
    mut s: Session,
    register: bool,
    status: StatusCode,
    f: AccountForm,
    errors: Vec<String>,
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
        username: f.username,
        email: f.email,
    };
    html(&s, status, t.render())
}

/// The empty sign-up (`REGISTER`) or sign-in form.
async fn auth_form<const REGISTER: bool>(State(w): State<Web>, s: Session) -> Response {
    let empty = AccountForm::default();
    auth_page(&w, s, REGISTER, StatusCode::OK, empty, Vec::new()).await
}

/// Starts a new session signed in as `user` and goes to the home page.
async fn signed_in_as(w: &Web, mut s: Session, user: Id) -> Response {
    match s.start(&w.app, &w.keys, Some(user)).await {
        Ok(()) => redirect(&s, "/"),
        Err(_) => sessions_unavailable(w, &s).await,
    }
}

async fn login(
    State(w): State<Web>,
    mut s: Session,
    client: Option<Extension<ClientAddr>>,
    Form(f): Form<AccountForm>,
) -> Response {
    s.ensure_anonymous_csrf(&w.keys);
    check_csrf!(w, s, f.csrf);
    let client = client.map_or(ClientAddr::UNKNOWN, |c| c.0);
    match w.app.login(&f.email, &f.password, client).await {
        Ok(user) => signed_in_as(&w, s, user.id).await,
        Err(AppError::Throttled { retry_after }) => {
            let minutes = retry_after.as_secs().div_ceil(60).max(1);
            let msg = format!("too many sign-in attempts: wait {minutes} minutes, then try again");
            let status = StatusCode::TOO_MANY_REQUESTS;
            let mut page = auth_page(&w, s, false, status, f, vec![msg]).await;
            page.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(retry_after.as_secs().max(1)),
            );
            page
        }
        Err(e @ (AppError::Unauthorized | AppError::Validation(_))) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            auth_page(&w, s, false, status, f, problems(&e)).await
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

async fn register(State(w): State<Web>, mut s: Session, Form(f): Form<AccountForm>) -> Response {
    s.ensure_anonymous_csrf(&w.keys);
    check_csrf!(w, s, f.csrf);
    match w.app.register(&f.username, &f.email, &f.password).await {
        Ok(user) => signed_in_as(&w, s, user.id).await,
        Err(e @ (AppError::Validation(_) | AppError::Conflict { .. })) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            auth_page(&w, s, true, status, f, problems(&e)).await
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

async fn logout(State(w): State<Web>, mut s: Session, Form(f): Form<TokenForm>) -> Response {
    check_csrf!(w, s, f.csrf);
    let _ = s.end(&w.app, &w.keys).await;
    redirect(&s, "/")
}
