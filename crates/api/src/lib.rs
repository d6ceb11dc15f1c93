//! The RealWorld ("Conduit") JSON API, mounted under `/api`.
//!
//! Spec: `shared/realworld/openapi.yml` (version 1.1.0). Handlers parse the wire format,
//! call `crescendo-app`, and turn its views into Conduit JSON. Errors map in one place
//! ([`ApiError`]): 422 with `{"errors":{"body":[...], "<field>":[...]}}`, 401 with
//! `WWW-Authenticate: Token`, 403, 404, 413, 503, and an opaque 500.
//!
//! This crate sees only the application layer: no database, cache or broker types.

mod articles;
mod error;
mod extract;
mod idempotency;
mod uploads;
mod users;
mod wire;

pub use articles::articles_json;
pub use error::{ApiError, ErrorReport};

use axum::Router;
use axum::routing::{get, post};
use crescendo_app::App;

/// The `/api` routes (mount with `Router::nest("/api", crescendo_api::router(app))`).
pub fn router(app: App) -> Router {
    // room for the multipart framing around the largest upload
    let upload_limit = usize::try_from(app.max_upload_bytes())
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    // uploads have a larger body limit than the rest: it is set outside their idempotency
    // layer, which reads a body under the limit it finds
    let uploads = Router::new()
        .route("/uploads", post(uploads::create_upload))
        .route("/uploads/{id}", get(uploads::get_upload))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            idempotency::idempotency,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(upload_limit));
    Router::new()
        .route("/users", post(users::register))
        .route("/users/login", post(users::login))
        .route("/user", get(users::current_user).put(users::update_user))
        .route("/profiles/{username}", get(users::get_profile))
        .route(
            "/profiles/{username}/follow",
            post(users::follow_user).delete(users::unfollow_user),
        )
        .route(
            "/articles",
            get(articles::list_articles).post(articles::create_article),
        )
        .route("/articles/feed", get(articles::feed))
        .route(
            "/articles/{slug}",
            get(articles::get_article)
                .put(articles::update_article)
                .delete(articles::delete_article),
        )
        .route(
            "/articles/{slug}/favorite",
            post(articles::favorite).delete(articles::unfavorite),
        )
        .route(
            "/articles/{slug}/comments",
            get(articles::list_comments).post(articles::add_comment),
        )
        .route(
            "/articles/{slug}/comments/{id}",
            axum::routing::delete(articles::delete_comment),
        )
        .route("/tags", get(articles::tags))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        // repeats of a write with the same Idempotency-Key get the first outcome (the server
        // runs every request in the application's consistency scope, around this)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            idempotency::idempotency,
        ))
        // added after the layer above: wrapped by its own copy, under its own limit
        .merge(uploads)
        .with_state(app)
}
