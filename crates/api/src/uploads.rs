//! `POST /api/uploads` (multipart field `file`) and `GET /api/uploads/{id}` (the owner's
//! only): images for
//! avatars and article covers. The answer comes at once with `state: "processing"`; a
//! worker makes the variants and the state becomes `ready` (or `failed`, with a `reason`).

use crate::ApiError;
use crate::extract::AuthUser;
use axum::Json;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use crescendo_app::{App, UploadView};
use crescendo_domain::Id;
use serde_json::{Map, Value, json};

fn upload_json(v: &UploadView) -> Value {
    let variants: Map<String, Value> = v
        .variants
        .iter()
        .map(|(w, url)| (w.to_string(), Value::String(url.clone())))
        .collect();
    let mut u = json!({
        "id": v.record.id.as_i64().to_string(),
        "state": v.record.state.as_str(),
        "original": v.original,
        "variants": variants,
        "width": v.record.width,
        "height": v.record.height,
        "contentType": v.record.mime,
    });
    // lossless uploads (PNG, GIF) also have WebP variants; photographs have none
    if !v.webp.is_empty() {
        let webp: Map<String, Value> = v
            .webp
            .iter()
            .map(|(w, url)| (w.to_string(), Value::String(url.clone())))
            .collect();
        u["webp"] = Value::Object(webp);
    }
    if let Some(reason) = &v.record.reason {
        u["reason"] = Value::String(reason.clone());
    }
    json!({ "upload": u })
}

fn multipart_error(e: &MultipartError, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload is larger than {limit} bytes"),
        )
    } else {
        ApiError::status(
            StatusCode::BAD_REQUEST,
            format!("the multipart body cannot be read: {}", e.body_text()),
        )
    }
}

/// `POST /api/uploads`.
pub(crate) async fn create_upload(
    State(app): State<App>,
    AuthUser(user): AuthUser,
    form: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let limit = app.max_upload_bytes();
    let mut form = form.map_err(|_| {
        ApiError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the image as multipart/form-data, in the field `file`",
        )
    })?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error(&e, limit))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let bytes = field
            .bytes()
            .await
            .map_err(|e| multipart_error(&e, limit))?;
        if bytes.len() as u64 > limit {
            return Err(ApiError::status(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the upload is larger than {limit} bytes"),
            ));
        }
        if bytes.is_empty() {
            return Err(ApiError::invalid("file", "is empty"));
        }
        let view = app.create_upload(user, bytes).await?;
        return Ok((StatusCode::CREATED, Json(upload_json(&view))));
    }
    Err(ApiError::invalid(
        "file",
        "is missing: send the image in the multipart field `file`",
    ))
}

/// `GET /api/uploads/{id}`: the owner's only; anyone else gets 404, as for no upload.
pub(crate) async fn get_upload(
    State(app): State<App>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .map(Id::from_i64)
        .ok_or_else(|| ApiError::not_found("upload"))?;
    Ok(Json(upload_json(&app.upload(user, id).await?)))
}
