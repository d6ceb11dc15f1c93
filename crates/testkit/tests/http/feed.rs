//! The feed by fan-out on write on a sharded store of three clusters (rung 10), whatever
//! `TEST_STORE` says: a non-celebrity's articles reach followers' timelines through feed
//! jobs, a celebrity's are merged into feeds at read time with no timeline row.

use crescendo_testkit::{Answer, TestApp};
use crescendo_topology::pg::Postgres;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub(crate) const CLUSTERS: [&str; 3] = ["c1", "c2", "c3"];

/// A server on a sharded store (a catalogue and three clusters on one private PostgreSQL
/// server) whose celebrities have more than `celebrity` followers.
pub(crate) async fn sharded_app(celebrity: u64) -> (Postgres, TestApp) {
    let pg = sharded_pg().await;
    let app = sharded_node(&pg, celebrity, |_| {}).await;
    (pg, app)
}

/// A private PostgreSQL server with an empty catalogue and three cluster databases.
pub(crate) async fn sharded_pg() -> Postgres {
    let pg = tokio::task::spawn_blocking(|| Postgres::start(&[]))
        .await
        .unwrap()
        .expect("postgres starts");
    for db in std::iter::once("catalogue").chain(CLUSTERS) {
        pg.query(&format!("CREATE DATABASE {db}")).unwrap();
    }
    pg
}

/// Another server on the sharded store of `pg` (made by [`sharded_app`]), its settings
/// tweaked by `tweak`.
pub(crate) async fn sharded_node(
    pg: &Postgres,
    celebrity: u64,
    tweak: impl FnOnce(&mut crescendo_config::Settings),
) -> TestApp {
    let catalogue = pg.url("catalogue");
    let shards: Vec<String> = CLUSTERS
        .iter()
        .map(|c| format!("{c}={}", pg.url(c)))
        .collect();
    TestApp::spawn_with(move |s| {
        s.store.backend = crescendo_config::StoreBackend::Postgres;
        s.store.postgres_url = catalogue;
        s.store.postgres_shards = shards;
        s.store.celebrity_followers = celebrity;
        tweak(s);
    })
    .await
}

/// The sum over every cluster of the number `sql` counts.
pub(crate) fn count_everywhere(pg: &Postgres, sql: &str) -> u64 {
    CLUSTERS
        .iter()
        .map(|c| pg.query_in(c, sql).unwrap().parse::<u64>().unwrap())
        .sum()
}

/// A user's ID, from the cluster that holds the user.
pub(crate) fn user_id(pg: &Postgres, username: &str) -> i64 {
    let found: Vec<String> = CLUSTERS
        .iter()
        .map(|c| {
            pg.query_in(
                c,
                &format!("SELECT id FROM users WHERE username = '{username}'"),
            )
            .unwrap()
        })
        .filter(|out| !out.is_empty())
        .collect();
    assert_eq!(found.len(), 1, "{username} lives on one cluster");
    found[0].parse().unwrap()
}

pub(crate) fn slugs(feed: &Answer) -> Vec<String> {
    feed.json["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap().to_string())
        .collect()
}

/// Waits (at most 20 s) until no feed job is waiting in the outbox or the queue.
pub(crate) async fn feed_jobs_settled(app: &TestApp) {
    let started = Instant::now();
    loop {
        if app.app.outbox_len().await.unwrap() == 0
            && app.app.queue_depth("feed").await.unwrap().pending == 0
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "feed jobs still waiting"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn register(app: &TestApp, names: &[&str]) -> Vec<String> {
    let mut tokens = Vec::new();
    for n in names {
        tokens.push(app.register(n).await);
    }
    tokens
}

#[tokio::test]
async fn a_celebritys_post_reaches_feeds_on_read_with_no_timeline_row_and_others_by_fan_out() {
    // arrange: ann and bob follow a star and a plain author; the star has five more
    // followers, inserted directly with the count (users who never signed up): above the
    // threshold of 3
    let (pg, app) = sharded_app(3).await;
    let t = register(&app, &["star", "plain", "ann", "bob"]).await;
    let (star, plain, readers) = (&t[0], &t[1], &t[2..]);
    for r in readers {
        for who in ["star", "plain"] {
            let f = app
                .post(&format!("/api/profiles/{who}/follow"), Some(r), json!({}))
                .await;
            assert_eq!(f.status, StatusCode::OK);
        }
    }
    let star_id = user_id(&pg, "star");
    let home = CLUSTERS
        .iter()
        .find(|c| {
            !pg.query_in(c, &format!("SELECT id FROM users WHERE id = {star_id}"))
                .unwrap()
                .is_empty()
        })
        .unwrap();
    pg.query_in(
        home,
        &format!(
            "WITH f AS (INSERT INTO followers (followee_id, follower_id)
                        SELECT {star_id}, g FROM generate_series(1, 5) g RETURNING 1)
             INSERT INTO follower_counts (followee_id, followers) SELECT {star_id}, COUNT(*) FROM f
             ON CONFLICT (followee_id) DO UPDATE SET followers = follower_counts.followers + EXCLUDED.followers"
        ),
    )
    .unwrap();
    feed_jobs_settled(&app).await;

    // act
    let s1 = app.create_article(star, "s1", &[]).await;
    let p1 = app.create_article(plain, "p1", &[]).await;

    // assert: the star's post is in both feeds at once, merged on read
    for r in readers {
        let feed = app.get("/api/articles/feed", Some(r)).await;
        assert_eq!(feed.status, StatusCode::OK);
        assert!(slugs(&feed).contains(&s1["slug"].as_str().unwrap().to_string()));
    }
    // the plain author's reaches them through fan-out, once its job has run
    feed_jobs_settled(&app).await;
    let want: Vec<String> = [&p1, &s1]
        .iter()
        .map(|a| a["slug"].as_str().unwrap().to_string())
        .collect();
    for r in readers {
        let feed = app.get("/api/articles/feed", Some(r)).await;
        assert_eq!(slugs(&feed), want, "newest first");
        assert_eq!(feed.json["articlesCount"], 2);
    }
    let plain_id = user_id(&pg, "plain");
    assert_eq!(
        count_everywhere(
            &pg,
            &format!("SELECT COUNT(*) FROM timelines WHERE author_id = {plain_id}")
        ),
        2,
        "a timeline row for each of the plain author's followers"
    );
    assert_eq!(
        count_everywhere(
            &pg,
            &format!("SELECT COUNT(*) FROM timelines WHERE author_id = {star_id}")
        ),
        0,
        "no write per follower for a celebrity"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_feed_mixes_authors_from_every_cluster_newest_first_paged_exactly() {
    // arrange: a reader follows twelve authors, spread over the clusters; two of them are
    // celebrities (threshold 1, and a second follower each)
    let (pg, app) = sharded_app(1).await;
    let names: Vec<String> = (0..12).map(|i| format!("author{i}")).collect();
    let mut tokens = Vec::new();
    for n in &names {
        tokens.push(app.register(n).await);
    }
    let reader = app.register("reader").await;
    let other = app.register("other").await;
    for (i, n) in names.iter().enumerate() {
        app.post(
            &format!("/api/profiles/{n}/follow"),
            Some(&reader),
            json!({}),
        )
        .await;
        if i < 2 {
            app.post(
                &format!("/api/profiles/{n}/follow"),
                Some(&other),
                json!({}),
            )
            .await;
        }
    }
    let homes: std::collections::BTreeSet<String> = names
        .iter()
        .map(|n| {
            let id = user_id(&pg, n);
            CLUSTERS
                .iter()
                .find(|c| {
                    !pg.query_in(c, &format!("SELECT id FROM users WHERE id = {id}"))
                        .unwrap()
                        .is_empty()
                })
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(homes.len(), 3, "authors on every cluster");
    feed_jobs_settled(&app).await;

    // act: two rounds of posts by every author
    let mut written: Vec<Value> = Vec::new();
    for round in 0..2 {
        for t in &tokens {
            written.push(app.create_article(t, &format!("post {round}"), &[]).await);
        }
    }
    feed_jobs_settled(&app).await;

    // assert: pages of 5 walk the whole feed newest first, without repeats or gaps
    let want: Vec<String> = written
        .iter()
        .rev()
        .map(|a| a["slug"].as_str().unwrap().to_string())
        .collect();
    let mut paged = Vec::new();
    for offset in (0..want.len() + 5).step_by(5) {
        let page = app
            .get(
                &format!("/api/articles/feed?limit=5&offset={offset}"),
                Some(&reader),
            )
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.json["articlesCount"], want.len());
        paged.extend(slugs(&page));
    }
    assert_eq!(paged, want);
    app.stop().await;
}
