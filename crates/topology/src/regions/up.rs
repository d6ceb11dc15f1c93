//! Starting and stopping two regions: the namespaces and the WAN relay, each region's own
//! `crescendo up` run inside its namespace, and the geo DNS.

use super::witness;
use super::{
    PRIVATE_NET, REGIONS, RegionPlan, RegionRecord, RegionsTier, dns_addr, private_ip, public_ip,
    users_ip,
};
use crate::geodns::{DnsRegion, GeoDnsPlan};
use crate::launch::{Node, Part, Running, UpOptions};
use crate::model::Topology;
use crate::netns::{self, Host, NetPlan};
use crate::pg::region::Upstream;
use crate::state::{Role, State, alive};
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The copy of the topology file in the run directory.
const TOPOLOGY_FILE: &str = "topology.toml";

/// A region's own run directory, inside the topology's.
fn region_dir(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("region-{name}"))
}

/// The namespaces of a run: the two regions, the users near each, the dns (and witness).
pub(super) fn hosts() -> Vec<Host> {
    let mut hosts = Vec::new();
    for (i, r) in REGIONS.iter().enumerate() {
        hosts.push(Host {
            name: format!("region-{r}"),
            location: (*r).to_string(),
            addrs: vec![
                format!("{}/24", public_ip(i)),
                format!("{}/24", private_ip(i)),
            ],
            nameserver: None,
        });
        hosts.push(Host {
            name: format!("users-{r}"),
            location: (*r).to_string(),
            addrs: vec![format!("{}/24", users_ip(i))],
            nameserver: Some(public_ip(2)),
        });
    }
    hosts.push(Host {
        name: "dns".into(),
        location: "c".into(),
        addrs: vec![
            format!("{}/24", public_ip(2)),
            format!("{}/24", private_ip(2)),
        ],
        nameserver: None,
    });
    hosts
}

/// The network namespaces of a run, deleted when dropped (after every process in them).
struct Namespaces(String);

impl Part for Namespaces {
    fn detach(self: Box<Self>) {
        std::mem::forget(*self);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// A region started by its own `crescendo up --detach`: dropped, it is brought down.
struct Region(PathBuf);

impl Part for Region {
    fn detach(self: Box<Self>) {
        std::mem::forget(*self);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let _ = crate::state::down(&self.0);
    }
}

/// Starts both regions of `t` and what joins them.
///
/// # Errors
/// Not root, a topology already runs from the run directory, or a part does not start
/// (then what started is stopped and the namespaces removed).
pub fn up(t: &Topology, o: &UpOptions) -> anyhow::Result<Running> {
    let tier = t.regions.as_ref().context("not a two-region topology")?;
    let file = t
        .source
        .as_ref()
        .context("a two-region topology is started from its file")?;
    if let Ok(s) = State::read(&o.run_dir)
        && (s.processes.iter().any(|p| alive(p.pid)) || !s.regions.is_empty())
    {
        bail!(
            "{} is already running from {}; run `crescendo down` first",
            s.name,
            o.run_dir.display()
        );
    }
    std::fs::create_dir_all(&o.run_dir)?;
    let run_dir = o.run_dir.canonicalize()?;
    let prefix = format!("cr{}", &crate::secret::generate(4).to_lowercase());
    let port = t.public.port();
    let state = State {
        name: t.name.clone(),
        rung: t.rung,
        url: format!("http://{}:{port}", tier.site),
        https_url: None,
        processes: Vec::new(),
        web_env: Vec::new(),
        lb: None,
        exe: o.exe.clone(),
        worker_env: Vec::new(),
        workers: None,
        web_scaling: None,
        regions: Vec::new(),
    };
    let mut running = Running::new(state, run_dir.clone());
    (o.progress)(&format!("creating network namespaces {prefix}-*"));
    let plan = NetPlan {
        prefix: prefix.clone(),
        hosts: hosts(),
    };
    netns::create(&plan)?;
    running.keep(Role::Wan, Box::new(Namespaces(prefix.clone())));
    let (child, p) = netns::start_relay(
        &o.exe,
        &run_dir,
        &plan,
        u64::from(tier.wan_delay_ms),
        tier.wan_loss_percent,
    )?;
    running.record(p, Box::new(Node::new(child, Duration::from_secs(5))));
    let secret = crate::launch::shared_secret(&run_dir)?;
    // a copy, which `rejoin` starts a region from again
    let topology_file = run_dir.join(TOPOLOGY_FILE);
    std::fs::copy(file, &topology_file)?;
    let mut upstream: Option<Upstream> = None;
    for (i, name) in REGIONS.iter().enumerate() {
        let dir = region_dir(&run_dir, name);
        std::fs::create_dir_all(&dir)?;
        crate::secret::write_file(&dir.join("jwt.secret"), secret.as_bytes())?;
        let region = RegionPlan {
            name: (*name).to_string(),
            public: SocketAddr::from((public_ip(i), port)),
            private: private_ip(i),
            private_net: PRIVATE_NET.into(),
            upstream: upstream.clone(),
            synchronous: tier.synchronous && upstream.is_some(),
            witness: witness::for_region(&mut running, o, tier, &dir, upstream.as_ref())?,
        };
        let ns = format!("{prefix}-region-{name}");
        (o.progress)(&format!("starting region {name} in namespace {ns}"));
        start_region(&o.exe, &topology_file, &ns, &dir, &region)?;
        running.keep(Role::Region, Box::new(Region(dir.clone())));
        running.state.regions.push(RegionRecord {
            name: (*name).to_string(),
            netns: ns,
            run_dir: dir.clone(),
            public: region.public,
        });
        if upstream.is_none() {
            upstream = Some(Upstream::read(&dir, crate::pg::region::UPSTREAM_FILE)?);
        }
    }
    (o.progress)("starting the geo DNS");
    let dns = geodns_plan(tier, &running.state.regions);
    // under the system temp dir, as the database servers' data: the `gdnsd` user it runs
    // as must reach its files, and a run directory may sit in a private one
    let dns_dir = tempfile::Builder::new()
        .prefix("crescendo-dns-")
        .tempdir()?
        .keep();
    std::fs::set_permissions(
        &dns_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let dns_ns = format!("{prefix}-dns");
    let started = allow_port_53(&dns_ns)
        .and_then(|()| netns::run_in(&dns_ns, || crate::geodns::start(&dns_dir, &dns))?);
    let (child, p) = started.inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&dns_dir);
    })?;
    let p = p.with_dir(&dns_dir);
    running.record(p, Box::new(Node::new(child, Duration::from_secs(5))));
    running.state.write(&run_dir)?;
    Ok(running)
}

/// Lets unprivileged users bind port 53 in the dns namespace: gdnsd binds its sockets after
/// dropping to its own user. The setting is the namespace's own, written by a thread inside
/// it (no `sysctl` binary needed).
fn allow_port_53(ns: &str) -> anyhow::Result<()> {
    netns::run_in(ns, || {
        std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "53")
    })?
    .with_context(|| format!("letting the geo DNS bind port 53 in {ns}"))
}

/// What the geo DNS answers: each region's public address, to the users near it first.
fn geodns_plan(tier: &RegionsTier, regions: &[RegionRecord]) -> GeoDnsPlan {
    let regions = regions
        .iter()
        .enumerate()
        .map(|(i, r)| DnsRegion {
            name: r.name.clone(),
            address: public_ip(i),
            health: r.public,
            networks: vec![format!("{}/32", users_ip(i))],
        })
        .collect();
    let mut plan = GeoDnsPlan::new(dns_addr(), tier.site.clone(), regions);
    plan.ttl_secs = tier.dns_ttl_secs;
    plan
}

/// Runs `crescendo up FILE --detach` for one region inside its namespace, with its plan.
fn start_region(
    exe: &Path,
    file: &Path,
    ns: &str,
    dir: &Path,
    region: &RegionPlan,
) -> anyhow::Result<()> {
    let plan_file = dir.join(super::PLAN_FILE);
    crate::secret::write_file(&plan_file, &serde_json::to_vec(region)?)?;
    let out = std::fs::File::create(dir.join("up.out"))?;
    let status = netns::command(ns, exe)
        .arg("up")
        .arg(file)
        .arg("--detach")
        .arg("--run-dir")
        .arg(dir)
        .arg("--region-plan")
        .arg(&plan_file)
        .stdin(Stdio::null())
        .stdout(out)
        .status()
        .with_context(|| format!("starting region {}", region.name))?;
    if !status.success() {
        bail!(
            "region {} did not start ({status}); its output is in {}",
            region.name,
            dir.join("up.out").display()
        );
    }
    Ok(())
}

/// Stops a two-region topology: each region (as `crescendo down` does), then the geo DNS
/// and the relay, and removes the namespaces. Returns the names stopped.
pub(crate) fn down_regions(state: &State) -> Vec<String> {
    let mut stopped = Vec::new();
    for r in &state.regions {
        if let Ok(names) = crate::state::down(&r.run_dir) {
            stopped.extend(names.into_iter().map(|n| format!("{}/{n}", r.name)));
        }
    }
    stopped
}

/// Removes the run's namespaces, once every process in them has stopped.
pub(crate) fn remove_namespaces(state: &State) {
    if let Some(prefix) = super::ops::prefix(&state.regions) {
        let _ = netns::delete(prefix);
    }
}

/// Brings region `name` back after the other region was promoted (`failover --region`):
/// stops what is left of it, then starts it again as a replica region of the other one's
/// new primary: its database a streaming replica across the WAN, its web nodes writing to
/// the other region and reading locally. The geo DNS sends its users back once it answers
/// its health checks.
///
/// # Errors
/// No such region, the other region has not been promoted, or the region does not start.
pub fn rejoin(run_dir: &Path, name: &str, progress: fn(&str)) -> anyhow::Result<()> {
    use crate::pg::region::PROMOTED_FILE;
    let state = State::read(run_dir)?;
    let i = REGIONS
        .iter()
        .position(|n| *n == name)
        .with_context(|| format!("there is no region {name}"))?;
    let r = state
        .regions
        .iter()
        .find(|r| r.name == name)
        .context("the region is not recorded")?;
    let other = state
        .regions
        .iter()
        .find(|o| o.name != name)
        .context("no other region")?;
    let upstream = Upstream::read(&other.run_dir, PROMOTED_FILE).with_context(|| {
        format!(
            "region {} has not been promoted: run `crescendo failover --region {}` first",
            other.name, other.name
        )
    })?;
    progress(&format!("stopping what is left of region {name}"));
    let _ = crate::state::down(&r.run_dir);
    let _ = std::fs::remove_file(r.run_dir.join(crate::pg::region::UPSTREAM_FILE));
    let plan = RegionPlan {
        name: name.to_string(),
        public: r.public,
        private: private_ip(i),
        private_net: PRIVATE_NET.into(),
        upstream: Some(upstream),
        synchronous: false,
        // the automatic failover watches region A's primary from B only
        witness: None,
    };
    progress(&format!(
        "starting region {name} as a replica of region {}",
        other.name
    ));
    start_region(
        &state.exe,
        &run_dir.join(TOPOLOGY_FILE),
        &r.netns,
        &r.run_dir,
        &plan,
    )
}
