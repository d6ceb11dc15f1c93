//! Varnish 7.1 (Debian's `varnish`, with `varnish-modules` for `xkey`): the CDN edge of
//! rung 6, in front of the balancer.
//!
//! The VCL is generated from the template `edge.vcl` ([`vcl_text`]); the policy it carries:
//! - **Stored:** what the origin marks `Surrogate-Control: max-age=N` (anonymous pages and
//!   API reads), for N seconds; hashed assets and image variants (`/assets/`, `/media/`), for
//!   the year their `Cache-Control` gives. Nothing else: an answer with `Set-Cookie` or
//!   without either mark is fetched for each request (hit-for-miss, so concurrent requests
//!   for it are not queued behind one another).
//! - **Never looked up:** writes, requests with `Authorization` or a session cookie
//!   (`crescendo_sid`). Other cookies (the anonymous CSRF cookie) are dropped from the
//!   lookups that remain, so they neither split the cache nor reach a cached page.
//! - **Grace:** stored answers stay [`GRACE_SICK`] past their lifetime. While the origin is
//!   healthy (a probe of `/health` through the balancer every second) an expired answer is
//!   served for at most [`GRACE_HEALTHY`] while one background fetch refreshes it, and a
//!   purged one is not served: it is fetched again first (unless that fetch fails); while
//!   the origin is sick, any stored answer is served for as long as it is kept
//!   (stale-if-error). A fetch that fails
//!   in the background leaves the stored answer in place. Concurrent misses for one object
//!   make one origin request (Varnish's waiting list).
//! - **Purges** are taken only on the private admin listener, with the edge's token in
//!   `X-Purge-Token`: `PURGE` with `xkey-softpurge: KEY…` soft-purges every answer tagged with
//!   one of the keys (the origin's `xkey` header), `BAN` drops everything. Either method on
//!   the public listener gets 405.
//! - **Missed purges:** every web node tells every edge it is heard each
//!   `edge.heartbeat_ms`; an edge that hears from none for [`SILENCE`] while the origin
//!   answers (it was stopped, or cut off from the nodes) bans everything before it serves
//!   again.
//! - **Told to the client:** `X-Cache: HIT|MISS|PASS` and `Age`; the origin's `xkey` and
//!   `Surrogate-Control` are removed.
//!
//! Storage is memory only (`-s malloc`), so an edge that restarts holds nothing stale. The
//! management interface (`-T`) listens on loopback and requires the secret file (`-S`) made
//! for the run; the VCL holds the purge token, so it is written owner-only like every secret.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long an expired or purged answer may be served while the origin is healthy, as one
/// background fetch refreshes it.
pub const GRACE_HEALTHY: Duration = Duration::from_secs(10);
/// How long an answer is kept past its lifetime, served while the origin is down.
pub const GRACE_SICK: Duration = Duration::from_secs(3600);

/// How long an edge may hear from no web node (each says it is heard every
/// `edge.heartbeat_ms`) while the origin answers before it drops everything it kept: it
/// may have missed purges.
pub const SILENCE: Duration = Duration::from_secs(5);

/// How long an edge keeps an idle connection to the balancer: less than the balancer keeps
/// an idle client connection ([`crate::haproxy::CLIENT_KEEP_ALIVE`]), so the edge never sends
/// a request on a connection the balancer is closing.
pub const BACKEND_IDLE: Duration =
    Duration::from_secs(crate::haproxy::CLIENT_KEEP_ALIVE.as_secs() / 2);

/// One edge's configuration.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Where clients reach it.
    pub public: SocketAddr,
    /// Its private listener for purges.
    pub admin: SocketAddr,
    /// Its management interface (`varnishadm -T`).
    pub manage: SocketAddr,
    /// The balancer it fetches from.
    pub origin: SocketAddr,
    /// The token a purge must carry.
    pub purge_token: String,
    /// Memory for stored answers, MiB.
    pub memory_mb: u32,
    /// With TLS: where clients reach it over HTTPS (hitch), and its PROXY-protocol
    /// listener that hitch hands connections to.
    pub tls: Option<(SocketAddr, SocketAddr)>,
}

/// The VCL template: `@NAME@` marks what [`vcl_text`] fills in.
const VCL_TEMPLATE: &str = include_str!("edge.vcl");

/// The VCL for `cfg`.
pub fn vcl_text(cfg: &EdgeConfig) -> String {
    vcl_for(
        &cfg.origin.ip().to_string(),
        cfg.origin.port(),
        &format!("\"{}\"", cfg.purge_token),
    )
}

/// The same VCL for an origin reached by host name or address, with the purge token given
/// as a VCL string expression: a literal (`"…"`), or `std.getenv("NAME")` where the token
/// reaches the edge in its environment (`crescendo kube`'s manifests, so it stays in a
/// Secret rather than in the VCL).
pub fn vcl_for(origin_host: &str, origin_port: u16, purge_token: &str) -> String {
    [
        ("@ORIGIN_IP@", origin_host.to_string()),
        ("@ORIGIN_PORT@", origin_port.to_string()),
        ("\"@PURGE_TOKEN@\"", purge_token.to_string()),
        ("@GRACE_HEALTHY@", GRACE_HEALTHY.as_secs().to_string()),
        ("@GRACE_SICK@", GRACE_SICK.as_secs().to_string()),
        ("@SILENCE@", SILENCE.as_secs().to_string()),
    ]
    .iter()
    .fold(VCL_TEMPLATE.to_string(), |vcl, (mark, value)| {
        vcl.replace(mark, value)
    })
}

fn binary() -> anyhow::Result<&'static str> {
    const BIN: &str = "/usr/sbin/varnishd";
    if !Path::new(BIN).is_file() {
        bail!("varnishd is missing: install the Debian package varnish (apt-get install varnish)");
    }
    // the module directory is named after the machine's architecture triple
    let xkey = std::fs::read_dir("/usr/lib")?
        .flatten()
        .any(|d| d.path().join("varnish/vmods/libvmod_xkey.so").is_file());
    if !xkey {
        bail!(
            "Varnish's xkey module is missing: install the Debian package varnish-modules \
             (apt-get install varnish-modules)"
        );
    }
    Ok(BIN)
}

/// Hands an owner-only file to the `varnish` user when this process is root: `varnishd`
/// started by root reads its VCL and secret as that user.
fn give_to_varnish(path: &Path) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        let u = nix::unistd::User::from_name("varnish")?
            .context("there is no varnish user: install the Debian package varnish")?;
        nix::unistd::chown(path, Some(u.uid), Some(u.gid))
            .with_context(|| format!("chown {} to varnish", path.display()))?;
    }
    Ok(())
}

/// A running Varnish (its manager process; the cache process is its child and exits with
/// it); stopped (SIGTERM) when dropped unless detached.
pub struct Varnish {
    server: crate::Server,
    dir: PathBuf,
    cfg: EdgeConfig,
}

impl Varnish {
    /// Writes the VCL and the management secret into `dir` (both owner-only), starts
    /// `varnishd` in the foreground and waits until the VCL answers on the admin listener.
    ///
    /// # Errors
    /// The binary or the xkey module is missing, the VCL does not compile, or it does not
    /// answer within 30 s (it compiles the VCL with the C compiler first).
    pub fn start(dir: &Path, cfg: &EdgeConfig) -> anyhow::Result<Self> {
        let bin = binary()?;
        std::fs::create_dir_all(dir.join("work"))?;
        let vcl = dir.join("edge.vcl");
        crate::secret::write_file(&vcl, vcl_text(cfg).as_bytes())?;
        give_to_varnish(&vcl)?;
        let secret = dir.join("manage.secret");
        if !secret.exists() {
            crate::secret::write_file(&secret, crate::secret::generate(40).as_bytes())?;
            give_to_varnish(&secret)?;
        }
        let child = Self::spawn_ready(bin, dir, cfg)?;
        Ok(Varnish {
            server: crate::Server::new(child, Duration::from_secs(5)),
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
        })
    }

    /// Starts `varnishd` on the files in `dir` and waits until it answers.
    fn spawn_ready(bin: &str, dir: &Path, cfg: &EdgeConfig) -> anyhow::Result<std::process::Child> {
        let child = Self::spawn(bin, dir, cfg)?;
        crate::await_ready(
            child,
            &format!("varnishd on {}", cfg.public),
            &dir.join("varnish.log"),
            Duration::from_secs(30),
            || Self::answers(cfg),
        )
    }

    fn spawn(bin: &str, dir: &Path, cfg: &EdgeConfig) -> anyhow::Result<std::process::Child> {
        let log = std::fs::File::create(dir.join("varnish.log"))?;
        Command::new(bin)
            .arg("-F")
            .args(["-a", &format!("public={}", cfg.public)])
            .args(["-a", &format!("admin={}", cfg.admin)])
            .args(
                cfg.tls
                    .iter()
                    .flat_map(|(_, proxy)| ["-a".to_string(), format!("tls={proxy},PROXY")]),
            )
            .args(["-T", &cfg.manage.to_string()])
            .arg("-S")
            .arg(dir.join("manage.secret"))
            .arg("-f")
            .arg(dir.join("edge.vcl"))
            .arg("-n")
            .arg(dir.join("work"))
            .args(["-s", &format!("malloc,{}m", cfg.memory_mb)])
            // the side that sends requests gives an idle connection up first: HAProxy keeps
            // a client's idle connection for CLIENT_KEEP_ALIVE
            .args([
                "-p",
                &format!("backend_idle_timeout={}", BACKEND_IDLE.as_secs()),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting varnishd")
    }

    /// Whether the admin listener answers with this edge's VCL: a request without the token
    /// is refused with 403 (a server someone else runs on the port would not say that).
    fn answers(cfg: &EdgeConfig) -> bool {
        crate::http_get(&cfg.admin.to_string(), "/").is_some_and(|(code, _)| code == 403)
    }

    /// Starts it again on the same addresses after it was killed (a restarted edge holds
    /// nothing: its storage is memory).
    ///
    /// # Errors
    /// As [`Varnish::start`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.server.kill();
        let child = Self::spawn_ready(binary()?, &self.dir, &self.cfg)?;
        self.server.replace(child);
        Ok(())
    }

    /// SIGKILLs it (an edge that dies).
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// The manager's PID.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Leaves it running after this handle is dropped (`crescendo up --detach`).
    pub fn detach(mut self) -> u32 {
        self.server.detach()
    }
}

/// What an edge counted since it started, from `varnishstat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EdgeCounters {
    /// Client requests.
    pub requests: u64,
    /// Answered from its store (grace hits included).
    pub hits: u64,
    /// Looked up and not found (or found purged): fetched from the origin and stored.
    pub misses: u64,
    /// Passed to the origin without a lookup (signed in, writes).
    pub passes: u64,
    /// Requests it sent to the origin (misses, passes, background refreshes).
    pub origin_fetches: u64,
}

impl EdgeCounters {
    /// Each field of `self` less that of `earlier` (a run's share).
    #[must_use]
    pub fn since(self, earlier: Self) -> Self {
        Self {
            requests: self.requests.saturating_sub(earlier.requests),
            hits: self.hits.saturating_sub(earlier.hits),
            misses: self.misses.saturating_sub(earlier.misses),
            passes: self.passes.saturating_sub(earlier.passes),
            origin_fetches: self.origin_fetches.saturating_sub(earlier.origin_fetches),
        }
    }

    /// The sum of two edges' counters.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            requests: self.requests + other.requests,
            hits: self.hits + other.hits,
            misses: self.misses + other.misses,
            passes: self.passes + other.passes,
            origin_fetches: self.origin_fetches + other.origin_fetches,
        }
    }

    /// Of the lookups, the share answered from the store; `None` before any.
    pub fn hit_ratio(self) -> Option<f64> {
        let lookups = self.hits + self.misses;
        (lookups > 0).then(|| self.hits as f64 / lookups as f64)
    }
}

/// The counters of the edge whose directory is `dir` (`RUN_DIR/edge-N`), read with
/// `varnishstat`; `None` when it does not run or cannot be read.
pub fn counters(dir: &Path) -> Option<EdgeCounters> {
    let out = Command::new("varnishstat")
        .arg("-j")
        .arg("-n")
        .arg(dir.join("work"))
        .args([
            "-f",
            "MAIN.client_req",
            "-f",
            "MAIN.cache_hit",
            "-f",
            "MAIN.cache_miss",
        ])
        .args(["-f", "MAIN.s_pass", "-f", "MAIN.backend_req"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let n = |name: &str| v["counters"][name]["value"].as_u64();
    Some(EdgeCounters {
        requests: n("MAIN.client_req")?,
        hits: n("MAIN.cache_hit")?,
        misses: n("MAIN.cache_miss")?,
        passes: n("MAIN.s_pass")?,
        origin_fetches: n("MAIN.backend_req")?,
    })
}

/// Every edge's counters in the topology running from `run_dir`, summed; `None` when it
/// has no edge that can be read.
pub fn all_counters(run_dir: &Path, state: &crate::state::State) -> Option<EdgeCounters> {
    state
        .of(crate::state::Role::Edge)
        .filter(|p| p.name.starts_with("edge-"))
        .filter_map(|p| counters(&run_dir.join(&p.name)))
        .reduce(EdgeCounters::plus)
}

impl crate::launch::Launched for Varnish {
    fn server(&mut self) -> &mut crate::Server {
        &mut self.server
    }
}

// In a topology: the edges hold the public address, the balancer moves behind them.

/// Where the balancer listens when edges hold the public address: its own loopback
/// address, on the public port.
pub(crate) fn balancer_addr(public: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 7, 1], public.port()))
}

/// Chooses each edge's addresses and the run's purge token, and tells the nodes where to
/// send purges and that the edges are proxies they may trust; returns the edges to start
/// once the balancer runs ([`start_tier`]).
pub(crate) fn plan_tier(
    up: &mut crate::up::Up,
    tier: &crate::model::EdgeTier,
) -> anyhow::Result<Vec<EdgeConfig>> {
    let token = crate::secret::generate(40);
    let origin = balancer_addr(up.public);
    let mut edges = Vec::with_capacity(tier.count);
    for i in 1..=tier.count {
        let ip = [127, 0, 8, i as u8];
        let public = if i == 1 {
            up.public
        } else {
            SocketAddr::from((ip, up.public.port()))
        };
        let admin = crate::launch::free_addr(ip)?;
        let manage = crate::launch::free_addr(ip)?;
        up.node.edge.purge_urls.push(format!("http://{admin}"));
        up.node
            .http
            .trusted_proxies
            .push(std::net::IpAddr::from(ip).into());
        edges.push(EdgeConfig {
            public,
            admin,
            manage,
            origin,
            purge_token: token.clone(),
            memory_mb: tier.memory_mb,
            tls: match tier.tls {
                true => Some((
                    crate::launch::free_addr(ip_v4(public.ip()))?,
                    crate::launch::free_addr(ip)?,
                )),
                false => None,
            },
        });
    }
    up.node.edge.purge_token = Some(crescendo_config::Secret::new(token));
    // browsers reach the site over HTTPS: session cookies are Secure, answers carry HSTS
    up.node.web.secure_cookies |= tier.tls;
    Ok(edges)
}

/// The IPv4 address `ip` is (the edges listen on IPv4 loopback addresses).
fn ip_v4(ip: std::net::IpAddr) -> [u8; 4] {
    match ip {
        std::net::IpAddr::V4(v4) => v4.octets(),
        std::net::IpAddr::V6(_) => [127, 0, 0, 1],
    }
}

/// Starts the planned edges in front of the running balancer, each with its TLS terminator
/// when it has one, and records them.
pub(crate) fn start_tier(up: &mut crate::up::Up, edges: Vec<EdgeConfig>) -> anyhow::Result<()> {
    use crate::state::{Process, Role};
    let https: Vec<std::net::IpAddr> = edges.iter().filter_map(|e| Some(e.tls?.0.ip())).collect();
    let pem = match https.is_empty() {
        true => None,
        false => Some(crate::tls::write_certificates(&up.o.run_dir, &https)?),
    };
    for (i, cfg) in edges.into_iter().enumerate() {
        let name = format!("edge-{}", i + 1);
        up.progress(&format!("starting Varnish {name} on {}", cfg.public));
        let dir = up.o.run_dir.join(&name);
        let v = Varnish::start(&dir, &cfg)?;
        let log = dir.join("varnish.log");
        let mut p = Process::new(Role::Edge, name, v.pid(), cfg.public, log);
        p.ops_addr = Some(cfg.admin.to_string());
        up.running.record(p, Box::new(v));
        if let (Some((public, proxy)), Some(pem)) = (cfg.tls, &pem) {
            let name = format!("tls-{}", i + 1);
            up.progress(&format!("starting hitch {name} on https://{public}"));
            let h = crate::tls::Hitch::start(&dir, pem, public, proxy)?;
            if i == 0 {
                up.running.state.https_url = Some(format!("https://{public}"));
            }
            let p = Process::new(Role::Edge, name, h.pid(), public, dir.join("hitch.log"));
            up.running.record(p, Box::new(h));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edge_waits_for_several_missed_heartbeats_before_it_drops_everything() {
        let beat = crescendo_config::EdgeSettings::default().heartbeat_ms;
        assert!(SILENCE.as_millis() >= 4 * u128::from(beat));
    }

    #[test]
    fn an_edge_gives_idle_connections_to_the_balancer_up_first() {
        assert!(BACKEND_IDLE < crate::haproxy::CLIENT_KEEP_ALIVE);
        assert!(BACKEND_IDLE.as_secs() >= 1);
    }

    #[test]
    fn the_vcl_names_its_origin_and_token_and_refuses_public_purges() {
        let cfg = EdgeConfig {
            public: "127.0.0.1:8000".parse().unwrap(),
            admin: "127.0.5.1:8091".parse().unwrap(),
            manage: "127.0.5.1:8092".parse().unwrap(),
            origin: "127.0.4.1:8000".parse().unwrap(),
            purge_token: "tok123".into(),
            memory_mb: 64,
            tls: None,
        };
        let v = vcl_text(&cfg);
        assert!(v.contains(".host = \"127.0.4.1\";") && v.contains(".port = \"8000\";"));
        assert!(v.contains("X-Purge-Token != \"tok123\""));
        assert!(v.contains("purges are taken on the edge's private listener only"));
        assert!(v.contains("set req.grace = 10s;") && v.contains("set req.grace = 3600s;"));
        assert!(!v.contains('@'), "every mark is filled in: {v}");
    }
}
