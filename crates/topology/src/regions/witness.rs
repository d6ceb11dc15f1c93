//! The witness of the automatic region failover (`crescendo witness`, role `witness`): a
//! small HTTP server in the dns namespace, a third place beside the two regions, that
//! answers whether *it* reaches region A's primary now. Region B's watcher
//! ([`super::watch`]) promotes B's replica only when both B and the witness have lost A's
//! primary for a while, so a WAN cut between the regions alone (after which the witness
//! still reaches A) never makes a second primary.
//!
//! It listens on the dns namespace's private address (10.250.1.3), which the users'
//! namespaces have no route to, and answers only requests that carry the token generated for
//! the run (`Authorization: Bearer TOKEN`; the token is in `RUN_DIR/`[`TOKEN_FILE`], 0600).
//!
//! The check ([`probe`]) speaks PostgreSQL's protocol: a TCP connect, then an `SSLRequest`,
//! which a live server answers with one byte (`N` or `S`) from the backend it forked for the
//! connection, within [`PROBE_TIMEOUT`]. That needs no password (the witness holds none of
//! the database's), makes the server log no error (a client that leaves after that answer
//! is not one), and tells a server that takes connections apart from a port whose kernel
//! still completes handshakes for a hung or dying postmaster. Any such answer counts as
//! reachable: a false "reachable" only delays a failover, a false "unreachable"
//! could make a second primary.

use crate::launch::{Node, Running, UpOptions};
use crate::netns;
use crate::pg::region::Upstream;
use crate::state::{Process, Role};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The witness's token, in the two-region run directory (0600).
pub const TOKEN_FILE: &str = "witness.token";

/// How long a check of the primary may take: a connect and one byte back, across a WAN of
/// 20 ms each way, take well under it; a cut or dead link takes all of it.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Where the watcher finds the witness (part of region B's plan).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WitnessPlan {
    /// Its address on the private network.
    pub addr: SocketAddr,
    /// The file holding its token.
    pub token_file: PathBuf,
}

/// What a check of the primary found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reach {
    /// The server answered at the PostgreSQL level.
    pub reachable: bool,
    /// What happened: `answered N in 41 ms`, `connect: Connection refused`, `no answer
    /// within 1.5 s`…
    pub detail: String,
}

/// Checks whether a PostgreSQL server answers at `addr` (see the module's doc), within
/// `timeout` for the connect and as much again for the answer.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Reach {
    let started = Instant::now();
    let unreachable = |detail: String| Reach {
        reachable: false,
        detail,
    };
    if let Err(e) = netns::refuse_from_root(addr.ip()) {
        return unreachable(e.to_string());
    }
    let mut conn = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(c) => c,
        Err(e) => return unreachable(format!("connect: {e}")),
    };
    // SSLRequest: length 8, then the code 1234.5679
    let request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut answer = [0u8; 1];
    let asked = conn
        .set_read_timeout(Some(timeout))
        .and_then(|()| conn.set_write_timeout(Some(timeout)))
        .and_then(|()| conn.write_all(&request))
        .and_then(|()| conn.read_exact(&mut answer));
    match asked {
        Ok(()) if matches!(answer[0], b'N' | b'S' | b'E') => Reach {
            reachable: true,
            detail: format!(
                "answered {} in {} ms",
                answer[0] as char,
                started.elapsed().as_millis()
            ),
        },
        Ok(()) => unreachable(format!("not PostgreSQL: answered byte {}", answer[0])),
        Err(e) => unreachable(format!("no answer: {e}")),
    }
}

/// The witness's answer to `GET /primary`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WitnessAnswer {
    /// The primary it checks.
    pub primary: SocketAddr,
    /// What it found.
    #[serde(flatten)]
    pub reach: Reach,
}

/// Serves the witness on `listener` until the process is stopped: `GET /primary` with the
/// token checks `primary` and answers a [`WitnessAnswer`]; anything else is 401 or 404.
pub fn serve(listener: TcpListener, token: &str, primary: SocketAddr) {
    for conn in listener.incoming().flatten() {
        let token = token.to_string();
        std::thread::spawn(move || {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = answer(conn, &token, primary);
        });
    }
}

/// Answers one request.
fn answer(mut conn: TcpStream, token: &str, primary: SocketAddr) -> anyhow::Result<()> {
    let (path, bearer) = read_request(&conn)?;
    let (status, body) = if !bearer.is_some_and(|b| same(b.as_bytes(), token.as_bytes())) {
        (
            "401 Unauthorized",
            r#"{"error":"a token is required"}"#.to_string(),
        )
    } else if path == "/primary" {
        let reach = probe(primary, PROBE_TIMEOUT);
        tracing::info!(%primary, reachable = reach.reachable, detail = %reach.detail, "checked");
        let body = serde_json::to_string(&WitnessAnswer { primary, reach })?;
        ("200 OK", body)
    } else {
        ("404 Not Found", r#"{"error":"GET /primary"}"#.to_string())
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The path of a request and its bearer token, if any (the body, if any, is not read).
fn read_request(conn: &TcpStream) -> anyhow::Result<(String, Option<String>)> {
    let mut reader = BufReader::new(conn.take(16 * 1024));
    let head = crate::http_head::RequestHead::read(&mut reader)?;
    let bearer = head.credentials("Bearer").map(str::to_string);
    Ok((head.path, bearer))
}

/// Asks the witness at `addr` whether it reaches the primary (the caller runs in a
/// namespace: the witness's address is a namespace address).
///
/// # Errors
/// The witness cannot be reached in time, refuses the token, or answers something else.
pub fn ask(addr: SocketAddr, token: &str, timeout: Duration) -> anyhow::Result<WitnessAnswer> {
    netns::refuse_from_root(addr.ip())?;
    let mut conn = TcpStream::connect_timeout(&addr, timeout)?;
    // the witness's own check takes up to twice PROBE_TIMEOUT
    conn.set_read_timeout(Some(timeout + 2 * PROBE_TIMEOUT))?;
    conn.set_write_timeout(Some(timeout))?;
    write!(
        conn,
        "GET /primary HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         connection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    conn.take(64 * 1024).read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("a truncated answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "the witness answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(serde_json::from_str(body)?)
}

/// What region `dir` is told of the witness: with `auto_failover`, in the region without the
/// primary, the witness is started ([`start`]), and the region's watcher is kept to be
/// stopped before the regions when `running` stops; otherwise nothing.
///
/// # Errors
/// See [`start`].
pub(super) fn for_region(
    running: &mut Running,
    o: &UpOptions,
    tier: &super::RegionsTier,
    dir: &Path,
    upstream: Option<&Upstream>,
) -> anyhow::Result<Option<WitnessPlan>> {
    let (Some(upstream), true) = (upstream, tier.auto_failover) else {
        return Ok(None);
    };
    let ns = super::ops::prefix(&running.state.regions)
        .map(|p| format!("{p}-dns"))
        .context("region A is started first")?;
    (o.progress)(&format!("starting the failover witness in namespace {ns}"));
    let plan = start(running, o, &ns, upstream)?;
    let watchers = super::watch::Watchers(vec![dir.to_path_buf()]);
    running.keep(Role::RegionWatch, Box::new(watchers));
    Ok(Some(plan))
}

/// Starts the witness in the dns namespace `ns`, checking region A's primary `upstream`
/// (its private address), with a token made for the run; records it and returns where the
/// watcher finds it.
///
/// # Errors
/// The token cannot be written, or the witness does not listen within 30 s.
fn start(
    running: &mut Running,
    o: &UpOptions,
    ns: &str,
    upstream: &Upstream,
) -> anyhow::Result<WitnessPlan> {
    use std::os::unix::process::CommandExt;
    let run_dir = running.run_dir().to_path_buf();
    let token_file = run_dir.join(TOKEN_FILE);
    crate::secret::write_file(&token_file, crate::secret::generate(40).as_bytes())?;
    let mut cmd = Command::new(&o.exe);
    cmd.arg("witness")
        .arg("--listen")
        .arg(SocketAddr::from((super::private_ip(2), 0)).to_string())
        .arg("--primary")
        .arg(SocketAddr::from((upstream.host, upstream.port)).to_string())
        .arg("--token-file")
        .arg(&token_file);
    let (log, out) = crate::launch::own_log(&mut cmd, &run_dir, "witness")?;
    // spawned from a thread inside the namespace: the witness runs there
    let mut child = netns::run_in(ns, || cmd.stdin(Stdio::null()).process_group(0).spawn())??;
    let addr = match listening(&mut child, &out) {
        Ok(addr) => addr,
        Err(e) => {
            crate::stop(
                &mut child,
                Some(nix::sys::signal::Signal::SIGTERM),
                Duration::ZERO,
            );
            return Err(e);
        }
    };
    let p = Process::new(Role::Witness, "witness", child.id(), addr, log);
    running.record(p, Box::new(Node::new(child, Duration::from_secs(2))));
    Ok(WitnessPlan { addr, token_file })
}

/// Waits for the `listening on http://ADDR` line a process prints on its standard output.
fn listening(child: &mut std::process::Child, out: &Path) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find_map(|l| l.strip_prefix("listening on http://"))
            .and_then(|a| a.trim().parse().ok())
        {
            return Ok(addr);
        }
        if child.try_wait()?.is_some() || Instant::now() > deadline {
            bail!("the witness did not listen:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_they_are() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[test]
    fn a_live_postgresql_server_is_reachable_and_a_killed_one_is_not() {
        let mut pg = crate::pg::Postgres::start(&[]).expect("postgres starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], pg.port()));
        let r = probe(addr, Duration::from_secs(2));
        assert!(r.reachable && r.detail.starts_with("answered N"), "{r:?}");
        pg.kill();
        let r = probe(addr, Duration::from_secs(2));
        assert!(!r.reachable, "{r:?}");
    }

    #[test]
    fn a_port_that_answers_no_postgresql_byte_is_not_reachable() {
        // a listener that accepts and says nothing: the check waits for its answer and
        // gives it up
        let quiet = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = quiet.local_addr().unwrap();
        let r = probe(addr, Duration::from_millis(200));
        assert!(!r.reachable, "{r:?}");
        drop(quiet);
        let r = probe(addr, Duration::from_millis(200));
        assert!(!r.reachable && r.detail.starts_with("connect"), "{r:?}");
    }

    #[test]
    fn the_witness_answers_only_with_its_token() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let nothing = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        std::thread::spawn(move || serve(listener, "sesame", nothing));
        let err = ask(addr, "wrong", Duration::from_secs(2)).unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
        let a = ask(addr, "sesame", Duration::from_secs(2)).unwrap();
        assert_eq!(a.primary, nothing);
        assert!(!a.reach.reachable, "{a:?}");
    }
}
