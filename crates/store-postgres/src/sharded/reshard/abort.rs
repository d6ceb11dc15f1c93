//! Aborting a run.

use super::pair::{Pair, run_sql};
use super::{ReshardOptions, cleanup, pending};
use crate::sharded::db::Shards;
use crescendo_store::StoreResult;

/// Ends an interrupted run without finishing it: the shards not cut over yet stay with (or
/// return to) their source, its subscriptions and publications are dropped, and the plan is
/// removed. Shards already cut over stay on their new home, their old rows removed; a run
/// towards the old placement moves them back.
pub(crate) async fn abort(
    s: &Shards,
    opts: &ReshardOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> StoreResult<()> {
    for ((from, to), shards) in pending(s).await? {
        let pair = Pair::open(s, opts, &from, &to).await?;
        pair.reset(&shards).await?;
        run_sql(
            &pair.source_admin,
            format!("DROP PUBLICATION IF EXISTS {}", pair.name),
        )
        .await?;
        progress(&format!(
            "{from} -> {to}: {} shards stay on {from}",
            shards.len()
        ));
    }
    cleanup(s, progress).await
}
