//! The editor: writing a new article and changing one's own.

use crate::Web;
use crate::session::Session;
use crate::shared::{Chrome, chrome, failed, html, problems, redirect};
use crate::shared::{check_csrf, signed_in};
use crate::views;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use crescendo_app::{AppError, ArticleInput};
use http::StatusCode;
use serde::Deserialize;

/// The editor's routes.
pub(crate) fn router() -> Router<Web> {
    Router::new()
        .route("/editor", get(new_article_form).post(create_article))
        .route(
            "/editor/{slug}",
            get(edit_article_form).post(update_article),
        )
}

#[derive(Template)]
#[template(path = "editor.html")]
struct Editor {
    chrome: Chrome,
    errors: Vec<String>,
    /// Where the form posts.
    action: String,
    title: String,
    description: String,
    body: String,
    tags: String,
    cover: String,
}

#[derive(Deserialize)]
struct ArticleForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    cover: String,
    #[serde(default)]
    csrf: String,
}

impl ArticleForm {
    fn input(&self) -> ArticleInput {
        ArticleInput {
            title: Some(self.title.clone()),
            description: Some(self.description.clone()),
            body: Some(self.body.clone()),
            tags: Some(views::split_tags(&self.tags)),
            cover_image: Some(self.cover.clone()),
        }
    }
}

async fn editor_page(
    w: &Web,
    s: &Session,
    status: StatusCode,
    action: String,
    f: ArticleForm,
    errors: Vec<String>,
) -> Response {
    let t = Editor {
        chrome: chrome(w, s, "Editor", "editor").await,
        errors,
        action,
        title: f.title,
        description: f.description,
        body: f.body,
        tags: f.tags,
        cover: f.cover,
    };
    html(s, status, t.render())
}

async fn new_article_form(State(w): State<Web>, s: Session) -> Response {
    signed_in!(s);
    let empty = ArticleForm {
        title: String::new(),
        description: String::new(),
        body: String::new(),
        tags: String::new(),
        cover: String::new(),
        csrf: String::new(),
    };
    editor_page(&w, &s, StatusCode::OK, "/editor".into(), empty, Vec::new()).await
}

async fn create_article(State(w): State<Web>, s: Session, Form(f): Form<ArticleForm>) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    match w.app.create_article(user, f.input()).await {
        Ok(a) => redirect(&s, &format!("/article/{}", a.article.slug)),
        Err(e @ AppError::Validation(_)) => {
            editor_page(
                &w,
                &s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "/editor".into(),
                f,
                problems(&e),
            )
            .await
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

async fn edit_article_form(State(w): State<Web>, s: Session, Path(slug): Path<String>) -> Response {
    let user = signed_in!(s);
    let a = match w.app.article(Some(user), &slug).await {
        Ok(a) => a,
        Err(e) => return failed(&w, &s, e).await,
    };
    if a.article.author_id != user {
        return failed(&w, &s, AppError::Forbidden).await;
    }
    let f = ArticleForm {
        title: a.article.title.clone(),
        description: a.article.description.clone(),
        body: a.article.body.clone(),
        tags: a.article.tags.join(" "),
        cover: a.article.cover_image.clone(),
        csrf: String::new(),
    };
    editor_page(
        &w,
        &s,
        StatusCode::OK,
        format!("/editor/{}", a.article.slug),
        f,
        Vec::new(),
    )
    .await
}

async fn update_article(
    State(w): State<Web>,
    s: Session,
    Path(slug): Path<String>,
    Form(f): Form<ArticleForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    match w.app.update_article(user, &slug, f.input()).await {
        Ok(a) => redirect(&s, &format!("/article/{}", a.article.slug)),
        Err(e @ AppError::Validation(_)) => {
            editor_page(
                &w,
                &s,
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("/editor/{slug}"),
                f,
                problems(&e),
            )
            .await
        }
        Err(e) => failed(&w, &s, e).await,
    }
}
