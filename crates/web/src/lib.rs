//! The web app: server-rendered pages for browsers, served by the same web tier as the API.
//!
//! Pages call the application layer directly (never the HTTP API), render askama templates
//! compiled into the binary, and work with JavaScript switched off: every action is a form
//! that posts and redirects. The script in `assets/app.js` only improves: favourite and
//! follow buttons post in the background and update in place.
//!
//! - Sessions: [`session`] (a signed cookie holding only an ID; the data stored through `App`).
//! - CSRF: every state-changing form carries the session's token; a POST without the right
//!   one is refused with 403.
//! - Sign-in attempts are limited per account and per client address by `App`'s sign-in
//!   throttle (its counts are shared by every node).
//! - Assets: [`assets`] (content-hashed names, cacheable for a year, CDN base URL).
//!
//! Main items: [`router`], [`WebConfig`].

pub mod assets;
mod pages;
pub mod session;
mod views;

use axum::Router;
use axum::routing::{get, post};
use crescendo_app::App;
use std::sync::Arc;

/// How the web app is set up.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Signs session cookies.
    pub keys: session::SessionKeys,
    /// Where pages link assets from (empty: this site; else a CDN origin).
    pub asset_base_url: String,
}

/// What every page handler gets.
#[derive(Clone)]
pub(crate) struct Web {
    pub app: App,
    pub keys: session::SessionKeys,
    pub assets: Arc<assets::Assets>,
}

/// The pages (mount at `/`, beside `/api`).
pub fn router(app: App, cfg: WebConfig) -> Router {
    let assets = Arc::new(assets::Assets::new(&cfg.asset_base_url));
    let upload_limit = usize::try_from(app.max_upload_bytes())
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    let web = Web {
        app: app.clone(),
        keys: cfg.keys,
        assets: Arc::clone(&assets),
    };
    let pages = Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/register", get(pages::register_form).post(pages::register))
        .route("/logout", post(pages::logout))
        .route("/settings", get(pages::settings_form).post(pages::settings))
        .route(
            "/settings/picture",
            post(pages::upload_picture).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/article/{slug}/cover",
            post(pages::upload_cover).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/editor",
            get(pages::new_article_form).post(pages::create_article),
        )
        .route(
            "/editor/{slug}",
            get(pages::edit_article_form).post(pages::update_article),
        )
        .route("/article/{slug}", get(pages::article))
        .route("/article/{slug}/delete", post(pages::delete_article))
        .route("/article/{slug}/favorite", post(pages::favorite))
        .route("/article/{slug}/comments", post(pages::add_comment))
        .route(
            "/article/{slug}/comments/{id}/delete",
            post(pages::delete_comment),
        )
        .route("/profile/{username}", get(pages::profile))
        .route(
            "/profile/{username}/favorites",
            get(pages::profile_favorites),
        )
        .route("/profile/{username}/follow", post(pages::follow))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            pages::page_headers,
        ))
        .with_state(web);
    let assets = Router::new()
        .route("/assets/{name}", get(assets::serve))
        .with_state(assets);
    pages.merge(assets)
}
