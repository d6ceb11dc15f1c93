//! The WAN relay (`crescendo wan-relay`): a learning Ethernet switch in user space between
//! the ports of the WAN namespace, which holds each frame it carries between ports of
//! different locations for the one-way delay (and drops the share of them the loss asks
//! for) before sending it on. This kernel has no `netem`, so the WAN is this process.
//!
//! Each port has one raw packet socket (`pnet_datalink`, bound to the interface) and two
//! threads: a receiver that learns the source MAC, picks the ports the frame goes to
//! (its destination's port when learned, else every other port) and queues it on each, due
//! now or after the delay; and a sender that sends its port's queue in order of due time.
//! The socket both reads and writes the port, and the kernel never hands a packet socket
//! the frames it sent itself, so the relay does not see its own output again.
//!
//! Cuts (`--cuts FILE`, lines `IF1 IF2`) drop every frame between two ports both ways; the
//! file is read at start and on SIGHUP, and what was applied is written to `FILE.applied`
//! so that whoever changed it knows when it holds. SIGHUP also prints the counts.

use anyhow::Context;
use pnet_datalink::{Channel, Config, DataLinkReceiver, DataLinkSender};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How many frames may wait on one port: a sender that cannot keep up drops the rest rather
/// than hold memory without bound.
const QUEUE_LIMIT: usize = 65_536;

/// What the relay carries and how.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Its ports: interface name and location (`p0`, `a`).
    pub ports: Vec<(String, String)>,
    /// The one-way delay between ports of different locations (none within a location).
    pub delay: Duration,
    /// The share of frames between different locations dropped, in percent.
    pub loss_percent: f64,
    /// The cuts file (`IF1 IF2` per line), re-read on SIGHUP.
    pub cuts: Option<PathBuf>,
}

/// What the relay did, since it started.
#[derive(Debug, Default)]
struct Counts {
    relayed: AtomicU64,
    delayed: AtomicU64,
    lost: AtomicU64,
    cut: AtomicU64,
    overflow: AtomicU64,
    send_errors: AtomicU64,
    receive_errors: AtomicU64,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "frames relayed {} (delayed {}), dropped: loss {} cut {} overflow {}; errors: send {} receive {}",
            self.relayed.load(Relaxed),
            self.delayed.load(Relaxed),
            self.lost.load(Relaxed),
            self.cut.load(Relaxed),
            self.overflow.load(Relaxed),
            self.send_errors.load(Relaxed),
            self.receive_errors.load(Relaxed),
        )
    }
}

/// A frame waiting to be sent: when it is due, its sequence number (which keeps frames due
/// at the same instant in arrival order) and its bytes.
type Due = Reverse<(Instant, u64, Vec<u8>)>;

/// Frames waiting to be sent on one port, earliest due first.
#[derive(Default)]
struct Outbox {
    queue: Mutex<BinaryHeap<Due>>,
    /// Wakes the port's sender when a frame is queued.
    queued: Condvar,
}

/// What every thread of the relay shares.
struct Switch {
    locations: Vec<String>,
    names: Vec<String>,
    outboxes: Vec<Outbox>,
    /// Which port each source MAC was last seen on.
    macs: Mutex<HashMap<[u8; 6], usize>>,
    /// Port pairs (lower index first) that drop each other's frames.
    cuts: RwLock<HashSet<(usize, usize)>>,
    delay: Duration,
    /// The loss as a threshold on a random `u32`: a frame whose draw is below it is lost.
    loss_below: u64,
    seq: AtomicU64,
    counts: Counts,
}

impl Switch {
    /// Decides where frame `frame`, received on port `from`, goes, and queues it there.
    fn forward(&self, from: usize, frame: &[u8], rng: &mut Rng) {
        if frame.len() < 14 {
            return;
        }
        let dst: [u8; 6] = frame[0..6].try_into().expect("6 bytes");
        let src: [u8; 6] = frame[6..12].try_into().expect("6 bytes");
        let to = {
            let mut macs = self.macs.lock().expect("mac table");
            if src[0] & 1 == 0 {
                macs.insert(src, from);
            }
            if dst[0] & 1 == 0 {
                macs.get(&dst).copied()
            } else {
                None
            }
        };
        match to {
            Some(to) if to != from => self.queue(from, to, frame, rng),
            Some(_) => {}
            None => {
                for to in (0..self.outboxes.len()).filter(|&to| to != from) {
                    self.queue(from, to, frame, rng);
                }
            }
        }
    }

    fn queue(&self, from: usize, to: usize, frame: &[u8], rng: &mut Rng) {
        let pair = (from.min(to), from.max(to));
        if self.cuts.read().expect("cuts").contains(&pair) {
            self.counts.cut.fetch_add(1, Relaxed);
            return;
        }
        let mut due = Instant::now();
        if self.locations[from] != self.locations[to] {
            if u64::from(rng.next()) < self.loss_below {
                self.counts.lost.fetch_add(1, Relaxed);
                return;
            }
            due += self.delay;
            self.counts.delayed.fetch_add(1, Relaxed);
        }
        let outbox = &self.outboxes[to];
        let mut queue = outbox.queue.lock().expect("outbox");
        if queue.len() >= QUEUE_LIMIT {
            self.counts.overflow.fetch_add(1, Relaxed);
            return;
        }
        queue.push(Reverse((
            due,
            self.seq.fetch_add(1, Relaxed),
            frame.to_vec(),
        )));
        outbox.queued.notify_one();
    }

    /// Reads port `port` until the process ends. A read error (ENETDOWN while the link is
    /// down) is counted and waited out, never fatal.
    fn receive(&self, port: usize, mut rx: Box<dyn DataLinkReceiver>) {
        let mut rng = Rng::new();
        loop {
            match rx.next() {
                Ok(frame) => self.forward(port, frame, &mut rng),
                Err(_) => {
                    self.counts.receive_errors.fetch_add(1, Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Sends port `port`'s frames, each when it is due, until the process ends.
    fn send(&self, port: usize, mut tx: Box<dyn DataLinkSender>) {
        let outbox = &self.outboxes[port];
        loop {
            let frame = {
                let mut queue = outbox.queue.lock().expect("outbox");
                loop {
                    let now = Instant::now();
                    match queue.peek() {
                        None => queue = outbox.queued.wait(queue).expect("outbox"),
                        Some(Reverse((due, _, _))) if *due > now => {
                            let wait = *due - now;
                            queue = outbox.queued.wait_timeout(queue, wait).expect("outbox").0;
                        }
                        Some(_) => break queue.pop().expect("peeked").0.2,
                    }
                }
            };
            match tx.send_to(&frame, None) {
                Some(Ok(())) => self.counts.relayed.fetch_add(1, Relaxed),
                _ => self.counts.send_errors.fetch_add(1, Relaxed),
            };
        }
    }

    /// Reads the cuts file (a missing file is no cut) and applies it; writes what holds now
    /// to `FILE.applied`. A file that names an unknown port is refused whole.
    fn load_cuts(&self, file: &Path) -> anyhow::Result<usize> {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let mut cuts = HashSet::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let index = |name: &str| {
                self.names
                    .iter()
                    .position(|n| n == name)
                    .with_context(|| format!("{}: no port {name} in {line:?}", file.display()))
            };
            let mut words = line.split_whitespace();
            let (Some(a), Some(b), None) = (words.next(), words.next(), words.next()) else {
                anyhow::bail!("{}: {line:?} is not `IF1 IF2`", file.display());
            };
            let (a, b) = (index(a)?, index(b)?);
            cuts.insert((a.min(b), a.max(b)));
        }
        let n = cuts.len();
        *self.cuts.write().expect("cuts") = cuts;
        let applied = applied_file(file);
        let tmp = applied.with_extension("applied.new");
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &applied)?;
        Ok(n)
    }
}

/// Where the relay says which cuts hold: `FILE.applied`, the text of the cuts file it
/// applied last.
pub fn applied_file(cuts: &Path) -> PathBuf {
    let mut name = cuts.as_os_str().to_owned();
    name.push(".applied");
    PathBuf::from(name)
}

/// A xorshift generator for the loss draws, seeded from the system's randomness.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Self(u64::from_ne_bytes(seed) | 1)
    }

    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}

/// Opens a raw socket on interface `name` of this namespace.
fn open(name: &str) -> anyhow::Result<(Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>)> {
    let interface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .with_context(|| {
            format!("no interface {name} here (run the relay in the WAN namespace)")
        })?;
    let config = Config {
        // offloads are off on every link (see `create`), so no frame exceeds the MTU
        read_buffer_size: 65_536,
        write_buffer_size: 65_536,
        ..Config::default()
    };
    match pnet_datalink::channel(&interface, config).with_context(|| format!("opening {name}"))? {
        Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => anyhow::bail!("{name}: not an Ethernet channel"),
    }
}

/// Runs the relay until the process is stopped: opens every port, applies the cuts, prints
/// `relaying N ports` to stderr, then carries frames. SIGHUP re-reads the cuts and prints the
/// counts; they are also logged every 10 s at debug level.
///
/// # Errors
/// A port cannot be opened (not in the WAN namespace, not root) or the cuts file is invalid
/// at start.
pub fn run(config: RelayConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.ports.len() >= 2,
        "the relay needs at least two ports"
    );
    anyhow::ensure!(
        (0.0..=100.0).contains(&config.loss_percent),
        "loss must be between 0 and 100 %"
    );
    // SIGHUP is handled before the cuts are first applied: whoever waits for that may send
    // one at once, and its default action would end the relay
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let hup = {
        let _in = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?
    };
    let mut channels = Vec::new();
    for (name, _) in &config.ports {
        channels.push(open(name)?);
    }
    let switch = Arc::new(Switch {
        names: config.ports.iter().map(|(n, _)| n.clone()).collect(),
        locations: config.ports.iter().map(|(_, l)| l.clone()).collect(),
        outboxes: config.ports.iter().map(|_| Outbox::default()).collect(),
        macs: Mutex::default(),
        cuts: RwLock::default(),
        delay: config.delay,
        loss_below: (config.loss_percent / 100.0 * 4_294_967_296.0) as u64,
        seq: AtomicU64::new(0),
        counts: Counts::default(),
    });
    if let Some(file) = &config.cuts {
        switch.load_cuts(file)?;
    }
    for (port, (tx, rx)) in channels.into_iter().enumerate() {
        let s = Arc::clone(&switch);
        std::thread::Builder::new()
            .name(format!("send-{port}"))
            .spawn(move || s.send(port, tx))?;
        let s = Arc::clone(&switch);
        std::thread::Builder::new()
            .name(format!("recv-{port}"))
            .spawn(move || s.receive(port, rx))?;
    }
    eprintln!(
        "relaying {} ports ({}), {} ms one way between locations, {} % loss",
        switch.names.len(),
        config
            .ports
            .iter()
            .map(|(n, l)| format!("{n}={l}"))
            .collect::<Vec<_>>()
            .join(" "),
        config.delay.as_millis(),
        config.loss_percent
    );
    runtime.block_on(signals(&switch, config.cuts.as_deref(), hup))
}

/// Waits for SIGHUP (re-read the cuts, print the counts) and logs the counts every 10 s.
async fn signals(
    switch: &Switch,
    cuts: Option<&Path>,
    mut hup: tokio::signal::unix::Signal,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if let Some(file) = cuts {
                    match switch.load_cuts(file) {
                        Ok(n) => eprintln!("cuts: {n} port pairs"),
                        Err(e) => eprintln!("cuts unchanged: {e:#}"),
                    }
                }
                eprintln!("{}", switch.counts.line());
            }
            _ = tick.tick() => tracing::debug!(counts = %switch.counts.line(), "wan relay"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A switch of three ports, two at location a and one at b, with no sockets.
    fn switch(loss_percent: f64) -> Switch {
        Switch {
            names: vec!["p0".into(), "p1".into(), "p2".into()],
            locations: vec!["a".into(), "a".into(), "b".into()],
            outboxes: (0..3).map(|_| Outbox::default()).collect(),
            macs: Mutex::default(),
            cuts: RwLock::default(),
            delay: Duration::from_millis(20),
            loss_below: (loss_percent / 100.0 * 4_294_967_296.0) as u64,
            seq: AtomicU64::new(0),
            counts: Counts::default(),
        }
    }

    /// An Ethernet frame from MAC `…:src` to `dst` (a broadcast when 0xff).
    fn frame(dst: u8, src: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        let to = if dst == 0xff {
            [0xff; 6]
        } else {
            [2, 0, 0, 0, 0, dst]
        };
        f[0..6].copy_from_slice(&to);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
        f
    }

    /// How many frames wait on each port, and whether the latest on each is delayed.
    fn queued(s: &Switch) -> Vec<(usize, bool)> {
        s.outboxes
            .iter()
            .map(|o| {
                let q = o.queue.lock().unwrap();
                let delayed = q.iter().any(|Reverse((due, _, _))| {
                    due.saturating_duration_since(Instant::now()) > Duration::from_millis(10)
                });
                (q.len(), delayed)
            })
            .collect()
    }

    #[test]
    fn unknown_destinations_are_flooded_and_learned_ones_go_to_their_port_delayed_across_locations()
    {
        let s = switch(0.0);
        let mut rng = Rng::new();
        s.forward(0, &frame(0xff, 1), &mut rng);
        assert_eq!(queued(&s), vec![(0, false), (1, false), (1, true)]);
        // MAC 3 answers from port 2: it goes to port 0 alone, after the delay
        s.forward(2, &frame(1, 3), &mut rng);
        assert_eq!(queued(&s), vec![(1, true), (1, false), (1, true)]);
        // and MAC 1 reaches MAC 3 on port 2 only
        s.forward(0, &frame(3, 1), &mut rng);
        assert_eq!(queued(&s), vec![(1, true), (1, false), (2, true)]);
        assert_eq!(s.counts.delayed.load(Relaxed), 3);
    }

    #[test]
    fn cuts_drop_both_ways_and_full_loss_drops_only_across_locations() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cuts");
        std::fs::write(&file, "# region a and b\np2 p0\n").unwrap();
        let s = switch(0.0);
        assert_eq!(s.load_cuts(&file).unwrap(), 1);
        assert_eq!(
            std::fs::read_to_string(applied_file(&file)).unwrap(),
            "# region a and b\np2 p0\n"
        );
        let mut rng = Rng::new();
        s.forward(0, &frame(0xff, 1), &mut rng);
        s.forward(2, &frame(0xff, 3), &mut rng);
        // port 1 has one frame from each: port 2's crossed the WAN
        assert_eq!(queued(&s), vec![(0, false), (2, true), (0, false)]);
        assert_eq!(s.counts.cut.load(Relaxed), 2);

        std::fs::write(&file, "p0 p9\n").unwrap();
        assert!(s.load_cuts(&file).is_err(), "an unknown port was taken");
        std::fs::write(&file, "p0\n").unwrap();
        assert!(s.load_cuts(&file).is_err(), "half a pair was taken");

        let s = switch(100.0);
        for _ in 0..100 {
            s.forward(0, &frame(0xff, 1), &mut rng);
        }
        assert_eq!(queued(&s), vec![(0, false), (100, false), (0, false)]);
        assert_eq!(s.counts.lost.load(Relaxed), 100);
    }
}
