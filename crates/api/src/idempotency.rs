//! `Idempotency-Key` on writes: a client (or the load balancer, on its behalf) may repeat a
//! POST, PUT, PATCH or DELETE that carries the same key and gets the first outcome back,
//! without the work being done twice.
//!
//! The key is scoped to the authenticated user, or, for anonymous requests, to the method
//! and path. Anonymous requests get records only on the write that needs no account,
//! sign-up (`POST /api/users`); any other anonymous write runs without one (it is refused
//! with 401 anyway, or, for sign-in, changes nothing), so visitors without an account cannot
//! fill the store with records. The records kept expire (24 hours), and the in-process store
//! is bounded (`sessions.max_entries`). The first request claims the key with a `pending` record through
//! [`App::claim_idempotency_key`] (kept in the `Sessions` store, shared by every web node once
//! the stateless rung configures it), so two copies racing on two nodes cannot both run; when it finishes, its status and body replace the
//! record for 24 hours. A repeat gets that answer with `Idempotency-Replayed: true`; a
//! repeat while the first still runs gets 409; the same key on a different request (method,
//! path or body) gets 422. A first attempt that failed with a 5xx leaves no record, so a
//! retry runs again.
//!
//! The body is read under the route's own limit (`DefaultBodyLimit`: `http.body_limit_bytes`,
//! or the upload limit on `POST /api/uploads`), so a larger body gets 413 having been read no
//! further than that limit.

use crate::ApiError;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use crescendo_app::App;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long an outcome is kept for repeats.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long a request may hold its key before a repeat may run again (longer than any
/// request may take).
const PENDING: Duration = Duration::from_secs(300);
/// Largest answer this layer keeps (the API's own JSON answers are far smaller).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum Record {
    Pending {
        fp: String,
    },
    Done {
        fp: String,
        status: u16,
        content_type: Option<String>,
        body: String,
    },
}

fn conflict(status: StatusCode, problem: &str) -> Response {
    let body = serde_json::json!({"errors": {"body": [format!("Idempotency-Key {problem}")], "Idempotency-Key": [problem]}});
    (status, axum::Json(body)).into_response()
}

/// The layer's function (mount with `axum::middleware::from_fn_with_state`).
pub async fn idempotency(State(app): State<App>, req: Request, next: Next) -> Response {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key").cloned() else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_string(),
        _ => {
            return conflict(
                StatusCode::UNPROCESSABLE_ENTITY,
                "must be 1 to 255 visible ASCII characters",
            );
        }
    };
    let scope = match crate::extract::bearer(req.headers()) {
        Ok(Some(token)) => match app.authenticate(token).await {
            Ok(user) => format!("user:{}", user.as_i64()),
            Err(e) => return ApiError::from(e).into_response(),
        },
        Ok(None) if needs_no_account(req.method(), req.uri().path()) => {
            format!("anonymous:{}:{}", req.method(), req.uri().path())
        }
        Ok(None) => return next.run(req).await,
        Err(e) => return e.into_response(),
    };
    let (parts, body) = req.into_parts();
    // read as the route itself would: at most its body limit (`DefaultBodyLimit`, set
    // outside this layer), so a key never makes a larger body buffered
    let bytes = match Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::status(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large")
                .into_response();
        }
        Err(_) => {
            return ApiError::status(StatusCode::BAD_REQUEST, "the request body cannot be read")
                .into_response();
        }
    };
    let fp = fingerprint(&parts, &bytes);
    let scoped = format!("{scope}:{key}");

    let pending = Bytes::from(
        serde_json::to_vec(&Record::Pending { fp: fp.clone() }).expect("records serialise"),
    );
    match app.claim_idempotency_key(&scoped, pending, PENDING).await {
        Ok(true) => {}
        Ok(false) => return answer_repeat(&app, &scoped, &fp).await,
        // the store refused the claim (unreachable, or full and refusing writes; the cause
        // is logged by the app): a repeat of a kept outcome is still answered from it, and
        // anything else gets 503
        Err(_) => return answer_repeat(&app, &scoped, &fp).await,
    }

    let res = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    keep_outcome(&app, &scoped, fp, res).await
}

/// Whether `method` on `path` is a write anyone may make without an account (sign-up), as
/// this layer sees it inside the `/api` router (the prefix stripped) or outside it.
fn needs_no_account(method: &Method, path: &str) -> bool {
    *method == Method::POST && matches!(path, "/users" | "/api/users")
}

/// What makes two requests the same: a SHA-256 of the method, the path with its query, and
/// the body, in hex.
fn fingerprint(parts: &http::request::Parts, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(parts.method.as_str().as_bytes());
    h.update(b" ");
    h.update(
        parts
            .uri
            .path_and_query()
            .map_or("", |p| p.as_str())
            .as_bytes(),
    );
    h.update(b"\n");
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The answer to a request whose key another request has claimed (`fp` is this one's
/// fingerprint): the first outcome, or why there is none to give.
async fn answer_repeat(app: &App, scoped: &str, fp: &str) -> Response {
    match app
        .idempotency_record(scoped)
        .await
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
    {
        Some(Record::Done { fp: seen, .. } | Record::Pending { fp: seen }) if seen != fp => {
            conflict(
                StatusCode::UNPROCESSABLE_ENTITY,
                "was already used for a different request",
            )
        }
        Some(Record::Pending { .. }) => conflict(
            StatusCode::CONFLICT,
            "is in use by a request that has not finished",
        ),
        Some(Record::Done {
            status,
            content_type,
            body,
            ..
        }) => {
            let mut res =
                (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
            if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                res.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            res.headers_mut()
                .insert("idempotency-replayed", HeaderValue::from_static("true"));
            res
        }
        // expired between the two calls: nothing to replay, and nothing recorded
        None => ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "try again").into_response(),
    }
}

/// Keeps the outcome `res` of the request that claimed `scoped` for its repeats, and
/// returns it; after a 5xx (not done, or not known to be done) it forgets the key instead,
/// so a retry runs again.
async fn keep_outcome(app: &App, scoped: &str, fp: String, res: Response) -> Response {
    let status = res.status();
    if status.is_server_error() {
        let _ = app.forget_idempotency_key(scoped).await;
        return res;
    }
    let (parts, body) = res.into_parts();
    let body = match axum::body::to_bytes(body, MAX_ANSWER).await {
        Ok(b) => b,
        Err(_) => {
            let _ = app.forget_idempotency_key(scoped).await;
            return ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                .into_response();
        }
    };
    let record = Record::Done {
        fp,
        status: status.as_u16(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    if let Err(e) = app
        .save_idempotency_record(
            scoped,
            Bytes::from(serde_json::to_vec(&record).expect("records serialise")),
            KEEP,
        )
        .await
    {
        tracing::warn!(error = %e, "could not record an idempotent outcome; repeats get 409 until the pending record expires");
    }
    Response::from_parts(parts, Body::from(body))
}
