//! A sharded store whose clusters have streaming replicas, on real servers: two clusters,
//! each a primary of its own with one replica (the catalogue beside the first cluster's
//! data, so with a replica too). Reads go to a cluster's replica, a writer's fence holds on its own cluster, and a
//! fence is never compared with another cluster's positions: one that names another
//! cluster sends the read to this cluster's primary, even where its number is below what
//! this cluster's replica has replayed (as a fence left by a logical shard's old home is).

use crescendo_domain::{Id, LogicalShard};
use crescendo_store::shard_map::ShardMap;
use crescendo_store::{NewUser, Store, fence};
use crescendo_store_postgres::{PgOptions, ShardedOptions, ShardedStore};
use crescendo_topology::pg::Postgres;
use std::time::{Duration, Instant};

/// The two clusters, each a primary and a replica.
struct Two {
    c1: (Postgres, Postgres),
    c2: (Postgres, Postgres),
}

/// Starts both clusters: `c1`'s server also holds the catalogue database.
async fn two_clusters() -> Two {
    tokio::task::spawn_blocking(|| {
        let p1 = Postgres::start(&[]).expect("c1 starts");
        p1.query("CREATE DATABASE catalogue").unwrap();
        p1.query("CREATE DATABASE c1").unwrap();
        let p2 = Postgres::start(&[]).expect("c2 starts");
        p2.query("CREATE DATABASE c2").unwrap();
        let r1 = Postgres::replica_of(&p1, "r1", &[]).expect("c1's replica starts");
        let r2 = Postgres::replica_of(&p2, "r1", &[]).expect("c2's replica starts");
        Two {
            c1: (p1, r1),
            c2: (p2, r2),
        }
    })
    .await
    .unwrap()
}

/// A cluster's options: its primary and replica, with a lag bound long enough that a paused
/// replica keeps taking reads for the whole test.
fn cluster(servers: &(Postgres, Postgres), db: &str) -> PgOptions {
    let mut o = PgOptions::new(servers.0.url(db));
    o.replicas = vec![servers.1.url(db)];
    o.max_replica_lag = Duration::from_secs(600);
    o.check_interval = Duration::from_millis(100);
    o
}

/// The options of a node that lists the clusters in the order of `names`.
fn listing(two: &Two, names: [&str; 2]) -> ShardedOptions {
    let of = |name: &str| match name {
        "c1" => cluster(&two.c1, "c1"),
        _ => cluster(&two.c2, "c2"),
    };
    ShardedOptions::new(
        cluster(&two.c1, "catalogue"),
        names.iter().map(|n| (n.to_string(), of(n))).collect(),
    )
}

/// The store over both clusters, once both replicas take reads.
async fn open(two: &Two) -> ShardedStore {
    let store = ShardedStore::open(&listing(two, ["c1", "c2"]))
        .await
        .expect("the store opens");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store
        .servers()
        .iter()
        .all(|(_, servers)| servers.iter().any(|s| !s.1 && s.2))
    {
        assert!(
            Instant::now() < deadline,
            "replicas never took reads: {:?}",
            store.servers()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store
}

/// The first of `prefix0`, `prefix1`… whose user the first map puts on `cluster`.
fn name_on(prefix: &str, cluster: &str) -> String {
    let map = ShardMap::place(&["c1", "c2"], 1);
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| map.cluster_of(LogicalShard::for_new_user(n)) == cluster)
        .unwrap()
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        email: format!("{name}@example.com"),
        password_hash: "$argon2id$fake".into(),
    }
}

/// Creates `name`'s user; returns its ID and the fence the write left.
async fn sign_up(store: &ShardedStore, name: &str) -> (Id, u64) {
    let (user, wrote) = fence::scope(0, store.create_user(new_user(name))).await;
    (user.expect("the sign-up succeeds").id, wrote)
}

/// Whether user `id` is found by a read fenced at `at`.
async fn found(store: &ShardedStore, id: Id, at: u64) -> bool {
    let (user, _) = fence::scope(at, store.user_by_id(id)).await;
    user.expect("the read is served").is_some()
}

/// `replica`'s replay position as a number.
fn replayed(replica: &Postgres) -> u64 {
    replica
        .query("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint")
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits until `replica` has replayed everything `primary` wrote, then pauses its replay.
async fn catch_up_and_pause(primary: &Postgres, replica: &Postgres) {
    let now: u64 = primary
        .query("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while replayed(replica) < now {
        assert!(Instant::now() < deadline, "the replica never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replica.query("SELECT pg_wal_replay_pause()").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_fences_are_positions_of_one_cluster_never_compared_across() {
    let two = two_clusters().await;
    let store = open(&two).await;
    let (p1, r1) = &two.c1;
    let (p2, r2) = &two.c2;

    // c2's WAL runs far ahead of c1's: each switch starts a new 16 MB segment
    for _ in 0..4 {
        p2.query_in(
            "c2",
            "CREATE TABLE IF NOT EXISTS ballast (n int); INSERT INTO ballast VALUES (1)",
        )
        .unwrap();
        p2.query("SELECT pg_switch_wal()").unwrap();
    }
    catch_up_and_pause(p1, r1).await;
    catch_up_and_pause(p2, r2).await;

    // a write on c1 is read back at its fence (from c1's primary: the replica is paused),
    // and is missing from c1's replica, which an unfenced read uses
    let one = name_on("one", "c1");
    let (on_c1, fence_c1) = sign_up(&store, &one).await;
    assert_ne!(
        fence_c1, 0,
        "a write on a cluster with replicas leaves a fence"
    );
    assert!(
        found(&store, on_c1, fence_c1).await,
        "the writer reads its write"
    );
    assert!(
        !found(&store, on_c1, 0).await,
        "an unfenced read is served by c1's paused replica"
    );
    // the same with the catalogue's directory, on the catalogue's paused replica
    let by_name = |at: u64| {
        let store = store.clone();
        let one = one.clone();
        async move {
            let (id, _) = fence::scope(at, async { store.user_id_by_username(&one).await }).await;
            id.expect("the lookup is served")
        }
    };
    assert_eq!(
        by_name(0).await,
        None,
        "the catalogue's replica lacks the name"
    );
    assert_eq!(by_name(fence_c1).await, Some(on_c1), "the writer finds it");

    // a write on c2, missing from c2's paused replica, whose replay position is numerically
    // above c1's fence: were positions compared across clusters, c1's fence would let that
    // replica serve the read
    let (on_c2, fence_c2) = sign_up(&store, &name_on("two", "c2")).await;
    let c1_position = fence::for_cluster(fence_c1, tag_of(fence_c1));
    assert!(
        c1_position < replayed(r2),
        "c2's replica has replayed past c1's position ({c1_position} < {})",
        replayed(r2)
    );
    assert!(!found(&store, on_c2, 0).await, "c2's replica lacks it");
    assert!(
        found(&store, on_c2, fence_c1).await,
        "a fence of c1 sends a read on c2 to c2's primary"
    );
    assert!(
        found(&store, on_c2, fence_c2).await,
        "and c2's own fence does"
    );
    // a request that wrote on both keeps one cluster's position; the other reads its primary
    let both = fence_c1.max(fence_c2);
    assert!(found(&store, on_c1, both).await && found(&store, on_c2, both).await);

    // replay resumed: the replicas serve the unfenced reads again, with the writes
    r1.query("SELECT pg_wal_replay_resume()").unwrap();
    r2.query("SELECT pg_wal_replay_resume()").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(found(&store, on_c1, 0).await && found(&store, on_c2, 0).await) {
        assert!(Instant::now() < deadline, "the replicas never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The cluster number a tagged fence names.
fn tag_of(fence: u64) -> u8 {
    (fence >> (u64::BITS - fence::CLUSTER_BITS)) as u8
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_numbers_the_clusters_alike_whatever_order_it_lists_them_in() {
    let two = two_clusters().await;
    let first = open(&two).await;
    let (_, a) = sign_up(&first, &name_on("first", "c2")).await;
    // a second node lists the clusters the other way round
    let second = ShardedStore::open(&listing(&two, ["c2", "c1"]))
        .await
        .expect("the store opens");
    let (_, b) = sign_up(&second, &name_on("second", "c2")).await;
    assert_eq!(tag_of(a), tag_of(b), "c2 has one number on every node");
    let (_, c) = sign_up(&second, &name_on("third", "c1")).await;
    assert_ne!(tag_of(c), tag_of(b));
}
