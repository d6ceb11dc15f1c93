//! The editor: writing a new article and changing one's own.

use crate::Web;
use crate::form::{CsrfForm, Posted, answer_or};
use crate::session::Session;
use crate::shared::{Chrome, chrome, failed, html, signed_in};
use crate::views;
use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use crescendo_app::{AppError, AppResult, ArticleInput, ArticleView};
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

/// The editor page, whose fields (but the layout, the problems and the form's address) are
/// also the form it posts.
#[derive(Template, Deserialize, Default)]
#[template(path = "editor.html")]
#[serde(default)]
struct Editor {
    #[serde(skip)]
    chrome: Chrome,
    #[serde(skip)]
    errors: Vec<String>,
    /// Where the form posts.
    #[serde(skip)]
    action: String,
    title: String,
    description: String,
    body: String,
    tags: String,
    cover: String,
    csrf: String,
}

impl CsrfForm for Editor {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl Editor {
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

/// Renders `page`, whose form posts to `action`, with `status`.
async fn editor_page(
    w: &Web,
    s: &Session,
    status: StatusCode,
    action: String,
    page: Editor,
) -> Response {
    let page = Editor {
        chrome: chrome(w, s, "Editor", "editor").await,
        action,
        ..page
    };
    html(s, status, page.render())
}

async fn new_article_form(State(w): State<Web>, s: Session) -> Response {
    signed_in!(s);
    let empty = Editor::default();
    editor_page(&w, &s, StatusCode::OK, "/editor".into(), empty).await
}

/// After saving an article: its page, or the editor again (posting to `action`) with the
/// problems.
async fn saved(
    w: &Web,
    s: &Session,
    done: AppResult<ArticleView>,
    action: String,
    form: Editor,
) -> Response {
    let to = done.map(|a| format!("/article/{}", a.article.slug));
    answer_or(w, s, to, |errors| {
        let page = Editor { errors, ..form };
        editor_page(w, s, StatusCode::UNPROCESSABLE_ENTITY, action, page)
    })
    .await
}

async fn create_article(Posted { w, s, user, form }: Posted<Editor>) -> Response {
    let done = w.app.create_article(user, form.input()).await;
    saved(&w, &s, done, "/editor".into(), form).await
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
    let f = Editor {
        title: a.article.title.clone(),
        description: a.article.description.clone(),
        body: a.article.body.clone(),
        tags: a.article.tags.join(" "),
        cover: a.article.cover_image.clone(),
        ..Editor::default()
    };
    let action = format!("/editor/{}", a.article.slug);
    editor_page(&w, &s, StatusCode::OK, action, f).await
}

async fn update_article(
    Path(slug): Path<String>,
    Posted { w, s, user, form }: Posted<Editor>,
) -> Response {
    let done = w.app.update_article(user, &slug, form.input()).await;
    saved(&w, &s, done, format!("/editor/{slug}"), form).await
}
