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
//! Each page handler loads the session, calls the application, and renders a template or
//! redirects (303) after a successful form. The pages live in one module per resource, each
//! with its own `router()`: `home`, `accounts` (sign up, sign in, sign out), `settings`,
//! `editor`, `article` (an article, its comments, favourites), `profile` (profiles,
//! following) and `uploads` (picture and cover forms). What they share (middleware, the
//! error-to-page mapping, redirects, form helpers) is in `shared`; what every signed-in
//! form post goes through (the sign-in and CSRF checks, the answer after the action) is in
//! `form`.
//!
//! Main items: [`router`], [`WebConfig`].

mod accounts;
mod article;
pub mod assets;
mod editor;
mod form;
mod home;
mod profile;
pub mod session;
mod settings;
mod shared;
mod uploads;
mod views;

use axum::Router;
use axum::routing::get;
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
        .merge(home::router())
        .merge(accounts::router())
        .merge(settings::router())
        .merge(uploads::router(upload_limit))
        .merge(editor::router())
        .merge(article::router())
        .merge(profile::router())
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            shared::page_headers,
        ))
        .with_state(web);
    let assets = Router::new()
        .route("/assets/{name}", get(assets::serve))
        .with_state(assets);
    pages.merge(assets)
}
