use crate::users::get_status;
use crescendo_testkit::{Answer, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `PUT /api/articles/{slug}` of `article` (the fields to change) as `token`.
async fn edit_article(app: &TestApp, token: &str, slug: &str, article: Value) -> Answer {
    let path = format!("/api/articles/{slug}");
    app.put(&path, Some(token), json!({"article": article}))
        .await
}

/// `POST /api/articles/{slug}/favorite` as `token`.
async fn favorite(app: &TestApp, token: &str, slug: &str) -> Answer {
    let path = format!("/api/articles/{slug}/favorite");
    app.post(&path, Some(token), json!({})).await
}

/// Whether the article `a` answers with is favourited, and how often.
fn favorite_state(a: &Answer) -> (Value, Value) {
    let article = &a.json["article"];
    (
        article["favorited"].clone(),
        article["favoritesCount"].clone(),
    )
}

/// Registers each of `names` (see [`TestApp::register`]) and returns their tokens.
async fn register_all<const N: usize>(app: &TestApp, names: [&str; N]) -> [String; N] {
    let mut tokens = Vec::with_capacity(N);
    for name in names {
        tokens.push(app.register(name).await);
    }
    tokens.try_into().expect("one token per name")
}

/// How many articles `GET path` counts for `token`.
async fn count(app: &TestApp, path: &str, token: Option<&str>) -> Value {
    app.get(path, token).await.json["articlesCount"].clone()
}

/// `POST /api/articles` of `article` (its fields) as `token`.
pub(crate) async fn post_article(app: &TestApp, token: &str, article: Value) -> Answer {
    app.post("/api/articles", Some(token), json!({"article": article}))
        .await
}

fn slugs(v: &Value) -> Vec<String> {
    v["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn articles_round_trip_with_sorted_tags_and_an_id_bearing_slug() {
    let app = TestApp::spawn().await;
    let t = app.register("jake").await;
    let a = app
        .create_article(&t, "How to train your dragon", &["training", "dragons"])
        .await;
    assert_eq!(a["tagList"], json!(["dragons", "training"]));
    assert_eq!(a["favorited"], false);
    assert_eq!(a["favoritesCount"], 0);
    assert_eq!(a["author"]["username"], "jake");
    assert_eq!(a["body"], "# How to train your dragon");
    let slug = a["slug"].as_str().unwrap();
    assert!(slug.starts_with("how-to-train-your-dragon-"), "{slug}");
    let created = a["createdAt"].as_str().unwrap();
    assert_eq!(created.len(), "2026-01-01T00:00:00.000Z".len(), "{created}");
    assert!(created.ends_with('Z'));
    let got = app.get(&format!("/api/articles/{slug}"), None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json["article"], a);
}

#[tokio::test]
async fn two_articles_may_share_a_title() {
    let app = TestApp::spawn().await;
    let t = app.register("jake").await;
    let a = app.create_article(&t, "Same", &[]).await;
    let b = app.create_article(&t, "Same", &[]).await;
    assert_ne!(a["slug"], b["slug"]);
}

#[tokio::test]
async fn only_the_author_may_update_or_delete_and_the_slug_follows_the_title() {
    let app = TestApp::spawn().await;
    let [jake, ann] = register_all(&app, ["jake", "ann"]).await;
    let a = app.create_article(&jake, "Old title", &["x"]).await;
    let old = a["slug"].as_str().unwrap().to_string();
    let path = format!("/api/articles/{old}");
    assert_eq!(
        app.put(&path, Some(&ann), json!({"article": {"title": "Hijack"}}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(&path, Some(&ann)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.put(&path, None, json!({"article": {"title": "x"}}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let blank = app
        .put(&path, Some(&jake), json!({"article": {"title": "  "}}))
        .await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(blank.json["errors"]["body"][0], "title can't be blank");

    let up = app
        .put(
            &path,
            Some(&jake),
            json!({"article": {"title": "New title", "body": "new body"}}),
        )
        .await;
    assert_eq!(up.status, StatusCode::OK);
    let new = up.json["article"]["slug"].as_str().unwrap().to_string();
    assert!(new.starts_with("new-title-"), "{new}");
    assert_eq!(
        up.json["article"]["description"], a["description"],
        "absent fields stay"
    );
    // the next read, through the new or the old slug, sees the change
    for s in [&new, &old] {
        let got = app.get(&format!("/api/articles/{s}"), None).await;
        assert_eq!(got.json["article"]["title"], "New title");
        assert_eq!(got.json["article"]["body"], "new body");
    }
    assert_eq!(
        app.get("/api/articles", None).await.json["articles"][0]["title"],
        "New title"
    );

    assert_eq!(
        app.delete(&format!("/api/articles/{new}"), Some(&jake))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get_status(&app, &format!("/api/articles/{new}"), None).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(count(&app, "/api/articles", None).await, 0);
    assert_eq!(count(&app, "/api/articles?tag=x", None).await, 0);
    assert_eq!(
        app.delete(&format!("/api/articles/{new}"), Some(&jake))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unknown_slugs_are_404() {
    let app = TestApp::spawn().await;
    for s in ["nope", "nope-zzzzzzzz", "a-", "x-1"] {
        assert_eq!(
            get_status(&app, &format!("/api/articles/{s}"), None).await,
            StatusCode::NOT_FOUND,
            "{s}"
        );
    }
}

#[tokio::test]
async fn lists_count_every_match_and_pages_neither_repeat_nor_skip() {
    let app = TestApp::spawn().await;
    let t = app.register("jake").await;
    let mut want = Vec::new();
    for i in 0..25 {
        want.push(
            app.create_article(&t, &format!("Article {i}"), &["paged"])
                .await["slug"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    want.reverse(); // newest first
    for base in [
        "/api/articles?",
        "/api/articles?tag=paged&",
        "/api/articles?author=jake&",
    ] {
        let mut got = Vec::new();
        for offset in (0..30).step_by(7) {
            let page = app
                .get(&format!("{base}limit=7&offset={offset}"), None)
                .await;
            assert_eq!(page.json["articlesCount"], 25, "{base}");
            got.extend(slugs(&page.json));
        }
        assert_eq!(got, want, "{base}");
    }
    let first = app.get("/api/articles", None).await;
    assert_eq!(
        first.json["articles"].as_array().unwrap().len(),
        20,
        "default limit is 20"
    );
    assert!(
        first.json["articles"][0].get("body").is_none(),
        "list items omit body"
    );
}

#[tokio::test]
async fn absurd_limits_and_offsets_are_4xx_not_5xx() {
    let app = TestApp::spawn().await;
    for q in [
        "limit=-1",
        "limit=abc",
        "limit=101",
        "offset=-5",
        "offset=99999999999999999999",
        "limit=1.5",
    ] {
        let a = app.get(&format!("/api/articles?{q}"), None).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
        assert!(a.json["errors"]["body"].is_array(), "{q}");
    }
    let far = app.get("/api/articles?offset=4000000000", None).await;
    assert_eq!(far.status, StatusCode::OK);
    assert_eq!(far.json["articles"], json!([]));
    assert_eq!(
        app.get("/api/articles?limit=0", None).await.json["articles"],
        json!([])
    );
}

#[tokio::test]
async fn favorites_are_per_viewer_and_the_favorited_filter_is_exact() {
    let app = TestApp::spawn().await;
    let [jake, ann, bob] = register_all(&app, ["jake", "ann", "bob"]).await;
    let a1 = app.create_article(&jake, "One", &[]).await;
    let a2 = app.create_article(&jake, "Two", &[]).await;
    let s1 = a1["slug"].as_str().unwrap();
    let f = favorite(&app, &ann, s1).await;
    assert_eq!(f.status, StatusCode::OK);
    assert_eq!(favorite_state(&f), (json!(true), json!(1)));
    // again: still one
    let again = favorite(&app, &ann, s1).await;
    assert_eq!(again.json["article"]["favoritesCount"], 1);
    favorite(&app, &bob, a2["slug"].as_str().unwrap()).await;

    let list = app.get("/api/articles?favorited=ann", Some(&bob)).await;
    assert_eq!(slugs(&list.json), vec![s1.to_string()]);
    assert_eq!(list.json["articlesCount"], 1);
    assert_eq!(
        list.json["articles"][0]["favorited"], false,
        "bob did not favourite it"
    );
    let mine = app.get("/api/articles?favorited=ann", Some(&ann)).await;
    assert_eq!(mine.json["articles"][0]["favorited"], true);
    assert_eq!(count(&app, "/api/articles?favorited=nobody", None).await, 0);
    // the global list shows the new count to everyone
    let all = app.get("/api/articles", None).await;
    assert_eq!(all.json["articles"][1]["favoritesCount"], 1);

    let u = app
        .delete(&format!("/api/articles/{s1}/favorite"), Some(&ann))
        .await;
    assert_eq!(favorite_state(&u), (json!(false), json!(0)));
    assert_eq!(count(&app, "/api/articles?favorited=ann", None).await, 0);
    let missing = favorite(&app, &ann, "nope-1").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// The feed once `done` holds for it: at once where feeds are merged on read, after the
/// feed jobs ran on a store that fans out on write (at most 20 s).
pub(crate) async fn feed_once(
    app: &TestApp,
    path: &str,
    token: &str,
    done: impl Fn(&Answer) -> bool,
) -> Answer {
    let started = std::time::Instant::now();
    loop {
        let feed = app.get(path, Some(token)).await;
        if done(&feed) {
            return feed;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the feed never got there: {}",
            feed.json
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_feed_shows_followed_authors_newest_first_and_needs_auth() {
    let app = TestApp::spawn().await;
    let [ann, bob, cat] = register_all(&app, ["ann", "bob", "cat"]).await;
    let b1 = app.create_article(&bob, "b1", &[]).await;
    let c1 = app.create_article(&cat, "c1", &[]).await;
    let b2 = app.create_article(&bob, "b2", &[]).await;
    app.create_article(&ann, "own", &[]).await;
    assert_eq!(
        get_status(&app, "/api/articles/feed", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(count(&app, "/api/articles/feed", Some(&ann)).await, 0);
    app.post("/api/profiles/bob/follow", Some(&ann), json!({}))
        .await;
    app.post("/api/profiles/cat/follow", Some(&ann), json!({}))
        .await;
    // on a sharded store, a follow back-fills the timeline through a job
    let feed = feed_once(&app, "/api/articles/feed", &ann, |f| {
        f.json["articlesCount"] == 3
    })
    .await;
    assert_eq!(feed.status, StatusCode::OK);
    let want: Vec<String> = [&b2, &c1, &b1]
        .iter()
        .map(|a| a["slug"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(slugs(&feed.json), want);
    assert_eq!(feed.json["articlesCount"], 3);
    assert_eq!(feed.json["articles"][0]["author"]["following"], true);
    let page = app
        .get("/api/articles/feed?limit=1&offset=1", Some(&ann))
        .await;
    assert_eq!(slugs(&page.json), vec![want[1].clone()]);
    // a new article by a followed author shows (at once, or once fanned out); an unfollow
    // removes the author at once
    let b3 = app.create_article(&bob, "b3", &[]).await;
    feed_once(&app, "/api/articles/feed", &ann, |f| {
        f.json["articles"][0]["slug"] == b3["slug"]
    })
    .await;
    app.delete("/api/profiles/bob/follow", Some(&ann)).await;
    assert_eq!(
        slugs(&app.get("/api/articles/feed", Some(&ann)).await.json),
        vec![want[1].clone()]
    );
}

#[tokio::test]
async fn tag_lists_and_popular_tags_follow_writes() {
    let app = TestApp::spawn().await;
    let t = app.register("jake").await;
    assert_eq!(app.get("/api/tags", None).await.json, json!({"tags": []}));
    let a = app
        .create_article(&t, "Dragons", &["dragons", "training"])
        .await;
    app.create_article(&t, "More dragons", &["dragons"]).await;
    assert_eq!(
        app.get("/api/tags", None).await.json["tags"],
        json!(["dragons", "training"])
    );
    let tagged = app.get("/api/articles?tag=training", None).await;
    assert_eq!(
        slugs(&tagged.json),
        vec![a["slug"].as_str().unwrap().to_string()]
    );
    let slug = a["slug"].as_str().unwrap();
    let up = edit_article(&app, &t, slug, json!({"tagList": ["wyverns"]})).await;
    assert_eq!(up.json["article"]["tagList"], json!(["wyverns"]));
    assert_eq!(count(&app, "/api/articles?tag=training", None).await, 0);
    assert_eq!(count(&app, "/api/articles?tag=wyverns", None).await, 1);
    assert_eq!(
        app.get("/api/tags", None).await.json["tags"],
        json!(["dragons", "wyverns"])
    );
    let combined = app.get("/api/articles?tag=dragons&author=jake", None).await;
    assert_eq!(combined.json["articlesCount"], 1);
}

#[tokio::test]
async fn a_list_read_before_a_write_shows_the_write_on_the_next_read() {
    let app = TestApp::spawn().await;
    let [jake, ann] = register_all(&app, ["jake", "ann"]).await;
    let a = app.create_article(&jake, "First", &["t"]).await;
    let slug = a["slug"].as_str().unwrap().to_string();
    // fill every cache on the way: the global list, the tag list and the author list
    for path in [
        "/api/articles",
        "/api/articles?tag=t",
        "/api/articles?author=jake",
    ] {
        assert_eq!(count(&app, path, None).await, 1);
    }
    // a favourite, an edit and a rename each show in every list at once
    favorite(&app, &ann, &slug).await;
    edit_article(&app, &jake, &slug, json!({"description": "changed"})).await;
    app.put(
        "/api/user",
        Some(&jake),
        json!({"user": {"username": "jacob", "bio": "new bio"}}),
    )
    .await;
    for path in [
        "/api/articles",
        "/api/articles?tag=t",
        "/api/articles?author=jacob",
    ] {
        let item = &app.get(path, None).await.json["articles"][0];
        assert_eq!(item["favoritesCount"], 1, "{path}");
        assert_eq!(item["description"], "changed", "{path}");
        assert_eq!(item["author"]["username"], "jacob", "{path}");
        assert_eq!(item["author"]["bio"], "new bio", "{path}");
    }
    // a new article and a deletion change the lists' members and counts
    let b = app.create_article(&jake, "Second", &["t"]).await;
    assert_eq!(
        slugs(&app.get("/api/articles?tag=t", None).await.json)[0],
        b["slug"].as_str().unwrap()
    );
    app.delete(&format!("/api/articles/{slug}"), Some(&jake))
        .await;
    for path in [
        "/api/articles",
        "/api/articles?tag=t",
        "/api/articles?author=jacob",
    ] {
        let list = app.get(path, None).await.json;
        assert_eq!(list["articlesCount"], 1, "{path}");
        assert_eq!(
            slugs(&list),
            vec![b["slug"].as_str().unwrap().to_string()],
            "{path}"
        );
    }
}
