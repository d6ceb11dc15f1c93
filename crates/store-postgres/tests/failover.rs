//! `crescendo failover` on real servers, started durable as `crescendo up` starts them.

use crescendo_store_postgres::failover::{FailoverError, promote_most_advanced};
use crescendo_topology::pg::Postgres;
use std::time::{Duration, Instant};

/// Polls `query` on `pg` until it prints `want` (at most 30 s).
fn wait_for(pg: &Postgres, query: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.query(query).ok().as_deref() != Some(want) {
        assert!(Instant::now() < deadline, "{query} never gave {want}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `url` with `role:password` in place of its credentials.
fn as_role(url: &str, role: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (_, host) = rest.split_once('@').expect("a URL with credentials");
    format!("{scheme}://{role}:{password}@{host}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_cannot_be_repointed_leaves_the_new_primary_waiting_for_a_standby() {
    // arrange: a synchronous primary, r1 up to date, r2 behind and readable only by a
    // role that may look but not change its configuration
    let parent = std::env::temp_dir();
    let mut primary = Postgres::start_in(&parent, &[]).expect("primary starts");
    primary
        .query(
            "CREATE ROLE watcher LOGIN PASSWORD 'watcher'; GRANT pg_read_all_settings TO watcher",
        )
        .unwrap();
    let r1 = Postgres::replica_in(&parent, &primary, "r1", &[]).expect("r1 starts");
    let r2 = Postgres::replica_in(&parent, &primary, "r2", &[]).expect("r2 starts");
    primary
        .query("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (r1, r2)'")
        .unwrap();
    primary.query("SELECT pg_reload_conf()").unwrap();
    // r2 stops streaming (a primary that is not there), keeping its standby name
    r2.query(
        "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1 user=postgres application_name=r2'",
    )
    .unwrap();
    r2.query("SELECT pg_reload_conf()").unwrap();
    wait_for(
        &primary,
        "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'r2'",
        "0",
    );
    primary
        .query("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .unwrap();
    primary.kill();
    let watcher_r2 = as_role(&r2.url("postgres"), "watcher", "watcher");
    let urls = vec![primary.url("postgres"), r1.url("postgres"), watcher_r2];

    // act
    let result = promote_most_advanced(&urls, true).await;

    // assert
    let r1_name = format!("127.0.0.1:{}", r1.port());
    let r2_name = format!("127.0.0.1:{}", r2.port());
    match &result {
        Err(FailoverError::Repoint { primary, failed }) => {
            assert_eq!(primary, &r1_name, "the most advanced replica is promoted");
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].0, r2_name, "{failed:?}");
        }
        other => panic!("expected a re-pointing failure, got {other:?}"),
    }
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains(&r1_name) && message.contains(&r2_name),
        "the message names the new primary and the replica to re-point: {message}"
    );
    assert_eq!(r1.query("SELECT pg_is_in_recovery()").unwrap(), "f");
    assert_eq!(
        r1.query("SHOW synchronous_standby_names").unwrap(),
        "ANY 1 (\"r2\")",
        "the new primary's commits wait for a standby even though a step failed"
    );
    assert_eq!(r1.query("SELECT x FROM t").unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_before_the_promotion_promotes_nothing() {
    // arrange: a dead primary and one replica reachable only as a role that cannot read
    // the other's settings
    let parent = std::env::temp_dir();
    let mut primary = Postgres::start_in(&parent, &[]).expect("primary starts");
    primary
        .query("CREATE ROLE nobody LOGIN PASSWORD 'nobody'")
        .unwrap();
    let r1 = Postgres::replica_in(&parent, &primary, "r1", &[]).expect("r1 starts");
    let r2 = Postgres::replica_in(&parent, &primary, "r2", &[]).expect("r2 starts");
    primary.kill();
    // r2 cannot say who it is: the failover must stop before promoting anyone
    let nobody_r2 = as_role(&r2.url("postgres"), "nobody", "nobody");
    let urls = vec![primary.url("postgres"), nobody_r2, r1.url("postgres")];

    // act
    let result = promote_most_advanced(&urls, true).await;

    // assert
    assert!(
        matches!(result, Err(FailoverError::NotPromoted { .. })),
        "{result:?}"
    );
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("nothing was promoted"),
        "the message says what state it left"
    );
    assert_eq!(r1.query("SELECT pg_is_in_recovery()").unwrap(), "t");
    assert_eq!(r2.query("SELECT pg_is_in_recovery()").unwrap(), "t");
}
