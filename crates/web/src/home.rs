//! The home page: the global list of articles, a tag's, or the signed-in user's feed.

use crate::Web;
use crate::session::Session;
use crate::shared::{Chrome, PER_PAGE, chrome, failed, html, public_if_anonymous, redirect};
use crate::views::{self, Card, PageLink, TagLink, urlencode};
use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use crescendo_app::ListQuery;
use http::StatusCode;
use serde::Deserialize;

/// The home page's routes.
pub(crate) fn router() -> Router<Web> {
    Router::new().route("/", get(home))
}

#[derive(Deserialize, Default)]
struct HomeQuery {
    feed: Option<String>,
    tag: Option<String>,
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    chrome: Chrome,
    tab: &'static str,
    tag: TagLink,
    cards: Vec<Card>,
    pages: Vec<PageLink>,
    tags: Vec<TagLink>,
}

async fn home(State(w): State<Web>, s: Session, Query(q): Query<HomeQuery>) -> Response {
    let page = q.page.unwrap_or(1).clamp(1, 1000);
    let offset = (page - 1) * PER_PAGE;
    let tag = q.tag.filter(|t| !t.is_empty());
    let (tab, listed) = match (&tag, q.feed.is_some(), s.user) {
        (Some(t), _, _) => (
            "tag",
            w.app
                .list_articles(
                    s.user,
                    ListQuery {
                        tag: Some(t.clone()),
                        limit: PER_PAGE,
                        offset,
                        ..Default::default()
                    },
                )
                .await,
        ),
        (None, true, Some(u)) => ("feed", w.app.feed(u, PER_PAGE, offset).await),
        (None, true, None) => return redirect(&s, "/login"),
        (None, false, _) => (
            "global",
            w.app
                .list_articles(
                    s.user,
                    ListQuery {
                        limit: PER_PAGE,
                        offset,
                        ..Default::default()
                    },
                )
                .await,
        ),
    };
    let (articles, total) = match listed {
        Ok(l) => l,
        Err(e) => return failed(&w, &s, e).await,
    };
    let tags = w
        .app
        .tags()
        .await
        .map(|t| t.iter().take(20).map(|t| TagLink::new(t)).collect())
        .unwrap_or_default();
    let tag_str = tag.clone().unwrap_or_default();
    let pages = views::pager(total, PER_PAGE, page, |n| match tab {
        "tag" => format!("/?tag={}&page={n}", urlencode(&tag_str)),
        "feed" => format!("/?feed=1&page={n}"),
        _ => format!("/?page={n}"),
    });
    let t = Home {
        chrome: chrome(&w, &s, "Home", "home").await,
        tab,
        tag: TagLink::new(&tag_str),
        cards: articles.iter().map(Card::from).collect(),
        pages,
        tags,
    };
    public_if_anonymous(&s, html(&s, StatusCode::OK, t.render()))
}
