//! Image uploads from the pages: a new profile picture, an article's cover. Each is a
//! multipart form with the CSRF token and one image.

use crate::Web;
use crate::session::Session;
use crate::shared::signed_in;
use crate::shared::{csrf_refused, error_page, failed, problems, redirect};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::response::Response;
use axum::routing::post;
use crescendo_app::{AppError, ArticleInput, UserChangesInput};
use crescendo_domain::Id;
use http::StatusCode;

/// The upload forms' routes; their bodies may be up to `body_limit` bytes.
pub(crate) fn router(body_limit: usize) -> Router<Web> {
    Router::new()
        .route(
            "/settings/picture",
            post(upload_picture).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route(
            "/article/{slug}/cover",
            post(upload_cover).layer(DefaultBodyLimit::max(body_limit)),
        )
}

/// A multipart form with a CSRF token and one image: `(csrf, file bytes)`.
async fn image_form(mut form: Multipart) -> Result<(String, Option<bytes::Bytes>), AppError> {
    let (mut csrf, mut file) = (String::new(), None);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(AppError::invalid("file", "is too large"));
            }
            Err(e) => return Err(AppError::invalid("file", e.body_text())),
        };
        match field.name() {
            Some("csrf") => csrf = field.text().await.unwrap_or_default(),
            Some("file") => {
                let bytes = field.bytes().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        AppError::invalid("file", "is too large")
                    } else {
                        AppError::invalid("file", e.body_text())
                    }
                })?;
                file = Some(bytes).filter(|b| !b.is_empty());
            }
            _ => {}
        }
    }
    Ok((csrf, file))
}

/// Turns an upload error into a page: what was wrong, and a way back.
async fn upload_failed(w: &Web, s: &Session, e: AppError) -> Response {
    match e {
        AppError::Validation(_) => {
            error_page(
                w,
                s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "That image did not work",
                &problems(&e).join(" "),
            )
            .await
        }
        other => failed(w, s, other).await,
    }
}

/// The upload a page's image form sends (signed in, CSRF checked), or the page to answer.
async fn take_upload(
    w: &Web,
    s: &Session,
    user: Id,
    form: Multipart,
) -> Result<crescendo_app::UploadView, Response> {
    let (csrf, file) = match image_form(form).await {
        Ok(f) => f,
        Err(e) => return Err(upload_failed(w, s, e).await),
    };
    if !s.csrf_ok(&csrf) {
        return Err(csrf_refused(w, s).await);
    }
    let Some(file) = file else {
        return Err(upload_failed(
            w,
            s,
            AppError::invalid("file", "is missing: choose an image"),
        )
        .await);
    };
    match w.app.create_upload(user, file).await {
        Ok(u) => Ok(u),
        Err(e) => Err(upload_failed(w, s, e).await),
    }
}

/// Takes the form's upload and gives the URL of its `width` px variant to `apply`, which
/// answers where to go next; a failure of either is answered with [`upload_failed`].
async fn with_variant<Fut>(
    w: &Web,
    s: &Session,
    user: Id,
    form: Multipart,
    width: u32,
    apply: impl FnOnce(String) -> Fut,
) -> Response
where
    Fut: Future<Output = Result<String, AppError>>,
{
    let up = match take_upload(w, s, user, form).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    match apply(up.variant(width)).await {
        Ok(to) => redirect(s, &to),
        Err(e) => upload_failed(w, s, e).await,
    }
}

/// `POST /settings/picture`: uploads an image and makes its 320 px variant the user's picture.
async fn upload_picture(State(w): State<Web>, s: Session, form: Multipart) -> Response {
    let user = signed_in!(s);
    let app = &w.app;
    with_variant(&w, &s, user, form, 320, |image| async move {
        let input = UserChangesInput {
            image: Some(image),
            ..Default::default()
        };
        app.update_user(user, input).await?;
        Ok("/settings".into())
    })
    .await
}

/// `POST /article/{slug}/cover`: uploads an image and makes its 1280 px variant the cover.
async fn upload_cover(
    State(w): State<Web>,
    s: Session,
    Path(slug): Path<String>,
    form: Multipart,
) -> Response {
    let user = signed_in!(s);
    let (app, slug) = (&w.app, &slug);
    with_variant(&w, &s, user, form, 1280, |cover| async move {
        let input = ArticleInput {
            cover_image: Some(cover),
            ..Default::default()
        };
        let a = app.update_article(user, slug, input).await?;
        Ok(format!("/article/{}", a.article.slug))
    })
    .await
}
