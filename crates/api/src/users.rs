//! Handlers for users and profiles (spec tags User and Authentication, Profile).

use crate::ApiError;
use crate::extract::{AuthUser, Body, MaybeUser};
use crate::wire::*;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use crescendo_app::{App, ClientAddr, ProfileView, UserChangesInput};

fn profile_answer(p: &ProfileView) -> Response {
    let mut out = b"{\"profile\":".to_vec();
    write_profile(&mut out, p);
    out.push(b'}');
    crate::articles::json_bytes(StatusCode::OK, out)
}

/// `POST /api/users` (CreateUser): 201 with the user and a token.
pub(crate) async fn register(
    State(app): State<App>,
    Body(b): Body<NewUserBody>,
) -> Result<Response, ApiError> {
    let u = b.user;
    let v = app
        .register(
            u.username.as_deref().unwrap_or(""),
            u.email.as_deref().unwrap_or(""),
            u.password.as_deref().unwrap_or(""),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(UserBody::from(&v))).into_response())
}

/// `POST /api/users/login` (Login), under the sign-in throttle: after too many failures
/// from the client, 429 with `Retry-After`.
pub(crate) async fn login(
    State(app): State<App>,
    client: Option<Extension<ClientAddr>>,
    Body(b): Body<LoginBody>,
) -> Result<Response, ApiError> {
    let v = app
        .login(
            b.user.email.as_deref().unwrap_or(""),
            b.user.password.as_deref().unwrap_or(""),
            client.map_or(ClientAddr::UNKNOWN, |c| c.0),
        )
        .await?;
    Ok(Json(UserBody::from(&v)).into_response())
}

/// `GET /api/user` (GetCurrentUser).
pub(crate) async fn current_user(
    State(app): State<App>,
    AuthUser(id): AuthUser,
) -> Result<Response, ApiError> {
    let v = app.current_user(id).await?;
    Ok(Json(UserBody::from(&v)).into_response())
}

/// `PUT /api/user` (UpdateCurrentUser).
pub(crate) async fn update_user(
    State(app): State<App>,
    AuthUser(id): AuthUser,
    Body(b): Body<UpdateUserBody>,
) -> Result<Response, ApiError> {
    let u = b.user;
    let v = app
        .update_user(
            id,
            UserChangesInput {
                email: u.email,
                username: u.username,
                password: u.password,
                bio: u.bio,
                image: u.image,
            },
        )
        .await?;
    Ok(Json(UserBody::from(&v)).into_response())
}

/// `GET /api/profiles/{username}` (GetProfileByUsername).
pub(crate) async fn get_profile(
    State(app): State<App>,
    MaybeUser(viewer): MaybeUser,
    Path(username): Path<String>,
) -> Result<Response, ApiError> {
    let p = app.profile(viewer, &username).await?;
    Ok(crate::articles::shared_if_anonymous(
        viewer,
        profile_answer(&p),
    ))
}

/// `POST /api/profiles/{username}/follow` (FollowUserByUsername).
pub(crate) async fn follow_user(
    State(app): State<App>,
    AuthUser(id): AuthUser,
    Path(username): Path<String>,
) -> Result<Response, ApiError> {
    let p = app.follow(id, &username).await?;
    Ok(profile_answer(&p))
}

/// `DELETE /api/profiles/{username}/follow` (UnfollowUserByUsername).
pub(crate) async fn unfollow_user(
    State(app): State<App>,
    AuthUser(id): AuthUser,
    Path(username): Path<String>,
) -> Result<Response, ApiError> {
    let p = app.unfollow(id, &username).await?;
    Ok(profile_answer(&p))
}
