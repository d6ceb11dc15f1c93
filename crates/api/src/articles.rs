//! Handlers for articles, favourites, comments and tags (spec tags Articles, Favorites,
//! Comments, Tags).

use crate::ApiError;
use crate::extract::{AuthUser, Body, MaybeUser};
use crate::wire::{self, *};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crescendo_app::{App, ArticleView, ListQuery, Shareable};
use crescendo_domain::{CommentId, Id};
use serde::Deserialize;

/// Query string of list requests; numbers are parsed here so bad ones get a field error.
#[derive(Deserialize)]
pub(crate) struct ListParams {
    tag: Option<String>,
    author: Option<String>,
    favorited: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

fn number(field: &str, v: Option<&str>, default: u32) -> Result<u32, ApiError> {
    match v {
        None | Some("") => Ok(default),
        Some(s) => s
            .parse::<u32>()
            .map_err(|_| ApiError::invalid(field, "must be a whole number from 0 to 4294967295")),
    }
}

fn params(q: Result<Query<ListParams>, QueryRejection>) -> Result<ListQuery, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::status(StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok(ListQuery {
        limit: number("limit", p.limit.as_deref(), 20)?,
        offset: number("offset", p.offset.as_deref(), 0)?,
        tag: p.tag.filter(|t| !t.is_empty()),
        author: p.author.filter(|t| !t.is_empty()),
        favorited: p.favorited.filter(|t| !t.is_empty()),
    })
}

/// A JSON answer from bytes written by hand.
pub(crate) fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The JSON of a list answer: `{"articles":[…],"articlesCount":N}`.
pub fn articles_json(views: &[ArticleView], total: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + views.len() * 640);
    out.extend_from_slice(b"{\"articles\":");
    write_list(&mut out, views, |o, v| write_article(o, v, false));
    out.extend_from_slice(format!(",\"articlesCount\":{total}}}").as_bytes());
    out
}

/// Marks `res` [`Shareable`] when no one is signed in: the same answer for every anonymous
/// reader, which edge caches may then keep (the server decides the headers).
pub(crate) fn shared_if_anonymous(viewer: Option<Id>, mut res: Response) -> Response {
    if viewer.is_none() {
        res.extensions_mut().insert(Shareable);
    }
    res
}

fn many(views: &[ArticleView], total: u64) -> Response {
    json_bytes(StatusCode::OK, articles_json(views, total))
}

fn one(status: StatusCode, v: &ArticleView) -> Response {
    let mut out = Vec::with_capacity(1024 + v.article.body.len());
    out.extend_from_slice(b"{\"article\":");
    write_article(&mut out, v, true);
    out.push(b'}');
    json_bytes(status, out)
}

fn input(b: wire::ArticleInput) -> crescendo_app::ArticleInput {
    crescendo_app::ArticleInput {
        title: b.title,
        description: b.description,
        body: b.body,
        tags: b.tag_list,
        cover_image: b.cover_image,
    }
}

/// `GET /api/articles` (GetArticles): filters `tag`, `author`, `favorited`; `limit`, `offset`.
pub(crate) async fn list_articles(
    State(app): State<App>,
    MaybeUser(viewer): MaybeUser,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (views, total) = app.list_articles(viewer, params(q)?).await?;
    Ok(shared_if_anonymous(viewer, many(&views, total)))
}

/// `GET /api/articles/feed` (GetArticlesFeed).
pub(crate) async fn feed(
    State(app): State<App>,
    AuthUser(id): AuthUser,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let (views, total) = app.feed(id, p.limit, p.offset).await?;
    Ok(many(&views, total))
}

/// `GET /api/articles/{slug}` (GetArticle).
pub(crate) async fn get_article(
    State(app): State<App>,
    MaybeUser(viewer): MaybeUser,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let answer = one(StatusCode::OK, &app.article(viewer, &slug).await?);
    Ok(shared_if_anonymous(viewer, answer))
}

/// `POST /api/articles` (CreateArticle): 201.
pub(crate) async fn create_article(
    State(app): State<App>,
    AuthUser(id): AuthUser,
    Body(b): Body<ArticleInputBody>,
) -> Result<Response, ApiError> {
    Ok(one(
        StatusCode::CREATED,
        &app.create_article(id, input(b.article)).await?,
    ))
}

/// `PUT /api/articles/{slug}` (UpdateArticle): the answer carries the new slug.
pub(crate) async fn update_article(
    State(app): State<App>,
    AuthUser(id): AuthUser,
    Path(slug): Path<String>,
    Body(b): Body<ArticleInputBody>,
) -> Result<Response, ApiError> {
    Ok(one(
        StatusCode::OK,
        &app.update_article(id, &slug, input(b.article)).await?,
    ))
}

/// `DELETE /api/articles/{slug}` (DeleteArticle): 204.
pub(crate) async fn delete_article(
    State(app): State<App>,
    AuthUser(id): AuthUser,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_article(id, &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/articles/{slug}/favorite` (CreateArticleFavorite).
pub(crate) async fn favorite(
    State(app): State<App>,
    AuthUser(id): AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    Ok(one(StatusCode::OK, &app.favorite(id, &slug).await?))
}

/// `DELETE /api/articles/{slug}/favorite` (DeleteArticleFavorite).
pub(crate) async fn unfavorite(
    State(app): State<App>,
    AuthUser(id): AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    Ok(one(StatusCode::OK, &app.unfavorite(id, &slug).await?))
}

/// `GET /api/articles/{slug}/comments` (GetArticleComments).
pub(crate) async fn list_comments(
    State(app): State<App>,
    MaybeUser(viewer): MaybeUser,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let list = app.comments(viewer, &slug).await?;
    let mut out = b"{\"comments\":".to_vec();
    write_list(&mut out, &list, write_comment);
    out.push(b'}');
    Ok(shared_if_anonymous(viewer, json_bytes(StatusCode::OK, out)))
}

/// `POST /api/articles/{slug}/comments` (CreateArticleComment): 200, as the spec says.
pub(crate) async fn add_comment(
    State(app): State<App>,
    AuthUser(id): AuthUser,
    Path(slug): Path<String>,
    Body(b): Body<NewCommentBody>,
) -> Result<Response, ApiError> {
    let c = app
        .add_comment(id, &slug, b.comment.body.as_deref())
        .await?;
    let mut out = b"{\"comment\":".to_vec();
    write_comment(&mut out, &c);
    out.push(b'}');
    Ok(json_bytes(StatusCode::OK, out))
}

/// `DELETE /api/articles/{slug}/comments/{id}` (DeleteArticleComment): 204.
pub(crate) async fn delete_comment(
    State(app): State<App>,
    AuthUser(user): AuthUser,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| ApiError::not_found("comment"))?;
    app.delete_comment(user, &slug, CommentId::from_i64(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/tags` (GetTags): the most used tags.
pub(crate) async fn tags(State(app): State<App>) -> Result<Response, ApiError> {
    let t = app.tags().await?;
    // the same for every reader, signed in or not
    Ok(shared_if_anonymous(
        None,
        Json(TagsBody { tags: &t }).into_response(),
    ))
}
