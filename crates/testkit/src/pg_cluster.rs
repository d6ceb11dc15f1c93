//! Private PostgreSQL clusters for tests: a primary and its streaming replicas.

use crescendo_config::Settings;

/// A private PostgreSQL primary with streaming replicas named `r1`, `r2`, …, for tests of
/// the replicated data tier. Stopped and removed when dropped.
pub struct PgCluster {
    /// The primary.
    pub primary: crescendo_topology::pg::Postgres,
    /// The replicas, in name order.
    pub replicas: Vec<crescendo_topology::pg::Postgres>,
}

impl PgCluster {
    /// Starts a primary and `replicas` replicas. With `synchronous`, the primary waits for
    /// any one replica on each commit (`ANY 1 (r1, r2, …)`); each replica gets
    /// `replica_settings` (e.g. `recovery_min_apply_delay`). With `durable`, the servers keep
    /// `fsync` and full-page writes as `crescendo up` starts them (for failover tests);
    /// otherwise they give them up for speed.
    pub async fn start(
        replicas: usize,
        synchronous: bool,
        durable: bool,
        replica_settings: &[(&str, &str)],
    ) -> Self {
        let replica_settings: Vec<(String, String)> = replica_settings
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            use crescendo_topology::pg::Postgres;
            let names: Vec<String> = (1..=replicas).map(|i| format!("r{i}")).collect();
            let sync = format!("ANY 1 ({})", names.join(", "));
            let primary_settings: Vec<(&str, &str)> = if synchronous {
                vec![("synchronous_standby_names", sync.as_str())]
            } else {
                vec![]
            };
            let parent = std::env::temp_dir();
            let primary = if durable {
                Postgres::start_in(&parent, &primary_settings)
            } else {
                Postgres::start(&primary_settings)
            }
            .expect("primary starts");
            let settings: Vec<(&str, &str)> = replica_settings
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let replicas = names
                .iter()
                .map(|n| match durable {
                    true => Postgres::replica_in(&parent, &primary, n, &settings),
                    false => Postgres::replica_of(&primary, n, &settings),
                })
                .map(|r| r.expect("replica starts"))
                .collect();
            PgCluster { primary, replicas }
        })
        .await
        .expect("launcher thread")
    }

    /// Points `settings` at this cluster (database `postgres`), with replicas checked every
    /// 50 ms.
    pub fn configure(&self, settings: &mut Settings) {
        settings.store.backend = crescendo_config::StoreBackend::Postgres;
        settings.store.postgres_url = self.primary.url("postgres");
        settings.store.postgres_replica_urls =
            self.replicas.iter().map(|r| r.url("postgres")).collect();
        settings.store.replica_check_interval_ms = 50;
    }
}

/// Cuts `pg` off as a WAN cut does (`cut`), or heals it: see
/// [`crescendo_topology::pg::Postgres::blackhole`].
pub fn blackhole(pg: &crescendo_topology::pg::Postgres, cut: bool) {
    pg.blackhole(cut);
}
