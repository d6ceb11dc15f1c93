//! What fan-out on write costs on a sharded store of three clusters (one private
//! PostgreSQL server): the write cost of a post by an author with 10, 1,000 and 10,000
//! followers (timeline rows written and milliseconds), and a feed read from the timeline
//! against the same feed merged on read (the author as a celebrity). Followers are inserted
//! directly (users who never signed up). Prints its figures; run with `--nocapture`.

use crescendo_domain::Id;
use crescendo_store::jobs::FeedJob;
use crescendo_store::{ArticleFilter, NewArticle, NewUser, Page, Store, feed};
use crescendo_store_postgres::{PgOptions, ShardedOptions, ShardedStore};
use crescendo_topology::pg::Postgres;
use sqlx::PgPool;
use std::time::{Duration, Instant};

const CLUSTERS: [&str; 3] = ["c1", "c2", "c3"];

fn options(pg: &Postgres, celebrity: u64) -> ShardedOptions {
    let mut o = ShardedOptions::new(
        PgOptions::new(pg.url("catalogue")),
        CLUSTERS
            .iter()
            .map(|c| (c.to_string(), PgOptions::new(pg.url(c))))
            .collect(),
    );
    o.celebrity_followers = celebrity;
    o
}

/// Gives `author` `n` followers (IDs in a range of their own, spread over every logical
/// shard): users and follows on each follower's cluster, the followers' side and the
/// count on the author's.
async fn followers(pg: &Postgres, s: &ShardedStore, author: Id, range: i64, n: i64) {
    let map = s.map();
    let ids: Vec<i64> = (0..n)
        .map(|k| ((range + k + 1) << 12) | (k % 4096))
        .collect();
    for c in CLUSTERS {
        let here: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|&id| map.cluster_of(Id::from_i64(id).shard()) == c)
            .collect();
        let pool = PgPool::connect(&pg.url(c)).await.unwrap();
        sqlx::query(
            "INSERT INTO users (id, username, email, password_hash, created_at, updated_at)
             SELECT i, 'f' || i, 'f' || i || '@example.com', 'x', 0, 0 FROM unnest($1::bigint[]) i",
        )
        .bind(&here)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO follows (follower_id, followee_id, created_at)
             SELECT i, $2, 0 FROM unnest($1::bigint[]) i",
        )
        .bind(&here)
        .bind(author.as_i64())
        .execute(&pool)
        .await
        .unwrap();
        if map.cluster_of(author.shard()) == c {
            sqlx::query(
                "INSERT INTO followers (followee_id, follower_id) SELECT $2, unnest($1::bigint[])",
            )
            .bind(&ids)
            .bind(author.as_i64())
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query("INSERT INTO follower_counts (followee_id, followers) VALUES ($1, $2)")
                .bind(author.as_i64())
                .bind(n)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }
}

fn post(author: Id, title: &str) -> NewArticle {
    NewArticle {
        author_id: author,
        title: title.into(),
        description: "d".into(),
        body: "b".into(),
        tags: vec![],
        cover_image: String::new(),
    }
}

/// Mean time of `n` reads of `reader`'s first feed page of 20.
async fn feed_read(s: &ShardedStore, reader: Id, n: u32) -> Duration {
    let page = Page {
        limit: 20,
        offset: 0,
    };
    let started = Instant::now();
    for _ in 0..n {
        let f = s
            .list_article_ids(&ArticleFilter::Feed(reader), page)
            .await
            .unwrap();
        assert_eq!(f.ids.len(), 5);
    }
    started.elapsed() / n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posts_fan_out_costs_a_row_per_follower_and_a_celebrity_none() {
    let pg = tokio::task::spawn_blocking(|| Postgres::start(&[]))
        .await
        .unwrap()
        .expect("postgres starts");
    for db in std::iter::once("catalogue").chain(CLUSTERS) {
        pg.query(&format!("CREATE DATABASE {db}")).unwrap();
    }
    let s = ShardedStore::open(&options(&pg, 20_000)).await.unwrap();
    let mut big = None;
    for (i, n) in [10i64, 1_000, 10_000].into_iter().enumerate() {
        let author = s
            .create_user(NewUser {
                username: format!("author{n}"),
                email: format!("author{n}@example.com"),
                password_hash: "x".into(),
            })
            .await
            .unwrap();
        followers(&pg, &s, author.id, (i as i64 + 1) << 20, n).await;
        let started = Instant::now();
        let a = s.create_article(post(author.id, "first")).await.unwrap();
        let write = started.elapsed();
        let started = Instant::now();
        let job = FeedJob::Publish {
            article: a.id,
            author: author.id,
        };
        let rows = feed::run(&s, job, 500).await.unwrap().rows();
        let fan_out = started.elapsed();
        assert_eq!(rows, n as u64, "a timeline row per follower");
        eprintln!(
            "post by an author with {n} followers: the write {} ms, its fan-out {rows} rows in {} ms",
            write.as_millis(),
            fan_out.as_millis()
        );
        big = Some((author.id, (((i as i64 + 1) << 20) + 1) << 12));
    }
    // a reader following the 10,000-follower author, five posts: from the timeline, and
    // merged on read with the author as a celebrity (a second node, threshold 5)
    let (author, reader) = big.unwrap();
    let reader = Id::from_i64(reader);
    for k in 0..4 {
        let a = s
            .create_article(post(author, &format!("more {k}")))
            .await
            .unwrap();
        let job = FeedJob::Publish {
            article: a.id,
            author,
        };
        feed::run(&s, job, 500).await.unwrap();
    }
    let timeline = feed_read(&s, reader, 200).await;
    let celebrity = ShardedStore::open(&options(&pg, 5)).await.unwrap();
    let merged = feed_read(&celebrity, reader, 200).await;
    eprintln!(
        "feed read (20 of 5 articles, one followee with 10,000 followers): from the timeline {} µs, merged on read {} µs",
        timeline.as_micros(),
        merged.as_micros()
    );
    let job = FeedJob::Publish {
        article: s.create_article(post(author, "famous")).await.unwrap().id,
        author,
    };
    assert_eq!(
        feed::run(&celebrity, job, 500).await.unwrap().rows(),
        0,
        "a celebrity's post writes no row"
    );
}
