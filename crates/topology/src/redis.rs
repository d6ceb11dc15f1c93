//! Redis 7 (Debian's `redis-server`): no persistence (`--save ''`, no AOF), bounded memory,
//! listening on loopback only, its log in its own directory. Ready when our own process
//! answers `PING`. What it does at its memory bound is [`WhenFull`]: a cache evicts
//! (`allkeys-lru`); the shared state (sessions, sign-in counters, idempotency records, read
//! fences) refuses writes (`noeviction`), so a flood can never evict what protects others.
//!
//! Every server runs with an ACL, from a 0600 `redis.conf` in its directory (never on the
//! command line, where `ps` shows it): the `default` user is off, so a client that has not
//! authenticated gets `NOAUTH`, and one user, [`USER`], has a password generated for the
//! server. [`Redis::url`] carries both.

use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The one user every server has.
pub const USER: &str = "crescendo";

/// What a server does when it reaches its memory bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Evicts the least recently used keys (`allkeys-lru`): a cache, where any key may go.
    EvictLru,
    /// Keeps every key and answers writes with an `OOM` error (`noeviction`): state that
    /// must not vanish; the writes that need it fail (503) while reads go on.
    RefuseWrites,
}

impl WhenFull {
    fn policy(self) -> &'static str {
        match self {
            WhenFull::EvictLru => "allkeys-lru",
            WhenFull::RefuseWrites => "noeviction",
        }
    }
}

/// A running private Redis; stopped (SIGTERM) and its directory removed when dropped,
/// unless detached.
pub struct Redis {
    server: crate::Server,
    addr: SocketAddr,
    dir: PathBuf,
    maxmemory_mb: u32,
    when_full: WhenFull,
    password: String,
}

/// The configuration file in `dir`.
fn config(dir: &Path) -> PathBuf {
    dir.join("redis.conf")
}

/// Writes `dir/redis.conf` (0600): the ACL, with [`USER`]'s `password`.
fn write_config(dir: &Path, password: &str) -> anyhow::Result<()> {
    let text = format!("user default off\nuser {USER} on >{password} ~* &* +@all\n");
    crate::secret::write_file(&config(dir), text.as_bytes())
}

/// Runs `redis-server` on `addr` with the ACL of `dir/redis.conf` and waits until it
/// answers `password`.
fn spawn(
    dir: &Path,
    addr: SocketAddr,
    (maxmemory_mb, when_full): (u32, WhenFull),
    password: &str,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("redis.log"))?;
    let child = Command::new("/usr/bin/redis-server")
        .arg(config(dir))
        .args([
            "--port",
            &addr.port().to_string(),
            "--bind",
            &addr.ip().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args([
            "--maxmemory",
            &format!("{maxmemory_mb}mb"),
            "--maxmemory-policy",
            when_full.policy(),
        ])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting redis-server")?;
    crate::await_ready(
        child,
        &format!("redis-server on {addr}"),
        &dir.join("redis.log"),
        Duration::from_secs(10),
        || ping(addr, password),
    )
}

/// Authenticates at `addr` as [`USER`] with `password`, sends `PING` and checks for `+PONG`.
pub fn ping(addr: SocketAddr, password: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 12];
    let command = format!("AUTH {USER} {password}\r\nPING\r\n");
    s.write_all(command.as_bytes()).is_ok()
        && s.read_exact(&mut buf).is_ok()
        && &buf == b"+OK\r\n+PONG\r\n"
}

/// The password of [`USER`] on the server that ran (or runs) in `dir`, from its
/// `redis.conf`: to start another in its place that its clients can still reach.
///
/// # Errors
/// There is no such file.
pub fn password_in(dir: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(config(dir))
        .with_context(|| format!("reading {}", config(dir).display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("user {USER} on >")))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .context("no password in redis.conf")
}

impl Redis {
    /// Starts a cache Redis ([`WhenFull::EvictLru`]) in `dir` (created) on a free port of
    /// `ip`, with at most `maxmemory_mb`.
    ///
    /// # Errors
    /// `redis-server` is missing (the message names the package) or it does not answer in 10 s.
    pub fn start(dir: &Path, ip: [u8; 4], maxmemory_mb: u32) -> anyhow::Result<Self> {
        Self::start_with(dir, ip, maxmemory_mb, WhenFull::EvictLru)
    }

    /// As [`Redis::start`], doing `when_full` at its memory bound.
    ///
    /// # Errors
    /// As [`Redis::start`].
    pub fn start_with(
        dir: &Path,
        ip: [u8; 4],
        maxmemory_mb: u32,
        when_full: WhenFull,
    ) -> anyhow::Result<Self> {
        if !Path::new("/usr/bin/redis-server").is_file() {
            bail!(
                "redis-server is missing: install the Debian package redis-server (apt-get install redis-server)"
            );
        }
        std::fs::create_dir_all(dir)?;
        let password = crate::secret::generate(32);
        write_config(dir, &password)?;
        let mut last = None;
        for _ in 0..5 {
            let port = std::net::TcpListener::bind(SocketAddr::from((ip, 0)))?
                .local_addr()?
                .port();
            let addr = SocketAddr::from((ip, port));
            match spawn(dir, addr, (maxmemory_mb, when_full), &password) {
                Ok(child) => {
                    return Ok(Redis {
                        server: crate::Server::new(child, Duration::from_secs(5)),
                        addr,
                        dir: dir.to_path_buf(),
                        maxmemory_mb,
                        when_full,
                        password,
                    });
                }
                // most likely the port was taken between the probe and the start: try another
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// Starts a cache Redis in `dir` (created) on `addr` with [`USER`]'s `password`, e.g.
    /// again where one that was lost ran, for its clients (see [`password_in`]).
    ///
    /// # Errors
    /// As [`Redis::start`], or the address is taken.
    pub fn start_at(
        dir: &Path,
        addr: SocketAddr,
        maxmemory_mb: u32,
        password: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        write_config(dir, password)?;
        let when_full = WhenFull::EvictLru;
        let child = spawn(dir, addr, (maxmemory_mb, when_full), password)?;
        Ok(Redis {
            server: crate::Server::new(child, Duration::from_secs(5)),
            addr,
            dir: dir.to_path_buf(),
            maxmemory_mb,
            when_full,
            password: password.to_string(),
        })
    }

    /// Starts it again on its own address (after [`Redis::kill`]), empty.
    ///
    /// # Errors
    /// As [`Redis::start`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let memory = (self.maxmemory_mb, self.when_full);
        let child = spawn(&self.dir, self.addr, memory, &self.password)?;
        self.server.replace(child);
        Ok(())
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://USER:PASSWORD@ADDR`.
    pub fn url(&self) -> String {
        format!("redis://{USER}:{}@{}", self.password, self.addr)
    }

    /// [`USER`]'s password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Leaves it running after this handle is dropped; returns its PID.
    pub fn detach(mut self) -> u32 {
        self.server.detach()
    }

    /// SIGKILLs it (a crash) and reaps it.
    pub fn kill(&mut self) {
        self.server.kill();
    }
}

// In a topology: the cache ring and the shared-state server.

impl crate::launch::Launched for Redis {
    fn server(&mut self) -> &mut crate::Server {
        &mut self.server
    }
}

/// Starts the cache ring (`cache-1`… on 127.0.3.N) and points the nodes' cache at it.
/// Without a ring, several nodes behind a balancer keep no cache: one node's cache cannot
/// see another node's writes (DESIGN.md's contract: no cache serves data older than the last
/// acknowledged write).
pub(crate) fn start_cache_tier(
    up: &mut crate::up::Up,
    tier: Option<&crate::model::CacheTier>,
    balanced: bool,
) -> anyhow::Result<()> {
    use crescendo_config::CacheBackend;
    let Some(c) = tier else {
        if balanced {
            up.node.cache.backend = CacheBackend::None;
        }
        return Ok(());
    };
    for i in 1..=c.servers {
        up.progress(&format!("starting Redis cache-{i}"));
        let dir = up.o.run_dir.join(format!("cache-{i}"));
        let r = Redis::start(&dir, [127, 0, 3, i as u8], c.maxmemory_mb)?;
        up.node.cache.redis_urls.push(r.url());
        record(up, format!("cache-{i}"), r);
    }
    up.node.cache.backend = CacheBackend::Redis;
    Ok(())
}

/// Starts the Redis that holds what every node shares (sessions, rate limits, idempotency
/// records, read fences) on 127.0.2.1, and points the nodes' sessions at it. It never evicts
/// ([`WhenFull::RefuseWrites`]): when full, the writes that need it fail, nothing vanishes.
pub(crate) fn start_sessions_tier(
    up: &mut crate::up::Up,
    tier: &crate::model::RedisTier,
) -> anyhow::Result<()> {
    up.progress("starting Redis (shared sessions)");
    let r = Redis::start_with(
        &up.o.run_dir.join("redis"),
        [127, 0, 2, 1],
        tier.maxmemory_mb,
        WhenFull::RefuseWrites,
    )?;
    up.node.sessions.backend = crescendo_config::SessionBackend::Redis;
    up.node.sessions.redis_url = r.url();
    record(up, "redis".into(), r);
    Ok(())
}

fn record(up: &mut crate::up::Up, name: String, r: Redis) {
    let p = crate::state::Process::new(crate::state::Role::Redis, name, r.pid(), r.addr(), r.log());
    up.running.record(p, Box::new(r));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_redis_answers_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let r = Redis::start(dir.path(), [127, 0, 0, 1], 16).expect("redis starts");
        assert!(ping(r.addr(), r.password()));
        let addr = r.addr();
        let password = r.password().to_string();
        drop(r);
        assert!(!ping(addr, &password));
    }

    /// What the server answers `command` with, on a fresh connection.
    fn answer(addr: SocketAddr, command: &str) -> String {
        crate::wire::say(&mut std::net::TcpStream::connect(addr).unwrap(), command)
    }

    #[test]
    fn a_full_cache_evicts_and_a_full_state_server_refuses_writes_and_keeps_its_keys() {
        let big = "x".repeat(64 * 1024);
        for (when_full, keeps) in [(WhenFull::EvictLru, false), (WhenFull::RefuseWrites, true)] {
            let dir = tempfile::tempdir().unwrap();
            let r = Redis::start_with(dir.path(), [127, 0, 0, 1], 3, when_full).unwrap();
            let mut conn = std::net::TcpStream::connect(r.addr()).unwrap();
            let auth = format!("AUTH {USER} {}\r\n", r.password());
            assert!(crate::wire::say(&mut conn, &auth).starts_with("+OK"));
            let set = |conn: &mut std::net::TcpStream, key: &str| {
                let cmd = format!("SET {key} {big}\r\n");
                crate::wire::say(conn, &cmd)
            };
            assert!(set(&mut conn, "first").starts_with("+OK"));
            // 64 writes of 64 kB: more than the 3 MB bound holds
            let refused = (0..64)
                .map(|i| set(&mut conn, &format!("k{i}")))
                .filter(|a| a.starts_with("-OOM"))
                .count();
            let first = crate::wire::say(&mut conn, "EXISTS first\r\n");
            assert_eq!(
                refused > 0,
                keeps,
                "{when_full:?}: {refused} writes refused"
            );
            let kept = crate::wire::say(&mut conn, "DBSIZE\r\n");
            if keeps {
                assert_eq!(first, ":1\r\n", "{when_full:?}: the first key is kept");
            } else {
                // which keys go is approximate (sampled LRU): only that some went is certain
                assert_ne!(kept, ":65\r\n", "{when_full:?}: some keys were evicted");
            }
        }
    }

    #[test]
    fn a_private_redis_answers_only_its_user_with_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let r = Redis::start(dir.path(), [127, 0, 0, 1], 16).expect("redis starts");
        assert!(answer(r.addr(), "PING\r\n").starts_with("-NOAUTH"));
        let wrong = format!("AUTH {USER} wrong\r\n");
        assert!(answer(r.addr(), &wrong).starts_with("-WRONGPASS"));
        assert!(answer(r.addr(), "AUTH default x\r\n").starts_with("-WRONGPASS"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(config(dir.path())).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(password_in(dir.path()).unwrap(), r.password());
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", r.pid())).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains(r.password()));
        assert!(r.url().contains(r.password()));
    }
}
