//! Private PostgreSQL servers.
//!
//! `initdb` runs once per machine into a template directory (under the system temp dir,
//! keyed by the server version); each instance copies it, which is several times faster.
//! The server runs as the `postgres` user (PostgreSQL refuses to run as root), with its
//! socket and log in its own directory, and listens on 127.0.0.1 on a port picked free.
//!
//! Two kinds of server: the test kit's disposable ones ([`Postgres::start`],
//! [`Postgres::replica_of`]) run with `fsync=off` and `full_page_writes=off` for speed, since
//! nothing outlives them; the ones `crescendo up` starts ([`Postgres::start_in`],
//! [`Postgres::replica_in`]) hold data someone keeps, so they run with [`DURABLE`] (which no
//! extra setting can override), their copied data directory and base backup are flushed to
//! disk before the server starts, and a promoted replica is as crash-safe as the primary.
//!
//! [`Postgres::replica_of`] makes a streaming replica of a running server with
//! `pg_basebackup -R`, named by its `application_name` (for `synchronous_standby_names`).
//! [`Postgres::kill`] and [`Postgres::restart`] let tests fail and revive a server.
//!
//! No server trusts anyone: see [`auth`] for its roles and passwords. [`Postgres::url`] is
//! the admin's URL, [`Postgres::app_url`] the application role's.

use anyhow::{Context, bail};
use auth::Credentials;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's PostgreSQL 15 keeps its server binaries.
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The settings of every server that holds data someone keeps: PostgreSQL's durability
/// defaults, written last on the command line so that nothing else can turn them off.
pub const DURABLE: &[(&str, &str)] = &[("fsync", "on"), ("full_page_writes", "on")];

/// What the disposable servers trade for speed: a crash can corrupt them.
const DISPOSABLE: &[(&str, &str)] = &[("fsync", "off"), ("full_page_writes", "off")];

/// A running private PostgreSQL server; stopped (fast shutdown) and removed when dropped.
pub struct Postgres {
    child: Child,
    port: u16,
    /// Removed on drop, unless detached.
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    settings: Vec<(String, String)>,
    /// Runs with [`DURABLE`] rather than [`DISPOSABLE`] (kept for [`Postgres::restart`]).
    durable: bool,
    /// Its roles' passwords.
    creds: Credentials,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .field("pid", &self.child.id())
            .finish()
    }
}

fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(BIN_DIR).join(name);
    if !p.is_file() {
        bail!(
            "{} is missing: install the Debian package postgresql-15 (apt-get install postgresql-15)",
            p.display()
        );
    }
    Ok(p)
}

/// The `postgres` user's uid and gid.
fn postgres_user() -> anyhow::Result<(u32, u32)> {
    let u = nix::unistd::User::from_name("postgres")?
        .context("there is no postgres user: install the Debian package postgresql-15")?;
    Ok((u.uid.as_raw(), u.gid.as_raw()))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `cmd` as the postgres user (when we are root) and waits for it.
fn run_as_postgres(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        let (uid, gid) = postgres_user()?;
        cmd.uid(uid).gid(gid);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn chown_to_postgres(path: &Path) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        let (uid, gid) = postgres_user()?;
        nix::unistd::chown(path, Some(uid.into()), Some(gid.into()))
            .with_context(|| format!("chown {} to postgres", path.display()))?;
    }
    Ok(())
}

impl Postgres {
    /// Starts a fresh disposable server (no fsync, no full-page writes) with extra
    /// `-c name=value` settings, and waits until it answers.
    ///
    /// # Errors
    /// Missing binaries (naming the package), or a server that does not come up within
    /// 60 s (with the end of its log).
    pub fn start(settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_under(&std::env::temp_dir(), settings, false, None)
    }

    /// A durable server (see [`DURABLE`]) with its directory under `parent`, as
    /// `crescendo up` starts its primary.
    ///
    /// # Errors
    /// As [`Postgres::start`].
    pub fn start_in(parent: &Path, settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_under(parent, settings, true, None)
    }

    /// `network`: a CIDR whose clients may connect too (with passwords), besides loopback.
    fn start_under(
        parent: &Path,
        settings: &[(&str, &str)],
        durable: bool,
        network: Option<&str>,
    ) -> anyhow::Result<Self> {
        let template = copy::template()?;
        let dir = tempfile::Builder::new()
            .prefix("crescendo-pg-primary-")
            .tempdir_in(parent)?;
        chown_to_postgres(dir.path())?;
        let data = dir.path().join("data");
        copy::copy_dir(&template, &data)?;
        if let Some(net) = network {
            region::allow_network(&data, net)?;
        }
        let creds = Credentials::generate();
        creds.set_roles(&data, !durable)?;
        creds.write_pgpass(dir.path())?;
        if durable {
            // the template was made with --no-sync and copied by cp: flush it all first
            let mut cmd = Command::new(bin("initdb")?);
            cmd.arg("--sync-only").arg("-D").arg(&data);
            run_as_postgres(cmd, "initdb --sync-only")?;
        }
        Self::boot(dir, settings, durable, creds)
    }

    /// Starts a disposable streaming replica of `primary`, with `application_name` `name`
    /// and extra settings (e.g. `recovery_min_apply_delay`), and waits until the primary
    /// reports it streaming.
    ///
    /// # Errors
    /// As [`Postgres::start`], or a base backup that fails.
    pub fn replica_of(
        primary: &Postgres,
        name: &str,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::replica_under(&std::env::temp_dir(), primary, name, settings, false)
    }

    /// A durable replica (see [`DURABLE`]; the base backup is flushed to disk) with its
    /// directory under `parent`, as `crescendo up` starts them: one that may be promoted.
    ///
    /// # Errors
    /// As [`Postgres::replica_of`].
    pub fn replica_in(
        parent: &Path,
        primary: &Postgres,
        name: &str,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::replica_under(parent, primary, name, settings, true)
    }

    fn replica_under(
        parent: &Path,
        primary: &Postgres,
        name: &str,
        settings: &[(&str, &str)],
        durable: bool,
    ) -> anyhow::Result<Self> {
        let source = copy::Source {
            host: "127.0.0.1".into(),
            port: primary.port,
            creds: primary.creds.clone(),
        };
        let dir = copy::base_backup(parent, &source, name, durable)?;
        let replica = Self::boot(dir, settings, durable, source.creds)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let query = format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{name}' AND state = 'streaming'"
        );
        while primary.query(&query)? != "1" {
            if Instant::now() > deadline {
                bail!(
                    "replica {name} is not streaming after 30 s:\n{}",
                    replica.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(replica)
    }

    /// Launches the server in `dir/data` on a free port and waits until it answers.
    fn boot(
        dir: tempfile::TempDir,
        settings: &[(&str, &str)],
        durable: bool,
        creds: Credentials,
    ) -> anyhow::Result<Self> {
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        // a port found free can be taken before postgres binds it: then try another
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut child = match Self::launch(dir.path(), port, &settings, durable) {
                Ok(c) => c,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            match wait_ready(&mut child, port, dir.path(), Duration::from_secs(60)) {
                Ok(()) => {
                    let path = dir.path().to_path_buf();
                    return Ok(Postgres {
                        child,
                        port,
                        dir: Some(dir),
                        path,
                        settings,
                        durable,
                        creds,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("postgres did not start")))
    }

    /// Kills the postmaster with SIGKILL (a crash, as far as clients can tell) and reaps it.
    /// Its data stay until [`Postgres::restart`] or drop.
    pub fn kill(&mut self) {
        use nix::sys::signal::{Signal, kill};
        // PostgreSQL's children each lead a session of their own, so the postmaster's process
        // group holds only itself: a backend left alive could still answer, even commit.
        // The postmaster is stopped first so that it forks nothing more, then every child
        // and the postmaster are killed.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGSTOP);
        for child in children_of(pid.as_raw()) {
            let _ = kill(nix::unistd::Pid::from_raw(child), Signal::SIGKILL);
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// Cuts the server off as a WAN cut does (`cut`), or heals it: the postmaster, then each
    /// process it forked (each leads a session of its own, so its process group does not hold
    /// them), is stopped with SIGSTOP, or each is continued with SIGCONT, the postmaster last.
    /// While it is stopped the kernel still accepts connections to its port but nothing
    /// answers: clients and replicas' WAL receivers hang, as behind a blackholed link.
    pub fn blackhole(&self, cut: bool) {
        use nix::sys::signal::{Signal, kill};
        let signal = if cut {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        let postmaster = nix::unistd::Pid::from_raw(self.child.id() as i32);
        if cut {
            let _ = kill(postmaster, signal);
        }
        for child in children_of(postmaster.as_raw()) {
            let _ = kill(nix::unistd::Pid::from_raw(child), signal);
        }
        if !cut {
            let _ = kill(postmaster, signal);
        }
    }

    /// Starts the server again on its port, with its data, after [`Postgres::kill`].
    ///
    /// # Errors
    /// It does not come back within 60 s.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let mut child = Self::launch(&self.path, self.port, &self.settings, self.durable)?;
        match wait_ready(&mut child, self.port, &self.path, Duration::from_secs(60)) {
            Ok(()) => {
                self.child = child;
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Runs one SQL statement with `psql` as the admin and returns its unaligned output.
    ///
    /// # Errors
    /// psql fails (the message includes its stderr).
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        self.query_in("postgres", sql)
    }

    /// [`Postgres::query`] in the database `database` (errors likewise).
    pub fn query_in(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(bin("psql")?)
            .args([
                "-X",
                "-q",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ])
            .env("PGPASSFILE", Credentials::pgpass(&self.path))
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn launch(
        dir: &Path,
        port: u16,
        settings: &[(String, String)],
        durable: bool,
    ) -> anyhow::Result<Child> {
        let data = dir.join("data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("postgres.log"))?;
        chown_to_postgres(&dir.join("postgres.log"))?;
        let mut cmd = Command::new(bin("postgres")?);
        cmd.arg("-D").arg(&data).arg("-p").arg(port.to_string());
        cmd.args(["-c", "listen_addresses=127.0.0.1"]);
        cmd.arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()));
        // a later `-c` wins: the disposable trade-offs first, so a caller may undo them;
        // the durable settings last, so no caller can
        let (before, after) = if durable {
            (&[][..], DURABLE)
        } else {
            (DISPOSABLE, &[][..])
        };
        for (k, v) in before
            .iter()
            .copied()
            .chain([("max_connections", "200")])
            .chain(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .chain(after.iter().copied())
        {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        if nix::unistd::geteuid().is_root() {
            let (uid, gid) = postgres_user()?;
            cmd.uid(uid).gid(gid);
        }
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        cmd.spawn().context("starting postgres")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.path)
    }

    /// Its directory (data in `data/`, log in `postgres.log`).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Leaves the server running, and its directory in place, after this handle is gone
    /// (`crescendo up --detach`; `crescendo down` stops it by PID). Returns the PID.
    pub fn detach(mut self) -> u32 {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        let pid = self.child.id();
        std::mem::forget(self);
        pid
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A connection URL for `database` as the admin, `postgres` (a superuser), with its
    /// password.
    pub fn url(&self, database: &str) -> String {
        let (role, password) = (auth::ADMIN_ROLE, &self.creds.admin);
        format!(
            "postgres://{role}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// A connection URL for `database` as the application role, [`auth::APP_ROLE`] (not a
    /// superuser; it owns the schema its tables go in), with its password: what web nodes
    /// and workers use.
    pub fn app_url(&self, database: &str) -> String {
        let (role, password) = (auth::APP_ROLE, &self.creds.app);
        format!(
            "postgres://{role}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }
}

/// The PIDs whose parent is `parent` (from `/proc/PID/stat`).
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // "PID (COMMAND) STATE PPID …": the command may hold spaces and parentheses
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<i32>().ok())
                == Some(parent)
        })
        .collect()
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Waits until our own postmaster has written its pid file, says it is ready, and the port
/// accepts connections (a port another server holds must not pass for ours).
fn wait_ready(child: &mut Child, port: u16, dir: &Path, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let pid_file = dir.join("data/postmaster.pid");
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "postgres exited ({status}) before it was ready:\n{}",
                log_tail(dir)
            );
        }
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            let ours = text
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<u32>().ok())
                == Some(child.id());
            // a primary says "ready", a hot standby "standby"
            let ready = text
                .lines()
                .nth(7)
                .is_some_and(|l| matches!(l.trim(), "ready" | "standby"));
            if ours && ready && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("postgres not ready after {limit:?}:\n{}", log_tail(dir));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.dir.is_none() {
            return;
        }
        // SIGINT is PostgreSQL's fast shutdown
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

pub mod auth;
mod copy;
pub mod region;
mod tier;
pub use tier::ADMIN_FILE;
pub(crate) use tier::start_tier;

#[cfg(test)]
mod tests;
