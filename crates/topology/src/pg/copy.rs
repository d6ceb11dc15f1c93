//! Where a server's data directory comes from: a copy of the machine's `initdb` template
//! (a new primary), or a base backup of a running server (a streaming replica), local or
//! across a WAN.

use super::{Credentials, auth, bin, chown_to_postgres, run_as_postgres};
use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The server a replica copies and then streams from.
pub(super) struct Source {
    /// Its host: `127.0.0.1`, or an address across a WAN.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Its roles' passwords, which the copy shares (it copies the catalog).
    pub creds: Credentials,
}

/// The template data directory, made by `initdb` the first time it is needed. Concurrent
/// callers (tests run in parallel, in several processes) build into a private directory
/// and rename it into place; the loser of the race removes its copy.
pub(super) fn template() -> anyhow::Result<PathBuf> {
    let root = std::env::temp_dir().join("crescendo-pg15-scram-template");
    if root.join("PG_VERSION").is_file() {
        return Ok(root);
    }
    let staging = tempfile::Builder::new()
        .prefix("crescendo-pg15-initdb-")
        .tempdir()?;
    chown_to_postgres(staging.path())?;
    let data = staging.path().join("data");
    let pwfile = auth::template_pwfile(staging.path())?;
    let mut cmd = Command::new(bin("initdb")?);
    cmd.arg("-D").arg(&data).arg("--pwfile").arg(&pwfile).args([
        "-U",
        "postgres",
        "--auth=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        "--no-sync",
    ]);
    run_as_postgres(cmd, "initdb")?;
    match std::fs::rename(&data, &root) {
        Ok(()) => {}
        Err(_) if root.join("PG_VERSION").is_file() => {} // another process won the race
        Err(e) => return Err(e).context("moving the initdb template into place"),
    }
    Ok(root)
}

pub(super) fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    // `cp -a` keeps owners and modes, which postgres checks (the data dir must be 0700)
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .context("running cp")?;
    if !out.status.success() {
        bail!(
            "copying the template: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A base backup of `source` into a new directory under `parent` (`pg_basebackup -R`, its
/// `primary_conninfo` naming the replica `name` for `synchronous_standby_names`), flushed
/// to disk when `durable`; the replica's `pgpass` holds the source's passwords.
pub(super) fn base_backup(
    parent: &Path,
    source: &Source,
    name: &str,
    durable: bool,
) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("crescendo-pg-{name}-"))
        .tempdir_in(parent)?;
    chown_to_postgres(dir.path())?;
    let data = dir.path().join("data");
    source.creds.write_pgpass(dir.path())?;
    let pgpass = Credentials::pgpass(dir.path());
    let port = source.port.to_string();
    let mut cmd = Command::new(bin("pg_basebackup")?);
    cmd.env("PGPASSFILE", &pgpass)
        .args(["-h", &source.host, "-p", &port, "-U", "postgres", "-D"])
        .arg(&data)
        .args(["-R", "-X", "stream", "-c", "fast"]);
    if !durable {
        cmd.arg("--no-sync");
    }
    run_as_postgres(cmd, "pg_basebackup")?;
    // -R wrote a primary_conninfo; a later line wins, and this one carries the name
    let conninfo = format!(
        "\nprimary_conninfo = 'host={} port={port} user=postgres passfile={} application_name={name}'\n",
        source.host,
        pgpass.display()
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.auto.conf"))?
        .write_all(conninfo.as_bytes())
        .context("writing primary_conninfo")?;
    Ok(dir)
}
