//! Network namespaces for rung 8: regions, client namespaces and the WAN between them, on one
//! machine.
//!
//! A [`NetPlan`] names hosts (a region, a client namespace, the DNS/witness); [`create`]
//! gives each one a namespace `{prefix}-{name}` whose only link, `wan0`, is a veth pair to the
//! shared namespace `{prefix}-wan`, where its peer is `p{index}`. Nothing joins the ports in
//! the WAN namespace but the [relay](relay) (`crescendo wan-relay`, started by
//! [`start_relay`]): a learning switch in user space that delays (and may drop) the frames it
//! carries between ports of different locations, since this kernel has no `netem`. [`cut`] and
//! [`heal`] partition and rejoin ports while it runs. [`delete`] removes every namespace of a
//! prefix, and is also the sweep for leftovers of a run that crashed.
//!
//! The root namespace has a default route off the machine: a packet sent from it to a
//! namespace address leaves the host. So code that targets a namespace address runs inside a
//! namespace ([`run_in`], [`command`]) and checks with [`refuse_from_root`]; isolation is
//! checked with [`route_get`], never with traffic.

mod guard;
pub mod relay;
mod wan;

pub use guard::{
    NAMESPACE_NET, command, in_namespace_net, in_root_namespace, refuse_from_root, route_get,
    run_in,
};
pub use wan::{CUTS_FILE, cut, heal, start_relay};

use anyhow::Context;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The name of a host's link in its own namespace (its peer in the WAN namespace is
/// `p{index}`; the kernel allows 15 bytes).
pub const LINK: &str = "wan0";

/// The longest prefix [`create`] takes: namespace names end up in paths and in `ip` output,
/// and a short prefix (`cr` + a few characters of a run id) keeps them readable.
pub const MAX_PREFIX: usize = 12;

/// The namespaces of one run and their addresses.
#[derive(Clone, Debug, PartialEq)]
pub struct NetPlan {
    /// Starts every namespace's name (`{prefix}-{host}`, `{prefix}-wan`), so that one run's
    /// namespaces are found, and removed, by it alone.
    pub prefix: String,
    /// The hosts, one namespace each; a host's index is its port number in the WAN
    /// namespace.
    pub hosts: Vec<Host>,
}

/// One namespace of a [`NetPlan`].
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    /// Its name, e.g. `region-a`, `users-b`.
    pub name: String,
    /// Where it stands, e.g. `a`: the relay delays frames between hosts of different
    /// locations only.
    pub location: String,
    /// The addresses of its link, as CIDRs (`10.250.0.1/24`); one address per network it is
    /// on, so a host with no address on a network has no route to it.
    pub addrs: Vec<String>,
    /// The name server its processes use (written to `/etc/netns/{ns}/resolv.conf`, which
    /// `ip netns exec` mounts over `/etc/resolv.conf`).
    pub nameserver: Option<Ipv4Addr>,
}

impl NetPlan {
    /// The namespace of host `name`: `{prefix}-{name}`.
    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The WAN namespace, where the relay runs: `{prefix}-wan`.
    pub fn wan(&self) -> String {
        self.ns("wan")
    }

    /// The relay's port (interface in the WAN namespace) of host `name`.
    pub fn port(&self, name: &str) -> Option<String> {
        let i = self.hosts.iter().position(|h| h.name == name)?;
        Some(format!("p{i}"))
    }

    /// Every port of the relay with its host's location: `(p0, a)`, `(p1, b)`…
    pub fn ports(&self) -> Vec<(String, String)> {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (format!("p{i}"), h.location.clone()))
            .collect()
    }

    /// Refuses a plan whose names `ip` would reject or that would clash.
    fn check(&self) -> anyhow::Result<()> {
        let fits = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        anyhow::ensure!(
            fits(&self.prefix) && self.prefix.len() <= MAX_PREFIX,
            "namespace prefix {:?}: use at most {MAX_PREFIX} letters, digits, '-' or '_'",
            self.prefix
        );
        for (i, h) in self.hosts.iter().enumerate() {
            anyhow::ensure!(
                fits(&h.name),
                "host name {:?}: letters, digits, '-' or '_'",
                h.name
            );
            anyhow::ensure!(
                h.name != "wan",
                "host name \"wan\" is the relay's namespace"
            );
            anyhow::ensure!(
                !self.hosts[..i].iter().any(|o| o.name == h.name),
                "host {} appears twice",
                h.name
            );
        }
        Ok(())
    }
}

/// Runs `ip ARGS` (in namespace `ns` when given) and fails with its stderr.
fn ip(ns: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    run(cmd.args(args))
}

/// Runs `cmd` to completion and returns its stdout; fails with its stderr.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?} (is iproute2 installed?)"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Turns off the offloads of `link` in `ns`: with them on, the kernel hands a packet socket
/// frames larger than the MTU, which the relay could not send on.
fn offloads_off(ns: &str, link: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "ethtool", "-K", link]);
    cmd.args([
        "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off",
    ]);
    run(&mut cmd).context("turning offloads off (apt-get install ethtool)")?;
    Ok(())
}

/// Creates every namespace of `plan` and the WAN namespace, links each host to it and
/// addresses the links; returns how long that took. The WAN's ports carry nothing until the
/// relay runs. A namespace of the same name must not exist: [`delete`] the prefix first.
///
/// # Errors
/// The plan is invalid, or an `ip`/`ethtool` command fails (not root, a name is taken,
/// `ethtool` is missing); what was made so far is left for [`delete`].
pub fn create(plan: &NetPlan) -> anyhow::Result<Duration> {
    let started = Instant::now();
    plan.check()?;
    let wan = plan.wan();
    ip(None, &["netns", "add", &wan])?;
    ip(Some(&wan), &["link", "set", "lo", "up"])?;
    // the ports hold no address: without IPv6 the WAN namespace's own stack sends nothing
    // onto them (no router or neighbour solicitations) for the relay to carry
    run(Command::new("ip")
        .args(["netns", "exec", &wan, "sysctl", "-qw"])
        .args([
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]))?;
    for (i, host) in plan.hosts.iter().enumerate() {
        let ns = plan.ns(&host.name);
        let port = format!("p{i}");
        ip(None, &["netns", "add", &ns])?;
        ip(
            None,
            &[
                "link", "add", LINK, "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
                &wan,
            ],
        )?;
        for addr in &host.addrs {
            ip(Some(&ns), &["addr", "add", addr, "dev", LINK])?;
        }
        ip(Some(&ns), &["link", "set", "lo", "up"])?;
        ip(Some(&ns), &["link", "set", LINK, "up"])?;
        ip(Some(&wan), &["link", "set", &port, "up"])?;
        offloads_off(&ns, LINK)?;
        offloads_off(&wan, &port)?;
        if let Some(server) = host.nameserver {
            let dir = etc_netns(&ns);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("resolv.conf"), format!("nameserver {server}\n"))?;
        }
    }
    Ok(started.elapsed())
}

/// `/etc/netns/{ns}`: files `ip netns exec` mounts over `/etc` for that namespace.
fn etc_netns(ns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(ns)
}

/// The namespaces whose name starts with `{prefix}-`.
///
/// # Errors
/// `ip netns list` fails.
pub fn list(prefix: &str) -> anyhow::Result<Vec<String>> {
    let ours = format!("{prefix}-");
    Ok(ip(None, &["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&ours))
        .map(str::to_owned)
        .collect())
}

/// Removes every namespace of `prefix` (their veth pairs go with them) and their
/// `/etc/netns` directories; returns the names removed. Idempotent: nothing to remove is
/// no error, so it also sweeps what a crashed run left. Stop the processes inside first (the
/// relay, the servers): a namespace lives on, unnamed, while a process is in it.
///
/// # Errors
/// `ip netns list` or `ip netns del` fails.
pub fn delete(prefix: &str) -> anyhow::Result<Vec<String>> {
    let names = list(prefix)?;
    for ns in &names {
        // another sweep may have taken it meanwhile
        if let Err(e) = ip(None, &["netns", "del", ns])
            && list(prefix)?.contains(ns)
        {
            return Err(e);
        }
    }
    if let Ok(dirs) = std::fs::read_dir("/etc/netns") {
        let ours = format!("{prefix}-");
        for dir in dirs.flatten() {
            if dir.file_name().to_string_lossy().starts_with(&ours) {
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, location: &str) -> Host {
        Host {
            name: name.into(),
            location: location.into(),
            addrs: vec![],
            nameserver: None,
        }
    }

    #[test]
    fn a_plan_names_its_namespaces_and_ports_by_prefix_and_index() {
        let plan = NetPlan {
            prefix: "cr1a".into(),
            hosts: vec![host("region-a", "a"), host("users-b", "b")],
        };
        assert_eq!(plan.ns("region-a"), "cr1a-region-a");
        assert_eq!(plan.wan(), "cr1a-wan");
        assert_eq!(plan.port("users-b").as_deref(), Some("p1"));
        assert_eq!(plan.port("nowhere"), None);
        assert_eq!(
            plan.ports(),
            vec![("p0".into(), "a".into()), ("p1".into(), "b".into())]
        );
        plan.check().unwrap();
    }

    #[test]
    fn a_plan_with_a_long_prefix_a_bad_name_or_a_host_called_wan_is_refused() {
        let mut plan = NetPlan {
            prefix: "crescendo-run-1".into(),
            hosts: vec![host("a", "a")],
        };
        assert!(plan.check().is_err());
        plan.prefix = "cr".into();
        plan.hosts = vec![host("a b", "a")];
        assert!(plan.check().is_err());
        plan.hosts = vec![host("wan", "a")];
        assert!(plan.check().is_err());
        plan.hosts = vec![host("x", "a"), host("x", "b")];
        assert!(plan.check().is_err());
    }
}
