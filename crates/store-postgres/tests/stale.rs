//! Stale reads on real servers (`store.serve_stale_reads`): a primary and its streaming
//! replica, the primary cut off as a WAN cut does it (every process of the server stopped
//! with SIGSTOP: connections are accepted by the kernel, queries hang) or killed as a lost
//! region. Reads go on from the replica, marked with a staleness that grows; writes fail
//! with "unavailable" within the monitor's bound, and succeed again once the link heals.

use crescendo_store::{NewUser, Store, StoreError, fence};
use crescendo_store_postgres::{PgOptions, PgStore};
use crescendo_topology::pg::Postgres;
use std::time::{Duration, Instant};

/// How long a write may take to fail once the primary is cut off: the bound the store
/// states (2.8 s at the default 200 ms check interval), with room for a loaded machine.
const WRITE_FAILS_WITHIN: Duration = Duration::from_secs(6);

/// A primary and one streaming replica.
async fn primary_and_replica() -> (Postgres, Postgres) {
    tokio::task::spawn_blocking(|| {
        let primary = Postgres::start(&[]).expect("the primary starts");
        let replica = Postgres::replica_of(&primary, "r1", &[]).expect("the replica starts");
        (primary, replica)
    })
    .await
    .unwrap()
}

/// A migrated store over both, checked every 200 ms (the default), stale reads as given,
/// with the replica taking reads.
async fn store(primary: &Postgres, replica: &Postgres, stale_reads: bool) -> PgStore {
    let mut opts = PgOptions::new(primary.url("postgres"));
    opts.replicas = vec![replica.url("postgres")];
    opts.serve_stale_reads = stale_reads;
    let store = PgStore::connect(&opts).expect("the URLs are valid");
    store.migrate().await.expect("migrations apply");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        store.check_servers().await;
        if store.servers()[1].2 {
            return store;
        }
        assert!(Instant::now() < deadline, "the replica never took reads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        email: format!("{name}@example.com"),
        password_hash: "$argon2id$fake".into(),
    }
}

/// Stops (`cut`) or continues every process of `pg` (see [`Postgres::blackhole`]).
fn blackhole(pg: &Postgres, cut: bool) {
    pg.blackhole(cut);
}

/// Continues a cut-off server when the test ends, even by a failed assertion, so that it
/// can be shut down.
struct Heal<'a>(&'a Postgres);

impl Drop for Heal<'_> {
    fn drop(&mut self) {
        blackhole(self.0, false);
    }
}

/// Reads user `id` in a scope fenced at `fence`: (found?, staleness).
async fn read_user(store: &PgStore, id: crescendo_domain::Id, at: u64) -> (bool, Option<Duration>) {
    let ((found, stale), _) = fence::scope(at, async {
        let found = store.user_by_id(id).await.expect("the read is served");
        (found.is_some(), fence::staleness())
    })
    .await;
    (found, stale)
}

/// Writes users named `prefix-N` until one fails; how long the failing one took.
async fn write_until_it_fails(store: &PgStore, prefix: &str) -> Duration {
    for i in 0.. {
        let started = Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            store.create_user(new_user(&format!("{prefix}{i}"))),
        )
        .await
        .expect("a write never hangs for 30 s");
        match result {
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(StoreError::Unavailable(_)) => return started.elapsed(),
            Err(e) => panic!("a write failed otherwise than unavailable: {e}"),
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_wan_cut_reads_are_served_stale_and_writes_fail_promptly_until_it_heals() {
    // arrange: a user written and replayed; a fence the replica has not replayed
    let (primary, replica) = primary_and_replica().await;
    let store = store(&primary, &replica, true).await;
    let (user, wrote) = fence::scope(0, store.create_user(new_user("before"))).await;
    let user = user.unwrap().id;
    let unreplayed = wrote + (1 << 40);
    assert_eq!(
        read_user(&store, user, unreplayed).await,
        (true, None),
        "with the primary answering, a read the replica cannot serve goes to the primary, fresh"
    );

    // act: the WAN is cut
    let cut = Instant::now();
    blackhole(&primary, true);
    let _heal = Heal(&primary);
    let failed_after = write_until_it_fails(&store, "cut").await;
    let first_503 = cut.elapsed();

    // assert: writes fail within the bound; reads, fenced or not, go on from the replica,
    // marked with a staleness that grows; the store stays ready
    eprintln!("cut → first failed write: {first_503:?} (that write took {failed_after:?})");
    assert!(
        first_503 < WRITE_FAILS_WITHIN,
        "writes failed only after {first_503:?}"
    );
    let started = Instant::now();
    let failed = store.create_user(new_user("after-the-cut")).await;
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "{failed:?}"
    );
    eprintln!(
        "a write once the primary is out fails in {:?}",
        started.elapsed()
    );
    let (found, first) = read_user(&store, user, 0).await;
    assert!(found);
    let first = first.expect("a read during the cut is marked stale");
    let (found, fenced) = read_user(&store, user, unreplayed).await;
    assert!(
        found,
        "a fenced read the replica has not replayed is served"
    );
    let fenced = fenced.expect("and marked stale");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, later) = read_user(&store, user, 0).await;
    let later = later.expect("still stale");
    eprintln!("staleness: {first:?}, fenced {fenced:?}, 1 s later {later:?}");
    assert!(
        first >= first_503,
        "the primary was last heard before the cut: {first:?} < {first_503:?}"
    );
    assert!(
        later >= first + Duration::from_millis(900),
        "{first:?} then {later:?}"
    );
    store
        .ping()
        .await
        .expect("the store stays ready on its replica");

    // act: the link heals
    drop(_heal);
    let healed = Instant::now();
    let deadline = healed + Duration::from_secs(30);
    let (written, at) = loop {
        let (w, at) = fence::scope(0, store.create_user(new_user("healed"))).await;
        match w {
            Ok(w) => break (w, at),
            Err(StoreError::Unavailable(_)) => {
                assert!(Instant::now() < deadline, "writes never came back");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    eprintln!("heal → first successful write: {:?}", healed.elapsed());

    // assert: reads are fresh again, and the writer reads the write
    assert_eq!(
        read_user(&store, written.id, at).await,
        (true, None),
        "reads are fresh once the primary answers"
    );
    assert_eq!(read_user(&store, user, 0).await.1, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_primary_s_region_is_lost_reads_are_served_stale_and_writes_fail_at_once() {
    // arrange
    let (mut primary, replica) = primary_and_replica().await;
    let store = store(&primary, &replica, true).await;
    let user = store.create_user(new_user("before")).await.unwrap().id;

    // act: the primary's whole region goes (its port refuses connections)
    let lost = Instant::now();
    primary.kill();
    let failed_after = write_until_it_fails(&store, "lost").await;
    let first_503 = lost.elapsed();

    // assert
    eprintln!("region lost → first failed write: {first_503:?} (that write took {failed_after:?})");
    assert!(
        first_503 < WRITE_FAILS_WITHIN,
        "writes failed only after {first_503:?}"
    );
    let (found, stale) = read_user(&store, user, u64::MAX).await;
    assert!(found, "even a read that must see everything is served");
    assert!(stale.is_some(), "marked stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stale_reads_a_read_the_replica_cannot_serve_still_waits_for_the_primary() {
    // arrange
    let (primary, replica) = primary_and_replica().await;
    let store = store(&primary, &replica, false).await;
    let (user, wrote) = fence::scope(0, store.create_user(new_user("before"))).await;
    let user = user.unwrap().id;
    let unreplayed = wrote + (1 << 40);
    assert_eq!(read_user(&store, user, unreplayed).await, (true, None));

    // act: the WAN is cut
    blackhole(&primary, true);
    let _heal = Heal(&primary);
    let fenced = tokio::time::timeout(
        Duration::from_secs(10),
        fence::scope(unreplayed, store.user_by_id(user)),
    )
    .await;

    // assert: the read went to the primary, so it hung or failed; nothing is marked stale
    assert!(
        !matches!(fenced, Ok((Ok(_), _))),
        "a fenced read was served without the primary: {fenced:?}"
    );
    let (found, stale) = read_user(&store, user, 0).await;
    assert!(found, "a read the replica may serve is served");
    assert_eq!(stale, None, "and never marked stale: the setting is off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_on_the_primary_when_the_wan_is_cut_fails_within_the_bound() {
    use sqlx::Connection;
    // arrange: a write that has begun its transaction and waits inside it, on a lock
    let (primary, replica) = primary_and_replica().await;
    let store = store(&primary, &replica, true).await;
    let mut locker = sqlx::PgConnection::connect(&primary.url("postgres"))
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let writer = store.clone();
    let write = tokio::spawn(async move { writer.create_user(new_user("waiting")).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!write.is_finished(), "the write waits on the lock");

    // act: the WAN is cut while the write waits on a statement
    let cut = Instant::now();
    blackhole(&primary, true);
    let heal = Heal(&primary);
    let result = tokio::time::timeout(Duration::from_secs(30), write)
        .await
        .expect("the write is given up, not left hanging")
        .unwrap();
    let failed_after = cut.elapsed();

    // assert
    eprintln!("cut → the waiting write failed: {failed_after:?}");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(failed_after < WRITE_FAILS_WITHIN, "{failed_after:?}");
    drop(heal);
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
}
