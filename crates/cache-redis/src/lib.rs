//! Redis backends of Crescendo's seams.
//!
//! [`RedisCache`] is the `Cache` seam on a consistent-hash ring of independent Redis servers
//! (the cache-tier rung); see its module for placement, versions and membership.
//!
//! [`RedisSessions`] is the `Sessions` seam on one Redis server, shared by every web node of
//! a topology (the stateless-web rung): web sessions, CSRF tokens, sign-in counters,
//! idempotency records and users' read fences live there, so any node serves any request.
//! Every operation is one command (or one small Lua script), so it is atomic on the server:
//! `put_if_absent` is `SET NX PX`, and a counter's window starts with its first increment.
//! The connection is a `ConnectionManager`: it reconnects on its own after Redis comes back.

mod ring;

pub use ring::{RedisCache, RingOptions};

use async_trait::async_trait;
use bytes::Bytes;
use crescendo_cache::{CacheError, Sessions};
use redis::aio::ConnectionManager;
use std::time::Duration;

/// `Sessions` on Redis.
#[derive(Clone)]
pub struct RedisSessions {
    conn: ConnectionManager,
    incr: redis::Script,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisSessions")
    }
}

fn unavailable(e: redis::RedisError) -> CacheError {
    CacheError::Unavailable(e.to_string())
}

fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

impl RedisSessions {
    /// Connects to `url` (`redis://host:port`).
    ///
    /// # Errors
    /// A malformed URL, or no answer from the server.
    pub async fn connect(url: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, cfg)
            .await
            .map_err(unavailable)?;
        // INCR, and start the window on the first increment only
        let incr = redis::Script::new(
            "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n",
        );
        Ok(Self { conn, incr })
    }
}

#[async_trait]
impl Sessions for RedisSessions {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(v.map(Bytes::from))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        redis::cmd("SET")
            .arg(key)
            .arg(value.as_ref())
            .arg("PX")
            .arg(ms(ttl))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let r: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value.as_ref())
            .arg("NX")
            .arg("PX")
            .arg(ms(ttl))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(r.is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn increment(&self, key: &str, window: Duration) -> Result<u64, CacheError> {
        self.incr
            .key(key)
            .arg(ms(window))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crescendo_topology::redis::Redis;

    #[tokio::test]
    async fn sessions_on_a_real_redis_expire_count_and_refuse_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let server = tokio::task::spawn_blocking({
            let d = dir.path().to_path_buf();
            move || Redis::start(&d, [127, 0, 0, 1], 16)
        })
        .await
        .unwrap()
        .expect("redis starts");
        let s = RedisSessions::connect(&server.url())
            .await
            .expect("connects");
        assert_eq!(s.get("a").await.unwrap(), None);
        s.put("a", Bytes::from_static(b"one"), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(s.get("a").await.unwrap().as_deref(), Some(&b"one"[..]));
        assert!(
            !s.put_if_absent("a", Bytes::from_static(b"two"), Duration::from_secs(10))
                .await
                .unwrap()
        );
        assert!(
            s.put_if_absent("b", Bytes::from_static(b"two"), Duration::from_millis(150))
                .await
                .unwrap()
        );
        assert_eq!(
            s.get("a").await.unwrap().as_deref(),
            Some(&b"one"[..]),
            "not replaced"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(s.get("b").await.unwrap(), None, "expired");
        assert_eq!(
            s.increment("c", Duration::from_millis(200)).await.unwrap(),
            1
        );
        assert_eq!(
            s.increment("c", Duration::from_millis(200)).await.unwrap(),
            2
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            s.increment("c", Duration::from_millis(200)).await.unwrap(),
            1,
            "a new window"
        );
        s.delete("a").await.unwrap();
        assert_eq!(s.get("a").await.unwrap(), None);
    }
}
