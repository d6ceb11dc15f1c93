//! An article: its page with comments, deleting it, favouriting it, and adding and deleting
//! comments.

use crate::Web;
use crate::form::{CsrfForm, Posted, answer};
use crate::session::Session;
use crate::shared::toggled;
use crate::shared::{Chrome, ToggleForm, TokenForm, chrome, failed, html, public_if_anonymous};
use crate::views::{self, Card, Person, Remark};
use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use crescendo_app::AppError;
use crescendo_domain::CommentId;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

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

async fn delete_article(Path(slug): Path<String>, p: Posted<TokenForm>) -> Response {
    let done = p.w.app.delete_article(p.user, &slug).await;
    answer(&p.w, &p.s, done.map(|()| "/".into())).await
}

async fn favorite(
    headers: HeaderMap,
    Path(slug): Path<String>,
    Posted { w, s, user, form }: Posted<ToggleForm>,
) -> Response {
    let done = if form.action == "remove" {
        w.app.unfavorite(user, &slug).await
    } else {
        w.app.favorite(user, &slug).await
    };
    let done = done.map(|a| {
        let json = json!({"favorited": a.favorited, "favoritesCount": a.article.favorites_count});
        (json, format!("/article/{}", a.article.slug))
    });
    toggled(&w, &s, &headers, done).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CommentForm {
    body: String,
    csrf: String,
}

impl CsrfForm for CommentForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn add_comment(Path(slug): Path<String>, p: Posted<CommentForm>) -> Response {
    let done = p.w.app.add_comment(p.user, &slug, Some(&p.form.body)).await;
    let to = done.map(|c| format!("/article/{slug}#comment-{}", c.comment.id.as_i64()));
    answer(&p.w, &p.s, to).await
}

async fn delete_comment(
    Path((slug, id)): Path<(String, String)>,
    p: Posted<TokenForm>,
) -> Response {
    let Some(id) = id
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .map(CommentId::from_i64)
    else {
        return failed(&p.w, &p.s, AppError::NotFound("comment")).await;
    };
    let done = p.w.app.delete_comment(p.user, &slug, id).await;
    answer(
        &p.w,
        &p.s,
        done.map(|()| format!("/article/{slug}#comments")),
    )
    .await
}
