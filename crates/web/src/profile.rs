//! Profiles: a user's articles, the articles they favourited, and following them.

use crate::Web;
use crate::form::Posted;
use crate::session::Session;
use crate::shared::toggled;
use crate::shared::{Chrome, PER_PAGE, ToggleForm, chrome, failed, html, public_if_anonymous};
use crate::views::{self, Card, PageLink, Person, urlencode};
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use crescendo_app::ListQuery;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

/// A profile's routes.
pub(crate) fn router() -> Router<Web> {
    Router::new()
        .route("/profile/{username}", get(profile::<false>))
        .route("/profile/{username}/favorites", get(profile::<true>))
        .route("/profile/{username}/follow", post(follow))
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    chrome: Chrome,
    person: Person,
    me: bool,
    favorites: bool,
    cards: Vec<Card>,
    pages: Vec<PageLink>,
}

#[derive(Deserialize, Default)]
struct PageQuery {
    page: Option<u32>,
}

async fn profile_page(
    w: &Web,
    mut s: Session,
    username: &str,
    favorites: bool,
    page: u32,
) -> Response {
    let p = match w.app.profile(s.user, username).await {
        Ok(p) => p,
        Err(e) => return failed(w, &s, e).await,
    };
    let page = page.clamp(1, 1000);
    let q = ListQuery {
        author: (!favorites).then(|| p.profile.username.clone()),
        favorited: favorites.then(|| p.profile.username.clone()),
        limit: PER_PAGE,
        offset: (page - 1) * PER_PAGE,
        ..Default::default()
    };
    let (articles, total) = match w.app.list_articles(s.user, q).await {
        Ok(l) => l,
        Err(e) => return failed(w, &s, e).await,
    };
    if s.user.is_some() {
        let _ = s.ensure(&w.app, &w.keys).await;
    }
    let base = format!(
        "/profile/{}{}",
        urlencode(&p.profile.username),
        if favorites { "/favorites" } else { "" }
    );
    let t = ProfilePage {
        chrome: chrome(w, &s, p.profile.username.clone(), "").await,
        me: s.user == Some(p.profile.id),
        person: Person::from(&p),
        favorites,
        cards: articles.iter().map(Card::from).collect(),
        pages: views::pager(total, PER_PAGE, page, |n| format!("{base}?page={n}")),
    };
    public_if_anonymous(&s, html(&s, StatusCode::OK, t.render()))
}

/// A profile's page of its own articles or, with `FAVORITES`, of those it favourited.
async fn profile<const FAVORITES: bool>(
    State(w): State<Web>,
    s: Session,
    Path(username): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    profile_page(&w, s, &username, FAVORITES, q.page.unwrap_or(1)).await
}

async fn follow(
    headers: HeaderMap,
    Path(username): Path<String>,
    Posted { w, s, user, form }: Posted<ToggleForm>,
) -> Response {
    let done = if form.action == "unfollow" {
        w.app.unfollow(user, &username).await
    } else {
        w.app.follow(user, &username).await
    };
    let done = done.map(|p| {
        let back = format!("/profile/{}", urlencode(&p.profile.username));
        (json!({"following": p.following}), back)
    });
    toggled(&w, &s, &headers, done).await
}
