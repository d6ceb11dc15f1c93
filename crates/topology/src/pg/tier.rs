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

/// The sharded database tier (rung 10): a catalogue server, then `clusters` cluster
/// primaries `c1`, `c2`… with logical replication on, each with `replicas` streaming
/// replicas of its own (`pg-c1-r1`…; with `synchronous`, each primary waits for one of its
/// replicas on each commit, as at rung 4), the last `spare` clusters left out of the first
/// shard map. The nodes' store points at the catalogue (`store.postgres_url`), at every
/// cluster (`store.postgres_shards`) and at their replicas (`store.postgres_shard_replicas`)
/// as the application role. The first node to start stores the first shard map in the
/// catalogue. The admin's URLs go to `RUN_DIR/`[`ADMIN_FILE`] (0600), as at the other
/// rungs: `crescendo failover --cluster NAME --config` that file promotes a cluster's
/// replica.
fn start_clusters(up: &mut crate::up::Up, t: &crate::model::PgTier) -> anyhow::Result<()> {
    use crate::state::Role;
    let parent = std::env::temp_dir();
    up.progress("starting the PostgreSQL catalogue");
    let catalogue = Postgres::start_in(&parent, &[])?;
    let mut admin = toml::Table::new();
    put(&mut admin, "store", "backend", "postgres")?;
    put(
        &mut admin,
        "store",
        "postgres_url",
        catalogue.url("postgres"),
    )?;
    let store = &mut up.node.store;
    store.backend = crescendo_config::StoreBackend::Postgres;
    store.postgres_url = catalogue.app_url("postgres");
    let mut servers = vec![(
        Role::PgPrimary,
        "catalogue".to_string(),
        "pg-catalogue".to_string(),
        catalogue,
    )];
    let (mut admin_shards, mut admin_replicas) = (Vec::new(), Vec::new());
    let names: Vec<String> = (1..=t.replicas).map(|i| format!("r{i}")).collect();
    let sync = format!("ANY 1 ({})", names.join(", "));
    // logical replication moves shards between clusters (`crescendo reshard`); a replica
    // keeps it on, for when it is promoted
    let mut settings = vec![("wal_level", "logical")];
    let replica_settings = settings.clone();
    if t.synchronous {
        settings.push(("synchronous_standby_names", sync.as_str()));
    }
    for i in 1..=t.clusters {
        let name = format!("c{i}");
        up.progress(&format!("starting PostgreSQL cluster {name}"));
        let pg = Postgres::start_in(&parent, &settings)?;
        if i > t.clusters - t.spare {
            up.node.store.postgres_spare_shards.push(name.clone());
        }
        let store = &mut up.node.store;
        store
            .postgres_shards
            .push(format!("{name}={}", pg.app_url("postgres")));
        admin_shards.push(format!("{name}={}", pg.url("postgres")));
        let mut copies = Vec::new();
        for r in &names {
            up.progress(&format!(
                "starting PostgreSQL replica {r} of cluster {name}"
            ));
            let replica = Postgres::replica_in(&parent, &pg, r, &replica_settings)?;
            let store = &mut up.node.store;
            store
                .postgres_shard_replicas
                .push(format!("{name}={}", replica.app_url("postgres")));
            admin_replicas.push(format!("{name}={}", replica.url("postgres")));
            copies.push((
                Role::PgReplica,
                name.clone(),
                format!("pg-{name}-{r}"),
                replica,
            ));
        }
        // each cluster's primary listed before its replicas
        servers.push((Role::PgPrimary, name.clone(), format!("pg-{name}"), pg));
        servers.extend(copies);
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
