//! In a topology: the database tier.

use super::Postgres;
use crate::secret::put;

/// The settings file, in the run directory, with the admin's URLs of the database tier.
pub const ADMIN_FILE: &str = "postgres-admin.toml";

impl crate::launch::Part for Postgres {
    fn detach(self: Box<Self>) {
        let _ = (*self).detach();
    }
}

/// Starts the primary, then its streaming replicas (`r1`, `r2`…; with `synchronous`, the
/// primary waits for any one of them on each commit), records them, and points the nodes'
/// store at them as the application role. The admin's URLs go to `RUN_DIR/`[`ADMIN_FILE`]
/// (0600), a settings file for `crescendo failover --config`.
pub(crate) fn start_tier(up: &mut crate::up::Up, t: &crate::model::PgTier) -> anyhow::Result<()> {
    use crate::state::Role;
    if t.clusters > 0 {
        return start_clusters(up, t);
    }
    if let Some(plan) = up.o.region.clone() {
        return super::region::start_tier(up, t.replicas, &plan);
    }
    let names: Vec<String> = (1..=t.replicas).map(|i| format!("r{i}")).collect();
    let sync = format!("ANY 1 ({})", names.join(", "));
    let mut settings: Vec<(&str, &str)> = Vec::new();
    if t.synchronous {
        settings.push(("synchronous_standby_names", sync.as_str()));
    }
    up.progress("starting PostgreSQL primary");
    let parent = std::env::temp_dir();
    let primary = Postgres::start_in(&parent, &settings)?;
    let record = |role, name: String, pg: &Postgres| record(role, name, pg).in_cluster("main");
    let store = &mut up.node.store;
    store.backend = crescendo_config::StoreBackend::Postgres;
    store.postgres_url = primary.app_url("postgres");
    let mut admin = toml::Table::new();
    put(&mut admin, "store", "backend", "postgres")?;
    put(&mut admin, "store", "postgres_url", primary.url("postgres"))?;
    let mut replicas = Vec::new();
    for n in &names {
        up.progress(&format!("starting PostgreSQL replica {n}"));
        let r = Postgres::replica_in(&parent, &primary, n, &[])?;
        up.node
            .store
            .postgres_replica_urls
            .push(r.app_url("postgres"));
        replicas.push((format!("pg-{n}"), r));
    }
    let admin_urls: Vec<String> = replicas.iter().map(|(_, r)| r.url("postgres")).collect();
    put(&mut admin, "store", "postgres_replica_urls", admin_urls)?;
    let text = toml::to_string(&admin)?;
    crate::secret::write_file(&up.o.run_dir.join(ADMIN_FILE), text.as_bytes())?;
    let p = record(Role::PgPrimary, "pg-primary".into(), &primary);
    up.running.record(p, Box::new(primary));
    for (name, r) in replicas {
        up.running
            .record(record(Role::PgReplica, name, &r), Box::new(r));
    }
    Ok(())
}

/// How `state.json` lists a database server.
pub(super) fn record(
    role: crate::state::Role,
    name: String,
    pg: &Postgres,
) -> crate::state::Process {
    crate::state::Process::new(
        role,
        name,
        pg.pid(),
        format!("127.0.0.1:{}", pg.port()),
        pg.dir().join("postgres.log"),
    )
    .with_dir(pg.dir())
}

/// The sharded database tier (rung 10): a catalogue, then `clusters` cluster primaries
/// `c1`, `c2`… with logical replication on; the catalogue and each cluster have `replicas`
/// streaming replicas of their own (`pg-catalogue-r1`, `pg-c1-r1`…; with `synchronous`, each
/// primary waits for one of its replicas on each commit, as at rung 4). The last `spare`
/// clusters are left out of the first shard map. The nodes' store points at the catalogue
/// and its replicas (`store.postgres_url`, `store.postgres_replica_urls`), at every cluster
/// (`store.postgres_shards`) and at their replicas (`store.postgres_shard_replicas`) as the
/// application role. The first node to start stores the first shard map in the catalogue.
/// The admin's URLs go to `RUN_DIR/`[`ADMIN_FILE`] (0600), as at the other rungs:
/// `crescendo failover --cluster NAME --config` that file promotes a cluster's (or the
/// catalogue's) replica.
fn start_clusters(up: &mut crate::up::Up, t: &crate::model::PgTier) -> anyhow::Result<()> {
    use crate::state::Role;
    let mut admin = toml::Table::new();
    put(&mut admin, "store", "backend", "postgres")?;
    up.node.store.backend = crescendo_config::StoreBackend::Postgres;
    let (mut admin_shards, mut admin_replicas) = (Vec::new(), Vec::new());
    let mut servers = Vec::new();
    for i in 0..=t.clusters {
        let name = if i == 0 {
            "catalogue".to_string()
        } else {
            format!("c{i}")
        };
        let (primary, replicas) = start_cluster(up, t, &name)?;
        let store = &mut up.node.store;
        if i == 0 {
            store.postgres_url = primary.app_url("postgres");
            put(&mut admin, "store", "postgres_url", primary.url("postgres"))?;
            store.postgres_replica_urls = replicas
                .iter()
                .map(|(_, r)| r.app_url("postgres"))
                .collect();
            let urls: Vec<String> = replicas.iter().map(|(_, r)| r.url("postgres")).collect();
            if !urls.is_empty() {
                put(&mut admin, "store", "postgres_replica_urls", urls)?;
            }
        } else {
            if i > t.clusters - t.spare {
                store.postgres_spare_shards.push(name.clone());
            }
            store
                .postgres_shards
                .push(format!("{name}={}", primary.app_url("postgres")));
            admin_shards.push(format!("{name}={}", primary.url("postgres")));
            for (_, r) in &replicas {
                store
                    .postgres_shard_replicas
                    .push(format!("{name}={}", r.app_url("postgres")));
                admin_replicas.push(format!("{name}={}", r.url("postgres")));
            }
        }
        // each cluster's primary listed before its replicas
        servers.push((Role::PgPrimary, name.clone(), format!("pg-{name}"), primary));
        for (r, replica) in replicas {
            servers.push((
                Role::PgReplica,
                name.clone(),
                format!("pg-{name}-{r}"),
                replica,
            ));
        }
    }
    put(&mut admin, "store", "postgres_shards", admin_shards)?;
    if !admin_replicas.is_empty() {
        put(
            &mut admin,
            "store",
            "postgres_shard_replicas",
            admin_replicas,
        )?;
    }
    let text = toml::to_string(&admin)?;
    crate::secret::write_file(&up.o.run_dir.join(ADMIN_FILE), text.as_bytes())?;
    for (role, cluster, name, pg) in servers {
        let p = record(role, name, &pg).in_cluster(cluster);
        up.running.record(p, Box::new(pg));
    }
    Ok(())
}

/// Starts cluster `name` of the sharded tier: its primary (logical replication on: `crescendo
/// reshard` moves shards between clusters by it; a replica keeps it on, for when it is
/// promoted) and `t.replicas` replicas `r1`, `r2`…, the primary waiting for one of them on
/// each commit when `t.synchronous`.
fn start_cluster(
    up: &crate::up::Up,
    t: &crate::model::PgTier,
    name: &str,
) -> anyhow::Result<(Postgres, Vec<(String, Postgres)>)> {
    let parent = std::env::temp_dir();
    let names: Vec<String> = (1..=t.replicas).map(|i| format!("r{i}")).collect();
    let sync = format!("ANY 1 ({})", names.join(", "));
    let mut settings = vec![("wal_level", "logical")];
    let replica_settings = settings.clone();
    if t.synchronous {
        settings.push(("synchronous_standby_names", sync.as_str()));
    }
    up.progress(&format!("starting PostgreSQL {name}"));
    let primary = Postgres::start_in(&parent, &settings)?;
    let mut replicas = Vec::new();
    for r in names {
        up.progress(&format!("starting PostgreSQL replica {r} of {name}"));
        let replica = Postgres::replica_in(&parent, &primary, &r, &replica_settings)?;
        replicas.push((r, replica));
    }
    Ok((primary, replicas))
}
