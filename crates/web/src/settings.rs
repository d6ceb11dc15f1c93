//! The settings page: the signed-in user's profile, email and password.

use crate::Web;
use crate::form::{CsrfForm, Posted, answer_or};
use crate::session::Session;
use crate::shared::{Chrome, chrome, failed, html, sessions_unavailable, signed_in};
use crate::views::urlencode;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use crescendo_app::{ClientAddr, UserChangesInput};
use http::StatusCode;
use serde::Deserialize;

/// The settings page's routes.
pub(crate) fn router() -> Router<Web> {
    Router::new().route("/settings", get(settings_form).post(settings))
}

/// The settings page, whose fields (but the layout and the problems) are also the form it
/// posts.
#[derive(Template, Deserialize, Default)]
#[template(path = "settings.html")]
#[serde(default)]
struct Settings {
    #[serde(skip)]
    chrome: Chrome,
    #[serde(skip)]
    errors: Vec<String>,
    image: String,
    username: String,
    bio: String,
    email: String,
    password: String,
    /// Needed to change the email or the password.
    current_password: String,
    csrf: String,
}

impl CsrfForm for Settings {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Renders `page` with `status`.
async fn settings_page(w: &Web, s: &Session, status: StatusCode, mut page: Settings) -> Response {
    page.chrome = chrome(w, s, "Settings", "settings").await;
    html(s, status, page.render())
}

async fn settings_form(State(w): State<Web>, s: Session) -> Response {
    let user = signed_in!(s);
    match w.app.current_user(user).await {
        Ok(u) => {
            let page = Settings {
                image: u.image,
                username: u.username,
                bio: u.bio,
                email: u.email,
                ..Settings::default()
            };
            settings_page(&w, &s, StatusCode::OK, page).await
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

async fn settings(
    client: Option<Extension<ClientAddr>>,
    Posted {
        w,
        mut s,
        user,
        form,
    }: Posted<Settings>,
) -> Response {
    let new_password = !form.password.is_empty();
    let input = UserChangesInput {
        email: Some(form.email.clone()),
        username: Some(form.username.clone()),
        password: Some(form.password.clone()).filter(|p| !p.is_empty()),
        bio: Some(form.bio.clone()),
        image: Some(form.image.clone()),
    };
    let client = client.map_or(ClientAddr::UNKNOWN, |c| c.0);
    let done = w
        .app
        .update_user_confirmed(user, input, &form.current_password, client)
        .await;
    // the change ended every session begun under the old password: this one starts afresh
    if new_password && done.is_ok() && s.start(&w.app, &w.keys, Some(user)).await.is_err() {
        return sessions_unavailable(&w, &s).await;
    }
    let to = done.map(|u| format!("/profile/{}", urlencode(&u.username)));
    answer_or(&w, &s, to, |errors| {
        // the passwords typed are not shown again
        let page = Settings {
            errors,
            password: String::new(),
            current_password: String::new(),
            ..form
        };
        settings_page(&w, &s, StatusCode::UNPROCESSABLE_ENTITY, page)
    })
    .await
}
