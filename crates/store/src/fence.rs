//! Read fences: how a request tells the store how fresh its reads must be.
//!
//! A backend with replicas (PostgreSQL) reports the position of each write it commits (its
//! WAL position), and serves a read from a replica only once that replica has replayed the
//! request's fence; otherwise from the primary. Positions are opaque, increasing numbers;
//! 0 means "any copy will do". Backends without replicas ignore all of this.
//!
//! The fence travels in a task-local [`scope`], so the `Store` trait needs no extra
//! arguments: the web tier opens a scope per request, raises the fence to the last write of
//! the authenticated user (read-your-writes), and the cache raises it for a load to the
//! position of the write that last invalidated the key (no cache fill from a stale copy).
//!
//! A store over several clusters (rung 10, each a primary with its own replicas) tags each
//! position with the number of the cluster it belongs to ([`on_cluster_tagged`]): the top
//! [`CLUSTER_BITS`] bits. Merging keeps the larger value as ever, so a scope keeps one
//! cluster's exact position; a read on any other cluster treats a fence it cannot compare as
//! "unknown" and goes to that cluster's primary ([`for_cluster`]). Positions of different
//! clusters are never compared, which also holds when a logical shard changes home.
//!
//! One exception, only where the store is told to serve stale reads (a region whose primary
//! is across a WAN): while the primary cannot be reached, a read whose fence no replica has
//! replayed is served by a replica anyway rather than failing, and the scope records how
//! stale it may be ([`note_stale`], [`staleness`]); the web tier marks such answers.

use std::cell::Cell;
use std::future::Future;

#[derive(Default)]
struct Fence {
    /// Reads must see at least this position.
    read_after: Cell<u64>,
    /// The highest position this scope's writes committed at.
    wrote: Cell<u64>,
    /// Database round trips made in this scope (nested scopes included).
    queries: Cell<u32>,
    /// Some answer in this scope left out data a database that was down holds.
    partial: Cell<bool>,
    /// The most staleness of any read in this scope served by a replica while its primary
    /// was unreachable, in milliseconds (see [`note_stale`]).
    stale_ms: Cell<Option<u64>>,
}

tokio::task_local! {
    static FENCE: Fence;
}

/// Runs `fut` in a fresh scope whose reads must see `read_after`; returns its output and
/// the highest position its writes committed at (0: it wrote nothing).
pub async fn scope<F: Future>(read_after: u64, fut: F) -> (F::Output, u64) {
    let (out, tally) = counted(read_after, fut).await;
    (out, tally.wrote)
}

/// What a scope did: its highest write position, its round trips, whether an answer was
/// partial, how stale its reads were.
struct Tally {
    wrote: u64,
    queries: u32,
    partial: bool,
    stale_ms: Option<u64>,
}

/// [`scope`], also returning what `fut` did.
async fn counted<F: Future>(read_after: u64, fut: F) -> (F::Output, Tally) {
    FENCE
        .scope(
            Fence {
                read_after: Cell::new(read_after),
                wrote: Cell::new(0),
                queries: Cell::new(0),
                partial: Cell::new(false),
                stale_ms: Cell::new(None),
            },
            async move {
                let out = fut.await;
                FENCE.with(|f| {
                    let tally = Tally {
                        wrote: f.wrote.get(),
                        queries: f.queries.get(),
                        partial: f.partial.get(),
                        stale_ms: f.stale_ms.get(),
                    };
                    (out, tally)
                })
            },
        )
        .await
}

/// Runs `fut` with reads fenced at least at `position` (and at the enclosing scope's fence);
/// writes and queries inside count towards the enclosing scope too.
pub async fn reading_after<F: Future>(position: u64, fut: F) -> F::Output {
    let outer = FENCE.try_with(|f| f.read_after.get()).unwrap_or(0);
    let (out, tally) = counted(outer.max(position), fut).await;
    note_write(tally.wrote);
    if tally.partial {
        note_partial();
    }
    if let Some(ms) = tally.stale_ms {
        note_stale(std::time::Duration::from_millis(ms));
    }
    let _ = FENCE.try_with(|f| f.queries.set(f.queries.get().saturating_add(tally.queries)));
    out
}

/// Records that an answer in this scope leaves out what a database that is down holds (a
/// global list gathered from the clusters that answered).
pub fn note_partial() {
    let _ = FENCE.try_with(|f| f.partial.set(true));
}

/// Whether an answer in this scope so far is partial (see [`note_partial`]).
pub fn partial() -> bool {
    FENCE.try_with(|f| f.partial.get()).unwrap_or(false)
}

/// Records that a read in this scope was served by a replica while its primary could not
/// be reached, so its data may be up to `staleness` old (the store says how it measures
/// this); a request's fence is not held then. The scope keeps the largest.
pub fn note_stale(staleness: std::time::Duration) {
    let ms = u64::try_from(staleness.as_millis()).unwrap_or(u64::MAX);
    let _ = FENCE.try_with(|f| {
        f.stale_ms
            .set(Some(f.stale_ms.get().map_or(ms, |m| m.max(ms))))
    });
}

/// How old the data read in this scope may be, when some of it came from a replica while
/// its primary could not be reached (see [`note_stale`]); `None`: every read was fresh
/// (within the replica lag bound and the scope's fence).
pub fn staleness() -> Option<std::time::Duration> {
    FENCE
        .try_with(|f| f.stale_ms.get())
        .ok()
        .flatten()
        .map(std::time::Duration::from_millis)
}

/// Bits at the top of a position that name its cluster (see [`on_cluster_tagged`]).
pub const CLUSTER_BITS: u32 = 8;

/// Bits left for a cluster's own position (64 PiB of WAL).
const LOCAL_BITS: u32 = u64::BITS - CLUSTER_BITS;

/// The largest position a tagged value can hold.
const LOCAL_MAX: u64 = (1 << LOCAL_BITS) - 1;

/// `position` of cluster number `cluster` (1 to 255) as a fence value. 0 stays 0 ("any
/// copy"); a position too large to tag saturates, which no replica reaches (the primary
/// serves).
pub fn on_cluster_tagged(cluster: u8, position: u64) -> u64 {
    if position == 0 {
        return 0;
    }
    (u64::from(cluster) << LOCAL_BITS) | position.min(LOCAL_MAX)
}

/// What `fence` asks of a read on cluster number `cluster`: 0 for no fence, the position
/// itself when it is that cluster's, and `u64::MAX` ("read the primary") for one of another
/// cluster, an untagged one, or `u64::MAX` itself: it cannot be compared with this
/// cluster's positions, so the safe reading is that the write may be here.
pub fn for_cluster(fence: u64, cluster: u8) -> u64 {
    if fence == 0 {
        0
    } else if fence >> LOCAL_BITS == u64::from(cluster) && fence != u64::MAX {
        fence & LOCAL_MAX
    } else {
        u64::MAX
    }
}

/// Records one database round trip in the current scope. Backends call this once per
/// statement or transaction, where they count `crescendo_db_queries_total`.
pub fn note_query() {
    let _ = FENCE.try_with(|f| f.queries.set(f.queries.get().saturating_add(1)));
}

/// Database round trips made in this scope so far (0 outside a scope).
pub fn queries() -> u32 {
    FENCE.try_with(|f| f.queries.get()).unwrap_or(0)
}

/// Raises the current scope's fence to `position` (no effect outside a scope).
pub fn raise(position: u64) {
    let _ = FENCE.try_with(|f| f.read_after.set(f.read_after.get().max(position)));
}

/// The position reads in this scope must see (0 outside a scope).
pub fn read_after() -> u64 {
    FENCE.try_with(|f| f.read_after.get()).unwrap_or(0)
}

/// Records that a write committed at `position`; later reads in the scope must see it.
/// Backends call this after each commit.
pub fn note_write(position: u64) {
    if position == 0 {
        return;
    }
    let _ = FENCE.try_with(|f| {
        f.wrote.set(f.wrote.get().max(position));
        f.read_after.set(f.read_after.get().max(position));
    });
}

/// The highest position this scope's writes committed at so far (0 outside a scope).
pub fn wrote() -> u64 {
    FENCE.try_with(|f| f.wrote.get()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_compared_only_on_its_own_cluster() {
        let a = on_cluster_tagged(1, 5_000);
        let b = on_cluster_tagged(2, 70);
        assert_eq!(for_cluster(a, 1), 5_000);
        assert_eq!(for_cluster(b, 2), 70);
        assert_eq!(
            for_cluster(a, 2),
            u64::MAX,
            "another cluster's: the primary"
        );
        assert_eq!(for_cluster(0, 3), 0, "no fence: any copy");
        assert_eq!(on_cluster_tagged(4, 0), 0, "nothing written: no fence");
        assert_eq!(for_cluster(u64::MAX, 255), u64::MAX);
        assert_eq!(for_cluster(12_345, 1), u64::MAX, "untagged: the primary");
        // a merge keeps one cluster's exact position; the other reads the primary
        let merged = a.max(b);
        assert_eq!(
            (for_cluster(merged, 1), for_cluster(merged, 2)),
            (u64::MAX, 70)
        );
        // a later write on the same cluster moves its position on
        assert_eq!(for_cluster(b.max(on_cluster_tagged(2, 90)), 2), 90);
        let huge = on_cluster_tagged(3, u64::MAX - 1);
        assert_eq!(for_cluster(huge, 3), LOCAL_MAX, "saturated, not wrapped");
    }

    #[tokio::test]
    async fn queries_are_counted_per_scope_nested_ones_included() {
        note_query(); // outside any scope: ignored
        let ((), _) = scope(0, async {
            note_query();
            reading_after(5, async {
                note_query();
                note_query();
            })
            .await;
            assert_eq!(queries(), 3);
        })
        .await;
        assert_eq!(queries(), 0);
    }

    #[tokio::test]
    async fn a_partial_answer_in_a_nested_scope_marks_the_request() {
        note_partial(); // outside any scope: ignored
        let ((), _) = scope(0, async {
            assert!(!partial());
            reading_after(5, async {
                note_query();
                note_partial();
            })
            .await;
            assert!(
                partial(),
                "the nested scope's partial answer counts outside"
            );
            assert_eq!(queries(), 1, "the flag is no query");
        })
        .await;
        assert!(!partial());
    }

    #[tokio::test]
    async fn a_stale_read_in_a_nested_scope_marks_the_request_with_the_largest_staleness() {
        use std::time::Duration;
        note_stale(Duration::from_secs(9)); // outside any scope: ignored
        let ((), _) = scope(0, async {
            assert_eq!(staleness(), None, "nothing read stale yet");
            note_stale(Duration::from_millis(1500));
            reading_after(5, async {
                note_stale(Duration::from_millis(2500));
                note_stale(Duration::from_millis(700));
            })
            .await;
            assert_eq!(staleness(), Some(Duration::from_millis(2500)));
        })
        .await;
        assert_eq!(staleness(), None);
    }

    #[tokio::test]
    async fn scopes_carry_fences_and_report_writes() {
        assert_eq!(read_after(), 0, "no scope: any copy");
        note_write(5); // outside a scope: ignored
        let ((), wrote) = scope(10, async {
            assert_eq!(read_after(), 10);
            raise(7);
            assert_eq!(read_after(), 10, "raising never lowers");
            note_write(12);
            assert_eq!(read_after(), 12, "a write raises the fence");
            reading_after(20, async {
                assert_eq!(read_after(), 20);
                note_write(25);
            })
            .await;
            assert_eq!(read_after(), 25, "a nested write counts outside");
            assert_eq!(wrote(), 25);
        })
        .await;
        assert_eq!(wrote, 25);
        assert_eq!(read_after(), 0);
    }
}
