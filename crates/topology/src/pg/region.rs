//! The database tier of a region (rung 8). Region A's primary listens on loopback and on the
//! region's private inter-region address, and lets that network in (with passwords, as every
//! client); region B has no primary of its own but a streaming replica of A's across the
//! WAN, which its web nodes read from, while their writes go to A's primary. What B needs to
//! reach A's primary ([`Upstream`]) is a 0600 file in A's run directory.

use super::Postgres;
use super::auth::{ADMIN_ROLE, APP_ROLE, Credentials};
use super::copy::{Source, base_backup};
use crate::regions::RegionPlan;
use crate::secret::put;
use crate::state::Role;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

/// The file, in region A's run directory, that tells region B how to reach A's primary.
pub const UPSTREAM_FILE: &str = "pg-upstream.json";

/// The file, in region B's run directory, that tells region A how to reach B's replica
/// once `crescendo failover --region b` has promoted it (for `crescendo rejoin --region a`).
pub const PROMOTED_FILE: &str = "pg-promoted.json";

/// A primary in another region: where it listens and its roles' passwords.
#[derive(Clone, Serialize, Deserialize)]
pub struct Upstream {
    /// Its private inter-region address.
    pub host: Ipv4Addr,
    /// Its port.
    pub port: u16,
    /// The admin's password.
    pub admin: String,
    /// The application role's password.
    pub app: String,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({}:{})", self.host, self.port)
    }
}

impl Upstream {
    /// Reads `file` ([`UPSTREAM_FILE`], [`PROMOTED_FILE`]) from a region's run directory.
    ///
    /// # Errors
    /// The region has not written it.
    pub fn read(region: &Path, file: &str) -> anyhow::Result<Self> {
        let path = region.join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    fn url(&self, role: &str, password: &str) -> String {
        format!(
            "postgres://{role}:{password}@{}:{}/postgres",
            self.host, self.port
        )
    }

    fn creds(&self) -> Credentials {
        Credentials {
            admin: self.admin.clone(),
            app: self.app.clone(),
        }
    }
}

/// Writes [`PROMOTED_FILE`] in the run directory of a region whose replica was just
/// promoted: its private address and its database's port, with the passwords of the catalog
/// it copied from `was` (the old primary), for the other region's `rejoin`.
///
/// # Errors
/// The region's state names no database server, or the file cannot be written.
pub fn record_promoted(region_dir: &Path, was: &Upstream, private: Ipv4Addr) -> anyhow::Result<()> {
    let own = crate::state::State::read(region_dir)?;
    let db = own
        .of(Role::PgReplica)
        .next()
        .context("the region records no database server")?;
    let port = db
        .addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .context("a database server's address without a port")?;
    let now = Upstream {
        host: private,
        port,
        ..was.clone()
    };
    crate::secret::write_file(&region_dir.join(PROMOTED_FILE), &serde_json::to_vec(&now)?)
}

/// Lets clients from `net` in, with passwords, as loopback clients are.
pub(super) fn allow_network(data: &Path, net: &str) -> anyhow::Result<()> {
    let lines = format!(
        "\n# another region, across the WAN\nhost all all {net} scram-sha-256\n\
         host replication all {net} scram-sha-256\n"
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("pg_hba.conf"))?
        .write_all(lines.as_bytes())
        .context("writing pg_hba.conf")
}

impl Postgres {
    /// A durable primary that also listens on `private` and lets clients from `net` in.
    fn start_reachable(parent: &Path, private: Ipv4Addr, net: &str) -> anyhow::Result<Self> {
        let listen = format!("127.0.0.1,{private}");
        Self::start_under(parent, &[("listen_addresses", &listen)], true, Some(net))
    }

    /// A durable replica, named `name`, of a primary across the WAN, listening on `private`
    /// too (promoted, it is the primary the other region reaches; the copied `pg_hba.conf`
    /// already lets the private network in); waits until its WAL receiver streams.
    fn replica_across(
        parent: &Path,
        upstream: &Upstream,
        name: &str,
        private: Ipv4Addr,
    ) -> anyhow::Result<Self> {
        let source = Source {
            host: upstream.host.to_string(),
            port: upstream.port,
            creds: upstream.creds(),
        };
        let dir = base_backup(parent, &source, name, true)?;
        let listen = format!("127.0.0.1,{private}");
        let replica = Self::boot(dir, &[("listen_addresses", &listen)], true, source.creds)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while replica
            .query("SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'")?
            != "1"
        {
            if Instant::now() > deadline {
                bail!(
                    "replica {name} is not streaming from {upstream:?} after 60 s:\n{}",
                    replica.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(replica)
    }
}

/// Starts a region's database tier: in the first region (no upstream), the primary,
/// reachable from the other region, and its local replicas; in the other, a replica of the
/// first region's primary (synchronous when the plan says so). Points the nodes' store at
/// them, and writes the admin's URLs to `RUN_DIR/postgres-admin.toml` as every rung does
/// (so `crescendo failover` run in region B promotes B's replica).
pub(crate) fn start_tier(
    up: &mut crate::up::Up,
    replicas: usize,
    plan: &RegionPlan,
) -> anyhow::Result<()> {
    let parent = std::env::temp_dir();
    let mut admin = toml::Table::new();
    put(&mut admin, "store", "backend", "postgres")?;
    up.node.store.backend = crescendo_config::StoreBackend::Postgres;
    let mut started = Vec::new();
    match &plan.upstream {
        None => {
            up.progress("starting PostgreSQL primary (reachable from the other region)");
            let primary = Postgres::start_reachable(&parent, plan.private, &plan.private_net)?;
            let upstream = Upstream {
                host: plan.private,
                port: primary.port,
                admin: primary.creds.admin.clone(),
                app: primary.creds.app.clone(),
            };
            let text = serde_json::to_vec(&upstream)?;
            crate::secret::write_file(&up.o.run_dir.join(UPSTREAM_FILE), &text)?;
            up.node.store.postgres_url = primary.app_url("postgres");
            put(&mut admin, "store", "postgres_url", primary.url("postgres"))?;
            for i in 1..=replicas {
                up.progress(&format!("starting PostgreSQL replica r{i}"));
                let r = Postgres::replica_in(&parent, &primary, &format!("r{i}"), &[])?;
                started.push((Role::PgReplica, format!("pg-r{i}"), r));
            }
            started.insert(0, (Role::PgPrimary, "pg-primary".into(), primary));
        }
        Some(upstream) => {
            let name = format!("region_{}", plan.name);
            up.progress(&format!(
                "starting PostgreSQL replica {name} of {}:{} across the WAN",
                upstream.host, upstream.port
            ));
            let r = Postgres::replica_across(&parent, upstream, &name, plan.private)?;
            if plan.synchronous {
                let set = format!("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 ({name})'");
                r.query_upstream(upstream, &[&set, "SELECT pg_reload_conf()"])?;
            }
            up.node.store.postgres_url = upstream.url(APP_ROLE, &upstream.app);
            // while the WAN is cut, reads go on from this region's replica, marked stale
            up.node.store.serve_stale_reads = true;
            put(
                &mut admin,
                "store",
                "postgres_url",
                upstream.url(ADMIN_ROLE, &upstream.admin),
            )?;
            started.push((Role::PgReplica, format!("pg-{name}"), r));
        }
    }
    let replicas: Vec<&Postgres> = started
        .iter()
        .filter(|(role, _, _)| *role == Role::PgReplica)
        .map(|(_, _, pg)| pg)
        .collect();
    up.node.store.postgres_replica_urls = replicas.iter().map(|r| r.app_url("postgres")).collect();
    let admin_urls: Vec<String> = replicas.iter().map(|r| r.url("postgres")).collect();
    put(&mut admin, "store", "postgres_replica_urls", admin_urls)?;
    let text = toml::to_string(&admin)?;
    crate::secret::write_file(&up.o.run_dir.join(super::ADMIN_FILE), text.as_bytes())?;
    for (role, name, pg) in started {
        let p = super::tier::record(role, name, &pg).in_cluster("main");
        up.running.record(p, Box::new(pg));
    }
    Ok(())
}

impl Postgres {
    /// Runs each statement of `sql` (each on its own: `ALTER SYSTEM` refuses a transaction)
    /// on `upstream` as the admin, with this server's password file.
    fn query_upstream(&self, upstream: &Upstream, sql: &[&str]) -> anyhow::Result<String> {
        let mut cmd = std::process::Command::new(super::bin("psql")?);
        cmd.args(["-X", "-A", "-t", "-h"])
            .arg(upstream.host.to_string())
            .arg("-p")
            .arg(upstream.port.to_string())
            .args(["-U", ADMIN_ROLE, "-d", "postgres"]);
        for statement in sql {
            cmd.args(["-c", statement]);
        }
        let out = cmd
            .env("PGPASSFILE", Credentials::pgpass(&self.path))
            .stdin(std::process::Stdio::null())
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}
