//! Emptying the ring (what a region's invalidator does while the cross-region invalidation
//! stream is lost), on real Redis servers the test starts.

use bytes::Bytes;
use crescendo_cache::{Cache, UNKNOWN_FENCE};
use crescendo_cache_redis::{RedisCache, RingOptions};
use crescendo_topology::redis::Redis;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptying_drops_every_entry_refuses_earlier_loads_and_keeps_the_write_position() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let servers: Vec<Redis> = tokio::task::spawn_blocking(move || {
        (0..2)
            .map(|i| {
                Redis::start(&root.join(format!("r{i}")), [127, 0, 0, 1], 32).expect("redis starts")
            })
            .collect()
    })
    .await
    .unwrap();
    let ring = RedisCache::connect(&RingOptions::new(servers.iter().map(Redis::url).collect()))
        .await
        .expect("ring connects");
    // a write at position 500 on some keys, then entries filled
    ring.invalidate(&["k0".to_string()], 500).await.unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    for k in &keys {
        let l = ring.lookup(k, 0).await.unwrap();
        ring.fill(k, l.version, Bytes::from_static(b"old"), TTL)
            .await
            .unwrap();
    }
    // a load that looked its key up before the emptying
    let racing = ring.lookup("racer", 0).await.unwrap();
    assert!(racing.value.is_none());

    ring.empty(300).await.unwrap();

    for k in &keys {
        let l = ring.lookup(k, 0).await.unwrap();
        assert_eq!(l.value, None, "{k} was dropped");
        assert_eq!(
            l.fence, 500,
            "{k}: a new entry is loaded at least at the highest position the server had seen"
        );
    }
    ring.fill("racer", racing.version, Bytes::from_static(b"stale"), TTL)
        .await
        .unwrap();
    let after = ring.lookup("racer", 0).await.unwrap();
    assert_eq!(
        after.value, None,
        "a load from before the emptying does not fill"
    );
    assert_ne!(after.version, racing.version);

    // a position above the server's raises it
    ring.empty(900).await.unwrap();
    assert_eq!(ring.lookup("k1", 0).await.unwrap().fence, 900);
    assert_ne!(ring.lookup("k2", 0).await.unwrap().fence, UNKNOWN_FENCE);
}
