//! The topology file (`topologies/*.toml`): which tiers run, how many of each, and how they
//! fit together. [`Topology::load`] reads and checks one; `crate::up` starts it.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// A topology file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// A short name.
    pub name: String,
    /// Its rung on the ladder.
    pub rung: u8,
    /// What it shows, for `up`'s banner.
    #[serde(default)]
    pub description: String,
    /// The public address. [default: 127.0.0.1:8000]
    #[serde(default = "default_public")]
    pub public: SocketAddr,
    /// The web tier.
    pub web: WebTier,
    /// The database tier.
    pub postgres: PgTier,
    /// HAProxy in front of the web nodes; without it, the one web node is public.
    pub load_balancer: Option<LbTier>,
    /// Redis for state every web node shares (sessions, rate limits, idempotency records,
    /// read fences): the stateless rung.
    pub redis: Option<RedisTier>,
    /// Several Redis servers holding the read-through cache on a hash ring: the cache rung.
    pub cache: Option<CacheTier>,
    /// NATS JetStream for jobs, and worker processes taking them: the message-queue rung.
    pub queue: Option<QueueTier>,
    /// Where uploads and their variants are kept; without it, one directory on this machine
    /// that every process shares.
    pub blobs: Option<BlobsTier>,
    /// CDN edges (Varnish) in front of the balancer: the first holds the public address.
    pub edge: Option<EdgeTier>,
    /// Prometheus scraping every tier, with the exporters it reads (rung 2 and up, unless
    /// turned off here).
    #[serde(default)]
    pub monitoring: MonitoringTier,
    /// Two regions (rung 8), each running every tier above in a network namespace of its
    /// own, joined by a WAN with a delay; the first region's primary takes the writes.
    pub regions: Option<crate::regions::RegionsTier>,
    /// The file it was read from, when it was (a region's own `up` reads it again).
    #[serde(skip)]
    pub source: Option<std::path::PathBuf>,
}

/// Prometheus and its exporters.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringTier {
    /// Whether Prometheus runs; without it, from rung 2 up (a lone node at rung 1 has its
    /// own `/metrics` and nothing to gather).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// How often every target is scraped, a Prometheus duration (`5s`). [default: 5s, the
    /// tick on which Prometheus applies new targets anyway]
    #[serde(default = "default_scrape_interval")]
    pub scrape_interval: String,
    /// How long samples are kept, a Prometheus duration (`2h`). [default: 2h]
    #[serde(default = "default_retention")]
    pub retention: String,
}

impl Default for MonitoringTier {
    fn default() -> Self {
        Self {
            enabled: None,
            scrape_interval: default_scrape_interval(),
            retention: default_retention(),
        }
    }
}

fn default_scrape_interval() -> String {
    "5s".into()
}

fn default_retention() -> String {
    "2h".into()
}

/// Whether `text` is a Prometheus duration of one unit: digits, then `s`, `m`, `h` or `d`.
fn is_duration(text: &str) -> bool {
    duration_secs(text).is_some()
}

/// A Prometheus duration of one unit (`5s`, `2h`) in seconds; `None` when it is not one.
pub(crate) fn duration_secs(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n = &text[..text.len() - 1];
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse::<u64>().ok().filter(|n| *n > 0).map(|n| n * unit)
}

/// The CDN edges.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeTier {
    /// How many: each stands for a point of presence with an address of its own, and every
    /// write's purges reach each of them.
    #[serde(default = "one")]
    pub count: usize,
    /// Memory each keeps answers in, MiB.
    #[serde(default = "default_edge_mb")]
    pub memory_mb: u32,
    /// Each edge also serves HTTPS (hitch in front of it), with a certificate from an
    /// authority made for the run (`RUN_DIR/ca.pem`); the web nodes then mark session
    /// cookies `Secure` and send HSTS.
    #[serde(default)]
    pub tls: bool,
}

fn one() -> usize {
    1
}

fn default_edge_mb() -> u32 {
    128
}

/// The blob store.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobsTier {
    /// `s3`: an S3-compatible object server (`s3s-fs`) that every web node and worker
    /// reaches over HTTP, as they would reach S3 itself.
    pub backend: BlobsBackend,
}

/// Blob stores a topology can run.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BlobsBackend {
    /// An S3-compatible object server.
    S3,
}

/// The message queue and its workers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueTier {
    /// Worker processes (`crescendo worker`) at start, and the fewest the autoscaler keeps.
    pub workers: usize,
    /// The most worker processes the autoscaler starts; without it, the count stays fixed.
    #[serde(default)]
    pub max_workers: Option<usize>,
    /// Jobs waiting per worker process the autoscaler aims at.
    #[serde(default = "default_jobs_per_worker")]
    pub jobs_per_worker: u64,
    /// How long the backlog must stay small before a worker is removed, seconds.
    #[serde(default = "default_scale_down_after")]
    pub scale_down_after_secs: u64,
    /// How long the oldest job may wait before a worker is added whatever the depth, seconds.
    #[serde(default = "default_max_wait")]
    pub max_wait_secs: u64,
    /// Jobs each worker process runs at once.
    #[serde(default = "default_worker_concurrency")]
    pub concurrency: usize,
}

fn default_jobs_per_worker() -> u64 {
    4
}

fn default_scale_down_after() -> u64 {
    10
}

pub(crate) fn default_max_wait() -> u64 {
    30
}

fn default_worker_concurrency() -> usize {
    2
}

/// The cache servers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheTier {
    /// How many Redis servers share the keys.
    pub servers: usize,
    /// Most memory each uses, MiB (then it evicts least recently used keys).
    #[serde(default = "default_redis_mb")]
    pub maxmemory_mb: u32,
}

/// Redis.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTier {
    /// Most memory it uses, MiB (then it evicts least recently used keys).
    #[serde(default = "default_redis_mb")]
    pub maxmemory_mb: u32,
}

fn default_redis_mb() -> u32 {
    64
}

fn default_public() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}

/// Web nodes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebTier {
    /// How many at start.
    pub count: usize,
    /// The fewest the autoscaler keeps. [default: `count`]
    #[serde(default)]
    pub min_nodes: Option<usize>,
    /// The most the autoscaler starts; with it, `crescendo autoscale` sizes the tier by its
    /// request rate (it needs a load balancer and monitoring).
    #[serde(default)]
    pub max_nodes: Option<usize>,
    /// Requests per second per node the autoscaler aims at (needed with `max_nodes`).
    #[serde(default)]
    pub target_rps_per_node: Option<f64>,
    /// How far requests per node may stray from the target, as a fraction of it, before the
    /// count changes. [default: 0.1]
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// How long more nodes must stay recommended before they start, seconds. [default: 0]
    #[serde(default)]
    pub scale_up_window_secs: u64,
    /// How long fewer nodes must stay recommended before nodes stop, seconds.
    /// [default: 300, as Kubernetes' HPA]
    #[serde(default = "default_scale_down_window")]
    pub scale_down_window_secs: u64,
}

fn default_tolerance() -> f64 {
    0.1
}

fn default_scale_down_window() -> u64 {
    300
}

impl WebTier {
    /// The autoscaling this tier asks for (`max_nodes` set), checked; `origin` names the
    /// file in errors, and `interval_secs` is how often the autoscaler looks.
    ///
    /// # Errors
    /// No target, bounds that do not hold `count`, or a tolerance outside 0..1.
    pub fn scaling(
        &self,
        origin: &str,
        interval_secs: u64,
    ) -> anyhow::Result<Option<crate::hpa::WebScaling>> {
        let Some(max) = self.max_nodes else {
            return Ok(None);
        };
        let min = self.min_nodes.unwrap_or(self.count);
        if min == 0 || min > self.count || self.count > max || max > 250 {
            bail!("{origin}: web needs 1 <= min_nodes <= count <= max_nodes <= 250");
        }
        let Some(target) = self.target_rps_per_node.filter(|t| *t > 0.0) else {
            bail!("{origin}: web.max_nodes needs web.target_rps_per_node above 0");
        };
        if !(0.0..1.0).contains(&self.tolerance) {
            bail!("{origin}: web.tolerance is a fraction from 0 up to 1");
        }
        Ok(Some(crate::hpa::WebScaling {
            min,
            max,
            target_rps_per_node: target,
            tolerance: self.tolerance,
            scale_up_window_secs: self.scale_up_window_secs,
            scale_down_window_secs: self.scale_down_window_secs,
            interval_secs: interval_secs.max(1),
        }))
    }
}

/// PostgreSQL.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgTier {
    /// Clusters the data is sharded over (rung 10), each a primary of its own, plus a
    /// catalogue database holding the shard map and the username and email directory;
    /// 0: unsharded (one primary, with `replicas`).
    #[serde(default)]
    pub clusters: usize,
    /// Of `clusters`, how many the first shard map leaves empty (the last ones): they stand
    /// by for `crescendo reshard --add`.
    #[serde(default)]
    pub spare: usize,
    /// Streaming replicas of the primary (sharded: of each cluster's primary).
    #[serde(default)]
    pub replicas: usize,
    /// The primary (sharded: each cluster's) waits for one replica on each commit
    /// (`ANY 1 (…)`).
    #[serde(default)]
    pub synchronous: bool,
}

/// HAProxy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbTier {
    /// Pin each browser to one web node with a cookie (the stateful rung).
    #[serde(default)]
    pub sticky: bool,
}

impl Topology {
    /// How the autoscaler sizes the web tier, when it does: it looks once per scrape.
    ///
    /// # Errors
    /// As [`WebTier::scaling`].
    pub fn web_scaling(&self) -> anyhow::Result<Option<crate::hpa::WebScaling>> {
        let interval = duration_secs(&self.monitoring.scrape_interval).unwrap_or(5);
        self.web.scaling(&self.name, interval)
    }

    /// The web tier's autoscaling holds together and has what it reads and acts through.
    fn check_web_scaling(&self, origin: &str) -> anyhow::Result<()> {
        if self.web.max_nodes.is_none() {
            return Ok(());
        }
        self.web.scaling(origin, 1)?;
        if self.load_balancer.is_none() || self.monitoring().is_none() {
            bail!(
                "{origin}: web.max_nodes needs a [load_balancer] and monitoring (the autoscaler \
                 reads the balancer's request rate from Prometheus)"
            );
        }
        Ok(())
    }

    /// The monitoring this topology runs: `None` when Prometheus is off.
    pub fn monitoring(&self) -> Option<&MonitoringTier> {
        self.monitoring
            .enabled
            .unwrap_or(self.rung >= 2)
            .then_some(&self.monitoring)
    }

    /// Reads and checks a topology file.
    ///
    /// # Errors
    /// Unreadable, not TOML, an unknown key, or tiers that do not fit together.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut t = Self::parse(&text, &path.display().to_string())?;
        t.source = Some(path.to_path_buf());
        Ok(t)
    }

    /// Parses and checks a topology's text; `origin` names it in errors.
    ///
    /// # Errors
    /// As [`Topology::load`].
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let t: Topology =
            toml::from_str(text).with_context(|| format!("{origin} is not a valid topology"))?;
        t.check_web_scaling(origin)?;
        if t.web.count == 0 {
            bail!("{origin}: web.count must be at least 1");
        }
        if t.load_balancer.is_none() && t.web.count > 1 {
            bail!("{origin}: {} web nodes need a [load_balancer]", t.web.count);
        }
        if let Some(e) = &t.edge {
            if t.load_balancer.is_none() {
                bail!("{origin}: an [edge] sits in front of a [load_balancer]");
            }
            if e.count == 0 || e.count > 16 {
                bail!("{origin}: edge.count must be between 1 and 16");
            }
        }
        let m = &t.monitoring;
        if !is_duration(&m.scrape_interval) || !is_duration(&m.retention) {
            bail!(
                "{origin}: monitoring.scrape_interval and monitoring.retention are durations \
                 such as \"5s\" or \"2h\""
            );
        }
        if let Some(r) = &t.regions {
            r.check(&t, origin)?;
        }
        if t.postgres.spare > 0 && t.postgres.spare >= t.postgres.clusters {
            bail!("{origin}: postgres.spare must leave at least one cluster holding shards");
        }
        if t.postgres.clusters > 64 {
            bail!("{origin}: postgres.clusters must be at most 64");
        }
        if t.postgres.synchronous && t.postgres.replicas == 0 {
            bail!("{origin}: postgres.synchronous needs replicas");
        }
        if t.queue
            .as_ref()
            .is_some_and(|q| q.workers == 0 || q.workers > 200 || q.concurrency == 0)
        {
            bail!(
                "{origin}: queue.workers must be between 1 and 200, queue.concurrency at least 1"
            );
        }
        if t.cache
            .as_ref()
            .is_some_and(|c| c.servers == 0 || c.servers > 200)
        {
            bail!("{origin}: cache.servers must be between 1 and 200");
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn the_topology_files_load_and_bad_ones_say_why() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../topologies");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let t =
                    Topology::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                assert!(
                    path.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(&format!("{:02}-", t.rung))
                );
                seen += 1;
            }
        }
        assert!(seen >= 3);
        let bad = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            bad.path(),
            "name = 'x'\nrung = 3\n[web]\ncount = 2\n[postgres]\n",
        )
        .unwrap();
        assert!(format!("{:#}", Topology::load(bad.path()).unwrap_err()).contains("load_balancer"));
        std::fs::write(bad.path(), "name = 'x'\nrung = 3\nwebs = 1\n").unwrap();
        assert!(format!("{:#}", Topology::load(bad.path()).unwrap_err()).contains("webs"));
    }

    #[test]
    fn monitoring_runs_from_rung_two_unless_turned_off_and_checks_its_durations() {
        let base = "name = 'x'\nweb = { count = 1 }\n[postgres]\n";
        let t =
            |extra: &str, rung: u8| Topology::parse(&format!("rung = {rung}\n{base}{extra}"), "t");
        assert!(t("", 1).unwrap().monitoring().is_none());
        let on = t("", 2).unwrap();
        let m = on.monitoring().unwrap();
        assert_eq!(
            (m.scrape_interval.as_str(), m.retention.as_str()),
            ("5s", "2h")
        );
        assert!(
            t("[monitoring]\nenabled = false\n", 7)
                .unwrap()
                .monitoring()
                .is_none()
        );
        assert!(
            t("[monitoring]\nenabled = true\n", 1)
                .unwrap()
                .monitoring()
                .is_some()
        );
        let bad = t("[monitoring]\nretention = 'forever'\n", 3).unwrap_err();
        assert!(
            format!("{bad:#}").contains("monitoring.retention"),
            "{bad:#}"
        );
        assert!(t("[monitoring]\nscrape_interval = '0s'\n", 3).is_err());
        assert_eq!(duration_secs("2m"), Some(120));
        assert_eq!(duration_secs("1s"), Some(1));
        assert_eq!(duration_secs("s"), None);
    }

    #[test]
    fn web_autoscaling_takes_its_settings_with_hpa_defaults_and_says_what_is_missing() {
        let t = |web: &str, rest: &str| {
            Topology::parse(
                &format!("name = 'x'\nrung = 3\n[web]\ncount = 2\n{web}\n[postgres]\n{rest}"),
                "t",
            )
        };
        let lb = "[load_balancer]\n";
        let fixed = t("", lb).unwrap();
        assert_eq!(fixed.web_scaling().unwrap(), None);
        let on = t("max_nodes = 4\ntarget_rps_per_node = 150", lb).unwrap();
        let s = on.web_scaling().unwrap().unwrap();
        assert_eq!((s.min, s.max, s.target_rps_per_node), (2, 4, 150.0));
        assert_eq!(
            (
                s.tolerance,
                s.scale_up_window_secs,
                s.scale_down_window_secs,
                s.interval_secs
            ),
            (0.1, 0, 300, 5)
        );
        let short = t(
            "min_nodes = 1\nmax_nodes = 3\ntarget_rps_per_node = 50\ntolerance = 0.2\n\
             scale_up_window_secs = 2\nscale_down_window_secs = 10",
            "[load_balancer]\n[monitoring]\nscrape_interval = '1s'\n",
        )
        .unwrap()
        .web_scaling()
        .unwrap()
        .unwrap();
        assert_eq!(
            (short.min, short.tolerance, short.interval_secs),
            (1, 0.2, 1)
        );
        assert_eq!(
            (short.scale_up_window_secs, short.scale_down_window_secs),
            (2, 10)
        );
        let err = |web: &str, rest: &str| format!("{:#}", t(web, rest).unwrap_err());
        assert!(err("max_nodes = 4", lb).contains("target_rps_per_node"));
        assert!(err("max_nodes = 1\ntarget_rps_per_node = 9", lb).contains("min_nodes"));
        assert!(
            err("min_nodes = 3\nmax_nodes = 4\ntarget_rps_per_node = 9", lb).contains("min_nodes")
        );
        assert!(
            err(
                "max_nodes = 4\ntarget_rps_per_node = 9\ntolerance = 1.5",
                lb
            )
            .contains("tolerance")
        );
        assert!(err("max_nodes = 4\ntarget_rps_per_node = 9", "").contains("load_balancer"));
        assert!(
            err(
                "max_nodes = 4\ntarget_rps_per_node = 9",
                "[load_balancer]\n[monitoring]\nenabled = false\n"
            )
            .contains("monitoring")
        );
    }
}
