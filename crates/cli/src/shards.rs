//! `crescendo shards` (the shard map of a sharded store, as a table or JSON) and
//! `crescendo reshard` (moving logical shards between its clusters).

use crate::Common;
use clap::Args;
use crescendo_config::{Overrides, Settings};
use crescendo_server::ops::{ReshardAction, ReshardTarget};
use std::path::PathBuf;

/// Flags of `shards`.
#[derive(Args, Debug)]
pub(crate) struct ShardsArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// The run directory of a topology started by `up`: its nodes' settings are used.
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub(crate) run_dir: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Flags of `reshard`.
#[derive(Args, Debug)]
pub(crate) struct ReshardArgs {
    /// The run directory of a topology started by `up`: its nodes' settings and its admin's
    /// database URLs are used.
    #[arg(long, value_name = "DIR", default_value = "crescendo-run")]
    pub(crate) run_dir: PathBuf,
    /// Add this cluster to the ring.
    #[arg(long, value_name = "CLUSTER", conflicts_with_all = ["move_shard", "resume", "abort"])]
    pub(crate) add: Option<String>,
    /// Move this logical shard (0-4095) alone; with `--to`.
    #[arg(long, value_name = "N", requires = "to", conflicts_with_all = ["resume", "abort"])]
    pub(crate) move_shard: Option<u16>,
    /// Where `--move-shard` moves it.
    #[arg(long, value_name = "CLUSTER")]
    pub(crate) to: Option<String>,
    /// Finish an interrupted run.
    #[arg(long, conflicts_with = "abort")]
    pub(crate) resume: bool,
    /// End an unfinished run by returning to the placement before it: shards not cut over
    /// yet stay where they were, those already cut over move back (by the same replication
    /// and per-batch cut-over). An interrupted abort is finished by `--resume` or `--abort`.
    #[arg(long)]
    pub(crate) abort: bool,
    /// Logical shards per cut-over batch.
    #[arg(long, default_value_t = 128)]
    pub(crate) batch: usize,
}

/// Prints the shard map of the settings' sharded store: a table, or JSON with `json`.
pub(crate) async fn print(settings: &Settings, json: bool) -> anyhow::Result<()> {
    crescendo_telemetry::init_logs(settings.log.format, "warn");
    let view = crescendo_server::ops::shards(settings).await?;
    let (epoch, clusters) = (view.epoch, &view.clusters);
    if json {
        let clusters: Vec<serde_json::Value> = clusters
            .iter()
            .map(|c| {
                serde_json::json!({"cluster": c.name, "shards": c.shards, "users": c.users,
                    "articles": c.articles, "rows": c.rows})
            })
            .collect();
        let out = serde_json::json!({"epoch": epoch, "clusters": clusters, "moving": view.moving});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let total: usize = clusters.iter().map(|c| c.shards).sum();
    println!(
        "shard map epoch {epoch}: {total} logical shards on {} clusters",
        clusters.len()
    );
    println!(
        "{:<12} {:>7} {:>7} {:>9} {:>9} {:>10}",
        "cluster", "shards", "share", "users", "articles", "rows"
    );
    for c in clusters {
        let share = 100.0 * c.shards as f64 / total.max(1) as f64;
        println!(
            "{:<12} {:>7} {:>6.1}% {:>9} {:>9} {:>10}",
            c.name, c.shards, share, c.users, c.articles, c.rows
        );
    }
    if view.moving > 0 {
        println!(
            "a resharding run is unfinished: {} logical shards still to move (crescendo reshard --resume or --abort)",
            view.moving
        );
    }
    Ok(())
}

/// `crescendo reshard`: runs the action the flags name on the topology in `--run-dir`.
pub(crate) async fn reshard(a: ReshardArgs) -> anyhow::Result<()> {
    let load = |file: &str| -> anyhow::Result<Settings> {
        let path = a.run_dir.join(file);
        Ok(Settings::load(Some(&path), &Overrides::default())?)
    };
    let settings = load(crescendo_topology::secret::NODE_SECRETS)?;
    let admin = load(crescendo_topology::pg::ADMIN_FILE)?;
    crescendo_telemetry::init_logs(settings.log.format, "warn");
    let action = match (&a.add, a.move_shard, &a.to) {
        _ if a.resume => ReshardAction::Resume,
        _ if a.abort => ReshardAction::Abort,
        (Some(c), _, _) => ReshardAction::Start(ReshardTarget::AddCluster(c.clone())),
        (None, Some(n), Some(c)) => ReshardAction::Start(ReshardTarget::MoveShard(n, c.clone())),
        _ => anyhow::bail!(
            "say what to do: --add CLUSTER, --move-shard N --to CLUSTER, --resume or --abort"
        ),
    };
    let started = std::time::Instant::now();
    let progress = |m: &str| eprintln!("  {m}");
    let r = crescendo_server::ops::reshard(&settings, &admin, action, a.batch, &progress).await?;
    let mut pauses = r.pauses.clone();
    pauses.sort();
    let at = |q: f64| {
        pauses
            .get(((pauses.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0, |d| d.as_millis())
    };
    if a.abort {
        print!("aborted, back to the placement before the run: ");
    }
    println!(
        "moved {} logical shards ({:.1} % of 4096) in {:.1} s, map epoch {}: {} rows moved ({} rows in all at the start), initial copy {:.1} s",
        r.shards_moved,
        100.0 * r.shards_moved as f64 / 4096.0,
        started.elapsed().as_secs_f64(),
        r.epoch,
        r.rows_moved,
        r.rows_total,
        r.copy_time.as_secs_f64()
    );
    println!(
        "write pause per batch ({} batches): p50 {} ms, p99 {} ms, max {} ms",
        pauses.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
