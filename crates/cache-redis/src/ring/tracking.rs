//! Change reports from every server of the ring (Redis server-assisted client-side
//! caching), so web nodes can serve near copies without asking.
//!
//! **Channel.** Per server, one dedicated RESP3 connection runs `CLIENT TRACKING on BCAST
//! PREFIX c:`: the server then pushes an `invalidate` message naming every `c:` key that any
//! client changes (an invalidation, a fill, a new version stub, an eviction or an expiry),
//! and a null one when it is flushed. Tracking belongs to the connection that enabled it, and
//! RESP3 delivers the pushes on that same connection, so one connection both holds the
//! tracking state and carries the reports: when it drops, both end together. Messages are
//! handled in the connection's reader (no queue between them): each names its keys to every
//! registered [`NearInvalidations`].
//!
//! **Trust.** One atomic word holds an epoch (high bits) and the number of servers without a
//! live channel (low 16 bits). [`RedisCache::trust_epoch`] is `Some(word)` only when that
//! number is 0. A channel that drops adds one to both (and every near tier is emptied); a
//! channel that comes up, only after its `CLIENT TRACKING` is acknowledged, adds one to the
//! epoch and takes one from the count; a flush of a server adds one to the epoch. So a near
//! copy stamped with an epoch is trusted only while every server's channel has been up since
//! before the copy's version was read, and no server was flushed since. A server out of the
//! ring, or whose channel cannot be set up, leaves nothing trusted: every near copy is
//! checked as before, until the monitor sets the channel up again.
//!
//! **Delivered through.** A server sends its reports of a change before its replies to
//! commands that come after that change, on the same connection. So every [`SYNC_EVERY`]
//! a task sends `PING` on every channel at once; when all answer and the epoch has not
//! moved, every change made before the pings were sent has been reported, and that time
//! becomes [`RedisCache::reported_through`]. A request whose user wrote recently (and so
//! must see the write on any node) may trust near copies like any other request once its
//! user's write ended before that time (`App::cached` compares, allowing for clock skew
//! between nodes): its write's reports are then in, and a copy they named is checked.

use super::{RedisCache, Ring};
use crescendo_cache::NearInvalidations;
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the channels are pinged to advance [`RedisCache::reported_through`]: a writer's
/// reads check near copies for about this long (plus a round trip) after each write.
pub(super) const SYNC_EVERY: Duration = Duration::from_millis(50);

/// One unit of the epoch in [`Tracking::state`].
const EPOCH: u64 = 1 << 16;
/// The mask of the count of servers without a channel in [`Tracking::state`].
const UNTRACKED: u64 = EPOCH - 1;

/// The ring's change reports: the trust state and who hears them.
pub(super) struct Tracking {
    /// Whether channels are set up at all ([`RingOptions::tracking`](super::RingOptions)).
    pub(super) enabled: bool,
    /// Epoch × [`EPOCH`] + servers without a live channel (see the module docs).
    state: AtomicU64,
    /// Where reports go: each `ReadThrough` over this ring registers its near tier.
    sinks: RwLock<Vec<Arc<dyn NearInvalidations>>>,
    /// When the last round of pings that every channel answered, under one epoch, was sent
    /// (ms since the Unix epoch; 0: never): see "Delivered through" in the module docs.
    synced: AtomicU64,
    /// Tells waiters (tests, mostly) when [`RedisCache::trust_epoch`] changes.
    changes: tokio::sync::watch::Sender<Option<u64>>,
    /// The `CLIENT SETNAME` of this process's channels: `crescendo-tracking-` and the ring's
    /// lease token, so one process's channels can be told from another's in `CLIENT LIST`.
    pub(super) name: String,
}

/// A server's channel, as its node holds it.
#[derive(Default)]
pub(super) struct Channel {
    /// The id of the live channel (0: none); the reader of a channel that dropped only
    /// counts the drop if its id is still this one.
    id: AtomicU64,
    /// The connection, kept open: its tracking ends when it closes.
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl Tracking {
    /// The state of a ring of `servers` servers, none tracked yet.
    pub(super) fn new(enabled: bool, servers: usize, token: u64) -> Self {
        Self {
            enabled,
            state: AtomicU64::new(servers as u64 & UNTRACKED),
            synced: AtomicU64::new(0),
            sinks: RwLock::new(Vec::new()),
            changes: tokio::sync::watch::channel(None).0,
            name: format!("crescendo-tracking-{token:x}"),
        }
    }

    fn epoch(&self) -> Option<u64> {
        let s = self.state.load(Ordering::Acquire);
        (self.enabled && s & UNTRACKED == 0).then_some(s)
    }

    fn change(&self, delta: u64) {
        self.state.fetch_add(delta, Ordering::AcqRel);
        self.changes.send_replace(self.epoch());
    }

    fn all(&self) {
        for s in self
            .sinks
            .read()
            .expect("sinks lock is never poisoned")
            .iter()
        {
            s.all();
        }
    }

    fn keys(&self, keys: &[&str]) {
        for s in self
            .sinks
            .read()
            .expect("sinks lock is never poisoned")
            .iter()
        {
            s.keys(keys);
        }
    }

    /// Handles one message pushed on a channel.
    fn pushed(&self, info: &PushInfo) {
        if info.kind != PushKind::Invalidate {
            return;
        }
        match info.data.first() {
            Some(Value::Array(names)) => {
                let keys: Vec<&str> = names
                    .iter()
                    .filter_map(|v| match v {
                        Value::BulkString(b) => std::str::from_utf8(b).ok(),
                        Value::SimpleString(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .filter_map(|k| k.strip_prefix("c:"))
                    .collect();
                self.keys(&keys);
            }
            _ => {
                // a flushed server: nothing it vouched for before is known to be current
                self.change(EPOCH);
                self.all();
            }
        }
    }
}

impl Ring {
    /// Counts node `i`'s channel `id` as dropped, unless it was already: nothing is trusted
    /// until it is back, and every near tier is emptied.
    pub(super) fn untrack(&self, i: usize, id: u64) {
        let channel = &self.nodes[i].channel;
        if id != 0
            && channel
                .id
                .compare_exchange(id, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            channel
                .conn
                .lock()
                .expect("conn lock is never poisoned")
                .take();
            self.tracking.change(EPOCH + 1);
            self.tracking.all();
            tracing::warn!(node = %self.nodes[i].name, "cache change reports stopped; near copies are checked until they are back");
        }
    }

    /// Drops node `i`'s channel, if it has one (the node left the ring).
    pub(super) fn untrack_node(&self, i: usize) {
        self.untrack(i, self.nodes[i].channel.id.load(Ordering::Acquire));
    }

    /// Whether node `i` has a live channel.
    pub(super) fn tracked(&self, i: usize) -> bool {
        self.nodes[i].channel.id.load(Ordering::Acquire) != 0
    }

    /// Sets up node `i`'s channel: a RESP3 connection that enables broadcast tracking of
    /// `c:` keys and hands every push to [`Tracking::pushed`]. Returns whether it is live.
    pub(super) async fn track(self: &Arc<Self>, i: usize) -> bool {
        if !self.tracking.enabled || self.tracked(i) {
            return self.tracked(i);
        }
        let id = super::new_version();
        let dead = Arc::new(AtomicBool::new(false));
        let reader = {
            let (ring, dead): (Weak<Ring>, _) = (Arc::downgrade(self), Arc::clone(&dead));
            move |info: PushInfo| -> Result<(), ()> {
                let Some(ring) = ring.upgrade() else {
                    return Err(());
                };
                if info.kind == PushKind::Disconnection {
                    dead.store(true, Ordering::Release);
                    ring.untrack(i, id);
                } else {
                    ring.tracking.pushed(&info);
                }
                Ok(())
            }
        };
        let Some(conn) = self.open_channel(i, reader).await else {
            return false;
        };
        let channel = &self.nodes[i].channel;
        if channel
            .id
            .compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return true; // another check set one up meanwhile; this one closes unused
        }
        *channel.conn.lock().expect("conn lock is never poisoned") = Some(conn);
        self.tracking.change(EPOCH - 1);
        if dead.load(Ordering::Acquire) {
            // it dropped before it was counted: count the drop now
            self.untrack(i, id);
            return false;
        }
        tracing::info!(node = %self.nodes[i].name, "cache change reports on");
        true
    }

    /// Opens node `i`'s RESP3 connection with `reader` for its pushes, names it and enables
    /// tracking on it, within the time-out.
    async fn open_channel(
        &self,
        i: usize,
        reader: impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static,
    ) -> Option<MultiplexedConnection> {
        let info = self.nodes[i].client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings)).ok()?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_push_sender(reader);
        let setup = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await?;
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(&self.tracking.name)
                .query_async::<()>(&mut conn)
                .await?;
            redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("on")
                .arg("BCAST")
                .arg("PREFIX")
                .arg("c:")
                .query_async::<()>(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>(conn)
        };
        match tokio::time::timeout(self.timeout, setup).await {
            Ok(Ok(conn)) => Some(conn),
            Ok(Err(e)) => {
                tracing::warn!(node = %self.nodes[i].name, error = %e, "could not set up cache change reports");
                None
            }
            Err(_) => None,
        }
    }
}

impl RedisCache {
    /// The trust epoch (see the module docs of `tracking`): `Some` while every server of
    /// the ring reports changes to this process.
    pub(super) fn epoch(&self) -> Option<u64> {
        self.ring.tracking.epoch()
    }

    /// Adds a listener of change reports.
    pub(super) fn listen(&self, sink: Arc<dyn NearInvalidations>) {
        self.ring
            .tracking
            .sinks
            .write()
            .expect("sinks lock is never poisoned")
            .push(sink);
    }

    /// Changes of [`Cache::trust_epoch`](crescendo_cache::Cache::trust_epoch), as they
    /// happen: `None` while some server's change reports are down.
    pub fn trust_changes(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.ring.tracking.changes.subscribe()
    }

    /// The name (`CLIENT SETNAME`) of this ring client's change-report connections on every
    /// server, as `CLIENT LIST` shows it.
    pub fn tracking_client_name(&self) -> &str {
        &self.ring.tracking.name
    }
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Ring {
    /// Pings every live channel at once; whether each answered within the time-out. A reply
    /// comes after every report its server owed the channel when the ping arrived.
    async fn ping_channels(&self) -> bool {
        let conns: Vec<MultiplexedConnection> = self
            .nodes
            .iter()
            .filter_map(|n| {
                n.channel
                    .conn
                    .lock()
                    .expect("conn lock is never poisoned")
                    .clone()
            })
            .collect();
        let all = conns.len() == self.nodes.len();
        let pinged = futures_util::future::join_all(conns.into_iter().map(|mut c| async move {
            let ping = redis::cmd("PING");
            let answered = tokio::time::timeout(self.timeout, ping.query_async::<String>(&mut c));
            matches!(answered.await, Ok(Ok(_)))
        }))
        .await;
        all && pinged.into_iter().all(|ok| ok)
    }
}

/// Advances [`RedisCache::reported_through`] every [`SYNC_EVERY`] while the ring lives: a
/// round counts when every server has a channel, all answer, and the epoch held throughout.
pub(super) async fn sync(ring: Weak<Ring>) {
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(ring) = ring.upgrade() else { return };
        let Some(epoch) = ring.tracking.epoch() else {
            continue;
        };
        let sent = now_ms();
        if ring.ping_channels().await && ring.tracking.epoch() == Some(epoch) {
            ring.tracking.synced.fetch_max(sent, Ordering::AcqRel);
        }
    }
}

impl RedisCache {
    /// See [`Cache::reported_through`](crescendo_cache::Cache::reported_through): `None`
    /// while some server's channel is down, or before a round of pings has come back.
    pub(super) fn delivered_through(&self) -> Option<u64> {
        self.ring.tracking.epoch()?;
        let synced = self.ring.tracking.synced.load(Ordering::Acquire);
        (synced > 0).then_some(synced)
    }

    /// Waits until every change report the servers owed this process when it was called has
    /// been handed to the listeners (see "Delivered through" in the module docs). For tests
    /// and measurements: reads never wait for reports.
    pub async fn reports_delivered(&self) {
        self.ring.ping_channels().await;
    }
}
