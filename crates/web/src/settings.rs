//! The settings page: the signed-in user's profile, email and password.

use crate::Web;
use crate::session::Session;
use crate::shared::{Chrome, chrome, failed, html, problems, redirect};
use crate::shared::{check_csrf, signed_in};
use crate::views::urlencode;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use crescendo_app::{AppError, UserChangesInput};
use http::StatusCode;
use serde::Deserialize;

/// The settings page's routes.
pub(crate) fn router() -> Router<Web> {
    Router::new().route("/settings", get(settings_form).post(settings))
}

#[derive(Template)]
#[template(path = "settings.html")]
struct Settings {
    chrome: Chrome,
    errors: Vec<String>,
    image: String,
    username: String,
    bio: String,
    email: String,
}

async fn settings_form(State(w): State<Web>, s: Session) -> Response {
    let user = signed_in!(s);
    match w.app.current_user(user).await {
        Ok(u) => {
            let t = Settings {
                chrome: chrome(&w, &s, "Settings", "settings").await,
                errors: Vec::new(),
                image: u.image,
                username: u.username,
                bio: u.bio,
                email: u.email,
            };
            html(&s, StatusCode::OK, t.render())
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

#[derive(Deserialize)]
struct SettingsForm {
    #[serde(default)]
    image: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    bio: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn settings(State(w): State<Web>, s: Session, Form(f): Form<SettingsForm>) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    let input = UserChangesInput {
        email: Some(f.email.clone()),
        username: Some(f.username.clone()),
        password: Some(f.password.clone()).filter(|p| !p.is_empty()),
        bio: Some(f.bio.clone()),
        image: Some(f.image.clone()),
    };
    match w.app.update_user(user, input).await {
        Ok(u) => redirect(&s, &format!("/profile/{}", urlencode(&u.username))),
        Err(e @ (AppError::Validation(_) | AppError::Conflict { .. })) => {
            let t = Settings {
                chrome: chrome(&w, &s, "Settings", "settings").await,
                errors: problems(&e),
                image: f.image,
                username: f.username,
                bio: f.bio,
                email: f.email,
            };
            html(&s, StatusCode::UNPROCESSABLE_ENTITY, t.render())
        }
        Err(e) => failed(&w, &s, e).await,
    }
}
