//! `ApiError`: the one place where failures become HTTP answers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crescendo_app::AppError;
use serde_json::{Map, Value, json};

/// A failure as the API answers it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    /// Messages for the spec's `errors.body` list.
    body: Vec<String>,
    /// Per-field messages, added beside `body`.
    fields: Vec<(String, String)>,
    /// The cause, for the log line (never sent).
    cause: Option<String>,
    /// Seconds for a `Retry-After` header (429).
    retry_after: Option<u64>,
}

/// The cause of an error response, left in the response's extensions for the logging
/// middleware (which logs it once, with the request ID).
#[derive(Clone, Debug)]
pub struct ErrorReport(pub String);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self {
            status,
            body: vec![msg.into()],
            fields: Vec::new(),
            cause: None,
            retry_after: None,
        }
    }

    /// 404 naming what was not found.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    }

    /// 422 for one field.
    pub fn invalid(field: &str, problem: &str) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: vec![format!("{field} {problem}")],
            fields: vec![(field.to_string(), problem.to_string())],
            cause: None,
            retry_after: None,
        }
    }

    /// An error with this status and message.
    pub fn status(status: StatusCode, msg: impl Into<String>) -> Self {
        Self::new(status, msg)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "missing or invalid credentials")
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Validation(errs) => Self {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: errs.0.iter().map(ToString::to_string).collect(),
                fields: errs
                    .0
                    .into_iter()
                    .map(|f| (f.field.to_string(), f.problem))
                    .collect(),
                cause: None,
                retry_after: None,
            },
            AppError::Unauthorized => Self::unauthorized(),
            AppError::Forbidden => Self::new(
                StatusCode::FORBIDDEN,
                "you may not change what another user wrote",
            ),
            AppError::NotFound(what) => Self::not_found(what),
            AppError::Conflict { field } => Self::invalid(field, "has already been taken"),
            AppError::UnsupportedMedia(why) => Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, why),
            AppError::Throttled { retry_after } => Self {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many failed sign-ins: try again in {} seconds",
                        retry_after.as_secs().max(1)
                    ),
                )
            },
            AppError::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service unavailable, try again shortly",
            ),
            AppError::Internal(cause) => Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: vec!["internal error".into()],
                fields: Vec::new(),
                cause: Some(format!("{cause:#}")),
                retry_after: None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut errors = Map::new();
        errors.insert("body".into(), json!(self.body));
        for (field, problem) in self.fields {
            if field == "body" {
                continue; // `body` is the spec's list of messages; a field named body is in it
            }
            match errors.entry(field).or_insert_with(|| json!([])) {
                Value::Array(list) => list.push(Value::String(problem)),
                _ => unreachable!("field entries are arrays"),
            }
        }
        let mut res = (self.status, axum::Json(json!({ "errors": errors }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        let report = self.cause.unwrap_or_else(|| format!("{}", self.status));
        res.extensions_mut().insert(ErrorReport(report));
        res
    }
}
