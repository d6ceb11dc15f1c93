//! [`Cache`] on the ring: each operation is one script on the key's owner, except
//! invalidations, which go to every server in service.

use super::membership::OnFailure;
use super::scripts::{FENCE_KEY, LOAD_LEASE, STUB_TTL, entry_key, lease_key};
use super::{RedisCache, ms, new_version, parse_u64};
use async_trait::async_trait;
use bytes::Bytes;
use crescendo_cache::{Cache, CacheError, Lookup, UNKNOWN_FENCE};
use futures_util::future::join_all;
use std::collections::HashMap;
use std::time::Duration;

#[async_trait]
impl Cache for RedisCache {
    fn versioned(&self) -> bool {
        true
    }

    fn trust_epoch(&self) -> Option<u64> {
        self.epoch()
    }

    fn reported_through(&self) -> Option<u64> {
        self.delivered_through()
    }

    fn on_invalidations(&self, sink: std::sync::Arc<dyn crescendo_cache::NearInvalidations>) {
        self.listen(sink);
    }

    async fn lookup(&self, key: &str, known: u64) -> Result<Lookup, CacheError> {
        let ring = &self.ring;
        let i = ring.owner_or_unavailable(key)?;
        let reply: Vec<Option<Vec<u8>>> = ring
            .on(i, OnFailure::Stay, |mut c| async move {
                ring.scripts
                    .lookup
                    .key(entry_key(key))
                    .key(FENCE_KEY)
                    .key(lease_key(key))
                    .arg(new_version())
                    .arg(known)
                    .arg(ms(STUB_TTL))
                    .arg(ms(LOAD_LEASE))
                    .arg(ring.token)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let field = |n: usize| reply.get(n).cloned().flatten();
        let version = field(0)
            .as_deref()
            .and_then(parse_u64)
            .ok_or_else(|| CacheError::Decode(format!("{key}: no version")))?;
        let fence = field(1)
            .as_deref()
            .and_then(parse_u64)
            .unwrap_or(UNKNOWN_FENCE);
        let wait = field(2).as_deref() == Some(b"1");
        Ok(Lookup {
            version,
            fence,
            value: field(3).map(Bytes::from),
            wait,
        })
    }

    async fn fill(
        &self,
        key: &str,
        version: u64,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let ring = &self.ring;
        let i = ring.owner_or_unavailable(key)?;
        ring.on(i, OnFailure::Stay, |mut c| async move {
            ring.scripts
                .fill
                .key(entry_key(key))
                .key(lease_key(key))
                .arg(version)
                .arg(value.as_ref())
                .arg(ms(ttl))
                .arg(ring.token)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    async fn release(&self, key: &str, version: u64) -> Result<(), CacheError> {
        self.on_lease(key, version, &self.ring.scripts.release)
            .await
    }

    async fn renew(&self, key: &str, version: u64) -> Result<(), CacheError> {
        self.on_lease(key, version, &self.ring.scripts.renew).await
    }

    async fn invalidate(&self, keys: &[String], position: u64) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let ring = &self.ring;
        // every server in service, so whichever one any web node reads a key from is
        // invalidated
        ring.on_each_in_service(|mut c| async move {
            let mut inv = ring.scripts.invalidate.prepare_invoke();
            for k in keys {
                inv.key(entry_key(k));
            }
            for k in keys {
                inv.key(lease_key(k));
            }
            inv.key(FENCE_KEY).arg(position).arg(ms(STUB_TTL));
            for _ in keys {
                inv.arg(new_version());
            }
            inv.invoke_async::<i64>(&mut c).await
        })
        .await;
        Ok(())
    }

    async fn empty(&self, position: u64) -> Result<(), CacheError> {
        let ring = &self.ring;
        ring.on_each_in_service(|mut c| async move {
            let mut inv = ring.scripts.empty.prepare_invoke();
            inv.key(FENCE_KEY).arg(position);
            inv.invoke_async::<i64>(&mut c).await
        })
        .await;
        Ok(())
    }

    async fn versions(&self, keys: &[&str]) -> Result<Vec<u64>, CacheError> {
        let ring = &self.ring;
        let mut by_node: HashMap<usize, Vec<usize>> = HashMap::new();
        for (n, k) in keys.iter().enumerate() {
            if let Some(i) = ring.owner(k) {
                by_node.entry(i).or_default().push(n);
            }
        }
        let mut out = vec![0u64; keys.len()];
        let replies = join_all(by_node.into_iter().map(|(i, idx)| async move {
            let got = ring
                .on(i, OnFailure::Stay, |mut c| {
                    let mut inv = ring.scripts.versions.prepare_invoke();
                    for &n in &idx {
                        inv.key(entry_key(keys[n]));
                    }
                    async move { inv.invoke_async::<Vec<Vec<u8>>>(&mut c).await }
                })
                .await;
            (idx, got)
        }))
        .await;
        for (idx, got) in replies {
            // a server out of reach leaves its keys at 0: never current
            if let Ok(versions) = got {
                for (n, v) in idx.into_iter().zip(versions) {
                    out[n] = parse_u64(&v).unwrap_or(0);
                }
            }
        }
        Ok(out)
    }
}

impl RedisCache {
    /// Runs `script` (RELEASE or RENEW) on this process's load lease of `key` at `version`,
    /// on the key's server; a failure leaves the server in the ring.
    async fn on_lease(
        &self,
        key: &str,
        version: u64,
        script: &redis::Script,
    ) -> Result<(), CacheError> {
        let ring = &self.ring;
        let i = ring.owner_or_unavailable(key)?;
        ring.on(i, OnFailure::Stay, |mut c| async move {
            script
                .key(lease_key(key))
                .arg(version)
                .arg(ring.token)
                .arg(ms(LOAD_LEASE))
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }
}
