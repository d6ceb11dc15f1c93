//! An S3-compatible object server for the blob tier: `s3s-fs`, which keeps each bucket as a
//! directory and each object as a file, and checks AWS Signature V4 on every request. It is a
//! cargo binary, not a Debian package: `scripts/test.sh` installs it with
//! `cargo install s3s-fs@0.14.1 --features binary --locked`.
//!
//! Ready when its port accepts connections while our own child is alive.

use crate::secret::generate;
use anyhow::Context;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The bucket every Crescendo topology and test uses.
pub const BUCKET: &str = "crescendo";
/// The region the server is addressed in (s3s-fs accepts any; clients must sign with one).
pub const REGION: &str = "us-east-1";

/// Where `s3s-fs` is: on `PATH`, else in cargo's binary directory.
///
/// # Errors
/// It is not installed; the message says how to install it.
pub fn binary() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join("s3s-fs")).find(|p| p.is_file()).ok_or_else(|| {
        anyhow::anyhow!("s3s-fs is missing: install it with `cargo install s3s-fs@0.14.1 --features binary --locked` (scripts/test.sh does)")
    })
}

/// A running private S3 server; stopped when dropped, unless detached. Its objects stay in
/// its directory.
pub struct S3 {
    server: crate::Server,
    addr: SocketAddr,
    dir: PathBuf,
    access_key: String,
    secret_key: String,
}

fn spawn(
    bin: &Path,
    dir: &Path,
    addr: SocketAddr,
    access_key: &str,
    secret_key: &str,
) -> anyhow::Result<Child> {
    let root = dir.join("objects");
    // s3s-fs keeps a bucket as a directory under its root
    std::fs::create_dir_all(root.join(BUCKET))?;
    let log = std::fs::File::create(dir.join("s3.log"))?;
    let child = Command::new(bin)
        .args([
            "--host",
            &addr.ip().to_string(),
            "--port",
            &addr.port().to_string(),
        ])
        .args(["--access-key", access_key, "--secret-key", secret_key])
        .arg(&root)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    crate::await_ready(
        child,
        &format!("s3s-fs on {addr}"),
        &dir.join("s3.log"),
        Duration::from_secs(10),
        || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
    )
}

impl S3 {
    /// Starts a server in `dir` (created) on `addr`, or a free port of `addr`'s IP when its
    /// port is 0, with fresh credentials and the bucket [`BUCKET`].
    ///
    /// # Errors
    /// `s3s-fs` is missing, or it does not answer in 10 s.
    pub fn start(dir: &Path, addr: SocketAddr) -> anyhow::Result<Self> {
        let bin = binary()?;
        std::fs::create_dir_all(dir)?;
        let (access_key, secret_key) = (format!("AK{}", generate(18).to_uppercase()), generate(40));
        let mut last = None;
        for _ in 0..5 {
            let addr = if addr.port() == 0 {
                std::net::TcpListener::bind(addr)?.local_addr()?
            } else {
                addr
            };
            match spawn(&bin, dir, addr, &access_key, &secret_key) {
                Ok(child) => {
                    return Ok(S3 {
                        server: crate::Server::new(child, Duration::from_secs(5)),
                        addr,
                        dir: dir.to_path_buf(),
                        access_key,
                        secret_key,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("s3s-fs did not start")))
    }

    /// `http://ADDR`: the endpoint clients use (path-style).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("s3.log")
    }

    /// The access key ID clients sign with.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key clients sign with.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Where the object files are (`objects/BUCKET/KEY`).
    pub fn objects(&self) -> PathBuf {
        self.dir.join("objects")
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Stops it (SIGTERM); the objects stay on disk.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts it again on its own address, objects and credentials (after [`S3::stop`]).
    ///
    /// # Errors
    /// As [`S3::start`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let child = spawn(
            &binary()?,
            &self.dir,
            self.addr,
            &self.access_key,
            &self.secret_key,
        )?;
        self.server.replace(child);
        Ok(())
    }

    /// Leaves it running after this handle is dropped; returns its PID.
    pub fn detach(mut self) -> u32 {
        self.server.detach()
    }
}

// In a topology: the blob store.

impl crate::launch::Launched for S3 {
    fn server(&mut self) -> &mut crate::Server {
        &mut self.server
    }
}

/// With `[blobs] backend = "s3"`, starts the object server on 127.0.6.1 and points the
/// nodes' blobs at it; otherwise every process reads and writes the same files, one
/// machine's shared blob directory.
pub(crate) fn start_tier(
    up: &mut crate::up::Up,
    tier: Option<&crate::model::BlobsTier>,
) -> anyhow::Result<()> {
    use crate::model::BlobsBackend;
    use crate::state::{Process, Role};
    if !tier.is_some_and(|b| b.backend == BlobsBackend::S3) {
        up.node.blobs.dir = up.o.run_dir.join("blobs");
        return Ok(());
    }
    up.progress("starting the S3 object server (uploads and their variants)");
    let s3 = S3::start(
        &up.o.run_dir.join("s3"),
        SocketAddr::from(([127, 0, 6, 1], 0)),
    )?;
    let blobs = &mut up.node.blobs;
    blobs.backend = crescendo_config::BlobBackend::S3;
    blobs.s3_endpoint = s3.endpoint();
    blobs.s3_bucket = BUCKET.into();
    blobs.s3_region = REGION.into();
    blobs.s3_access_key = s3.access_key().into();
    blobs.s3_secret_key = Some(crescendo_config::Secret::new(s3.secret_key()));
    let p = Process::new(Role::S3, "s3", s3.pid(), s3.addr(), s3.log());
    up.running.record(p, Box::new(s3));
    Ok(())
}
