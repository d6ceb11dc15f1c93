//! The geo DNS of rung 8: Debian's gdnsd answering the site's name with the region nearest
//! the asking client, and with the next region while the nearest fails its health checks.
//!
//! gdnsd is a real authoritative server whose `geoip` plugin maps client networks (the
//! query's source address, or its EDNS client subnet when it carries one) to an ordered list
//! of data centres from a network list written inline (no GeoIP database), and whose own
//! `http_status` monitor takes a data centre out of answers while its `GET /ready` fails:
//! both halves of geo routing with failover in one Debian package, configured by files.
//!
//! [`GeoDnsPlan`] says what to serve, [`start`] writes gdnsd's configuration directory and
//! starts it, and [`query_a`] is the small client that probes it and that tests and
//! benchmarks resolve the site with ([`query_a_for_subnet`] asks on a user's behalf, as a
//! recursive resolver does, with an EDNS client subnet).
//!
//! How fast clients move: a region that stops answering `/ready` is out of answers once
//! `down_after` checks have failed, at most `check_interval × down_after + check_timeout`
//! after it died ([`GeoDnsPlan::detection_bound`]); a client that resolved just before may
//! keep the old answer for one TTL more ([`GeoDnsPlan::failover_bound`]).

mod wire;

pub use wire::{
    Answer, DnsError, add_client_subnet, encode_query, parse_answer, query_a, query_a_for_subnet,
};

use crate::state::{Process, Role};
use anyhow::{Context, bail, ensure};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// gdnsd's binary, from Debian's `gdnsd` package.
const GDNSD: &str = "/usr/sbin/gdnsd";

/// One region the site may resolve to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRegion {
    /// Its name (`a`, `b`): letters, digits, `-` and `_`.
    pub name: String,
    /// What the site resolves to for clients sent here: the region's public address.
    pub address: Ipv4Addr,
    /// Where gdnsd asks `GET /ready`, which answers 200 while the region serves. Its IP must
    /// be `address` (gdnsd checks the address it hands out, on a port of the check's own).
    pub health: SocketAddr,
    /// The client networks nearest this region (CIDRs such as `10.250.0.11/32`): clients in
    /// them get this region first.
    pub networks: Vec<String>,
}

/// What the geo DNS serves and how it checks regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeoDnsPlan {
    /// Where gdnsd listens, UDP and TCP (a specific address and port).
    pub listen: SocketAddr,
    /// The site's name (`conduit.crescendo.test`): the only zone served; any other name is
    /// refused (outside it) or does not exist (inside it).
    pub site: String,
    /// The TTL of every answer: how long a resolver may keep sending users to a region that
    /// has since failed. Short, so failover reaches clients quickly.
    pub ttl_secs: u32,
    /// The regions; clients outside every region's networks get the first that is up.
    pub regions: Vec<DnsRegion>,
    /// Seconds between two health checks of a region (at least 2: a check's timeout must be
    /// shorter).
    pub check_interval_secs: u32,
    /// Seconds a health check may take before it counts as failed (below the interval).
    pub check_timeout_secs: u32,
    /// Failed checks that take a region out of answers (failures count until `up_after`
    /// successes in a row reset them).
    pub down_after: u32,
    /// Successful checks in a row that bring a region that was out back into answers.
    pub up_after: u32,
}

impl GeoDnsPlan {
    /// A plan with the stated defaults: TTL 5 s, a check every 2 s timing out after 1 s, a
    /// region out after 2 failed checks and back after 2 good ones (so out within 5 s of
    /// dying, and every client moved within 10 s).
    pub fn new(listen: SocketAddr, site: impl Into<String>, regions: Vec<DnsRegion>) -> Self {
        Self {
            listen,
            site: site.into(),
            ttl_secs: 5,
            regions,
            check_interval_secs: 2,
            check_timeout_secs: 1,
            down_after: 2,
            up_after: 2,
        }
    }

    /// How long after a region dies gdnsd stops answering with it, at most: the failing
    /// checks, the first of which may start up to one interval late and the last of which
    /// may wait its whole timeout.
    pub fn detection_bound(&self) -> Duration {
        Duration::from_secs(u64::from(
            self.check_interval_secs * self.down_after + self.check_timeout_secs,
        ))
    }

    /// How long after a region dies every client has the other region, at most: the
    /// [`detection_bound`](Self::detection_bound) plus one TTL of a cached answer.
    pub fn failover_bound(&self) -> Duration {
        self.detection_bound() + Duration::from_secs(u64::from(self.ttl_secs))
    }

    /// Checks the plan before gdnsd reads it, naming what is wrong.
    ///
    /// # Errors
    /// No region, a bad name or network, a health check on another address than the
    /// region's, an unspecified or zero listen address, or timings gdnsd refuses.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            !self.listen.ip().is_unspecified() && self.listen.port() != 0,
            "the geo DNS listens on a specific address and port, not {}",
            self.listen
        );
        wire::encode_query(0, &self.site).context("the site's name")?;
        ensure!(
            self.site
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
            "the site's name {:?} has a character other than letters, digits, '-' and '.'",
            self.site
        );
        ensure!(!self.regions.is_empty(), "the geo DNS needs a region");
        ensure!(
            self.ttl_secs >= 1,
            "a TTL of 0 would make every resolver ask every time"
        );
        ensure!(
            (1..self.check_interval_secs).contains(&self.check_timeout_secs)
                && self.check_interval_secs <= 255,
            "gdnsd wants 1 <= check timeout < check interval <= 255 s (got {} and {})",
            self.check_timeout_secs,
            self.check_interval_secs
        );
        ensure!(
            self.down_after >= 1 && self.up_after >= 1,
            "check thresholds start at 1"
        );
        for (i, r) in self.regions.iter().enumerate() {
            ensure!(
                !r.name.is_empty()
                    && r.name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "region name {:?}: letters, digits, '-' and '_' only",
                r.name
            );
            ensure!(
                !self.regions[..i].iter().any(|o| o.name == r.name),
                "region {} is named twice",
                r.name
            );
            ensure!(
                r.health.ip() == IpAddr::V4(r.address),
                "region {}: gdnsd checks the address it answers with, so the health check \
                 must be on {} (not {})",
                r.name,
                r.address,
                r.health
            );
            for net in &r.networks {
                network(net).with_context(|| format!("region {}", r.name))?;
            }
        }
        Ok(())
    }

    /// gdnsd's `config` for this plan, its run and state directories under `dir`.
    fn config(&self, dir: &Path) -> String {
        let mut c = String::from(
            "# The geo DNS of a Crescendo topology (rung 8), written by `crescendo`.\n",
        );
        let _ = writeln!(c, "options => {{");
        let _ = writeln!(c, "  listen => [ {} ]", quoted(&self.listen.to_string()));
        let _ = writeln!(
            c,
            "  run_dir => {}",
            quoted(&dir.join("run").to_string_lossy())
        );
        let _ = writeln!(
            c,
            "  state_dir => {}",
            quoted(&dir.join("state").to_string_lossy())
        );
        // short TTLs are the point: let the zone's own stand (gdnsd's default floor is 5 s)
        let _ = writeln!(
            c,
            "  min_ttl => 0\n  zones_default_ttl => {}",
            self.ttl_secs
        );
        let _ = writeln!(
            c,
            "  udp_threads => 1\n  tcp_threads => 1\n  chaos_response => crescendo\n}}"
        );
        let _ = writeln!(c, "service_types => {{");
        for r in &self.regions {
            let _ = writeln!(
                c,
                "  ready_{} => {{ plugin => http_status, port => {}, url_path => /ready, \
                 interval => {}, timeout => {}, down_thresh => {}, ok_thresh => {}, up_thresh => {} }}",
                r.name,
                r.health.port(),
                self.check_interval_secs,
                self.check_timeout_secs,
                self.down_after,
                self.up_after,
                self.up_after
            );
        }
        let names: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
        let _ = writeln!(
            c,
            "}}\nplugins => {{ geoip => {{\n  maps => {{ regions => {{"
        );
        let _ = writeln!(
            c,
            "    datacenters => [ {} ]\n    nets => {{",
            names.join(", ")
        );
        for r in &self.regions {
            // nearest first, then the others in the plan's order
            let mut order = vec![r.name.as_str()];
            order.extend(names.iter().filter(|n| **n != r.name));
            for net in &r.networks {
                let _ = writeln!(c, "      {} => [ {} ]", quoted(net), order.join(", "));
            }
        }
        let _ = writeln!(
            c,
            "    }}\n  }} }}\n  resources => {{ site => {{\n    map => regions\n    dcmap => {{"
        );
        for r in &self.regions {
            let _ = writeln!(
                c,
                "      {0} => {{ service_types => ready_{0}, {0} => {1} }}",
                r.name, r.address
            );
        }
        let _ = writeln!(c, "    }}\n  }} }}\n}} }}");
        c
    }

    /// The site's zone: its SOA and NS, the name server's address, and the site's address
    /// chosen per query by the geoip plugin, all with the plan's TTL.
    fn zone(&self) -> String {
        let ttl = self.ttl_secs;
        let ns = match self.listen.ip() {
            IpAddr::V4(ip) => format!("ns {ttl} A {ip}"),
            IpAddr::V6(ip) => format!("ns {ttl} AAAA {ip}"),
        };
        format!(
            "; the site's zone, served by the geo DNS of a Crescendo topology\n\
             $TTL {ttl}\n\
             @ SOA ns hostmaster 1 {ttl} {ttl} 600 {ttl}\n\
             @ NS ns\n\
             {ns}\n\
             @ {ttl}/{ttl} DYNA geoip!site\n"
        )
    }
}

/// Checks that `net` is an IPv4 or IPv6 network in CIDR form with no host bits set.
fn network(net: &str) -> anyhow::Result<()> {
    let (ip, len) = net
        .split_once('/')
        .with_context(|| format!("network {net:?} is not in CIDR form (ADDRESS/LENGTH)"))?;
    let ip: IpAddr = ip.parse().with_context(|| format!("network {net:?}"))?;
    let len: u32 = len.parse().with_context(|| format!("network {net:?}"))?;
    let (bits, max) = match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    ensure!(len <= max, "network {net:?}: a prefix longer than {max}");
    let host = if len == max {
        0
    } else {
        (1u128 << (max - len)) - 1
    };
    ensure!(bits & host == 0, "network {net:?} has host bits set");
    Ok(())
}

/// `s` as a quoted string of gdnsd's configuration language.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Writes gdnsd's configuration directory `dir` for `plan` (`config`, `zones/SITE`, and its
/// run and state directories, nothing under the machine's /etc or /run), starts gdnsd in
/// the foreground with its log in `dir/gdnsd.log`, and waits (30 s at most) until it answers
/// a query for the site on `plan.listen`. Started by root, gdnsd runs as Debian's unprivileged
/// `gdnsd` user, which owns only its run and state directories.
///
/// It spawns and probes `plan.listen` from the calling thread, so a thread that has entered
/// a network namespace starts it there. Stopping it (SIGTERM) and reaping the child is the
/// caller's; the [`Process`] (role `dns`, name `dns`) is what `state.json` records.
///
/// # Errors
/// An invalid plan, gdnsd not installed (`apt-get install gdnsd`), a directory the `gdnsd`
/// user cannot reach, or gdnsd exiting or not answering in time (with its log's tail).
pub fn start(dir: &Path, plan: &GeoDnsPlan) -> anyhow::Result<(Child, Process)> {
    plan.validate()?;
    ensure!(
        Path::new(GDNSD).exists(),
        "{GDNSD} is missing: install Debian's gdnsd (apt-get install gdnsd)"
    );
    std::fs::create_dir_all(dir.join("zones"))?;
    std::fs::write(dir.join("config"), plan.config(dir))?;
    let zone = plan.site.trim_end_matches('.').to_ascii_lowercase();
    std::fs::write(dir.join("zones").join(&zone), plan.zone())?;
    let user = as_gdnsd_user(dir)?;
    let log_path = dir.join("gdnsd.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(GDNSD);
    cmd.arg("-c").arg(dir).arg("start");
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    if let Some((uid, gid)) = user {
        std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, gid);
    }
    let child = cmd.spawn().with_context(|| format!("starting {GDNSD}"))?;
    let what = format!("gdnsd on {}", plan.listen);
    let child = crate::await_ready(child, &what, &log_path, Duration::from_secs(30), || {
        query_a(plan.listen, &plan.site, None, Duration::from_millis(200)).is_ok()
    })
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tail(&log_path)))?;
    let process = Process::new(Role::Dns, "dns", child.id(), plan.listen, log_path);
    Ok((child, process))
}

/// When this process is root, prepares `dir` for gdnsd running as the `gdnsd` user and
/// returns that user's ids: its run and state directories become its own, and every
/// directory above must let it through. Otherwise gdnsd runs as this process's user.
fn as_gdnsd_user(dir: &Path) -> anyhow::Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("gdnsd")?
        .context("no `gdnsd` user: install Debian's gdnsd (apt-get install gdnsd)")?;
    for sub in ["run", "state"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        nix::unistd::chown(&path, Some(user.uid), Some(user.gid))?;
    }
    let dir = std::path::absolute(dir)?;
    for up in dir.ancestors() {
        let meta = std::fs::metadata(up)?;
        if meta.mode() & 0o001 == 0 && meta.uid() != user.uid.as_raw() {
            bail!(
                "the `gdnsd` user cannot reach {} ({} is mode {:o}): give the geo DNS a \
                 directory others may traverse",
                dir.display(),
                up.display(),
                meta.mode() & 0o7777
            );
        }
    }
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// The last lines of gdnsd's log, for an error.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> GeoDnsPlan {
        let region = |name: &str, last: u8, nets: &[&str]| DnsRegion {
            name: name.into(),
            address: Ipv4Addr::new(10, 250, 0, last),
            health: SocketAddr::new(Ipv4Addr::new(10, 250, 0, last).into(), 8000),
            networks: nets.iter().map(|n| n.to_string()).collect(),
        };
        GeoDnsPlan::new(
            "10.250.0.3:53".parse().unwrap(),
            "conduit.crescendo.test",
            vec![
                region("a", 1, &["10.250.0.11/32"]),
                region("b", 2, &["10.250.0.12/32"]),
            ],
        )
    }

    #[test]
    fn the_default_plan_moves_every_client_within_ten_seconds() {
        let p = plan();
        p.validate().unwrap();
        assert_eq!(p.detection_bound(), Duration::from_secs(5));
        assert_eq!(p.failover_bound(), Duration::from_secs(10));
    }

    #[test]
    fn each_regions_networks_list_it_first_then_the_others() {
        let c = plan().config(Path::new("/run/x"));
        assert!(c.contains("\"10.250.0.11/32\" => [ a, b ]"), "{c}");
        assert!(c.contains("\"10.250.0.12/32\" => [ b, a ]"), "{c}");
        assert!(c.contains("datacenters => [ a, b ]"), "{c}");
        assert!(c.contains("ready_b => { plugin => http_status, port => 8000, url_path => /ready"));
        assert!(c.contains("run_dir => \"/run/x/run\""), "{c}");
    }

    #[test]
    fn the_zone_answers_the_site_through_the_geoip_plugin_with_the_plans_ttl() {
        let z = plan().zone();
        assert!(z.contains("@ 5/5 DYNA geoip!site"), "{z}");
        assert!(z.contains("ns 5 A 10.250.0.3"), "{z}");
    }

    #[test]
    fn a_plan_gdnsd_could_not_serve_is_refused_with_the_reason() {
        let mut p = plan();
        p.regions[0].health = "10.250.1.1:8000".parse().unwrap();
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("health check")
        );
        let mut p = plan();
        p.regions[1].networks.push("10.250.0.1/24".into());
        assert!(format!("{:#}", p.validate().unwrap_err()).contains("host bits"));
        let mut p = plan();
        p.check_timeout_secs = p.check_interval_secs;
        assert!(p.validate().is_err());
        let mut p = plan();
        p.regions[1].name = "a".into();
        assert!(p.validate().is_err());
        let mut p = plan();
        p.listen = "0.0.0.0:53".parse().unwrap();
        assert!(p.validate().is_err());
        assert!(network("2001:db8::/32").is_ok() && network("10.0.0.0/33").is_err());
    }
}
