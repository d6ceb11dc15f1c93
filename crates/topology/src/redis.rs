//! Redis 7 (Debian's `redis-server`): no persistence (`--save ''`, no AOF), bounded memory
//! with `allkeys-lru` eviction, listening on loopback only, its log in its own directory.
//! Ready when our own process answers `PING`.

use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running private Redis; stopped (SIGTERM) and its directory removed when dropped,
/// unless detached.
pub struct Redis {
    server: crate::Server,
    addr: SocketAddr,
    dir: PathBuf,
    maxmemory_mb: u32,
}

/// Runs `redis-server` on `addr` and waits until it answers.
fn spawn(dir: &Path, addr: SocketAddr, maxmemory_mb: u32) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("redis.log"))?;
    let child = Command::new("/usr/bin/redis-server")
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
            "allkeys-lru",
        ])
        .args(["--protected-mode", "no", "--daemonize", "no"])
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
        || ping(addr),
    )
}

/// Sends `PING` to `addr` and checks for `+PONG`.
pub fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Redis {
    /// Starts Redis in `dir` (created) on a free port of `ip`, with at most `maxmemory_mb`.
    ///
    /// # Errors
    /// `redis-server` is missing (the message names the package) or it does not answer in 10 s.
    pub fn start(dir: &Path, ip: [u8; 4], maxmemory_mb: u32) -> anyhow::Result<Self> {
        if !Path::new("/usr/bin/redis-server").is_file() {
            bail!(
                "redis-server is missing: install the Debian package redis-server (apt-get install redis-server)"
            );
        }
        std::fs::create_dir_all(dir)?;
        let mut last = None;
        for _ in 0..5 {
            let port = std::net::TcpListener::bind(SocketAddr::from((ip, 0)))?
                .local_addr()?
                .port();
            let addr = SocketAddr::from((ip, port));
            match spawn(dir, addr, maxmemory_mb) {
                Ok(child) => {
                    return Ok(Redis {
                        server: crate::Server::new(child, Duration::from_secs(5)),
                        addr,
                        dir: dir.to_path_buf(),
                        maxmemory_mb,
                    });
                }
                // most likely the port was taken between the probe and the start: try another
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// Starts Redis in `dir` (created) on `addr`, e.g. again where one that was lost ran.
    ///
    /// # Errors
    /// As [`Redis::start`], or the address is taken.
    pub fn start_at(dir: &Path, addr: SocketAddr, maxmemory_mb: u32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let child = spawn(dir, addr, maxmemory_mb)?;
        Ok(Redis {
            server: crate::Server::new(child, Duration::from_secs(5)),
            addr,
            dir: dir.to_path_buf(),
            maxmemory_mb,
        })
    }

    /// Starts it again on its own address (after [`Redis::kill`]), empty.
    ///
    /// # Errors
    /// As [`Redis::start`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let child = spawn(&self.dir, self.addr, self.maxmemory_mb)?;
        self.server.replace(child);
        Ok(())
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://ADDR`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
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
/// records, read fences) on 127.0.2.1, and points the nodes' sessions at it.
pub(crate) fn start_sessions_tier(
    up: &mut crate::up::Up,
    tier: &crate::model::RedisTier,
) -> anyhow::Result<()> {
    up.progress("starting Redis (shared sessions)");
    let r = Redis::start(
        &up.o.run_dir.join("redis"),
        [127, 0, 2, 1],
        tier.maxmemory_mb,
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
        assert!(ping(r.addr()));
        let addr = r.addr();
        drop(r);
        assert!(!ping(addr));
    }
}
