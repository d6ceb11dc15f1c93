//! The cached feed by fan-out on write (rung 10): an author crossing the celebrity threshold
//! either way is neither shown twice nor counted twice, a deletion whose job has not run
//! leaves no page short, a fan-out reaches a reader's cached feed on another node, and a
//! warm feed read asks the database nothing.

use crate::feed::{
    count_everywhere, feed_jobs_settled, register, sharded_app, sharded_node, sharded_pg, slugs,
    user_id,
};
use crescendo_domain::Id;
use crescendo_testkit::{Answer, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

async fn follow(app: &TestApp, token: &str, who: &str) {
    let f = app
        .post(
            &format!("/api/profiles/{who}/follow"),
            Some(token),
            json!({}),
        )
        .await;
    assert_eq!(f.status, StatusCode::OK, "{:?}", f.json);
}

async fn feed(app: &TestApp, token: &str, limit: u32, offset: u32) -> Answer {
    let f = app
        .get(
            &format!("/api/articles/feed?limit={limit}&offset={offset}"),
            Some(token),
        )
        .await;
    assert_eq!(f.status, StatusCode::OK, "{:?}", f.json);
    f
}

/// Asserts `token`'s feed shows exactly `want` (slugs, newest first) and counts them.
async fn feed_is(app: &TestApp, token: &str, want: &[String], why: &str) {
    let f = feed(app, token, 20, 0).await;
    assert_eq!(&slugs(&f), want, "{why}");
    assert_eq!(f.json["articlesCount"], want.len(), "{why}: the total");
}

/// Runs the feed jobs waiting in the queue as a worker does (the server runs none), until
/// the outbox and the queue are empty.
async fn run_feed_jobs(app: &TestApp) {
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "jobs never settled"
        );
        if let Some(job) = app
            .app
            .claim_job("feed", Duration::from_secs(30))
            .await
            .unwrap()
        {
            let feed = crescendo_store::jobs::FeedJob::decode(&job.payload).unwrap();
            app.app.run_feed_job(feed).await.unwrap();
            app.app.ack_job(&job).await.unwrap();
            continue;
        }
        if app.app.outbox_len().await.unwrap() == 0
            && app.app.queue_depth("feed").await.unwrap().pending == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_author_crossing_the_threshold_either_way_is_shown_and_counted_once() {
    // arrange: a threshold of 2; the reader follows an author of three articles
    let (pg, app) = sharded_app(2).await;
    let t = register(&app, &["riser", "reader", "fan2", "fan3"]).await;
    let (riser, reader, fans) = (&t[0], &t[1], &t[2..]);
    let mut want = Vec::new();
    for title in ["r1", "r2", "r3"] {
        let a = app.create_article(riser, title, &[]).await;
        want.insert(0, a["slug"].as_str().unwrap().to_string());
    }
    follow(&app, reader, "riser").await;
    feed_jobs_settled(&app).await;
    feed_is(&app, reader, &want, "back-filled").await;
    let riser_id = user_id(&pg, "riser");
    let rows = |sql: &str| count_everywhere(&pg, &sql.replace("{}", &riser_id.to_string()));
    let of_riser = "SELECT COUNT(*) FROM timelines WHERE author_id = {}";
    assert_eq!(rows(of_riser), 3);

    // act: two more followers, above the threshold (the feed above is cached)
    for f in fans {
        follow(&app, f, "riser").await;
        feed_jobs_settled(&app).await;
    }

    // assert: merged on read now, the older articles shown and counted once
    feed_is(&app, reader, &want, "a new celebrity").await;
    assert_eq!(rows(of_riser), 0, "the crossing removed the timeline rows");
    let r4 = app.create_article(riser, "r4", &[]).await;
    want.insert(0, r4["slug"].as_str().unwrap().to_string());
    feed_jobs_settled(&app).await;
    assert_eq!(rows(of_riser), 0, "no fan-out for a celebrity");
    feed_is(&app, reader, &want, "a celebrity's new post").await;

    // act: one follower leaves, back to the threshold
    let gone = app
        .delete("/api/profiles/riser/follow", Some(&fans[1]))
        .await;
    assert_eq!(gone.status, StatusCode::OK);
    feed_jobs_settled(&app).await;

    // assert: fanned out again, each article once, for the two who still follow
    feed_is(&app, reader, &want, "no longer a celebrity").await;
    feed_is(
        &app,
        &fans[0],
        &want,
        "no longer a celebrity, another reader",
    )
    .await;
    assert_eq!(
        rows("SELECT COALESCE(SUM(followers), 0) FROM follower_counts WHERE followee_id = {}"),
        2
    );
    assert_eq!(app.app.queue_depth("feed").await.unwrap().dead, 0);
    assert_eq!(rows(of_riser), 8, "back-filled into both timelines");
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_article_whose_job_has_not_run_leaves_no_page_short() {
    // arrange: no workers in the server: the test runs the feed jobs itself
    let pg = sharded_pg().await;
    let app = sharded_node(&pg, 1_000, |s| s.queue.workers = 0).await;
    let t = register(&app, &["prolific", "reader"]).await;
    let (author, reader) = (&t[0], &t[1]);
    follow(&app, reader, "prolific").await;
    run_feed_jobs(&app).await;
    let mut all = Vec::new();
    for i in 0..25 {
        let a = app.create_article(author, &format!("p{i}"), &[]).await;
        all.insert(0, a["slug"].as_str().unwrap().to_string());
    }
    run_feed_jobs(&app).await;
    assert_eq!(slugs(&feed(&app, reader, 20, 0).await), all[..20]);

    // act: the newest is deleted; its removal from timelines waits in the queue
    let d = app
        .delete(&format!("/api/articles/{}", all[0]), Some(author))
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let first = feed(&app, reader, 20, 0).await;

    // assert: a full page, from further down
    assert_eq!(slugs(&first), all[1..21], "a full page while more exist");
    run_feed_jobs(&app).await;
    let after = feed(&app, reader, 20, 0).await;
    assert_eq!(slugs(&after), all[1..21]);
    assert_eq!(after.json["articlesCount"], 24, "exact once the job ran");
    let last = feed(&app, reader, 20, 20).await;
    assert_eq!(slugs(&last), all[21..]);
    app.stop().await;
}

#[tokio::test]
async fn a_fan_out_reaches_a_readers_cached_feed_on_another_node() {
    // arrange: two nodes on one sharded store and one shared Redis cache ring
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let redis = tokio::task::spawn_blocking(move || {
        crescendo_topology::redis::Redis::start(&root, [127, 0, 0, 1], 32)
    })
    .await
    .unwrap()
    .unwrap();
    let shared = |s: &mut crescendo_config::Settings| {
        // one key for both nodes' tokens, as a topology shares it
        s.auth.jwt_secret = Some(crescendo_config::Secret::new(
            "a-feed-test-secret-shared-by-both-nodes",
        ));
        s.cache.backend = crescendo_config::CacheBackend::Redis;
        s.cache.redis_urls = vec![redis.url()];
    };
    let pg = sharded_pg().await;
    let writer = sharded_node(&pg, 1_000, shared).await;
    let reading = sharded_node(&pg, 1_000, shared).await;
    let t = register(&writer, &["poster", "watcher"]).await;
    let (poster, watcher) = (&t[0], &t[1]);
    follow(&writer, watcher, "poster").await;
    let old = writer.create_article(poster, "old news", &[]).await;
    feed_jobs_settled(&writer).await;
    let old = old["slug"].as_str().unwrap().to_string();
    for _ in 0..2 {
        // read twice: the second from the cache
        assert_eq!(
            slugs(&feed(&reading, watcher, 20, 0).await),
            std::slice::from_ref(&old)
        );
    }

    // act: a post on the writing node, fanned out by a worker
    let new = writer.create_article(poster, "new news", &[]).await;
    let new = new["slug"].as_str().unwrap().to_string();
    feed_jobs_settled(&writer).await;
    feed_jobs_settled(&reading).await;

    // assert: the reading node shows it (once the cache's change report arrives)
    let started = Instant::now();
    loop {
        let f = feed(&reading, watcher, 20, 0).await;
        if slugs(&f) == [new.clone(), old.clone()] {
            assert_eq!(f.json["articlesCount"], 2);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the cached feed never showed the fan-out: {:?}",
            slugs(&f)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.stop().await;
    reading.stop().await;
}

#[tokio::test]
async fn a_warm_feed_read_asks_the_database_nothing() {
    // arrange: a threshold of 1: the reader follows a celebrity and a plain author; a cache
    // (in memory where the pass runs without one: what is checked is the cached feed)
    let pg = sharded_pg().await;
    let app = sharded_node(&pg, 1, |s| {
        if s.cache.backend == crescendo_config::CacheBackend::None {
            s.cache.backend = crescendo_config::CacheBackend::Memory;
        }
    })
    .await;
    let t = register(&app, &["famous", "plain", "reader", "other"]).await;
    for who in ["famous", "plain"] {
        follow(&app, &t[2], who).await;
    }
    follow(&app, &t[3], "famous").await;
    app.create_article(&t[0], "f1", &[]).await;
    app.create_article(&t[1], "p1", &[]).await;
    feed_jobs_settled(&app).await;
    let reader = Id::from_i64(user_id(&pg, "reader"));
    let read = || async {
        crescendo_store::fence::scope(0, async {
            let (items, total) = app.app.feed(reader, 20, 0).await.unwrap();
            (items.len(), total, crescendo_store::fence::queries())
        })
        .await
        .0
    };
    let (n, total, cold) = read().await;
    assert_eq!(
        (n, total),
        (2, 2),
        "the celebrity's and the fanned-out article"
    );
    assert!(cold > 0, "a cold read asks the database");

    // act
    let (n, total, warm) = read().await;

    // assert
    assert_eq!((n, total), (2, 2));
    assert_eq!(warm, 0, "a warm feed read makes no database query");
    app.stop().await;
}
