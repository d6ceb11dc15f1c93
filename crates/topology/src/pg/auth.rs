//! Who may connect: every server authenticates every connection with `scram-sha-256` (the
//! template's `pg_hba.conf`, written by `initdb --auth=scram-sha-256`, has no `trust` line),
//! with two roles whose passwords are generated for each server:
//!
//! - the admin, `postgres` (superuser, and the replication role of streaming replicas);
//! - the application role, [`APP_ROLE`] (login only, not a superuser), which owns the schema
//!   of the same name, where its migrations create the tables (its default `search_path`
//!   starts with it), and may read the server's statistics (`pg_read_all_stats`: a region's
//!   cache invalidator asks its replica whether WAL still streams in).
//!
//! The roles are set in single-user mode before the server first listens, so it never
//! answers with a password anyone else knows. A replica is a copy of its primary's catalog:
//! it has the same roles and passwords. Clients started here (`psql`, `pg_basebackup`, a
//! replica's WAL receiver) read the passwords from the server's own `pgpass` file (0600).
//!
//! The test kit's disposable servers store their passwords with one SCRAM iteration rather
//! than PostgreSQL's 4096: the iteration count only slows the guessing of weak passwords,
//! and these are 32 random characters, while 4096 rounds in an unoptimized test build make
//! each new connection slow enough to miss a 100 ms health probe on a loaded machine.

use super::{bin, chown_to_postgres, postgres_user};
use anyhow::{Context, bail};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The application's role (and schema): what web nodes and workers connect as.
pub const APP_ROLE: &str = "crescendo";

/// The admin (superuser) role.
pub const ADMIN_ROLE: &str = "postgres";

/// The passwords of one server's roles.
#[derive(Clone)]
pub(super) struct Credentials {
    /// The admin's password.
    pub admin: String,
    /// The application role's password.
    pub app: String,
}

impl Credentials {
    /// Fresh passwords.
    pub fn generate() -> Self {
        Self {
            admin: crate::secret::generate(32),
            app: crate::secret::generate(32),
        }
    }

    /// The `pgpass` file of a server in `dir`, which its clients read.
    pub fn pgpass(dir: &Path) -> PathBuf {
        dir.join("pgpass")
    }

    /// Writes `dir/pgpass` (0600, owned by the `postgres` user, whose replicas read it),
    /// for any host: a replica in another region reaches its primary across the WAN.
    pub fn write_pgpass(&self, dir: &Path) -> anyhow::Result<()> {
        let path = Self::pgpass(dir);
        let text = format!(
            "*:*:*:{ADMIN_ROLE}:{}\n*:*:*:{APP_ROLE}:{}\n",
            self.admin, self.app
        );
        crate::secret::write_file(&path, text.as_bytes())?;
        chown_to_postgres(&path)
    }

    /// Sets the roles in the (stopped) data directory `data`, in single-user mode; a
    /// `disposable` server's passwords with one SCRAM iteration.
    pub fn set_roles(&self, data: &Path, disposable: bool) -> anyhow::Result<()> {
        // PostgreSQL hashes a plain password with 4096 iterations; it takes a verifier as is
        let stored = |password: &str| match disposable {
            true => scram_verifier(password, 1),
            false => password.to_string(),
        };
        let sql = format!(
            "ALTER ROLE {ADMIN_ROLE} PASSWORD '{admin}'\n\
             CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{app}'\n\
             CREATE SCHEMA {APP_ROLE} AUTHORIZATION {APP_ROLE}\n\
             GRANT pg_read_all_stats TO {APP_ROLE}\n",
            admin = stored(&self.admin),
            app = stored(&self.app),
        );
        let mut cmd = Command::new(bin("postgres")?);
        // fsync off: a durable server's directory is flushed whole before it starts
        cmd.args(["--single", "-c", "fsync=off", "-D"])
            .arg(data)
            .arg("postgres");
        if nix::unistd::geteuid().is_root() {
            let (uid, gid) = postgres_user()?;
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running postgres --single")?;
        // the passwords go on stdin, never on a command line
        child
            .stdin
            .take()
            .context("postgres --single's stdin")?
            .write_all(sql.as_bytes())?;
        let out = child.wait_with_output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // it exits 0 after a failed statement; only the ERROR and FATAL lines are shown,
        // since the STATEMENT lines would show the passwords
        let errors: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("FATAL"))
            .collect();
        if !out.status.success() || !errors.is_empty() {
            bail!(
                "setting the roles failed ({}): {}",
                out.status,
                errors.join("\n")
            );
        }
        Ok(())
    }
}

/// A password file for `initdb`: the admin's password of the template, which no one keeps
/// (every server gets its own before it starts).
pub(super) fn template_pwfile(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("pwfile");
    crate::secret::write_file(&path, crate::secret::generate(32).as_bytes())?;
    chown_to_postgres(&path)?;
    Ok(path)
}

/// A SCRAM-SHA-256 verifier of `password` with `iterations` rounds and a random salt (RFC 5802
/// and 7677), in the form `ALTER ROLE … PASSWORD` stores as it is. `password` is plain ASCII
/// letters and digits, which SASLprep leaves unchanged.
fn scram_verifier(password: &str, iterations: u32) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let mac = |key: &[u8], parts: &[&[u8]]| {
        let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes()
    };
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS gives random bytes");
    // Hi(): PBKDF2 with HMAC-SHA-256
    let mut u = mac(password.as_bytes(), &[&salt, &1u32.to_be_bytes()]);
    let mut salted = u;
    for _ in 1..iterations {
        u = mac(password.as_bytes(), &[&u]);
        for (s, b) in salted.iter_mut().zip(u) {
            *s ^= b;
        }
    }
    let stored_key = Sha256::digest(mac(&salted, &[b"Client Key"]));
    let server_key = mac(&salted, &[b"Server Key"]);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}
