//! Extractors: the signed-in user from `Authorization: Token <jwt>`, and JSON bodies whose
//! rejections answer in the API's error format.

use crate::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use crescendo_app::App;
use crescendo_domain::Id;
use serde::de::DeserializeOwned;

fn token(parts: &Parts) -> Result<Option<&str>, ApiError> {
    bearer(&parts.headers)
}

/// The token of `Authorization: Token <jwt>` (or `Bearer`), if the header is there; 401 for
/// another scheme or a malformed header.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::unauthorized())?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or_else(ApiError::unauthorized)?;
    if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
        Ok(Some(token.trim()))
    } else {
        Err(ApiError::unauthorized())
    }
}

/// The signed-in user; 401 without valid credentials.
pub struct AuthUser(pub Id);

impl FromRequestParts<App> for AuthUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let t = token(parts)?.ok_or_else(ApiError::unauthorized)?;
        Ok(AuthUser(app.authenticate(t).await?))
    }
}

/// The signed-in user if any; 401 for credentials that are given but invalid.
pub struct MaybeUser(pub Option<Id>);

impl FromRequestParts<App> for MaybeUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        match token(parts)? {
            Some(t) => Ok(MaybeUser(Some(app.authenticate(t).await?))),
            None => Ok(MaybeUser(None)),
        }
    }
}

/// A JSON body. Malformed JSON is 400, a wrong shape 422, a wrong content type 415, an
/// oversized body 413, each in the API's error envelope.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::status(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("request body has the wrong shape: {}", e.body_text()),
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::status(
                StatusCode::BAD_REQUEST,
                format!("request body is not valid JSON: {}", e.body_text()),
            )),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request body must be JSON with Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(e)) => {
                let status = e.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    Err(ApiError::status(status, "request body is too large"))
                } else {
                    Err(ApiError::status(status, "request body could not be read"))
                }
            }
            Err(e) => Err(ApiError::status(e.status(), e.body_text())),
        }
    }
}
