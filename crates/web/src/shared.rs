//! What the page modules share: the session extractor, the security-headers middleware,
//! the layout's data ([`Chrome`]), rendering and redirects, the one mapping from an
//! [`AppError`] to a page ([`failed`]), form messages, the CSRF refusal, and the small forms
//! several resources post.

use crate::Web;
use crate::form::{CsrfForm, answer};
use crate::session::Session;
use askama::Template;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use crescendo_app::{AppError, Shareable};
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use std::convert::Infallible;

/// Articles per page of a list (home, profiles).
pub(crate) const PER_PAGE: u32 = 10;

impl FromRequestParts<Web> for Session {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, w: &Web) -> Result<Self, Infallible> {
        let s = Session::load(&w.app, &w.keys, &parts.headers).await;
        if let Some(user) = s.user {
            w.app.act_as(user).await;
        }
        Ok(s)
    }
}

/// Security headers on every page. A page is `private` unless its handler marked it
/// shareable (anonymous views without forms; the server then makes it public); every page
/// varies by cookie.
pub(crate) async fn page_headers(State(w): State<Web>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let assets = w
        .assets
        .origin()
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    let csp = format!(
        "default-src 'self'; img-src 'self' https: http:{assets}; style-src 'self'{assets}; script-src 'self'{assets}; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_str(&csp).expect("ASCII policy"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("private, no-cache"));
    h.insert(http::header::VARY, HeaderValue::from_static("Cookie"));
    res
}

/// What the layout needs.
#[derive(Default)]
pub(crate) struct Chrome {
    pub(crate) title: String,
    /// The signed-in user's name.
    pub(crate) user: Option<String>,
    pub(crate) csrf: String,
    pub(crate) css: String,
    pub(crate) js: String,
    pub(crate) icon: String,
    /// Which navigation link is the current page.
    pub(crate) here: &'static str,
}

/// The layout's data for a page titled `title` whose navigation link is `here`.
pub(crate) async fn chrome(
    w: &Web,
    s: &Session,
    title: impl Into<String>,
    here: &'static str,
) -> Chrome {
    let user = match s.user {
        Some(id) => w
            .app
            .profile_by_id(id)
            .await
            .ok()
            .flatten()
            .map(|p| p.username.clone()),
        None => None,
    };
    Chrome {
        title: title.into(),
        user,
        csrf: s.csrf.clone(),
        css: w.assets.css_href(),
        js: w.assets.js_href(),
        icon: w.assets.icon_href(),
        here,
    }
}

/// A rendered page with `status` and the session's cookie, or a 500 if rendering failed.
pub(crate) fn html(
    s: &Session,
    status: StatusCode,
    body: Result<String, askama::Error>,
) -> Response {
    match body {
        Ok(body) => {
            let mut res =
                (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
            s.apply(res.headers_mut());
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// Marks `res` [`Shareable`] when the visitor is anonymous and nothing personal was set:
/// only pages that show no form and set no cookie. The server then lets browsers keep it
/// for `edge.browser_ttl_secs` and edge caches (a CDN) for `edge.ttl_secs`, tagged with the
/// cache keys it was made from; other pages stay `private, no-cache`.
pub(crate) fn public_if_anonymous(s: &Session, mut res: Response) -> Response {
    if s.user.is_none() && s.set_cookie.is_none() && res.status() == StatusCode::OK {
        res.extensions_mut().insert(Shareable);
    }
    res
}

/// A 303 to `to` (or `/` if `to` is not a header value), with the session's cookie.
pub(crate) fn redirect(s: &Session, to: &str) -> Response {
    let mut res = (
        StatusCode::SEE_OTHER,
        [(
            LOCATION,
            HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
        )],
    )
        .into_response();
    s.apply(res.headers_mut());
    res
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: String,
    message: String,
}

/// A page that says what went wrong, with `status`.
pub(crate) async fn error_page(
    w: &Web,
    s: &Session,
    status: StatusCode,
    heading: &str,
    message: &str,
) -> Response {
    let page = ErrorPage {
        chrome: chrome(w, s, heading, "").await,
        heading: heading.into(),
        message: message.into(),
    };
    html(s, status, page.render())
}

/// A page for an application error that no form shows inline.
pub(crate) async fn failed(w: &Web, s: &Session, e: AppError) -> Response {
    match e {
        AppError::Unauthorized => redirect(s, "/login"),
        AppError::Forbidden => {
            error_page(
                w,
                s,
                StatusCode::FORBIDDEN,
                "Not yours",
                "Only its author can change or delete this.",
            )
            .await
        }
        AppError::NotFound(what) => {
            error_page(
                w,
                s,
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("There is no such {what}."),
            )
            .await
        }
        AppError::Validation(_) | AppError::Conflict { .. } => {
            error_page(
                w,
                s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "That did not work",
                &problems(&e).join(" "),
            )
            .await
        }
        AppError::UnsupportedMedia(why) => {
            error_page(
                w,
                s,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Not an image we take",
                &why,
            )
            .await
        }
        AppError::Throttled { .. } => {
            error_page(
                w,
                s,
                StatusCode::TOO_MANY_REQUESTS,
                "Slow down",
                &e.to_string(),
            )
            .await
        }
        AppError::Unavailable => {
            error_page(
                w,
                s,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "Part of the service is unavailable.",
            )
            .await
        }
        AppError::Internal(cause) => {
            tracing::error!(error = %cause, "page failed");
            error_page(
                w,
                s,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The error has been logged.",
            )
            .await
        }
    }
}

/// Messages for a form: one per field problem.
pub(crate) fn problems(e: &AppError) -> Vec<String> {
    match e {
        AppError::Validation(errs) => errs
            .0
            .iter()
            .map(|f| format!("{} {}", f.field, f.problem))
            .collect(),
        AppError::Conflict { field } => vec![format!("{field} has already been taken")],
        AppError::Unauthorized => vec!["email or password is invalid".into()],
        other => vec![other.to_string()],
    }
}

/// The 403 page for a form whose CSRF token is missing or wrong.
pub(crate) async fn csrf_refused(w: &Web, s: &Session) -> Response {
    error_page(
        w,
        s,
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
    )
    .await
}

/// The signed-in user, or (returned from the handler) a redirect to the sign-in page.
macro_rules! signed_in {
    ($s:expr) => {
        match $s.user {
            Some(u) => u,
            None => return $crate::shared::redirect(&$s, "/login"),
        }
    };
}
pub(crate) use signed_in;

/// Checks a form's CSRF token, or (returned from the handler) refuses the request with 403.
macro_rules! check_csrf {
    ($w:expr, $s:expr, $token:expr) => {
        if !$s.csrf_ok(&$token) {
            return $crate::shared::csrf_refused(&$w, &$s).await;
        }
    };
}
pub(crate) use check_csrf;

/// Whether the client asked for JSON (the script's background posts) rather than a page.
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A form that carries only its CSRF token (sign out, delete buttons).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct TokenForm {
    pub(crate) csrf: String,
}

impl CsrfForm for TokenForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A toggle button's form (favourite, follow): `action` names the way back (`remove`,
/// `unfollow`); anything else turns the toggle on.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ToggleForm {
    pub(crate) action: String,
    pub(crate) csrf: String,
}

impl CsrfForm for ToggleForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The answer to a toggle button (favourite, follow): `json` for the script that posted it
/// in the background, else a redirect to `back`; the error page if the action failed.
pub(crate) async fn toggled(
    w: &Web,
    s: &Session,
    headers: &HeaderMap,
    outcome: Result<(serde_json::Value, String), AppError>,
) -> Response {
    match outcome {
        Ok((json, _)) if wants_json(headers) => axum::Json(json).into_response(),
        outcome => answer(w, s, outcome.map(|(_, back)| back)).await,
    }
}

/// The 503 page for when sessions cannot be stored.
pub(crate) async fn sessions_unavailable(w: &Web, s: &Session) -> Response {
    error_page(
        w,
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again in a moment",
        "Sessions are unavailable.",
    )
    .await
}
