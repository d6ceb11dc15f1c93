//! What every form a signed-in user posts goes through, once: the form is read, an anonymous
//! visitor is sent to the sign-in page, and a wrong CSRF token is refused with 403
//! ([`Posted`]); then the answer after the action: a redirect on success, the form again
//! with its problems, or the error page ([`answer`], [`answer_or`]).

use crate::Web;
use crate::session::Session;
use crate::shared::{csrf_refused, failed, problems, redirect};
use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use crescendo_app::AppError;
use crescendo_domain::Id;
use serde::de::DeserializeOwned;

/// A form that carries the session's CSRF token.
pub(crate) trait CsrfForm {
    /// The token the form carried.
    fn csrf(&self) -> &str;
}

/// A form posted by a signed-in user with the right CSRF token: a handler that takes one
/// runs only then.
pub(crate) struct Posted<F> {
    /// The pages' state.
    pub(crate) w: Web,
    /// The poster's session.
    pub(crate) s: Session,
    /// Who is signed in.
    pub(crate) user: Id,
    /// The form's fields.
    pub(crate) form: F,
}

impl<F> FromRequest<Web> for Posted<F>
where
    F: CsrfForm + DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, w: &Web) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Ok(s) = Session::from_request_parts(&mut parts, w).await;
        let Form(form) = Form::<F>::from_request(Request::from_parts(parts, body), w)
            .await
            .map_err(IntoResponse::into_response)?;
        let Some(user) = s.user else {
            return Err(redirect(&s, "/login"));
        };
        if !s.csrf_ok(form.csrf()) {
            return Err(csrf_refused(w, &s).await);
        }
        Ok(Self {
            w: w.clone(),
            s,
            user,
            form,
        })
    }
}

/// After an action: a redirect to where `outcome` says, or the page for its error.
pub(crate) async fn answer(w: &Web, s: &Session, outcome: Result<String, AppError>) -> Response {
    match outcome {
        Ok(to) => redirect(s, &to),
        Err(e) => failed(w, s, e).await,
    }
}

/// After an action whose input may be refused: as [`answer`], except that a validation
/// error or a taken name shows the form again, made by `again` from the problems.
pub(crate) async fn answer_or<Fut>(
    w: &Web,
    s: &Session,
    outcome: Result<String, AppError>,
    again: impl FnOnce(Vec<String>) -> Fut,
) -> Response
where
    Fut: Future<Output = Response>,
{
    match outcome {
        Err(e @ (AppError::Validation(_) | AppError::Conflict { .. })) => again(problems(&e)).await,
        outcome => answer(w, s, outcome).await,
    }
}
