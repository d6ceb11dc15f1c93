//! What operators run beside serving, on the backends the settings name: the queue's backlog
//! (what the worker autoscaler sizes the tier by), a database failover, and the shard map
//! of a sharded store. The CLI reaches
//! every backend through here and names none itself.

use crescendo_config::{QueueBackend, Settings, StoreBackend};
use crescendo_queue::Queue;

pub use crescendo_store_postgres::failover::Promoted;
pub use crescendo_store_postgres::{ClusterReport, ReshardReport, ReshardTarget};

/// The image jobs' backlog on the queue the settings name, shared by every worker.
pub struct JobBacklog {
    queue: std::sync::Arc<dyn Queue>,
}

impl JobBacklog {
    /// Connects to the settings' queue.
    ///
    /// # Errors
    /// The queue is not a shared one (`queue.backend = "nats"`), or it cannot be reached.
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        if settings.queue.backend != QueueBackend::Nats {
            anyhow::bail!(
                "only a shared queue (queue.backend = \"nats\") has a backlog to scale by"
            );
        }
        Ok(Self {
            queue: crate::state::open_queue(settings, None).await?,
        })
    }

    /// (jobs waiting or running, age of the oldest in ms).
    ///
    /// # Errors
    /// The queue does not answer.
    pub async fn read(&self) -> anyhow::Result<(u64, u64)> {
        let d = self.queue.depth(crescendo_app::IMAGES_QUEUE).await?;
        Ok((d.pending, d.oldest_ms))
    }
}

/// Promotes the most advanced replica of the settings' PostgreSQL servers (the primary and
/// its replicas; with a sharded store, those of `cluster`, or of the catalogue database when
/// it is `catalogue`) once the primary is gone, and
/// re-points the others at it (as synchronous standbys unless `asynchronous`).
///
/// # Errors
/// The store is not PostgreSQL, a sharded store without `cluster` (or an unsharded one
/// with it), an unknown cluster, a primary still answers, or no replica can be promoted.
pub async fn failover(
    settings: &Settings,
    cluster: Option<&str>,
    asynchronous: bool,
) -> anyhow::Result<Promoted> {
    if settings.store.backend != StoreBackend::Postgres {
        anyhow::bail!(
            "failover needs store.backend = \"postgres\" with store.postgres_url and store.postgres_replica_urls"
        );
    }
    let urls: Vec<String> = match (settings.store.postgres_shards.is_empty(), cluster) {
        (true, None) => std::iter::once(settings.store.postgres_url.clone())
            .chain(settings.store.postgres_replica_urls.iter().cloned())
            .collect(),
        (true, Some(_)) => anyhow::bail!("--cluster names a cluster of a sharded store"),
        (false, None) => anyhow::bail!(
            "the store is sharded: name the cluster whose primary is gone (--cluster NAME)"
        ),
        (false, Some("catalogue")) => std::iter::once(settings.store.postgres_url.clone())
            .chain(settings.store.postgres_replica_urls.iter().cloned())
            .collect(),
        (false, Some(name)) => cluster_servers(settings, name)?,
    };
    Ok(crescendo_store_postgres::failover::promote_most_advanced(&urls, !asynchronous).await?)
}

/// The URLs of cluster `name` of a sharded store: its primary, then its replicas.
fn cluster_servers(settings: &Settings, name: &str) -> anyhow::Result<Vec<String>> {
    let Some((_, primary)) = settings
        .store
        .shard_urls()?
        .into_iter()
        .find(|(n, _)| n == name)
    else {
        anyhow::bail!("store.postgres_shards has no cluster {name}");
    };
    let replicas: Vec<String> = settings
        .store
        .shard_replica_urls()?
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, url)| url)
        .collect();
    if replicas.is_empty() {
        anyhow::bail!(
            "cluster {name} has no replicas (store.postgres_shard_replicas): there is nothing to fail over to"
        );
    }
    Ok(std::iter::once(primary).chain(replicas).collect())
}

/// A sharded store's map as `crescendo shards` shows it.
#[derive(Clone, Debug)]
pub struct ShardsView {
    /// The map's epoch.
    pub epoch: u64,
    /// Per cluster: its logical shards, users, articles and rows.
    pub clusters: Vec<ClusterReport>,
    /// Logical shards an unfinished resharding run has still to move.
    pub moving: u64,
}

/// The shard map in force and what each cluster holds.
///
/// # Errors
/// The store is not sharded (`store.postgres_shards`), or a database cannot be reached.
pub async fn shards(settings: &Settings) -> anyhow::Result<ShardsView> {
    let store = crate::state::open_sharded(settings).await?;
    Ok(ShardsView {
        epoch: store.map().epoch(),
        clusters: store.report().await?,
        moving: store.pending_moves().await?,
    })
}

/// What `crescendo reshard` is asked to do.
#[derive(Clone, Debug)]
pub enum ReshardAction {
    /// Start a run towards a target.
    Start(ReshardTarget),
    /// Finish an interrupted run.
    Resume,
    /// End an unfinished run by returning to the placement before it: the shards not cut
    /// over yet stay where they were, those already cut over move back.
    Abort,
}

/// Runs `action` on the sharded store of `settings` (the nodes' settings: the application
/// role), with the clusters' admin URLs from `admin` (`store.postgres_shards` as the
/// superuser: publications and subscriptions need one), moving `batch` logical shards per
/// cut-over and saying what it does through `progress`. After an abort, the report is the
/// moving back's.
///
/// # Errors
/// The store is not sharded, a database cannot be reached, or the run fails (it can be
/// resumed).
pub async fn reshard(
    settings: &Settings,
    admin: &Settings,
    action: ReshardAction,
    batch: usize,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<ReshardReport> {
    let store = crate::state::open_sharded(settings).await?;
    let opts = crescendo_store_postgres::ReshardOptions {
        admin_urls: admin.store.shard_urls()?,
        batch: batch.max(1),
        stop_after: None,
    };
    Ok(match action {
        ReshardAction::Start(target) => store.reshard(&target, &opts, progress).await?,
        ReshardAction::Resume => store.resume_reshard(&opts, progress).await?,
        ReshardAction::Abort => store.abort_reshard(&opts, progress).await?,
    })
}
