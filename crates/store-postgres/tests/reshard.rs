//! Online resharding on real PostgreSQL servers: 2 → 3 clusters under a write load, with
//! exact accounting of every acknowledged write, reads throughout, the same run
//! interrupted halfway and resumed, and one interrupted halfway and aborted (the shards it
//! cut over move back); a node with a stale map cannot write to a moved shard's old home.

use crescendo_domain::Id;
use crescendo_store::shard_map::ShardMap;
use crescendo_store::{ArticleFilter, NewArticle, NewUser, Page, Store, feed};
use crescendo_store_postgres::{
    PgOptions, ReshardOptions, ReshardReport, ReshardTarget, ShardedOptions, ShardedStore,
};
use crescendo_topology::pg::Postgres;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Every table a run moves (the store's own list).
const MOVED_TABLES: &str = "users usernames emails follows followers follower_counts timelines \
    uploads articles article_tags favorites comments";

/// Three servers with logical replication on: c1 (with the catalogue), c2, and c3, which
/// starts as a spare holding no shard.
struct Deployment {
    servers: Vec<Postgres>,
}

impl Deployment {
    async fn start() -> Self {
        let servers = tokio::task::spawn_blocking(|| {
            (0..3)
                .map(|_| Postgres::start(&[("wal_level", "logical")]).expect("postgres starts"))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        servers[0].query("CREATE DATABASE catalogue").unwrap();
        Self { servers }
    }

    fn url(&self, i: usize) -> String {
        self.servers[i].url("postgres")
    }

    /// A node: its own connections, the map checked every `check` (the background task).
    async fn node(&self, check: Duration) -> ShardedStore {
        let mut opts = ShardedOptions::new(
            PgOptions::new(self.servers[0].url("catalogue")),
            (0..3)
                .map(|i| (format!("c{}", i + 1), PgOptions::new(self.url(i))))
                .collect(),
        );
        opts.spare = vec!["c3".into()];
        opts.map_check_interval = check;
        ShardedStore::open(&opts)
            .await
            .expect("the sharded store opens")
    }

    fn reshard_options(&self, stop_after: Option<usize>) -> ReshardOptions {
        ReshardOptions {
            admin_urls: (0..3)
                .map(|i| (format!("c{}", i + 1), self.url(i)))
                .collect(),
            batch: 128,
            stop_after,
        }
    }

    /// `sql`'s single number on server `i`.
    fn count(&self, i: usize, sql: &str) -> u64 {
        self.servers[i].query(sql).unwrap().parse().unwrap()
    }
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        email: format!("{name}@example.com"),
        password_hash: "$argon2id$fake".into(),
    }
}

/// What the writers were told succeeded.
#[derive(Default)]
struct Acked {
    articles: Vec<Id>,
    /// (article, author) of every acknowledged article.
    authors: Vec<(Id, Id)>,
    comments: Vec<(Id, i64)>,
    follows: Vec<(Id, Id)>,
    favorites: Vec<(Id, Id)>,
}

/// Runs the feed jobs the writes add (followers' sides, timelines) while the load runs,
/// then until none is left. A run that fails (a cluster busy with a cut-over) leaves its
/// jobs claimed until their lease ends; a later run takes them again.
async fn feed_worker(s: ShardedStore, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let _ = feed::drain(&s, 500).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    while s.outbox_len().await.unwrap() > 0 {
        let _ = feed::drain(&s, 500).await;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "feed jobs still waiting"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writers (articles, comments, follows, favourites) and a reader, until `stop`.
async fn load(
    s: ShardedStore,
    users: Vec<Id>,
    stop: Arc<AtomicBool>,
    failed_reads: Arc<AtomicU64>,
) -> (Acked, u64) {
    let reader = {
        let (s, stop, users) = (s.clone(), Arc::clone(&stop), users.clone());
        tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let all = Page {
                    limit: 20,
                    offset: 0,
                };
                let list = s.list_article_ids(&ArticleFilter::All, all).await;
                let user = s.user_by_id(users[reads as usize % users.len()]).await;
                if list.is_err() || !matches!(user, Ok(Some(_))) {
                    failed_reads.fetch_add(1, Ordering::Relaxed);
                }
                reads += 1;
            }
            reads
        })
    };
    let mut acked = Acked::default();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let author = users[i % users.len()];
        let other = users[(i * 7 + 3) % users.len()];
        let article = s
            .create_article(NewArticle {
                author_id: author,
                title: format!("during the move {i}"),
                description: "d".into(),
                body: "b".into(),
                tags: vec!["moving".into()],
                cover_image: String::new(),
            })
            .await
            .expect("a write during the move succeeds");
        acked.articles.push(article.id);
        acked.authors.push((article.id, author));
        let c = s
            .create_comment(article.id, other, format!("c{i}"))
            .await
            .unwrap();
        acked.comments.push((article.id, c.id.as_i64()));
        if other != author && s.follow(other, author).await.unwrap() {
            acked.follows.push((other, author));
        }
        if s.favorite(other, article.id).await.unwrap() {
            acked.favorites.push((other, article.id));
        }
        i += 1;
    }
    (acked, reader.await.unwrap())
}

/// Every row of `sql` (one text column) on each server.
fn rows(d: &Deployment, sql: &str) -> Vec<Vec<String>> {
    (0..3)
        .map(|i| {
            let out = d.servers[i].query(sql).unwrap();
            out.lines().map(str::to_string).collect()
        })
        .collect()
}

/// Every acknowledged write is on its home under `map` once, and nowhere else.
fn accounted(d: &Deployment, map: &ShardMap, acked: &Acked) {
    let server =
        |id: Id| -> usize { map.cluster_of(id.shard())[1..].parse::<usize>().unwrap() - 1 };
    // (row, server) for every row of each table, to find each acknowledged write in
    let index = |sql: &str| -> BTreeMap<String, Vec<usize>> {
        let mut at: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, rows) in rows(d, sql).into_iter().enumerate() {
            for r in rows {
                at.entry(r).or_default().push(i);
            }
        }
        at
    };
    let articles = index("SELECT id FROM articles");
    for &a in &acked.articles {
        assert_eq!(
            articles.get(&a.to_string()),
            Some(&vec![server(a)]),
            "article {a}"
        );
    }
    let comments = index("SELECT article_id || ':' || id FROM comments");
    for &(a, c) in &acked.comments {
        assert_eq!(
            comments.get(&format!("{a}:{c}")),
            Some(&vec![server(a)]),
            "comment {c}"
        );
    }
    let follows = index("SELECT follower_id || ':' || followee_id FROM follows");
    for &(f, e) in &acked.follows {
        assert_eq!(
            follows.get(&format!("{f}:{e}")),
            Some(&vec![server(f)]),
            "follow {f} -> {e}"
        );
    }
    let favorites = index("SELECT user_id || ':' || article_id FROM favorites");
    for &(u, a) in &acked.favorites {
        assert_eq!(
            favorites.get(&format!("{u}:{a}")),
            Some(&vec![server(a)]),
            "favourite {u} -> {a}"
        );
    }
    // both sides of every follow, each on its own home
    let followers = index("SELECT followee_id || ':' || follower_id FROM followers");
    for &(f, e) in &acked.follows {
        assert_eq!(
            followers.get(&format!("{e}:{f}")),
            Some(&vec![server(e)]),
            "follower {f} of {e}"
        );
    }
    // every article of a followed author in the follower's timeline once, on its home
    let timelines = index("SELECT owner_id || ':' || article_id FROM timelines");
    for &(f, e) in &acked.follows {
        for &(a, _) in acked.authors.iter().filter(|(_, by)| *by == e) {
            assert_eq!(
                timelines.get(&format!("{f}:{a}")),
                Some(&vec![server(f)]),
                "article {a} in {f}'s timeline"
            );
        }
    }
    assert_eq!(
        timelines.values().map(Vec::len).sum::<usize>(),
        acked
            .follows
            .iter()
            .map(|&(_, e)| acked.authors.iter().filter(|(_, by)| *by == e).count())
            .sum::<usize>(),
        "no other timeline row"
    );
    // each article's count is its favourites' rows
    for i in 0..3 {
        let wrong = d.count(
            i,
            "SELECT COUNT(*) FROM articles a WHERE favorites_count <> (SELECT COUNT(*) FROM favorites f WHERE f.article_id = a.id)",
        );
        assert_eq!(wrong, 0, "favourite counts on c{}", i + 1);
    }
}

/// A deployment after a resharding action run under load.
struct Loaded {
    d: Deployment,
    s: ShardedStore,
    /// The map before the action.
    before: ShardMap,
    acked: Acked,
    report: ReshardReport,
    reads: u64,
}

/// Sets up users on c1 and c2, runs `reshard` while writers and a reader run, and checks
/// that every read succeeded.
async fn under_load<F, Fut>(reshard: F) -> Loaded
where
    F: FnOnce(ShardedStore, Vec<(String, String)>) -> Fut,
    Fut: std::future::Future<Output = ReshardReport>,
{
    let d = Deployment::start().await;
    let s = d.node(Duration::from_secs(1)).await;
    assert!(!s.map().clusters().contains(&"c3".to_string()));
    let mut users = Vec::new();
    for i in 0..24 {
        users.push(s.create_user(new_user(&format!("u{i}"))).await.unwrap().id);
    }
    let before = s.map();
    let stop = Arc::new(AtomicBool::new(false));
    let failed_reads = Arc::new(AtomicU64::new(0));
    let feed = tokio::spawn(feed_worker(s.clone(), Arc::clone(&stop)));
    let writers = tokio::spawn(load(
        s.clone(),
        users.clone(),
        Arc::clone(&stop),
        Arc::clone(&failed_reads),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let report = reshard(s.clone(), d.reshard_options(None).admin_urls).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, reads) = writers.await.unwrap();
    feed.await.unwrap();
    assert_eq!(
        failed_reads.load(Ordering::Relaxed),
        0,
        "reads succeed throughout"
    );
    assert!(!acked.articles.is_empty());
    Loaded {
        d,
        s,
        before,
        acked,
        report,
        reads,
    }
}

/// Runs `reshard` (2 → 3 clusters) under load, and checks everything.
async fn moved_under_load<F, Fut>(reshard: F)
where
    F: FnOnce(ShardedStore, Vec<(String, String)>) -> Fut,
    Fut: std::future::Future<Output = ReshardReport>,
{
    let l = under_load(reshard).await;
    let (d, s, before, acked, report, reads) = (l.d, l.s, l.before, l.acked, l.report, l.reads);
    let after = s.map();
    let moved = before.moves_to(&after);
    assert!(
        moved.iter().all(|m| m.to == "c3"),
        "only to the new cluster"
    );
    let share = moved.len() as f64 / 4096.0;
    assert!(
        (0.25..0.42).contains(&share),
        "{share} of the shards moved, ideally 1/3"
    );
    assert_eq!(report.shards_moved, moved.len());
    let mut pauses = report.pauses.clone();
    pauses.sort();
    eprintln!(
        "resharding 2 -> 3: {} shards ({:.1} %), {} of {} rows moved, copy {} ms, {} cut-overs, write pause p50 {} ms max {} ms; {} writes acked, {} reads, 0 failed",
        moved.len(),
        100.0 * share,
        report.rows_moved,
        report.rows_total,
        report.copy_time.as_millis(),
        pauses.len(),
        pauses[pauses.len() / 2].as_millis(),
        pauses.last().unwrap().as_millis(),
        acked.articles.len(),
        reads,
    );
    accounted(&d, &after, &acked);
    // users too: each on its home once
    let per_server: u64 = (0..3)
        .map(|i| d.count(i, "SELECT COUNT(*) FROM users"))
        .sum();
    assert_eq!(per_server, 24);
    assert!(
        d.count(2, "SELECT COUNT(*) FROM users") > 0,
        "c3 holds users now"
    );
    // the moved shards' old homes hold none of their rows
    for m in &moved {
        let i = m.from[1..].parse::<usize>().unwrap() - 1;
        for (table, column) in [
            ("articles", "id"),
            ("followers", "followee_id"),
            ("timelines", "owner_id"),
        ] {
            let n = d.count(
                i,
                &format!(
                    "SELECT COUNT(*) FROM {table} WHERE ({column} & 4095) = {}",
                    m.shard.get()
                ),
            );
            assert_eq!(
                n,
                0,
                "shard {} left on {} in {table}",
                m.shard.get(),
                m.from
            );
        }
    }
}

fn options(admin_urls: Vec<(String, String)>, stop_after: Option<usize>) -> ReshardOptions {
    ReshardOptions {
        admin_urls,
        batch: 128,
        stop_after,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_two_to_three_under_writes_loses_and_duplicates_nothing() {
    moved_under_load(|s, urls| async move {
        let report = s
            .reshard(
                &ReshardTarget::AddCluster("c3".into()),
                &options(urls, None),
                &|m| eprintln!("{m}"),
            )
            .await
            .expect("the run finishes");
        assert!(report.finished);
        report
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharding_run_interrupted_halfway_resumes_and_loses_nothing() {
    moved_under_load(|s, urls| async move {
        let first = s
            .reshard(
                &ReshardTarget::AddCluster("c3".into()),
                &options(urls.clone(), Some(4)),
                &|m| eprintln!("{m}"),
            )
            .await
            .expect("the first half runs");
        assert!(!first.finished);
        assert_eq!(first.pauses.len(), 4);
        assert_eq!(
            s.pending_moves().await.unwrap() as usize,
            1401 - first.shards_moved,
            "the plan keeps what is still to move"
        );
        // a new run refuses while this one is in progress
        let again = s
            .reshard(
                &ReshardTarget::AddCluster("c3".into()),
                &options(urls.clone(), None),
                &|_| {},
            )
            .await;
        assert!(again.is_err());
        let rest = s
            .resume_reshard(&options(urls, None), &|m| eprintln!("{m}"))
            .await
            .expect("the run resumes and finishes");
        assert!(rest.finished);
        assert_eq!(s.pending_moves().await.unwrap(), 0);
        ReshardReport {
            shards_moved: first.shards_moved + rest.shards_moved,
            rows_moved: first.rows_moved + rest.rows_moved,
            rows_total: first.rows_total,
            pauses: [first.pauses, rest.pauses].concat(),
            copy_time: first.copy_time + rest.copy_time,
            ..rest
        }
    })
    .await;
}

/// The 2 → 3 run stopped after 4 cut-overs and aborted; the abort stopped after one batch
/// back, aborted again, stopped again and resumed. Returns the moving back's whole report.
async fn abort_halfway(s: ShardedStore, urls: Vec<(String, String)>) -> ReshardReport {
    let log = |m: &str| eprintln!("{m}");
    let target = ReshardTarget::AddCluster("c3".into());
    let first = s
        .reshard(&target, &options(urls.clone(), Some(4)), &log)
        .await
        .expect("the first half runs");
    assert_eq!((first.finished, first.shards_moved), (false, 4 * 128));
    let back = s
        .abort_reshard(&options(urls.clone(), Some(1)), &log)
        .await
        .expect("the abort starts");
    assert_eq!((back.finished, back.shards_moved), (false, 128));
    assert_eq!(
        s.pending_moves().await.unwrap() as usize,
        first.shards_moved - back.shards_moved,
        "the plan keeps what is still to move back"
    );
    let to_end = options(urls.clone(), None);
    let again = s.reshard(&target, &to_end, &|_| {}).await;
    assert!(again.is_err(), "a new run waits for the abort");
    let more = s
        .abort_reshard(&options(urls, Some(1)), &log)
        .await
        .expect("a second abort goes on returning");
    assert_eq!((more.finished, more.shards_moved), (false, 128));
    let rest = s
        .resume_reshard(&to_end, &log)
        .await
        .expect("the abort resumes and finishes");
    assert!(rest.finished);
    assert_eq!(s.pending_moves().await.unwrap(), 0);
    ReshardReport {
        shards_moved: back.shards_moved + more.shards_moved + rest.shards_moved,
        rows_moved: back.rows_moved + more.rows_moved + rest.rows_moved,
        pauses: [back.pauses, more.pauses, rest.pauses].concat(),
        ..rest
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_run_moves_the_shards_it_cut_over_back_and_loses_nothing() {
    let l = under_load(abort_halfway).await;
    let after = l.s.map();
    let off = l.before.moves_to(&after);
    assert!(
        off.is_empty(),
        "{} logical shards are not where they were before the run",
        off.len()
    );
    assert!(after.epoch() > l.before.epoch(), "a later epoch");
    eprintln!(
        "aborted after 4 cut-overs: {} shards moved back in {} cut-overs, max write pause {} ms; {} writes acked, {} reads, 0 failed",
        l.report.shards_moved,
        l.report.pauses.len(),
        l.report.pauses.iter().max().unwrap().as_millis(),
        l.acked.articles.len(),
        l.reads,
    );
    accounted(&l.d, &after, &l.acked);
    let per_server: u64 = (0..3)
        .map(|i| l.d.count(i, "SELECT COUNT(*) FROM users"))
        .sum();
    assert_eq!(per_server, 24);
    // c3 holds and owns nothing, and c1 and c2 own exactly their shards in the map
    for table in MOVED_TABLES.split_whitespace().chain(["owned_shards"]) {
        let n = l.d.count(2, &format!("SELECT COUNT(*) FROM {table}"));
        assert_eq!(n, 0, "{table} rows left on c3");
    }
    let counts = after.shard_counts();
    for (i, name) in ["c1", "c2"].into_iter().enumerate() {
        let owned = l.d.count(i, "SELECT COUNT(*) FROM owned_shards") as usize;
        assert_eq!(owned, counts[name], "shards {name} owns");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_stale_map_cannot_write_to_a_moved_shards_old_home() {
    let d = Deployment::start().await;
    let fresh = d.node(Duration::from_secs(1)).await;
    // this node never checks the map on its own
    let stale = d.node(Duration::from_secs(3600)).await;
    let user = fresh.create_user(new_user("mover")).await.unwrap();
    let home = fresh.map().cluster_of(user.id.shard()).to_string();
    let target = if home == "c1" { "c2" } else { "c1" };
    fresh
        .reshard(
            &ReshardTarget::MoveShard(user.id.shard().get(), target.into()),
            &d.reshard_options(None),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(
        stale.map().cluster_of(user.id.shard()),
        home,
        "the stale node's map"
    );
    // its write is refused by the old home and lands on the new one
    let a = stale
        .create_article(NewArticle {
            author_id: user.id,
            title: "written with a stale map".into(),
            description: "d".into(),
            body: "b".into(),
            tags: vec![],
            cover_image: String::new(),
        })
        .await
        .expect("the write is retried on the new home");
    let (old, new) = (
        home[1..].parse::<usize>().unwrap() - 1,
        target[1..].parse::<usize>().unwrap() - 1,
    );
    let on = |i: usize| {
        d.count(
            i,
            &format!("SELECT COUNT(*) FROM articles WHERE id = {}", a.id),
        )
    };
    assert_eq!((on(old), on(new)), (0, 1));
    assert_eq!(
        stale.map().cluster_of(user.id.shard()),
        target,
        "the node reloaded its map"
    );
    assert!(
        d.count(old, "SELECT COUNT(*) FROM users") == 0,
        "the old home kept no row of the user"
    );
}
