//! Online resharding: logical shards move between clusters while traffic flows, by
//! PostgreSQL's own logical replication.
//!
//! A run has a plan (the shards whose home differs between the map in force and the target
//! map), kept in the catalogue (`reshard_moves`) until the run ends, so an interrupted run
//! is resumed from where it stopped, or aborted: an abort reverses the plan and runs it,
//! moving the shards already cut over back (see `abort`). For each (source, target) pair:
//!
//! 1. the source publishes the moving shards' rows, every table filtered by logical shard
//!    (`(id & 4095) = ANY(…)`; see `migrations/postgres/0005_reshard.sql` for the tables
//!    whose key lacks the shard), and the target subscribes: it copies, then streams;
//! 2. per batch of shards, the cut-over: the source deletes the batch from `owned_shards`
//!    (waiting for the writes in flight; every later write is refused as `Moved` and waits
//!    in the writer's retry loop), then writes a mark; once the mark has arrived on the
//!    target, every write to the batch has too. Row counts and checksums per logical shard
//!    are compared on both sides (nothing writes the batch anywhere now), the target takes
//!    ownership, and the catalogue's map moves to the next epoch. Writers reload the map
//!    and resume on the new home. The time from the fence to the new epoch is the batch's
//!    write pause;
//! 3. the subscription and the publication are dropped, and only then, after a pause of a
//!    few of the nodes' map checks, are the moved rows removed from the source. Reads are
//!    not fenced: a node reads where its map says, so until it has the new map it reads a
//!    moved shard's frozen rows at the old home.
//!
//! Publications and subscriptions need a superuser: a run is given the admin URL of every
//! cluster. The outbox does not move: a source's relay drains its own entries.

mod abort;
mod pair;

pub(crate) use abort::abort;

use super::MOVED_TABLES as TABLES;
use super::db::Shards;
use crate::db::map_err;
use crescendo_domain::{LogicalShard, SHARD_COUNT};
use crescendo_store::shard_map::ShardMap;
use crescendo_store::{StoreError, StoreResult};
use pair::Pair;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long old rows stay after the last cut-over: several of the nodes' map checks (one a
/// second), so that reads, which are not fenced, have left the old homes first.
const CLEANUP_GRACE: Duration = Duration::from_secs(3);

/// What a run is to do.
#[derive(Clone, Debug)]
pub enum ReshardTarget {
    /// Add this cluster (configured, holding no shards yet) to the consistent-hash ring:
    /// about 1/(N+1) of the logical shards move to it.
    AddCluster(String),
    /// Move one (hot) logical shard on its own to this cluster.
    MoveShard(u16, String),
}

/// How a run goes.
#[derive(Clone, Debug)]
pub struct ReshardOptions {
    /// Every cluster's admin (superuser) URL, by name: publications and subscriptions.
    pub admin_urls: Vec<(String, String)>,
    /// Logical shards per cut-over batch.
    pub batch: usize,
    /// Stop after this many cut-overs (an interruption on purpose; resume finishes the run).
    pub stop_after: Option<usize>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct ReshardReport {
    /// Logical shards moved by this run (of 4,096).
    pub shards_moved: usize,
    /// Rows moved (counted in the cut-overs' checks).
    pub rows_moved: u64,
    /// Rows of the moved tables on every cluster when the run started (writes during the
    /// run add more).
    pub rows_total: u64,
    /// Each cut-over's write pause, in order.
    pub pauses: Vec<Duration>,
    /// The initial copies' time, all pairs together.
    pub copy_time: Duration,
    /// Whether the plan is done (false: stopped by `stop_after`; resume finishes it).
    pub finished: bool,
    /// The map's epoch at the end.
    pub epoch: u64,
}

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string().into())
}

/// The shards of `list` as SQL's `int[]` literal.
fn array(list: &[u16]) -> String {
    let items: Vec<String> = list.iter().map(u16::to_string).collect();
    format!("'{{{}}}'::int[]", items.join(","))
}

/// Starts a run towards `target`: writes the plan, then runs it.
pub(crate) async fn start(
    s: &Shards,
    target: &ReshardTarget,
    opts: &ReshardOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> StoreResult<ReshardReport> {
    s.refresh().await?;
    let pending: i64 = s
        .catalogue
        .read_primary(|pool| async move {
            sqlx::query_scalar("SELECT COUNT(*) FROM reshard_moves")
                .fetch_one(&pool)
                .await
                .map_err(map_err)
        })
        .await?;
    if pending > 0 {
        return Err(other(
            "a resharding run is in progress: resume it or abort it",
        ));
    }
    let now = s.map();
    let next = match target {
        ReshardTarget::AddCluster(c) => {
            if now.clusters().contains(c) {
                return Err(other(format!("cluster {c} is in the map already")));
            }
            let mut names: Vec<&str> = now.clusters().iter().map(String::as_str).collect();
            names.push(c);
            ShardMap::place(&names, now.epoch() + 1)
        }
        ReshardTarget::MoveShard(n, c) if *n < SHARD_COUNT => {
            now.with_shard_on(LogicalShard::new(*n), c)
        }
        ReshardTarget::MoveShard(n, _) => return Err(other(format!("no logical shard {n}"))),
    };
    if let Some(unknown) = next.clusters().iter().find(|c| s.find(c).is_none()) {
        return Err(other(format!(
            "cluster {unknown} is not configured (store.postgres_shards)"
        )));
    }
    let moves = now.moves_to(&next);
    let shards: Vec<i32> = moves.iter().map(|m| i32::from(m.shard.get())).collect();
    let from: Vec<&str> = moves.iter().map(|m| m.from.as_str()).collect();
    let to: Vec<&str> = moves.iter().map(|m| m.to.as_str()).collect();
    let plan = sqlx::query(
        "INSERT INTO reshard_moves (shard, from_cluster, to_cluster)
         SELECT * FROM unnest($1::int[], $2::text[], $3::text[])",
    )
    .bind(shards)
    .bind(from)
    .bind(to);
    s.catalogue.execute(plan).await?;
    progress(&format!(
        "plan: {} of {} logical shards move ({:.1} %)",
        moves.len(),
        SHARD_COUNT,
        100.0 * moves.len() as f64 / f64::from(SHARD_COUNT)
    ));
    run(s, opts, progress).await
}

/// The plan's shards not moved yet, by (source, target).
async fn pending(s: &Shards) -> StoreResult<BTreeMap<(String, String), Vec<u16>>> {
    let rows: Vec<(i32, String, String)> = s
        .catalogue
        .read_primary(|pool| async move {
            sqlx::query_as(
                "SELECT shard, from_cluster, to_cluster FROM reshard_moves WHERE NOT moved ORDER BY shard",
            )
            .fetch_all(&pool)
            .await
            .map_err(map_err)
        })
        .await?;
    let mut out: BTreeMap<(String, String), Vec<u16>> = BTreeMap::new();
    for (shard, from, to) in rows {
        out.entry((from, to)).or_default().push(shard as u16);
    }
    Ok(out)
}

/// Runs (or resumes) the plan in the catalogue.
pub(crate) async fn run(
    s: &Shards,
    opts: &ReshardOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> StoreResult<ReshardReport> {
    let mut report = ReshardReport {
        rows_total: total_rows(s).await?,
        ..ReshardReport::default()
    };
    let mut cut_overs = 0;
    for ((from, to), shards) in pending(s).await? {
        let pair = Pair::open(s, opts, &from, &to).await?;
        pair.reset(&shards).await?;
        let copy = Instant::now();
        pair.subscribe(&shards, progress).await?;
        report.copy_time += copy.elapsed();
        let mut done = 0;
        for batch in shards.chunks(opts.batch.max(1)) {
            if opts.stop_after.is_some_and(|n| cut_overs >= n) {
                progress("stopping as asked; resume finishes the run");
                report.epoch = s.map().epoch();
                return Ok(report);
            }
            let started = Instant::now();
            report.rows_moved += pair.cut_over(s, batch, cut_overs).await?;
            report.pauses.push(started.elapsed());
            report.shards_moved += batch.len();
            done += batch.len();
            cut_overs += 1;
            progress(&format!(
                "{from} -> {to}: {done} of {} shards moved, write pause {} ms",
                shards.len(),
                started.elapsed().as_millis()
            ));
        }
        pair.unsubscribe().await?;
    }
    cleanup(s, progress).await?;
    report.finished = true;
    report.epoch = s.map().epoch();
    Ok(report)
}

/// Rows of the moved tables on every cluster.
async fn total_rows(s: &Shards) -> StoreResult<u64> {
    let mut total = 0;
    for (_, db) in s.clusters() {
        for (table, _) in TABLES {
            let n: i64 = db
                .read_primary(|pool| async move {
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                        .fetch_one(&pool)
                        .await
                        .map_err(map_err)
                })
                .await?;
            total += n as u64;
        }
    }
    Ok(total)
}

/// Removes the moved shards' rows from their old homes, after [`CLEANUP_GRACE`] when there
/// are any, then the plan.
async fn cleanup(s: &Shards, progress: &(dyn Fn(&str) + Sync)) -> StoreResult<()> {
    let moved: Vec<(i32, String)> = s
        .catalogue
        .read_primary(|pool| async move {
            sqlx::query_as("SELECT shard, from_cluster FROM reshard_moves WHERE moved")
                .fetch_all(&pool)
                .await
                .map_err(map_err)
        })
        .await?;
    if !moved.is_empty() {
        // nodes read where their map says; every node checks the epoch each second, so
        // after this pause none reads a moved shard at its old home any more
        progress(&format!(
            "waiting {} s for every node to take the new map before removing old rows",
            CLEANUP_GRACE.as_secs()
        ));
        tokio::time::sleep(CLEANUP_GRACE).await;
    }
    let mut by_source: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (shard, from) in moved {
        by_source.entry(from).or_default().push(shard);
    }
    for (from, shards) in by_source {
        let db = s
            .find(&from)
            .ok_or_else(|| other(format!("unknown cluster {from}")))?;
        let mut tx = db.begin().await?;
        for (table, column) in TABLES.iter().rev() {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE ({column} & 4095) = ANY($1)"
            )))
            .bind(&shards)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        db.commit(tx).await?;
        progress(&format!(
            "{from}: removed the rows of {} moved shards",
            shards.len()
        ));
    }
    s.catalogue
        .execute(sqlx::query("DELETE FROM reshard_moves"))
        .await
        .map(drop)
}
