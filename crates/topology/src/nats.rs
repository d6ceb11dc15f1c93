//! NATS with JetStream (Debian's `nats-server`, 2.9): listening on loopback only, its
//! JetStream data and log in its own directory. Ready when its monitor port says JetStream
//! is enabled (`/healthz?js-enabled-only=true`).
//!
//! Clients must authenticate: a 0600 `nats.conf` in its directory (never the command line,
//! where `ps` shows it) has one user, [`USER`], with a password generated for the server,
//! which [`Nats::url`] carries. The monitor port answers health checks on loopback only.

use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BINARY: &str = "/usr/sbin/nats-server";

/// The one user every server has.
pub const USER: &str = "crescendo";

/// A running private NATS server; stopped (SIGTERM) and left on disk when dropped, unless
/// detached. Its JetStream data survives a restart in the same directory.
pub struct Nats {
    server: crate::Server,
    addr: SocketAddr,
    monitor: SocketAddr,
    dir: PathBuf,
    password: String,
}

/// The configuration file in `dir`.
fn config(dir: &Path) -> PathBuf {
    dir.join("nats.conf")
}

/// The password in `dir/nats.conf`, when a server ran there; otherwise a new one, written
/// there (0600).
fn password_for(dir: &Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(config(dir))
        && let Some(p) = text
            .split("password: \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
    {
        return Ok(p.to_string());
    }
    let password = crate::secret::generate(32);
    let text = format!(
        "authorization {{\n  users = [\n    {{user: \"{USER}\", password: \"{password}\"}}\n  ]\n}}\n"
    );
    crate::secret::write_file(&config(dir), text.as_bytes())?;
    Ok(password)
}

/// Whether the monitor at `monitor` says JetStream is up.
pub fn healthy(monitor: SocketAddr) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&monitor, Duration::from_millis(300))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let req = format!("GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: {monitor}\r\n\r\n");
    let mut out = String::new();
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
}

fn spawn(dir: &Path, addr: SocketAddr, monitor: SocketAddr) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("nats.log"))?;
    let child = Command::new(BINARY)
        .args(["-a", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        // the monitor listens on the same host as clients
        .args(["-m", &monitor.port().to_string()])
        .args(["-js", "-n", "crescendo-nats"])
        .arg("-c")
        .arg(config(dir))
        .arg("-sd")
        .arg(dir.join("jetstream"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting nats-server")?;
    crate::await_ready(
        child,
        &format!("nats-server on {addr}"),
        &dir.join("nats.log"),
        Duration::from_secs(10),
        || healthy(monitor),
    )
}

impl Nats {
    /// Starts NATS with JetStream in `dir` (created) on free ports of `ip`.
    ///
    /// # Errors
    /// `nats-server` is missing (the message names the package) or it does not become
    /// healthy in 10 s.
    pub fn start(dir: &Path, ip: [u8; 4]) -> anyhow::Result<Self> {
        if !Path::new(BINARY).is_file() {
            bail!(
                "nats-server is missing: install the Debian package nats-server (apt-get install nats-server)"
            );
        }
        std::fs::create_dir_all(dir)?;
        let password = password_for(dir)?;
        let mut last = None;
        for _ in 0..5 {
            let addr = SocketAddr::from((ip, crate::launch::free_port(ip)?));
            let monitor = SocketAddr::from((ip, crate::launch::free_port(ip)?));
            match spawn(dir, addr, monitor) {
                Ok(child) => {
                    return Ok(Nats {
                        server: crate::Server::new(child, Duration::from_secs(10)),
                        addr,
                        monitor,
                        dir: dir.to_path_buf(),
                        password,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
    }

    /// Starts NATS in `dir` on `addr`, e.g. again where one that was stopped ran, on its
    /// JetStream data and with its password.
    ///
    /// # Errors
    /// As [`Nats::start`], or the address is taken.
    pub fn start_at(dir: &Path, addr: SocketAddr) -> anyhow::Result<Self> {
        let ip = match addr.ip() {
            std::net::IpAddr::V4(v4) => v4.octets(),
            std::net::IpAddr::V6(_) => bail!("NATS listens on IPv4 loopback here"),
        };
        std::fs::create_dir_all(dir)?;
        let password = password_for(dir)?;
        let monitor = SocketAddr::from((ip, crate::launch::free_port(ip)?));
        let child = spawn(dir, addr, monitor)?;
        Ok(Nats {
            server: crate::Server::new(child, Duration::from_secs(10)),
            addr,
            monitor,
            dir: dir.to_path_buf(),
            password,
        })
    }

    /// `nats://USER:PASSWORD@ADDR`.
    pub fn url(&self) -> String {
        format!("nats://{USER}:{}@{}", self.password, self.addr)
    }

    /// [`USER`]'s password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    /// Stops it (SIGTERM: JetStream data stays on disk), as when the broker is taken down.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts it again on its own addresses and data (after [`Nats::stop`]).
    ///
    /// # Errors
    /// As [`Nats::start`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let child = spawn(&self.dir, self.addr, self.monitor)?;
        self.server.replace(child);
        Ok(())
    }

    /// Leaves it running after this handle is dropped; returns its PID.
    pub fn detach(mut self) -> u32 {
        self.server.detach()
    }
}

// In a topology: the message queue.

impl crate::launch::Launched for Nats {
    fn server(&mut self) -> &mut crate::Server {
        &mut self.server
    }
}

/// Starts NATS with JetStream on 127.0.4.1 and points the nodes' queue at it.
pub(crate) fn start_tier(up: &mut crate::up::Up) -> anyhow::Result<()> {
    use crate::state::{Process, Role};
    up.progress("starting NATS with JetStream (the job queue)");
    let nats = Nats::start(&up.o.run_dir.join("nats"), [127, 0, 4, 1])?;
    up.node.queue.backend = crescendo_config::QueueBackend::Nats;
    up.node.queue.nats_url = nats.url();
    let mut p = Process::new(Role::Nats, "nats", nats.pid(), nats.addr(), nats.log());
    // its monitor port, which `crescendo nats-exporter` reads for Prometheus
    p.ops_addr = Some(nats.monitor.to_string());
    up.running.record(p, Box::new(nats));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_nats_with_jetstream_answers_stops_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = Nats::start(dir.path(), [127, 0, 0, 1]).expect("nats starts");
        assert!(healthy(n.monitor));
        n.stop();
        assert!(!healthy(n.monitor));
        n.restart().unwrap();
        assert!(healthy(n.monitor));
    }

    /// The server's first line to a client that sends `CONNECT` with `user` and `pass`.
    fn connect(addr: SocketAddr, user: &str, pass: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut info = [0u8; 4096];
        let _ = s.read(&mut info).unwrap();
        let connect = format!(
            "CONNECT {{\"verbose\":true,\"user\":\"{user}\",\"pass\":\"{pass}\"}}\r\nPING\r\n"
        );
        crate::wire::say(&mut s, &connect)
    }

    #[test]
    fn a_private_nats_takes_only_its_user_with_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let n = Nats::start(dir.path(), [127, 0, 0, 1]).expect("nats starts");
        assert!(connect(n.addr(), USER, n.password()).starts_with("+OK"));
        assert!(connect(n.addr(), USER, "wrong").contains("Authorization Violation"));
        assert!(connect(n.addr(), "", "").contains("Authorization Violation"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(config(dir.path())).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", n.pid())).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains(n.password()));
    }
}
