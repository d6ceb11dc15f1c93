//! Keeping namespace traffic out of the root namespace: entering a namespace from a thread
//! ([`run_in`]) or a child ([`command`]), knowing where the calling thread is
//! ([`in_root_namespace`]), refusing to send from the wrong place ([`refuse_from_root`]), and
//! checking routes without sending anything ([`route_get`]).

use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// The addresses namespaces use (`10.250.0.0/16`): public `10.250.0.0/24`, the regions'
/// private `10.250.1.0/24`. From the root namespace they are routed off the machine.
pub const NAMESPACE_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 250, 0, 0), 16);

/// Whether `ip` is in [`NAMESPACE_NET`].
pub fn in_namespace_net(ip: IpAddr) -> bool {
    let IpAddr::V4(v4) = ip else {
        return false;
    };
    let (net, bits) = NAMESPACE_NET;
    let mask = u32::MAX << (32 - u32::from(bits));
    u32::from(v4) & mask == u32::from(net) & mask
}

/// Whether the calling *thread* is in the root network namespace (that of PID 1): a thread
/// that [`run_in`] moved is not, even though its process started there. Namespaces are
/// compared by the device and inode of their nsfs files. Where PID 1's cannot be read (a
/// container may hide it, as this machine's does), a thread counts as outside the root
/// namespace only when it is in a named one (`/run/netns/*`, what `ip netns add` makes).
/// When in doubt the answer is yes, which errs on the side of refusing.
pub fn in_root_namespace() -> bool {
    let ns = |path: &Path| std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
    let Some(ours) = ns(Path::new("/proc/thread-self/ns/net")) else {
        return true;
    };
    if let Some(root) = ns(Path::new("/proc/1/ns/net")) {
        return ours == root;
    }
    let named = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten();
    !named.into_iter().any(|e| ns(&e.path()) == Some(ours))
}

/// Errs when the calling thread would send to `ip`, a namespace address, from the root
/// namespace (where that packet would leave the machine); passes for any other address and
/// inside a namespace. Every client that may target a namespace address calls it first.
///
/// # Errors
/// `ip` is in [`NAMESPACE_NET`] and the calling thread is in the root namespace.
pub fn refuse_from_root(ip: IpAddr) -> anyhow::Result<()> {
    if in_namespace_net(ip) && in_root_namespace() {
        anyhow::bail!(
            "{ip} is a network namespace address: traffic to it must be sent from inside a \
             network namespace: run it with `ip netns exec NS …` (or from a thread that entered \
             one); from the root namespace it would leave the machine"
        );
    }
    Ok(())
}

/// What `ip [-n NS] route get IP` says (the route, or the error text such as "Network is
/// unreachable"): a check of isolation that sends nothing.
pub fn route_get(ns: Option<&str>, ip: IpAddr) -> String {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    match cmd.args(["route", "get", &ip.to_string()]).output() {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_owned(),
        Err(e) => format!("ip route get: {e}"),
    }
}

/// Runs `f` on a thread of its own inside network namespace `ns` (`/run/netns/{ns}`) and
/// returns its result. Whatever `f` starts (threads, a tokio runtime, child processes)
/// inherits that namespace; the caller's thread stays where it is. A panic in `f` is resumed
/// on the caller.
///
/// # Errors
/// The namespace does not exist, or entering it fails (entering needs root).
pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("no namespace {ns} ({path})"))?;
    let joined = std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering namespace {ns}"))?;
            drop(file);
            Ok(f())
        })
        .join()
    });
    match joined {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// `ip netns exec NS PROGRAM`: a command whose process runs inside namespace `ns` (with
/// `/etc/netns/{ns}/` files mounted over `/etc`); add its arguments.
pub fn command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_addresses_are_those_of_10_250_slash_16() {
        for ip in ["10.250.0.1", "10.250.1.2", "10.250.255.255"] {
            assert!(in_namespace_net(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.251.0.1", "127.0.0.1", "10.0.0.1", "::1"] {
            assert!(!in_namespace_net(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn loopback_and_other_addresses_are_never_refused() {
        refuse_from_root("127.0.0.1".parse().unwrap()).unwrap();
        refuse_from_root("192.0.2.1".parse().unwrap()).unwrap();
    }
}
