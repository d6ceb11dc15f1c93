//! Aborting a run: the placement before it comes back.
//!
//! An abort reverses the plan (`migrations/catalogue/0003_reshard_abort.sql`). The shards
//! not cut over yet never left their source: each pair's subscription and publication are
//! dropped, the target's copies of those shards removed, the source owns them again, and
//! they leave the plan. Each shard already cut over becomes a move back, from the cluster
//! the run moved it to, to its home before the run, marked `aborted`. The reverse plan then
//! runs as any plan does (copy, per-batch cut-over with fencing, counts and checksums, old
//! rows removed after the pause), on a later epoch of the map.
//!
//! The reversal is one catalogue transaction, and what comes before it can be repeated, so
//! an abort interrupted at any point is finished by a second abort, and one interrupted
//! while moving back by a resume as well. A second abort finds the plan reversed already
//! and goes on returning: going forward again would be a new run.

use super::pair::Pair;
use super::{ReshardOptions, ReshardReport, run};
use crate::db::map_err;
use crate::sharded::db::Shards;
use crescendo_store::StoreResult;
use std::collections::BTreeMap;

/// One row of the plan.
struct Move {
    shard: u16,
    from: String,
    to: String,
    /// Cut over: its writes go to `to` now.
    moved: bool,
    /// A move back (the plan is reversed).
    aborted: bool,
}

/// Ends a run by returning to the placement before it: the shards not cut over yet stay on
/// their source, those cut over move back (see the module's notes). Returns the report of
/// the moving back; `stop_after` interrupts it as it does a run.
pub(crate) async fn abort(
    s: &Shards,
    opts: &ReshardOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> StoreResult<ReshardReport> {
    let rows: Vec<(i32, String, String, bool, bool)> = s
        .catalogue
        .read_primary(|pool| async move {
            sqlx::query_as(
                "SELECT shard, from_cluster, to_cluster, moved, aborted FROM reshard_moves ORDER BY shard",
            )
            .fetch_all(&pool)
            .await
            .map_err(map_err)
        })
        .await?;
    let plan: Vec<Move> = rows
        .into_iter()
        .map(|(shard, from, to, moved, aborted)| Move {
            shard: shard as u16,
            from,
            to,
            moved,
            aborted,
        })
        .collect();
    if plan.iter().any(|m| m.aborted) {
        let back = plan.iter().filter(|m| !m.moved).count();
        progress(&format!(
            "the run is being aborted already: {back} logical shards still move back"
        ));
        return run(s, opts, progress).await;
    }
    // per (source, target) pair: the shards it has not cut over yet (maybe none)
    let mut pairs: BTreeMap<(&str, &str), Vec<u16>> = BTreeMap::new();
    for m in &plan {
        let stay = pairs.entry((&m.from, &m.to)).or_default();
        if !m.moved {
            stay.push(m.shard);
        }
    }
    for (&(from, to), stay) in &pairs {
        // every pair, done or not: a run that failed between a pair's last cut-over and
        // its unsubscribing left its replication in place, and a shard moving back must
        // not be published to where it comes from
        let pair = Pair::open(s, opts, from, to).await?;
        pair.reset(stay).await?;
        progress(&format!(
            "{from} -> {to}: replication stopped, {} shards not cut over stay on {from}",
            stay.len()
        ));
    }
    reverse(s).await?;
    let back = plan.iter().filter(|m| m.moved).count();
    progress(&format!(
        "plan: {back} logical shards already cut over move back to where they were"
    ));
    run(s, opts, progress).await
}

/// Turns the plan into its reverse in one transaction: the shards not cut over leave it,
/// and the others move back.
async fn reverse(s: &Shards) -> StoreResult<()> {
    let mut tx = s.catalogue.begin().await?;
    for sql in [
        "DELETE FROM reshard_moves WHERE NOT moved",
        "UPDATE reshard_moves SET from_cluster = to_cluster, to_cluster = from_cluster,
         moved = false, aborted = true",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.map_err(map_err)?;
    }
    s.catalogue.commit(tx).await
}
