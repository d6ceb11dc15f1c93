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
    use crate::state::{Process, Role};
    let names: Vec<String> = (1..=t.replicas).map(|i| format!("r{i}")).collect();
    let sync = format!("ANY 1 ({})", names.join(", "));
    let mut settings: Vec<(&str, &str)> = Vec::new();
    if t.synchronous {
        settings.push(("synchronous_standby_names", sync.as_str()));
    }
    up.progress("starting PostgreSQL primary");
    let parent = std::env::temp_dir();
    let primary = Postgres::start_in(&parent, &settings)?;
    let record = |role, name: String, pg: &Postgres| {
        Process::new(
            role,
            name,
            pg.pid(),
            format!("127.0.0.1:{}", pg.port()),
            pg.dir().join("postgres.log"),
        )
        .with_dir(pg.dir())
    };
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
