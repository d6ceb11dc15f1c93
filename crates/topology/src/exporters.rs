//! The exporters Prometheus reads for servers without a `/metrics` of their own, Debian's
//! builds, each a process of role `exporter` on its own port of 127.0.9.2, in
//! `RUN_DIR/exporters/NAME`, named `KIND-exporter[-SERVER]` (the server it reports on):
//!
//! - `node-exporter` (`prometheus-node-exporter` 1.5), one per topology: the host's CPU,
//!   memory, filesystems, load and network devices only.
//! - `postgres-exporter-SERVER` (`prometheus-postgres-exporter` 0.11.1) per PostgreSQL
//!   server, as its admin role; the password is in a 0600 file named by
//!   `DATA_SOURCE_PASS_FILE`, never on the command line.
//! - `redis-exporter-SERVER` (`prometheus-redis-exporter` 1.45) per Redis server, as
//!   [`crate::redis::USER`], its password in the environment (`REDIS_PASSWORD`), which only
//!   the owner can read in `/proc`.
//! - `varnish-exporter-EDGE` (`prometheus-varnish-exporter` 1.6.1) per edge, reading the
//!   edge's counters with `varnishstat -n` on its working directory.
//! - `nats-exporter-nats`: `crescendo nats-exporter` ([`crate::nats_metrics`]) for NATS, whose
//!   monitor speaks only JSON; it takes the exporter password from a 0600 file.
//!
//! node-exporter and postgres-exporter take basic auth (exporter-toolkit's
//! `--web.config.file`, the run's exporter password as a bcrypt hash); Debian's
//! redis-exporter 1.45 and varnish-exporter 1.6.1 have no such option, and listen on loopback
//! only.

use crate::prometheus::{USER, web_config};
use crate::state::{Process, Role};
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The address exporters listen on (each on a port of its own).
const IP: [u8; 4] = [127, 0, 9, 2];

/// How an exporter checks the scraper's password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// It does not (it listens on loopback only).
    None,
    /// exporter-toolkit's `--web.config.file`, holding the password's bcrypt hash.
    WebConfig,
    /// `--password-file`, holding the password (`crescendo nats-exporter`).
    PasswordFile,
}

/// One exporter to start.
pub struct ExporterSpec {
    /// Its name (`KIND-exporter[-SERVER]`).
    pub name: String,
    /// Its program.
    pub exe: PathBuf,
    /// The Debian package that has it, for the error when it is missing.
    pub package: &'static str,
    /// The flag that takes its listen address (`--web.listen-address`…).
    pub listen_flag: &'static str,
    /// Its arguments but the listen address.
    pub args: Vec<String>,
    /// Its environment.
    pub env: Vec<(String, String)>,
    /// How it checks the scraper's password.
    pub auth: Auth,
}

impl ExporterSpec {
    /// A Debian exporter: `/usr/bin/PACKAGE`, taking its address with `listen_flag`.
    fn debian(name: String, package: &'static str, listen_flag: &'static str) -> Self {
        Self {
            name,
            exe: PathBuf::from("/usr/bin").join(package),
            package,
            listen_flag,
            args: Vec::new(),
            env: Vec::new(),
            auth: Auth::None,
        }
    }
}

/// A running exporter; stopped (SIGTERM) when dropped unless detached.
pub struct Exporter {
    server: crate::Server,
    addr: SocketAddr,
}

impl Exporter {
    /// Starts `spec` in `dir` on a free port of 127.0.9.2 and waits until its `/metrics`
    /// answers 200 (to [`USER`] with `password` when it takes basic auth).
    ///
    /// # Errors
    /// The binary is missing (the message names its package), or it does not answer in 30 s.
    pub fn start(dir: &Path, spec: &ExporterSpec, password: &str) -> anyhow::Result<Self> {
        if !spec.exe.is_file() {
            bail!(
                "{} is missing: install the Debian package {}",
                spec.exe.display(),
                spec.package
            );
        }
        std::fs::create_dir_all(dir)?;
        let addr = crate::launch::free_addr(IP)?;
        let mut cmd = Command::new(&spec.exe);
        cmd.args(&spec.args)
            .arg(format!("{}={addr}", spec.listen_flag))
            .envs(spec.env.iter().map(|(k, v)| (k, v)));
        match spec.auth {
            Auth::None => {}
            Auth::WebConfig => {
                let web = dir.join("web.yml");
                crate::secret::write_file(&web, web_config(password)?.as_bytes())?;
                cmd.arg(format!("--web.config.file={}", web.display()));
            }
            Auth::PasswordFile => {
                let file = dir.join("exporter.password");
                crate::secret::write_file(&file, password.as_bytes())?;
                cmd.arg(format!("--password-file={}", file.display()));
            }
        }
        let log_path = dir.join("exporter.log");
        let log = std::fs::File::create(&log_path)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", spec.exe.display()))?;
        let auth = (spec.auth != Auth::None).then_some((USER, password));
        let child = crate::await_ready(
            child,
            &format!("{} on {addr}", spec.name),
            &log_path,
            Duration::from_secs(30),
            || {
                crate::status::http_get_as(&addr.to_string(), "/metrics", auth)
                    .is_some_and(|(code, _)| code == 200)
            },
        )?;
        Ok(Self {
            server: crate::Server::new(child, Duration::from_secs(5)),
            addr,
        })
    }
}

impl crate::launch::Launched for Exporter {
    fn server(&mut self) -> &mut crate::Server {
        &mut self.server
    }
}

/// The host's exporter: a few collectors, nothing read from the machine's own text files.
fn node_spec() -> ExporterSpec {
    let collectors = ["cpu", "meminfo", "filesystem", "loadavg", "netdev"];
    ExporterSpec {
        args: std::iter::once("--collector.disable-defaults".to_string())
            .chain(collectors.iter().map(|c| format!("--collector.{c}")))
            .collect(),
        auth: Auth::WebConfig,
        ..ExporterSpec::debian(
            "node-exporter".into(),
            "prometheus-node-exporter",
            "--web.listen-address",
        )
    }
}

/// The admin URLs of the run's database servers (`RUN_DIR/postgres-admin.toml`) by port:
/// (port, password).
fn pg_admin_passwords(run_dir: &Path) -> anyhow::Result<Vec<(u16, String)>> {
    let path = run_dir.join(crate::pg::ADMIN_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let settings: toml::Table = toml::from_str(&text)?;
    let store = settings.get("store").and_then(toml::Value::as_table);
    let mut urls: Vec<String> = Vec::new();
    for key in [
        "postgres_url",
        "postgres_replica_urls",
        "postgres_shards",
        "postgres_shard_replicas",
    ] {
        match store.and_then(|s| s.get(key)) {
            Some(toml::Value::String(u)) => urls.push(u.clone()),
            Some(toml::Value::Array(a)) => urls.extend(
                a.iter()
                    .filter_map(|v| v.as_str())
                    .map(|u| u.split_once('=').map_or(u, |(_, url)| url).to_string()),
            ),
            _ => {}
        }
    }
    Ok(urls.iter().filter_map(|u| url_port_password(u)).collect())
}

/// The port and password of `postgres://USER:PASSWORD@HOST:PORT/DB`.
fn url_port_password(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("postgres://")?;
    let (creds, host) = rest.split_once('@')?;
    let (_, password) = creds.split_once(':')?;
    let port = host.split('/').next()?.rsplit_once(':')?.1.parse().ok()?;
    Some((port, password.to_string()))
}

/// The queries postgres-exporter runs beside its own: `pg_replication_lag`, a replica's
/// replay lag in seconds (the alert `ReplicaLagHigh` reads it).
const PG_QUERIES: &str = include_str!("../rules/postgres-queries.yml");

/// The exporter of database server `p`, whose admin password is in `passwords`; the password
/// goes to a 0600 file in `dir`, the extra queries ([`PG_QUERIES`]) beside it.
fn postgres_spec(
    p: &Process,
    passwords: &[(u16, String)],
    dir: &Path,
) -> anyhow::Result<ExporterSpec> {
    let addr: SocketAddr = p.addr.parse()?;
    let password = passwords
        .iter()
        .find(|(port, _)| *port == addr.port())
        .map(|(_, pw)| pw)
        .with_context(|| format!("no admin password for {}", p.name))?;
    std::fs::create_dir_all(dir)?;
    let file = dir.join("pg.password");
    crate::secret::write_file(&file, password.as_bytes())?;
    let queries = dir.join("queries.yml");
    std::fs::write(&queries, PG_QUERIES)?;
    let env = [
        (
            "DATA_SOURCE_URI",
            format!("{addr}/postgres?sslmode=disable"),
        ),
        ("DATA_SOURCE_USER", crate::pg::auth::ADMIN_ROLE.to_string()),
        ("DATA_SOURCE_PASS_FILE", file.display().to_string()),
    ];
    Ok(ExporterSpec {
        env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        args: vec![format!("--extend.query-path={}", queries.display())],
        auth: Auth::WebConfig,
        ..ExporterSpec::debian(
            format!("postgres-exporter-{}", p.name),
            "prometheus-postgres-exporter",
            "--web.listen-address",
        )
    })
}

/// The exporter of Redis server `p`, whose directory is `RUN_DIR/NAME`.
fn redis_spec(run_dir: &Path, p: &Process) -> anyhow::Result<ExporterSpec> {
    let password = crate::redis::password_in(&run_dir.join(&p.name))?;
    Ok(ExporterSpec {
        args: vec![
            format!("-redis.addr=redis://{}", p.addr),
            format!("-redis.user={}", crate::redis::USER),
        ],
        env: vec![("REDIS_PASSWORD".into(), password)],
        ..ExporterSpec::debian(
            format!("redis-exporter-{}", p.name),
            "prometheus-redis-exporter",
            "-web.listen-address",
        )
    })
}

/// The exporter of edge `p`, whose directory is `RUN_DIR/NAME`.
fn varnish_spec(run_dir: &Path, p: &Process) -> ExporterSpec {
    ExporterSpec {
        args: vec![format!(
            "-n={}",
            run_dir.join(&p.name).join("work").display()
        )],
        ..ExporterSpec::debian(
            format!("varnish-exporter-{}", p.name),
            "prometheus-varnish-exporter",
            "-web.listen-address",
        )
    }
}

/// The exporter of NATS server `p` (whose monitor is its `ops_addr`): `crescendo
/// nats-exporter`, run from `exe`.
fn nats_spec(exe: &Path, p: &Process) -> Option<ExporterSpec> {
    Some(ExporterSpec {
        name: format!("nats-exporter-{}", p.name),
        exe: exe.to_path_buf(),
        package: "crescendo (cargo build)",
        listen_flag: "--listen",
        args: vec![
            "nats-exporter".into(),
            format!("--monitor={}", p.ops_addr.as_ref()?),
        ],
        // its few lines (a failed request) as JSON, beside its output
        env: vec![("CRESCENDO_LOG__FORMAT".into(), "json".into())],
        auth: Auth::PasswordFile,
    })
}

/// Starts the host's exporter and one for each PostgreSQL server, Redis server and edge
/// that runs, and records them.
pub(crate) fn start_all(up: &mut crate::up::Up, password: &str) -> anyhow::Result<()> {
    let run_dir = up.o.run_dir.clone();
    let state = &up.running.state;
    let pg: Vec<&Process> = state
        .of(Role::PgPrimary)
        .chain(state.of(Role::PgReplica))
        .collect();
    let mut specs = vec![node_spec()];
    if !pg.is_empty() {
        let passwords = pg_admin_passwords(&run_dir)?;
        for p in pg {
            let dir = run_dir
                .join("exporters")
                .join(format!("postgres-exporter-{}", p.name));
            specs.push(postgres_spec(p, &passwords, &dir)?);
        }
    }
    for p in state.of(Role::Redis) {
        specs.push(redis_spec(&run_dir, p)?);
    }
    for p in state.of(Role::Edge).filter(|p| p.name.starts_with("edge-")) {
        specs.push(varnish_spec(&run_dir, p));
    }
    specs.extend(state.of(Role::Nats).filter_map(|p| nats_spec(&up.o.exe, p)));
    for spec in specs {
        let dir = run_dir.join("exporters").join(&spec.name);
        up.progress(&format!("starting {}", spec.name));
        let e = Exporter::start(&dir, &spec, password)?;
        let p = Process::new(
            Role::Exporter,
            spec.name,
            e.server.pid(),
            e.addr,
            dir.join("exporter.log"),
        );
        up.running.record(p, Box::new(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_url_gives_its_port_and_password() {
        assert_eq!(
            url_port_password("postgres://postgres:Pw0rd@127.0.0.1:5433/postgres"),
            Some((5433, "Pw0rd".to_string()))
        );
        assert_eq!(url_port_password("redis://x@y:1"), None);
    }

    #[test]
    fn every_database_servers_admin_password_is_found_sharded_or_not() {
        let run = tempfile::tempdir().unwrap();
        let file = run.path().join(crate::pg::ADMIN_FILE);
        std::fs::write(
            &file,
            "[store]\npostgres_url = \"postgres://postgres:A@127.0.0.1:1/postgres\"\n\
             postgres_replica_urls = [\"postgres://postgres:B@127.0.0.1:2/postgres\"]\n\
             postgres_shards = [\"c1=postgres://postgres:C@127.0.0.1:3/postgres\"]\n",
        )
        .unwrap();
        let found = pg_admin_passwords(run.path()).unwrap();
        assert_eq!(
            found,
            [
                (1, "A".to_string()),
                (2, "B".to_string()),
                (3, "C".to_string())
            ]
        );
    }

    #[test]
    fn no_exporter_is_given_a_password_on_its_command_line() {
        let run = tempfile::tempdir().unwrap();
        let p = Process::new(Role::PgPrimary, "pg-primary", 1, "127.0.0.1:7", "l".into());
        let dir = run.path().join("e");
        let spec = postgres_spec(&p, &[(7, "SECRETPW".into())], &dir).unwrap();
        assert!(!spec.args.concat().contains("SECRETPW"));
        assert!(!format!("{:?}", spec.env).contains("SECRETPW"));
        assert_eq!(
            std::fs::read_to_string(dir.join("pg.password")).unwrap(),
            "SECRETPW"
        );
        std::fs::create_dir_all(run.path().join("cache-1")).unwrap();
        std::fs::write(
            run.path().join("cache-1/redis.conf"),
            "user default off\nuser crescendo on >RPW ~* &* +@all\n",
        )
        .unwrap();
        let r = Process::new(Role::Redis, "cache-1", 2, "127.0.3.1:6379", "l".into());
        let spec = redis_spec(run.path(), &r).unwrap();
        assert!(!spec.args.concat().contains("RPW"));
        assert_eq!(
            spec.env,
            [("REDIS_PASSWORD".to_string(), "RPW".to_string())]
        );
    }
}
