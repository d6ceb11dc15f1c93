//! Rung 8's network layer with real namespaces, veth links and `crescendo wan-relay`: the
//! relay delays traffic between locations and not within one, cuts and heals links, drops
//! what the loss asks for; namespaces are entered from threads and child processes; the
//! guards refuse to send from the root namespace; `delete` leaves nothing behind.
//!
//! These tests need root and `ip`/`ethtool` (`scripts/test.sh` installs them). Every
//! client runs inside a namespace: nothing here sends to a namespace address from the root
//! namespace.

use crescendo_topology::netns::{self, Host, NetPlan};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// The one-way delay the relay is started with.
const DELAY_MS: u64 = 20;

/// One test's namespaces (and relay): removed when dropped, also when the test fails.
struct Net {
    plan: NetPlan,
    relay: Option<Child>,
    run_dir: tempfile::TempDir,
}

impl Net {
    /// Creates `hosts` (name, location, CIDRs) under a prefix of this process and `tag`.
    fn create(tag: &str, hosts: &[(&str, &str, &[&str])]) -> Self {
        let plan = NetPlan {
            prefix: format!("ct{}{tag}", std::process::id() % 100_000),
            hosts: hosts
                .iter()
                .map(|(name, location, addrs)| Host {
                    name: (*name).into(),
                    location: (*location).into(),
                    addrs: addrs.iter().map(|a| (*a).to_owned()).collect(),
                    nameserver: Some("10.250.0.3".parse().unwrap()),
                })
                .collect(),
        };
        netns::delete(&plan.prefix).unwrap();
        let net = Self {
            plan,
            relay: None,
            run_dir: tempfile::tempdir().unwrap(),
        };
        let took = netns::create(&net.plan).unwrap();
        eprintln!(
            "created {} namespaces and the WAN in {:.3} s",
            net.plan.hosts.len(),
            took.as_secs_f64()
        );
        net
    }

    /// Starts (or restarts) the relay with `loss` percent loss; returns its PID.
    fn start_relay(&mut self, loss: f64) -> u32 {
        self.stop_relay();
        let exe = Path::new(env!("CARGO_BIN_EXE_crescendo"));
        let (child, process) =
            netns::start_relay(exe, self.run_dir.path(), &self.plan, DELAY_MS, loss).unwrap();
        assert_eq!(process.pid, child.id());
        assert!(process.is_ours(), "{process:?}");
        self.relay = Some(child);
        process.pid
    }

    fn stop_relay(&mut self) {
        if let Some(mut child) = self.relay.take() {
            crescendo_topology::stop(
                &mut child,
                Some(nix::sys::signal::Signal::SIGTERM),
                Duration::from_secs(5),
            );
        }
    }

    fn ns(&self, host: &str) -> String {
        self.plan.ns(host)
    }

    fn port(&self, host: &str) -> String {
        self.plan.port(host).unwrap()
    }

    fn cuts(&self) -> std::path::PathBuf {
        self.run_dir.path().join(netns::CUTS_FILE)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_relay();
        let _ = netns::delete(&self.plan.prefix);
    }
}

/// Listens on `addr` inside namespace `ns`, accepting (and closing) connections in a thread
/// of that namespace until the process ends.
fn listen(ns: &str, addr: SocketAddr) {
    netns::run_in(ns, || {
        let listener = TcpListener::bind(addr).unwrap();
        std::thread::spawn(move || for _ in listener.incoming() {});
    })
    .unwrap();
}

/// How long TCP connects from namespace `ns` to `addr` take (`n` of them, sorted); `None`
/// for one that failed within `limit`.
fn connects(ns: &str, addr: SocketAddr, n: usize, limit: Duration) -> Vec<Option<Duration>> {
    let mut times = netns::run_in(ns, || {
        netns::refuse_from_root(addr.ip()).unwrap();
        (0..n)
            .map(|_| {
                let t = Instant::now();
                TcpStream::connect_timeout(&addr, limit)
                    .ok()
                    .map(|_| t.elapsed())
            })
            .collect::<Vec<_>>()
    })
    .unwrap();
    times.sort();
    times
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The connect times of `ns` to `addr`, all of which must succeed: (min, median, max) in ms.
fn connect_times(ns: &str, addr: SocketAddr) -> (f64, f64, f64) {
    let times: Vec<Duration> = connects(ns, addr, 11, Duration::from_secs(5))
        .into_iter()
        .map(|t| t.expect("a connect failed"))
        .collect();
    (ms(times[0]), ms(times[5]), ms(times[10]))
}

#[test]
fn the_relay_delays_only_cross_location_traffic_and_cuts_heals_and_loses_it() {
    let mut net = Net::create(
        "r",
        &[
            ("region-a", "a", &["10.250.0.1/24", "10.250.1.1/24"]),
            ("users-a", "a", &["10.250.0.11/24"]),
            ("region-b", "b", &["10.250.0.2/24", "10.250.1.2/24"]),
        ],
    );
    let relay = net.start_relay(0.0);
    let near: SocketAddr = "10.250.0.11:7000".parse().unwrap();
    let far: SocketAddr = "10.250.0.2:7000".parse().unwrap();
    let far_private: SocketAddr = "10.250.1.2:7001".parse().unwrap();
    listen(&net.ns("users-a"), near);
    listen(&net.ns("region-b"), far);
    listen(&net.ns("region-b"), far_private);
    let from = net.ns("region-a");

    let (near_min, near_p50, near_max) = connect_times(&from, near);
    let (far_min, far_p50, far_max) = connect_times(&from, far);
    let (priv_min, priv_p50, _) = connect_times(&from, far_private);
    eprintln!(
        "TCP connect from region-a, 11 each (min/median/max ms): same location {near_min:.2}/{near_p50:.2}/{near_max:.2}, \
         across the WAN ({DELAY_MS} ms one way) {far_min:.2}/{far_p50:.2}/{far_max:.2}, private net {priv_min:.2}/{priv_p50:.2}"
    );
    let round_trip = 2.0 * DELAY_MS as f64;
    assert!(
        far_min >= round_trip,
        "a cross-location connect took {far_min} ms"
    );
    assert!(
        priv_min >= round_trip,
        "a private-net connect took {priv_min} ms"
    );
    assert!(
        near_p50 < round_trip,
        "same location took {near_p50} ms: it must not be delayed"
    );

    // a cut between region-a and region-b: their connects time out, users-a is still reached
    // from region-a, and region-b from users-a
    let (a, b) = (net.port("region-a"), net.port("region-b"));
    netns::cut(&net.cuts(), relay, &[(&a, &b)]).unwrap();
    let cut = connects(&from, far, 1, Duration::from_secs(1));
    assert_eq!(cut, vec![None], "a connect across the cut went through");
    connect_times(&from, near);
    connect_times(&net.ns("users-a"), far);

    let healed = Instant::now();
    netns::heal(&net.cuts(), relay, &[]).unwrap();
    while connects(&from, far, 1, Duration::from_millis(500))[0].is_none() {
        assert!(
            healed.elapsed() < Duration::from_secs(10),
            "still cut 10 s after healing"
        );
    }
    eprintln!(
        "a connect across the WAN went through {:.0} ms after heal",
        ms(healed.elapsed())
    );

    let log = std::fs::read_to_string(net.run_dir.path().join("wan.log")).unwrap();
    assert!(
        log.contains("cuts: 0 port pairs") && log.contains("frames relayed"),
        "{log}"
    );

    // a port of the WAN namespace taken down and up again (the relay's reads fail meanwhile):
    // the relay lives on and carries traffic again
    let wan = net.plan.wan();
    let link = |state: &str| {
        let ok = std::process::Command::new("ip")
            .args(["-n", &wan, "link", "set", &b, state])
            .status()
            .unwrap();
        assert!(ok.success(), "ip link set {b} {state}");
    };
    link("down");
    assert_eq!(connects(&from, far, 1, Duration::from_secs(1)), vec![None]);
    link("up");
    let up = Instant::now();
    while connects(&from, far, 1, Duration::from_millis(500))[0].is_none() {
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "no traffic 10 s after the link came up"
        );
    }
    assert!(
        crescendo_topology::alive(relay),
        "the relay died with its link down"
    );

    // 100 % loss: nothing crosses, the same location still works
    net.start_relay(100.0);
    assert_eq!(connects(&from, far, 1, Duration::from_secs(1)), vec![None]);
    connect_times(&from, near);
}

#[test]
fn namespaces_are_entered_by_threads_and_children_and_the_guard_refuses_the_root_namespace() {
    let net = Net::create(
        "g",
        &[
            ("region-a", "a", &["10.250.0.1/24", "10.250.1.1/24"]),
            ("users-b", "b", &["10.250.0.12/24"]),
        ],
    );
    let region = net.ns("region-a");
    let target: IpAddr = "10.250.0.12".parse().unwrap();

    // the test's own thread is in the root namespace: refused, with how to do it instead
    assert!(netns::in_root_namespace());
    let err = netns::refuse_from_root(target).unwrap_err().to_string();
    assert!(err.contains("ip netns exec"), "{err}");
    assert!(
        TcpListener::bind("10.250.0.1:0").is_err(),
        "the root namespace has 10.250.0.1"
    );

    let (inside, bound, child_addrs, nested) = netns::run_in(&region, || {
        let bound = TcpListener::bind("10.250.0.1:0").map(|l| l.local_addr().unwrap());
        let child = std::process::Command::new("ip")
            .args(["-o", "-4", "addr"])
            .output()
            .unwrap();
        let nested = std::thread::spawn(|| {
            (
                netns::in_root_namespace(),
                TcpListener::bind("10.250.1.1:0").is_ok(),
            )
        })
        .join()
        .unwrap();
        (
            (
                !netns::in_root_namespace(),
                netns::refuse_from_root(target).is_ok(),
            ),
            bound,
            String::from_utf8_lossy(&child.stdout).into_owned(),
            nested,
        )
    })
    .unwrap();
    assert_eq!(
        inside,
        (true, true),
        "not in the namespace, or refused there"
    );
    assert!(bound.is_ok(), "{bound:?}");
    assert!(
        child_addrs.contains("10.250.1.1/24"),
        "a child's view: {child_addrs}"
    );
    assert!(!child_addrs.contains("eth0"), "{child_addrs}");
    assert_eq!(
        nested,
        (false, true),
        "a thread started inside left the namespace"
    );
    assert!(
        netns::in_root_namespace(),
        "run_in moved the caller's thread"
    );

    // a command runs inside, with the namespace's resolv.conf
    let out = netns::command(&region, "cat")
        .arg("/etc/resolv.conf")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nameserver 10.250.0.3\n"
    );

    // isolation by routes, without traffic: users have no route to the private net
    let private: IpAddr = "10.250.1.1".parse().unwrap();
    let users = netns::route_get(Some(&net.ns("users-b")), private);
    assert!(users.contains("unreachable"), "users-b: {users}");
    let regions = netns::route_get(Some(&region), "10.250.1.2".parse().unwrap());
    assert!(regions.contains("dev wan0"), "region-a: {regions}");

    // delete removes every namespace of the prefix and its /etc/netns dir, and again is no error
    let prefix = net.plan.prefix.clone();
    let removed = netns::delete(&prefix).unwrap();
    assert_eq!(removed.len(), 3, "{removed:?}");
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains(&format!("{prefix}-")), "left behind: {list}");
    assert!(!Path::new("/etc/netns").join(&region).exists());
    assert_eq!(netns::delete(&prefix).unwrap(), Vec::<String>::new());
}
