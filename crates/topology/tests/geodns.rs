//! The geo DNS (gdnsd) on loopback: two regions stood for by tiny `/ready` servers, clients
//! told apart by their source addresses (or the client subnet a resolver sends for them). Each client gets its own region, the other region
//! once its own fails its health checks (timed against the stated bound), and its own again
//! once it heals; names outside the site get no address.

use crescendo_topology::geodns::{
    self, DnsError, DnsRegion, GeoDnsPlan, query_a, query_a_for_subnet,
};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SITE: &str = "conduit.crescendo.test";
const REGION_A: Ipv4Addr = Ipv4Addr::new(127, 0, 22, 1);
const REGION_B: Ipv4Addr = Ipv4Addr::new(127, 0, 23, 1);
const DNS: Ipv4Addr = Ipv4Addr::new(127, 0, 25, 1);
const USER_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 21, 5));
const USER_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 24, 5));
const USER_ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 26, 5));

/// A region's `/ready`: answers 200 until stopped, then refuses connections.
struct Ready {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ready {
    fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).expect("a free port on the region's address");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut buf = [0u8; 1024];
                        let n = conn.read(&mut buf).unwrap_or(0);
                        let status = if buf[..n].starts_with(b"GET /ready ") {
                            "200 OK"
                        } else {
                            "404 Not Found"
                        };
                        let _ = write!(
                            conn,
                            "HTTP/1.0 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            // the listener closes here: checks are refused from now on
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        self.stop();
    }
}

/// gdnsd, stopped by its PID when the test ends, passed or not.
struct Gdnsd(Child);

impl Drop for Gdnsd {
    fn drop(&mut self) {
        crescendo_topology::stop(
            &mut self.0,
            Some(nix::sys::signal::Signal::SIGTERM),
            Duration::from_secs(5),
        );
    }
}

/// A port free for both UDP and TCP on `ip` (gdnsd binds both).
fn free_port(ip: Ipv4Addr) -> u16 {
    loop {
        let udp = UdpSocket::bind((ip, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

fn ask(server: SocketAddr, from: IpAddr) -> Vec<Ipv4Addr> {
    query_a(server, SITE, Some(from), Duration::from_secs(2))
        .expect("an answer for the site")
        .addrs
}

/// Asks as `from` every 100 ms until the answer is `want`; returns how long that took.
fn until_answer(server: SocketAddr, from: IpAddr, want: Ipv4Addr, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = ask(server, from);
        if got == [want] {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{from} still gets {got:?}, not {want}, after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn each_client_gets_its_nearest_healthy_region_and_the_other_while_its_own_is_down() {
    // arrange: regions a and b, each with a /ready, and gdnsd sending 127.0.21/24 to a and
    // 127.0.24/24 to b
    let mut ready_a = Ready::start(SocketAddr::new(REGION_A.into(), 0));
    let ready_b = Ready::start(SocketAddr::new(REGION_B.into(), 0));
    let region = |name: &str, address, health, net: &str| DnsRegion {
        name: name.into(),
        address,
        health,
        networks: vec![net.into()],
    };
    let dns = SocketAddr::new(DNS.into(), free_port(DNS));
    let plan = GeoDnsPlan::new(
        dns,
        SITE,
        vec![
            region("a", REGION_A, ready_a.addr, "127.0.21.0/24"),
            region("b", REGION_B, ready_b.addr, "127.0.24.0/24"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    // the unprivileged gdnsd user must get through to its files
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (child, process) = geodns::start(dir.path(), &plan).expect("gdnsd starts");
    let _gdnsd = Gdnsd(child);
    assert_eq!(process.addr, dns.to_string());

    // each client gets exactly its own region, with the stated TTL; others get the first
    let answer = query_a(dns, SITE, Some(USER_A), Duration::from_secs(2)).unwrap();
    assert_eq!(answer.addrs, [REGION_A]);
    assert_eq!(answer.ttl, plan.ttl_secs);
    assert_eq!(ask(dns, USER_B), [REGION_B]);
    assert_eq!(ask(dns, USER_ELSEWHERE), [REGION_A]);

    // a resolver asking on its users' behalf: the client subnet decides, not the sender
    let for_subnet = |net: [u8; 4]| {
        query_a_for_subnet(dns, SITE, (Ipv4Addr::from(net), 24), Duration::from_secs(2))
            .unwrap()
            .addrs
    };
    assert_eq!(for_subnet([127, 0, 24, 0]), [REGION_B]);
    assert_eq!(for_subnet([127, 0, 21, 0]), [REGION_A]);

    // names outside the site, or in it but not the site, get no address
    for name in [
        "other.crescendo.test",
        "www.conduit.crescendo.test",
        "example.org",
    ] {
        let err = query_a(dns, name, Some(USER_A), Duration::from_secs(2)).unwrap_err();
        let err = err
            .downcast_ref::<DnsError>()
            .unwrap_or_else(|| panic!("{name}: {err:#}"));
        assert!(
            matches!(err, DnsError::NxDomain | DnsError::Refused),
            "{name}: {err}"
        );
    }

    // region a dies: within the stated bound its clients get b, and b's keep b
    ready_a.stop();
    let moved = until_answer(dns, USER_A, REGION_B, plan.failover_bound());
    eprintln!(
        "region a's clients got region b {moved:?} after its /ready stopped \
         (gdnsd's bound {:?}, a client's with the TTL {:?})",
        plan.detection_bound(),
        plan.failover_bound()
    );
    assert_eq!(ask(dns, USER_B), [REGION_B]);
    assert_eq!(ask(dns, USER_ELSEWHERE), [REGION_B]);

    // region a heals: its clients come back to it
    let mut ready_a = Ready::start(ready_a.addr);
    let back = until_answer(dns, USER_A, REGION_A, Duration::from_secs(30));
    eprintln!("region a's clients were back on region a {back:?} after its /ready healed");
    assert_eq!(ask(dns, USER_B), [REGION_B]);
    ready_a.stop();
}
