//! Stale reads: a region whose primary is across a WAN keeps serving reads from its own
//! replica while that primary cannot be reached (`store.serve_stale_reads`).
//!
//! The primary is *lost* when the monitor has taken it out (its port refused a connection,
//! or it missed [`MISSED_CHECKS_DOWN`] checks in a row: a WAN cut looks like that, since
//! connections and queries hang rather than fail) or another server became the primary.
//! While it is lost, with stale reads on:
//!
//! - reads go to a replica that answers and is in recovery, whatever its lag and whatever
//!   the request's read fence (a user's own recent writes may be missing: they are served,
//!   marked stale, rather than failing), and `/ready` holds;
//! - each read that a replica serves then is marked in the request's fence scope with its
//!   *staleness*: the longer of the replica's measured lag and the time since the primary
//!   last answered one of this node's checks, i.e. how much of the primary's most recent
//!   history the answer may be missing. The web tier shows it in a response header; the
//!   gauge [`STALENESS_SECONDS`] shows it for the freshest replica that can serve, and is 0
//!   while the primary answers;
//! - a call that is waiting on the primary (a write's transaction, a read that had to go
//!   there) is given up with [`StoreError::Unavailable`] as soon as the primary is lost; a
//!   write that starts then fails at once.
//!
//! So a write fails at most one monitor detection after the cut: [`MISSED_CHECKS_DOWN`]
//! checks, each waiting at most twice `check_interval` (100–500 ms) for an answer and as
//! long again for a plain connect to the port, plus one `check_interval` for the call to
//! notice: with the default 200 ms interval, 3 × (0.4 + 0.4) + 0.2 + 0.2 = 2.8 s at most.
//! The first check that hears the primary again puts it back: writes go to it and reads
//! are fresh again, without a restart.
//!
//! Until the primary is lost (the first checks of a cut), reads go where they would without
//! the setting: a replica within its lag bound that has replayed the fence, else the
//! primary, where they wait for it to answer or be lost.
//!
//! [`MISSED_CHECKS_DOWN`]: super::MISSED_CHECKS_DOWN
//! [`StoreError::Unavailable`]: crescendo_store::StoreError::Unavailable

use super::{Cluster, Node};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Gauge: how old the data of a stale read may be now, in seconds (the freshest replica's
/// staleness while the primary cannot be reached; 0 while it answers).
pub const STALENESS_SECONDS: &str = "crescendo_db_staleness_seconds";

impl Cluster {
    /// Whether reads go to a replica, marked stale, while the primary cannot be reached.
    pub fn serves_stale_reads(&self) -> bool {
        self.stale_reads && self.has_replicas()
    }

    /// Records that a check heard the primary at `now`.
    pub(super) fn heard_primary(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.started).as_millis();
        self.primary_heard_ms
            .fetch_max(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::AcqRel);
    }

    /// Whether `primary` (the primary when a call began using it) is lost: out, or no
    /// longer the primary.
    pub fn primary_lost(&self, primary: &Arc<Node>) -> bool {
        !primary.is_up() || !Arc::ptr_eq(primary, self.primary())
    }

    /// Whether reads are being served stale now: stale reads are on and the primary is lost.
    pub fn reading_stale(&self) -> bool {
        self.serves_stale_reads() && !self.primary().is_up()
    }

    /// A replica that can serve a stale read: answering and in recovery, round-robin,
    /// whatever its lag; `None` when there is none.
    pub fn stale_replica(&self) -> Option<&Arc<Node>> {
        let primary = self.primary.load(Ordering::Acquire);
        let count = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|k| (start + k) % count)
            .filter(|&i| i != primary)
            .map(|i| &self.nodes[i])
            .find(|n| n.is_up() && n.in_recovery.load(Ordering::Acquire))
    }

    /// How old data read from replica `n` now may be: the longer of its measured lag and the
    /// time since a check last heard the primary.
    pub fn staleness(&self, n: &Node) -> Duration {
        let heard =
            self.started + Duration::from_millis(self.primary_heard_ms.load(Ordering::Acquire));
        let unheard = Instant::now().saturating_duration_since(heard);
        Duration::from_millis(n.lag_ms.load(Ordering::Acquire)).max(unheard)
    }

    /// Sets [`STALENESS_SECONDS`]: the freshest servable replica's staleness while reads are
    /// served stale, else 0.
    pub(super) fn gauge_staleness(&self) {
        if !self.serves_stale_reads() {
            return;
        }
        let primary = self.primary.load(Ordering::Acquire);
        let freshest = self
            .reading_stale()
            .then(|| {
                self.nodes
                    .iter()
                    .enumerate()
                    .filter(|&(i, n)| {
                        i != primary && n.is_up() && n.in_recovery.load(Ordering::Acquire)
                    })
                    .map(|(_, n)| self.staleness(n))
                    .min()
            })
            .flatten()
            .unwrap_or(Duration::ZERO);
        metrics::gauge!(STALENESS_SECONDS).set(freshest.as_secs_f64());
    }
}
