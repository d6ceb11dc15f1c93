//! An article: its page with comments, deleting it, favouriting it, and adding and deleting
//! comments.

use crate::Web;
use crate::session::Session;
use crate::shared::{
    Chrome, ToggleForm, TokenForm, chrome, failed, html, public_if_anonymous, redirect, wants_json,
};
use crate::shared::{check_csrf, signed_in};
use crate::views::{self, Card, Person, Remark};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use crescendo_app::AppError;
use crescendo_domain::CommentId;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

/// An article's routes.
pub(crate) fn router() -> Router<Web> {
    Router::new()
        .route("/article/{slug}", get(article))
        .route("/article/{slug}/delete", post(delete_article))
        .route("/article/{slug}/favorite", post(favorite))
        .route("/article/{slug}/comments", post(add_comment))
        .route("/article/{slug}/comments/{id}/delete", post(delete_comment))
}

#[derive(Template)]
#[template(path = "article.html")]
struct ArticlePage {
    chrome: Chrome,
    card: Card,
    body_html: String,
    author: Person,
    mine: bool,
    comments: Vec<Remark>,
}

async fn article(State(w): State<Web>, mut s: Session, Path(slug): Path<String>) -> Response {
    let a = match w.app.article(s.user, &slug).await {
        Ok(a) => a,
        Err(e) => return failed(&w, &s, e).await,
    };
    let comments = match w.app.comments(s.user, &slug).await {
        Ok(c) => c,
        Err(e) => return failed(&w, &s, e).await,
    };
    if s.user.is_some() {
        let _ = s.ensure(&w.app, &w.keys).await;
    }
    let chrome = chrome(&w, &s, a.article.title.clone(), "").await;
    let viewer = chrome.user.clone();
    let t = ArticlePage {
        card: Card::from(&a),
        body_html: views::markdown(&a.article.body),
        author: Person::from(&a.author),
        mine: s.user == Some(a.article.author_id),
        comments: comments
            .iter()
            .map(|c| Remark::new(c, viewer.as_deref()))
            .collect(),
        chrome,
    };
    public_if_anonymous(&s, html(&s, StatusCode::OK, t.render()))
}

async fn delete_article(
    State(w): State<Web>,
    s: Session,
    Path(slug): Path<String>,
    Form(f): Form<TokenForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    match w.app.delete_article(user, &slug).await {
        Ok(()) => redirect(&s, "/"),
        Err(e) => failed(&w, &s, e).await,
    }
}

async fn favorite(
    State(w): State<Web>,
    s: Session,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(f): Form<ToggleForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    let done = if f.action == "remove" {
        w.app.unfavorite(user, &slug).await
    } else {
        w.app.favorite(user, &slug).await
    };
    match done {
        Ok(a) if wants_json(&headers) => {
            axum::Json(serde_json::json!({"favorited": a.favorited, "favoritesCount": a.article.favorites_count})).into_response()
        }
        Ok(a) => redirect(&s, &format!("/article/{}", a.article.slug)),
        Err(e) => failed(&w, &s, e).await,
    }
}

#[derive(Deserialize)]
struct CommentForm {
    #[serde(default)]
    body: String,
    #[serde(default)]
    csrf: String,
}

async fn add_comment(
    State(w): State<Web>,
    s: Session,
    Path(slug): Path<String>,
    Form(f): Form<CommentForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    match w.app.add_comment(user, &slug, Some(&f.body)).await {
        Ok(c) => redirect(
            &s,
            &format!("/article/{slug}#comment-{}", c.comment.id.as_i64()),
        ),
        Err(e) => failed(&w, &s, e).await,
    }
}

async fn delete_comment(
    State(w): State<Web>,
    s: Session,
    Path((slug, id)): Path<(String, String)>,
    Form(f): Form<TokenForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    let Some(id) = id
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .map(CommentId::from_i64)
    else {
        return failed(&w, &s, AppError::NotFound("comment")).await;
    };
    match w.app.delete_comment(user, &slug, id).await {
        Ok(()) => redirect(&s, &format!("/article/{slug}#comments")),
        Err(e) => failed(&w, &s, e).await,
    }
}
