//! The sharded store on real PostgreSQL: the conformance suite over a catalogue and three
//! clusters (each case on its own private server, one database per cluster), and what only
//! sharding has: users spread over every cluster, a feed merged across them, sign-up
//! reservations swept, and a map whose epoch moves.

use crescendo_domain::{Id, LogicalShard};
use crescendo_store::shard_map::ShardMap;
use crescendo_store::{ArticleFilter, NewArticle, NewUser, Page, Store, UserRecord, feed};
use crescendo_store_postgres::{PgOptions, ShardedOptions, ShardedStore};
use crescendo_topology::pg::Postgres;
use std::sync::Arc;
use std::time::Duration;

const CLUSTERS: [&str; 3] = ["c1", "c2", "c3"];

/// A private server with a catalogue database and one database per cluster.
async fn sharded() -> (Postgres, ShardedStore) {
    sharded_with(|_| {}).await
}

/// [`sharded`] with options changed by `tweak`.
async fn sharded_with(tweak: impl FnOnce(&mut ShardedOptions)) -> (Postgres, ShardedStore) {
    let pg = tokio::task::spawn_blocking(|| Postgres::start(&[]))
        .await
        .unwrap()
        .expect("postgres starts");
    for db in std::iter::once("catalogue").chain(CLUSTERS) {
        pg.query(&format!("CREATE DATABASE {db}")).unwrap();
    }
    let mut opts = options(&pg);
    tweak(&mut opts);
    let store = ShardedStore::open(&opts)
        .await
        .expect("the sharded store opens");
    (pg, store)
}

fn options(pg: &Postgres) -> ShardedOptions {
    ShardedOptions::new(
        PgOptions::new(pg.url("catalogue")),
        CLUSTERS
            .iter()
            .map(|c| (c.to_string(), PgOptions::new(pg.url(c))))
            .collect(),
    )
}

async fn fresh() -> (Postgres, Arc<dyn Store>) {
    let (pg, store) = sharded().await;
    (pg, Arc::new(store))
}

crescendo_store::store_conformance_tests!(fresh());

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        email: format!("{name}@example.com"),
        password_hash: "$argon2id$fake".into(),
    }
}

fn new_article(author: Id, title: &str) -> NewArticle {
    NewArticle {
        author_id: author,
        title: title.into(),
        description: "d".into(),
        body: "b".into(),
        tags: vec!["t".into()],
        cover_image: String::new(),
    }
}

/// Makes `stars` celebrities (above a threshold of 2): two of `fans` follow each, and their
/// follows' jobs run.
async fn celebrities(s: &ShardedStore, stars: [Id; 2], fans: &[UserRecord]) -> [Id; 2] {
    for (c, two) in stars.iter().zip(fans.chunks(2)) {
        for f in two {
            s.follow(f.id, *c).await.unwrap();
        }
    }
    feed::drain(s, 500).await.unwrap();
    for c in stars {
        assert_eq!(s.followers_count(c).await.unwrap(), 3);
    }
    stars
}

/// `reader`'s timeline holds every one of `written` (newest first) but the celebrities'.
async fn fanned_out_but_for(s: &ShardedStore, reader: Id, written: &[Id], celebrities: &[Id]) {
    let mut fanned: Vec<Id> = s
        .articles_by_ids(written)
        .await
        .unwrap()
        .iter()
        .filter(|a| !celebrities.contains(&a.author_id))
        .map(|a| a.id)
        .collect();
    fanned.sort_unstable_by_key(|id| std::cmp::Reverse(id.as_i64()));
    let all = Page {
        limit: 500,
        offset: 0,
    };
    let timeline = s.timeline(reader, all).await.unwrap();
    assert_eq!(
        timeline.ids, fanned,
        "no timeline row for a celebrity's article"
    );
    assert!(fanned.len() < written.len());
}

#[tokio::test]
async fn users_articles_and_a_merged_feed_spread_over_every_cluster() {
    // authors with more than 2 followers are celebrities: merged into feeds on read
    let (_pg, s) = sharded_with(|o| o.celebrity_followers = 2).await;
    let map = s.map();
    let reader = s.create_user(new_user("reader")).await.unwrap();
    let mut authors = Vec::new();
    for i in 0..30 {
        authors.push(
            s.create_user(new_user(&format!("author{i}")))
                .await
                .unwrap(),
        );
    }
    // every cluster holds some authors, and each author's rows are where the map says
    let report = s.report().await.unwrap();
    assert_eq!(report.len(), 3);
    for c in &report {
        assert!(c.users > 0, "cluster {} holds no user: {report:?}", c.name);
    }
    assert_eq!(report.iter().map(|c| c.users).sum::<u64>(), 31);
    assert_eq!(report.iter().map(|c| c.shards).sum::<usize>(), 4096);
    // the reader follows one author per cluster, several times over, and the feed merges
    // their articles newest first, paged with neither repeats nor gaps
    let mut followed = Vec::new();
    for a in &authors {
        if followed.len() < 6 {
            s.follow(reader.id, a.id).await.unwrap();
            followed.push(a.id);
        }
    }
    let clusters: std::collections::BTreeSet<&str> = followed
        .iter()
        .map(|id| map.cluster_of(id.shard()))
        .collect();
    assert!(
        clusters.len() >= 2,
        "followees on one cluster only: {clusters:?}"
    );
    let celebrities = celebrities(&s, [followed[0], followed[1]], &authors[6..]).await;
    let mut written = Vec::new();
    for round in 0..3 {
        for a in &authors {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let art = s
                .create_article(new_article(a.id, &format!("{} {round}", a.username)))
                .await
                .unwrap();
            if followed.contains(&a.id) {
                written.push(art.id);
            }
        }
    }
    written.reverse();
    assert!(
        feed::drain(&s, 500).await.unwrap() >= 90,
        "a fan-out job per article"
    );
    fanned_out_but_for(&s, reader.id, &written, &celebrities).await;
    let mut paged = Vec::new();
    for offset in (0..written.len() as u32 + 4).step_by(4) {
        let page = s
            .list_article_ids(&ArticleFilter::Feed(reader.id), Page { limit: 4, offset })
            .await
            .unwrap();
        assert_eq!(page.total, written.len() as u64);
        paged.extend(page.ids);
    }
    assert_eq!(
        paged, written,
        "the feed, page by page, is every followed article newest first"
    );
    // the global list and a tag list are merged from every cluster
    let all = s
        .list_article_ids(
            &ArticleFilter::All,
            Page {
                limit: 500,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.total, 90);
    assert!(all.ids.windows(2).all(|w| w[0].as_i64() > w[1].as_i64()));
    assert_eq!(s.popular_tags(10).await.unwrap(), vec!["t".to_string()]);
    // the catalogue finds every user by name and email, wherever they live
    for a in &authors {
        assert_eq!(
            s.user_id_by_username(&a.username.to_uppercase())
                .await
                .unwrap(),
            Some(a.id)
        );
        assert_eq!(
            s.user_by_email(&a.email).await.unwrap().map(|u| u.id),
            Some(a.id)
        );
    }
}

#[tokio::test]
async fn a_sign_up_killed_between_its_steps_leaves_no_name_taken() {
    let (pg, s) = sharded().await;
    let shard = LogicalShard::for_new_user("ghost");
    // a process reserved "ghost" in the catalogue and died before creating the user
    reserve_directly(&pg, "ghost", "ghost@example.com", shard.get()).await;
    let taken = s.create_user(new_user("ghost")).await.unwrap_err();
    assert!(
        matches!(
            taken,
            crescendo_store::StoreError::Conflict {
                constraint: "username"
            }
        ),
        "a reserved name is taken until the sweep: {taken:?}"
    );
    // another process reserved "half" and created the user, then died before confirming
    let half = s.create_user(new_user("half")).await.unwrap();
    unconfirm_directly(&pg, "half").await;
    assert_eq!(s.user_id_by_username("half").await.unwrap(), None);

    let swept = s.sweep(Duration::ZERO).await.unwrap();
    assert_eq!(swept.freed, 2, "ghost's name and email are free again");
    assert_eq!(
        swept.confirmed, 2,
        "half's name and email go to the user who exists"
    );
    assert_eq!(s.user_id_by_username("half").await.unwrap(), Some(half.id));
    let ghost = s
        .create_user(new_user("ghost"))
        .await
        .expect("the swept name can be taken");
    assert_eq!(
        s.user_id_by_username("ghost").await.unwrap(),
        Some(ghost.id)
    );
    assert_eq!(s.sweep(Duration::ZERO).await.unwrap(), Default::default());
}

/// Runs `sql` on the catalogue database as the admin.
async fn on_catalogue(pg: &Postgres, sql: &str) {
    let pool = sqlx::PgPool::connect(&pg.url("catalogue")).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await
        .unwrap();
}

async fn reserve_directly(pg: &Postgres, name: &str, email: &str, shard: u16) {
    on_catalogue(
        pg,
        &format!(
            "INSERT INTO usernames VALUES ('{name}', NULL, {shard}, 0); INSERT INTO emails VALUES ('{email}', NULL, {shard}, 0)"
        ),
    )
    .await;
}

async fn unconfirm_directly(pg: &Postgres, name: &str) {
    on_catalogue(
        pg,
        &format!(
            "UPDATE usernames SET user_id = NULL, reserved_at = 0 WHERE username_key = '{name}'; UPDATE emails SET user_id = NULL, reserved_at = 0 WHERE email = '{name}@example.com'"
        ),
    )
    .await;
}

#[tokio::test]
async fn a_node_takes_a_new_map_when_the_catalogue_epoch_moves() {
    let (pg, s) = sharded().await;
    let before = s.map();
    assert_eq!(before.epoch(), 1);
    assert_eq!(before, ShardMap::place(&CLUSTERS, 1));
    // a second node opening the same catalogue keeps the stored map
    let other = ShardedStore::open(&options(&pg)).await.unwrap();
    assert_eq!(other.map(), before);
    // a hot shard moves on its own: the catalogue gets the next epoch
    let hot = LogicalShard::new(7);
    let target = CLUSTERS
        .iter()
        .find(|c| **c != before.cluster_of(hot))
        .unwrap();
    on_catalogue(
        &pg,
        &format!("UPDATE shard_homes SET cluster = '{target}' WHERE shard = 7; UPDATE map_epoch SET epoch = 2"),
    )
    .await;
    assert!(s.refresh_map().await.unwrap());
    let after = s.map();
    assert_eq!(after.epoch(), 2);
    assert_eq!(after.cluster_of(hot), *target);
    assert_eq!(before.moves_to(&after).len(), 1);
    assert!(
        !s.refresh_map().await.unwrap(),
        "the same epoch again changes nothing"
    );
}

/// A sharded store whose clusters c1 and c2 (and the catalogue) share one server and c3 has
/// a server of its own, returned to be killed: (shared server, c3's server, store).
async fn with_a_lone_cluster() -> (Postgres, Postgres, ShardedStore) {
    let main = tokio::task::spawn_blocking(|| Postgres::start(&[]))
        .await
        .unwrap()
        .unwrap();
    let lone = tokio::task::spawn_blocking(|| Postgres::start(&[]))
        .await
        .unwrap()
        .unwrap();
    for db in ["catalogue", "c1", "c2"] {
        main.query(&format!("CREATE DATABASE {db}")).unwrap();
    }
    let mut opts = ShardedOptions::new(
        PgOptions::new(main.url("catalogue")),
        vec![
            ("c1".into(), PgOptions::new(main.url("c1"))),
            ("c2".into(), PgOptions::new(main.url("c2"))),
            ("c3".into(), PgOptions::new(lone.url("postgres"))),
        ],
    );
    for (_, o) in &mut opts.clusters {
        o.acquire_timeout = Duration::from_millis(500);
    }
    let s = ShardedStore::open(&opts).await.unwrap();
    (main, lone, s)
}

/// Every article, newest first, and whether the answer was partial.
async fn global_list(s: &ShardedStore) -> (crescendo_store::IdPage, bool) {
    use crescendo_store::fence;
    let all = Page {
        limit: 100,
        offset: 0,
    };
    let (list, partial) = fence::scope(0, async {
        let list = s.list_article_ids(&ArticleFilter::All, all).await;
        (list, fence::partial())
    })
    .await
    .0;
    (list.expect("the global list answers"), partial)
}

#[tokio::test]
async fn with_one_cluster_down_the_others_serve_and_global_reads_are_partial() {
    let (_main, mut lone, s) = with_a_lone_cluster().await;
    let map = s.map();
    let mut on = std::collections::BTreeMap::<String, Id>::new();
    for i in 0.. {
        let u = s.create_user(new_user(&format!("u{i}"))).await.unwrap();
        s.create_article(new_article(u.id, &format!("by u{i}")))
            .await
            .unwrap();
        on.entry(map.cluster_of(u.id.shard()).to_string())
            .or_insert(u.id);
        if on.len() == 3 {
            break;
        }
    }
    let (everything, _) = global_list(&s).await;

    lone.kill();
    s.check_clusters().await;
    assert_eq!(
        s.clusters_up(),
        vec![
            ("c1".into(), true),
            ("c2".into(), true),
            ("c3".into(), false)
        ]
    );
    s.ping()
        .await
        .expect("a node with one cluster down stays ready");
    let (list, partial) = global_list(&s).await;
    assert!(partial, "the global list says it is partial");
    let up: Vec<Id> = everything
        .ids
        .iter()
        .copied()
        .filter(|id| map.cluster_of(id.shard()) != "c3")
        .collect();
    assert_eq!(
        list.ids, up,
        "every article of the clusters that are up, none of c3"
    );
    assert!(up.len() < everything.ids.len());
    // single-shard reads and writes of the other clusters work; c3's fail as unavailable
    let c1_user = on["c1"];
    assert!(s.user_by_id(c1_user).await.unwrap().is_some());
    s.create_article(new_article(c1_user, "still writing"))
        .await
        .unwrap();
    let c3_write = s.create_article(new_article(on["c3"], "lost?")).await;
    assert!(
        matches!(c3_write, Err(crescendo_store::StoreError::Unavailable(_))),
        "{c3_write:?}"
    );
    // back: a check puts c3 in again, and nothing is partial
    let _lone = tokio::task::spawn_blocking(move || {
        lone.restart().unwrap();
        lone
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        s.check_clusters().await;
        if s.clusters_up().iter().all(|(_, up)| *up) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "c3 never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (list, partial) = global_list(&s).await;
    assert!(!partial);
    assert_eq!(list.total, everything.total + 1);
}
