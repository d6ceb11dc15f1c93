//! The sign-in throttle, one policy for the JSON API and the web pages.
//!
//! Failed sign-ins are counted per (account, client address) and per client address, in
//! the `Sessions` store, so with a shared backend every node sees the same counts. Beyond
//! either limit the client waits for the window to pass ([`AppError::Throttled`]); the
//! account itself is never locked, so someone failing on purpose from elsewhere cannot
//! keep its owner out. Successful sign-ins are neither counted nor limited.
//!
//! Each client also checks one password at a time on this node ([`ClientGates`]): a second
//! attempt from the same address waits for the first, so no client holds more than one of
//! the hashing permits while others wait for them.

use crate::{App, AppError, AppResult};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The address a request comes from, as the server decided it: the connection's peer, or
/// the address a trusted proxy forwarded (`http.trusted_proxies`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The address of requests whose client is not known (no connection information):
    /// they share one count.
    pub const UNKNOWN: ClientAddr = ClientAddr(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));

    /// The key the client is counted under: the address, or for IPv6 its /64 network,
    /// since one subscriber usually holds a whole /64.
    fn key(self) -> String {
        match self.0.to_canonical() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

/// How many failed sign-ins are allowed, and for how long they count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignInLimits {
    /// Failures allowed per (account, client address) in `window`.
    pub per_account_client: u64,
    /// Failures allowed per client address, over all accounts, in `window`.
    pub per_client: u64,
    /// How long a failure counts.
    pub window: Duration,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            per_account_client: 10,
            per_client: 50,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// One lock per client address with a sign-in in progress on this node; an entry lives
/// only while someone holds or waits for its lock, so the map is bounded by the sign-ins in
/// flight.
#[derive(Debug, Default)]
pub(crate) struct ClientGates {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A client's turn to check a password; the next attempt from the same client goes on
/// when this is dropped.
pub(crate) struct Turn<'a> {
    gates: &'a ClientGates,
    client: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl ClientGates {
    /// Waits until no other sign-in from `client` is in progress on this node.
    pub(crate) async fn turn(&self, client: &str) -> Turn<'_> {
        let lock = Arc::clone(
            self.locks
                .lock()
                .expect("gate map lock is never poisoned")
                .entry(client.to_string())
                .or_default(),
        );
        let guard = lock.lock_owned().await;
        Turn {
            gates: self,
            client: client.to_string(),
            guard: Some(guard),
        }
    }

    /// Clients with a sign-in in progress or waiting, for tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().expect("gate map lock").len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut locks = self
            .gates
            .locks
            .lock()
            .expect("gate map lock is never poisoned");
        drop(self.guard.take());
        // the map's own reference is the last: nobody waits, so the entry goes
        if locks
            .get(&self.client)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.client);
        }
    }
}

fn pair_key(email: &str, client: &str) -> String {
    format!("signin:fail:{client}:{email}")
}

fn client_key(client: &str) -> String {
    format!("signin:fail:{client}")
}

impl App {
    /// Checks `password` for the account with `email` (already trimmed and lower-cased)
    /// under the throttle: `check` runs only within the limits and in the client's turn,
    /// and a failure (`Ok(false)`) is counted.
    ///
    /// # Errors
    /// [`AppError::Throttled`] beyond a limit; [`AppError::Unavailable`] when the counters
    /// cannot be reached.
    pub(crate) async fn throttled<T>(
        &self,
        email: &str,
        client: ClientAddr,
        check: impl Future<Output = AppResult<Option<T>>>,
    ) -> AppResult<Option<T>> {
        let client = client.key();
        let (pair, by_client) = (pair_key(email, &client), client_key(&client));
        // refuse a throttled client before it queues for its turn…
        self.within_limits(&pair, &by_client).await?;
        let _turn = self.inner.sign_in_gates.turn(&client).await;
        // …and again in its turn, counting the failures of the attempts it waited for
        self.within_limits(&pair, &by_client).await?;
        let found = check.await?;
        let sessions = &self.inner.sessions;
        let window = self.inner.sign_in.window;
        let counted = match found {
            Some(_) => sessions.delete(&pair).await,
            None => {
                async {
                    sessions.increment(&pair, window).await?;
                    sessions.increment(&by_client, window).await.map(drop)
                }
                .await
            }
        };
        if let Err(e) = counted {
            tracing::warn!(error = %e, "sign-in counters unavailable");
            if found.is_none() {
                return Err(AppError::Unavailable);
            }
        }
        Ok(found)
    }

    async fn within_limits(&self, pair: &str, by_client: &str) -> AppResult<()> {
        let limits = self.inner.sign_in;
        let count = |key| async move {
            let raw = self.inner.sessions.get(key).await.map_err(|e| {
                tracing::warn!(error = %e, "sign-in counters unavailable");
                AppError::Unavailable
            })?;
            Ok::<_, AppError>(
                raw.and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u64>().ok())
                    .unwrap_or(0),
            )
        };
        if count(pair).await? >= limits.per_account_client.max(1)
            || count(by_client).await? >= limits.per_client.max(1)
        {
            tracing::info!(client = %by_client, "sign-in throttled");
            return Err(AppError::Throttled {
                retry_after: limits.window,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn ipv6_clients_count_by_their_network() {
        let a = ClientAddr("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ClientAddr("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key(), "2001:db8:1:2::/64");
        let v4 = ClientAddr("::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(v4.key(), "192.0.2.7");
    }

    #[tokio::test]
    async fn a_client_checks_one_password_at_a_time() {
        let gates = ClientGates::default();
        let first = gates.turn("192.0.2.1").await;
        // a second attempt from the same client waits for the first
        let mut second = Box::pin(gates.turn("192.0.2.1"));
        assert!((&mut second).now_or_never().is_none());
        // another client does not
        let other = gates.turn("192.0.2.2").now_or_never();
        assert!(other.is_some());
        drop(other);
        drop(first);
        let second = second.now_or_never().expect("the first turn ended");
        drop(second);
        assert_eq!(gates.len(), 0, "no entry outlives its sign-ins");
    }
}
