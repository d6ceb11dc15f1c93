//! The sections of the settings tree (`http`, `store`, `cache`, `queue`, `blobs`, `sessions`,
//! `auth`, `web`, `log`), each with its defaults.

use crate::Secret;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub use crescendo_telemetry::LogFormat;

/// The web pages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// Where pages link the stylesheet and script from: empty for this site, or a CDN
    /// origin such as `https://cdn.example.com` (it must serve `/assets/…` from this site).
    pub asset_base_url: String,
    /// Mark the session cookie `Secure` and send `Strict-Transport-Security` on every answer
    /// (the site is served over HTTPS).
    pub secure_cookies: bool,
}

/// The HTTP listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address to listen on; port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// Address of the operators' listener: `/metrics` (and any admin endpoint) is served
    /// there only, beside `/health` and `/ready`; the public listener answers 404 for it.
    /// Keep it on loopback or a private network; port 0 picks a free port (printed at start
    /// as `ops listening on http://ADDR`).
    pub ops_listen: SocketAddr,
    /// Largest request body accepted, in bytes (larger: 413).
    pub body_limit_bytes: usize,
    /// A request taking longer is answered 503; a read is dropped, a write runs to its end.
    pub request_timeout_secs: u64,
    /// How long a connection may wait for the headers of its next request (idle
    /// keep-alive, then the headers themselves) before the node closes it; 0: no limit.
    /// Longer than HAProxy may leave a connection to a node idle (20 s), so the balancer,
    /// never the node, closes an idle connection, and longer than clients keep theirs.
    pub idle_timeout_secs: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
    /// On SIGTERM/SIGINT, how long `/ready` fails before the listener closes, so a load
    /// balancer's health check sees the node leave before its connections are refused.
    pub drain_delay_ms: u64,
    /// Largest `limit` a list request may ask for (larger: 422).
    pub max_page_size: u32,
    /// Proxies whose `X-Forwarded-For` is believed (addresses or CIDR blocks, e.g.
    /// `["127.0.0.1", "10.0.0.0/8"]`): a request whose peer is one of them is taken to come
    /// from the right-most forwarded address that is not itself trusted. Empty: the peer
    /// address is the client, whatever the headers say.
    pub trusted_proxies: Vec<IpBlock>,
    /// Requests a node serves at once; beyond it, a request is answered at once with 503
    /// and `Retry-After` instead of queueing without bound (load shedding). `/health` and
    /// `/ready` are not counted. At rungs 3+ HAProxy sends a node at most this many
    /// requests and queues the rest (`maxconn` per server). 0: no limit.
    pub max_in_flight: usize,
    /// Connections a node keeps open at once; beyond it, new connections wait in the
    /// kernel's accept backlog (no memory is spent on them) until one closes. 0: no limit.
    pub max_connections: usize,
    /// How long a request's headers may take to arrive once its first byte has (slow
    /// clients); then the node closes the connection. The wait before that first byte is
    /// `idle_timeout_secs`. 0: no limit of its own.
    pub header_read_timeout_secs: u64,
    /// How long a request's body may take to arrive, counted from the end of its headers;
    /// then the request is answered 408 and its slot and memory released. Shorter than
    /// `request_timeout_secs`, so a slow client gets 408 rather than 503. 0: no limit of
    /// its own.
    pub body_read_timeout_secs: u64,
}

/// An IP address block: an address and a prefix length (`10.0.0.0/8`, `::1/128`). Written
/// without a prefix it is the one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpBlock {
    addr: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// Whether `ip` lies in this block. An IPv4 address written as IPv6 (`::ffff:a.b.c.d`)
    /// is compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl From<IpAddr> for IpBlock {
    fn from(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }
}

impl std::str::FromStr for IpBlock {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an IP address or CIDR block (e.g. 10.0.0.0/8)");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let block = IpBlock::from(addr.parse::<IpAddr>().map_err(|_| bad())?);
        match prefix {
            None => Ok(block),
            Some(p) if p <= block.prefix => Ok(Self { prefix: p, ..block }),
            Some(_) => Err(bad()),
        }
    }
}

impl TryFrom<String> for IpBlock {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<IpBlock> for String {
    fn from(b: IpBlock) -> Self {
        format!("{}/{}", b.addr, b.prefix)
    }
}

/// Which database and how to use it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite` (the single-server rung) or `postgres` (rungs 2 and up).
    pub backend: StoreBackend,
    /// With `postgres`: the primary, e.g. `postgres://crescendo@10.0.0.5:5432/crescendo`.
    pub postgres_url: String,
    /// With `postgres`: streaming replicas of the primary, for reads, e.g.
    /// `["postgres://crescendo@10.0.0.6:5432/crescendo"]` (as an environment variable, the
    /// same TOML array syntax). With `postgres_shards`: the catalogue's replicas.
    pub postgres_replica_urls: Vec<String>,
    /// With `postgres`, sharded (rung 10): every cluster as `NAME=URL` (its primary), e.g.
    /// `["c1=postgres://crescendo@10.0.0.5/crescendo", "c2=postgres://crescendo@10.0.0.6/crescendo"]`;
    /// `postgres_url` is then the catalogue database (the shard map and the directory of
    /// usernames and emails). Empty: one cluster, `postgres_url`.
    pub postgres_shards: Vec<String>,
    /// With `postgres_shards`: clusters the first shard map gives no logical shard (they
    /// stand by, connected and migrated, until `crescendo reshard --add` moves shards to
    /// them), e.g. `["c3"]`.
    pub postgres_spare_shards: Vec<String>,
    /// With `postgres_shards`: streaming replicas of the clusters, each as `NAME=URL` (a
    /// cluster may have several), e.g. `["c1=postgres://crescendo@10.0.0.7/crescendo"]`. A
    /// cluster's reads go to its replicas as at rung 4, fenced by that cluster's own
    /// positions, and `crescendo failover --cluster NAME` promotes one.
    pub postgres_shard_replicas: Vec<String>,
    /// With `postgres`: most connections in each server's pool.
    pub postgres_max_connections: u32,
    /// With `postgres`: how long a query waits for a free (or new) connection before the
    /// request fails with 503.
    pub postgres_acquire_timeout_ms: u64,
    /// A replica further behind the primary than this gets no reads (and a user's own
    /// writes are never read from a replica that has not replayed them).
    pub replica_max_lag_ms: u64,
    /// How often the primary and replicas are checked (role, replay position, lag).
    pub replica_check_interval_ms: u64,
    /// While the primary is unreachable (a WAN cut, a lost region), serve reads from a
    /// replica whatever its lag or the reader's fence, marked stale, and fail writes within
    /// the monitor's bound; off: such reads go to the primary (rung 4).
    pub serve_stale_reads: bool,
    /// SQLite reader connections.
    pub sqlite_readers: usize,
    /// SQLite commit durability: `full` (survives power loss) or `normal` (survives a crash
    /// of the process; the last commits may be lost on power loss; faster writes).
    pub sqlite_synchronous: SqliteSync,
    /// With `postgres_shards` (feeds by fan-out on write): an author with more followers
    /// than this is a celebrity, whose new articles are not written into each follower's
    /// timeline but merged into feeds at read time.
    pub celebrity_followers: u64,
}

/// Database backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// SQLite in `data_dir/crescendo.db`.
    Sqlite,
    /// A PostgreSQL server at `store.postgres_url`.
    Postgres,
}

/// SQLite `synchronous` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// fsync every commit.
    Full,
    /// fsync at checkpoints.
    Normal,
}

/// The read-through cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// `memory` (in-process: one node's own), `redis` (a ring of Redis servers shared by
    /// every web node) or `none`.
    pub backend: CacheBackend,
    /// Bound of the in-process byte cache (`memory`).
    pub memory_max_bytes: u64,
    /// Bound of each process's local (near) tier of decoded values, weighed by encoded size.
    pub local_max_bytes: u64,
    /// Lifetime of a near-tier entry. With `redis`, a near hit is either checked against the
    /// entry's version in Redis or vouched for by the servers' change reports
    /// (`redis_tracking`), so this bounds memory, not staleness.
    pub local_ttl_secs: u64,
    /// Lifetime of cached entries (with ±10% jitter).
    pub ttl_secs: u64,
    /// Lifetime of cached "not found" answers.
    pub negative_ttl_secs: u64,
    /// The cache servers (`redis`), e.g. `["redis://127.0.0.1:6379", …]`. They must hold
    /// nothing else: a server that rejoins the ring after an outage is flushed.
    pub redis_urls: Vec<String>,
    /// Bound on each cache command and check (`redis`): a lookup or fill slower than this
    /// falls back to the store; an invalidation slower than this, or three checks in a row,
    /// take the server out of the ring until it answers again.
    pub redis_timeout_ms: u64,
    /// How often each cache server is checked (`redis`).
    pub redis_check_interval_ms: u64,
    /// With `redis`: each server reports every change to a cache key to every web node
    /// (Redis client tracking, one connection per server and node), so a near hit is served
    /// with no round trip while every report channel is up, except to requests whose user
    /// wrote recently (they still check the version). Readers on other nodes then see a
    /// write once its report arrives. `false`: every near hit checks the version in Redis.
    pub redis_tracking: bool,
    /// How far ahead of another web node's clock a node's clock may be, ms. With
    /// `redis_tracking`, a request whose user wrote recently trusts near copies once this
    /// node has had every change report sent before the write ended plus this margin; until
    /// then it checks each copy's version. Clocks kept by NTP are within a few ms.
    pub clock_skew_ms: u64,
}

/// Cache backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// In-process (moka).
    Memory,
    /// A consistent-hash ring of Redis servers, shared by every web node, with a near tier
    /// in each node.
    Redis,
    /// No cache: every read goes to the store. For several web nodes without a shared
    /// cache tier, where one node's cache could not see another node's writes.
    None,
}

/// The job queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// `sqlite` (the job table in the database file) or `nats` (NATS JetStream, shared by
    /// every web node and worker).
    pub backend: QueueBackend,
    /// With `nats`: the server, e.g. `nats://10.0.0.9:4222`.
    pub nats_url: String,
    /// A job's lease, seconds: how long a claim holds a job unless extended. A worker extends
    /// it every third of a lease while the job runs, so a job may take longer; this is how
    /// soon the job of a worker that died (or lost the queue) goes to another.
    pub lease_secs: u64,
    /// Failed deliveries before a job becomes a dead letter.
    pub max_attempts: u32,
    /// Workers in this process (image variants); 0 runs none here.
    pub workers: usize,
}

/// Queue backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    /// The job table in the SQLite database.
    Sqlite,
    /// NATS JetStream.
    Nats,
}

/// Uploaded files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobSettings {
    /// `local`: files under `dir` (one machine); `s3`: objects in an S3 bucket, shared by
    /// every node and worker.
    pub backend: BlobBackend,
    /// Directory for `local`; empty means `data_dir/blobs`.
    pub dir: PathBuf,
    /// With `s3`: the server's URL, e.g. `http://10.0.0.9:9000` for an S3-compatible
    /// server (path-style requests); empty means AWS S3 itself.
    pub s3_endpoint: String,
    /// With `s3`: the bucket (it must exist).
    pub s3_bucket: String,
    /// With `s3`: the region requests are signed for.
    pub s3_region: String,
    /// With `s3`: the access key ID; empty means the environment's AWS credentials.
    pub s3_access_key: String,
    /// With `s3`: the secret key (better set as `CRESCENDO_BLOBS__S3_SECRET_KEY`).
    pub s3_secret_key: Option<Secret>,
    /// With `s3`: the bound on one request, in milliseconds (a few retries follow).
    pub s3_timeout_ms: u64,
    /// Base URL of uploaded images and their variants: `/media` (this server serves them),
    /// or the URL of a CDN in front of it.
    pub media_base_url: String,
    /// Largest upload, in bytes (larger ones are refused with 413).
    pub max_upload_bytes: u64,
    /// Most pixels (width × height) an uploaded image may have (more are refused with 422,
    /// read from the header, so a decompression bomb is never decoded).
    pub max_upload_pixels: u64,
}

/// Blob backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    /// A local directory.
    Local,
    /// An S3 bucket (AWS or an S3-compatible server).
    S3,
}

/// Small shared state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// `memory` (in-process: one node's own) or `redis` (shared by every node).
    pub backend: SessionBackend,
    /// With `redis`: the server, e.g. `redis://10.0.0.7:6379`.
    pub redis_url: String,
    /// With `memory`: the most entries kept (web sessions, sign-in counters, idempotency
    /// records, read fences). A new entry in a full store drops the expired ones first,
    /// then the least recently used, so active users are the last to be signed out.
    pub max_entries: usize,
}

/// Session backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionBackend {
    /// In-process.
    Memory,
    /// A Redis server at `sessions.redis_url`.
    Redis,
}

/// Tokens and passwords.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// HS256 key for API tokens (at least 32 characters). Unset: one is generated on first
    /// start and kept in `data_dir/jwt.key`. Every node of a topology must share one.
    pub jwt_secret: Option<Secret>,
    /// How long an API token is valid.
    pub token_ttl_secs: u64,
    /// Password hashes computed at once; each takes `argon2_memory_kib` of memory.
    pub hash_concurrency: usize,
    /// Argon2id memory cost in KiB (OWASP's minimum for argon2id is 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Failed sign-ins one client address may make for one account in
    /// `signin_window_secs`; beyond them that pair gets 429 (the account's owner elsewhere
    /// does not).
    pub signin_max_failures_per_account_client: u64,
    /// Failed sign-ins one client address may make in `signin_window_secs`, over all
    /// accounts (more than per account: many people may share one address).
    pub signin_max_failures_per_client: u64,
    /// How long a failed sign-in counts; the counts start again after it.
    pub signin_window_secs: u64,
}

/// Logs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// Filter when `RUST_LOG` is unset, in `tracing_subscriber::EnvFilter` syntax.
    pub filter: String,
    /// A file the process writes its logs to, rotating it itself by size (`FILE.1` newest
    /// … `FILE.{keep}` oldest); unset: standard error. `crescendo up` gives each of its own
    /// processes `RUN_DIR/NAME.log` in the JSON format.
    pub file: Option<PathBuf>,
    /// The size at which `file` is rotated, in bytes.
    pub max_bytes: u64,
    /// How many rotated files of `file` are kept (0: none).
    pub keep: usize,
}

impl Log {
    /// Where [`crescendo_telemetry::init_logs_to`] writes: `file`, if set, with its bounds.
    pub fn file(&self) -> Option<crescendo_telemetry::LogFile> {
        self.file.as_ref().map(|path| crescendo_telemetry::LogFile {
            path: path.clone(),
            max_bytes: self.max_bytes,
            keep: self.keep,
        })
    }
}

impl Default for Http {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            idle_timeout_secs: 75,
            shutdown_grace_secs: 30,
            drain_delay_ms: 0,
            max_page_size: 100,
            trusted_proxies: Vec::new(),
            max_in_flight: 512,
            max_connections: 4096,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 20,
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sqlite,
            postgres_url: String::new(),
            postgres_replica_urls: Vec::new(),
            postgres_shards: Vec::new(),
            postgres_spare_shards: Vec::new(),
            postgres_shard_replicas: Vec::new(),
            postgres_max_connections: 16,
            postgres_acquire_timeout_ms: 2000,
            replica_max_lag_ms: 1000,
            replica_check_interval_ms: 200,
            serve_stale_reads: false,
            sqlite_readers: 4,
            sqlite_synchronous: SqliteSync::Full,
            celebrity_followers: 1_000,
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            backend: CacheBackend::Memory,
            memory_max_bytes: 8 * 1024 * 1024,
            local_max_bytes: 24 * 1024 * 1024,
            local_ttl_secs: 60,
            ttl_secs: 300,
            negative_ttl_secs: 30,
            redis_urls: Vec::new(),
            redis_timeout_ms: 500,
            redis_check_interval_ms: 200,
            redis_tracking: true,
            clock_skew_ms: 50,
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            backend: QueueBackend::Sqlite,
            nats_url: String::new(),
            lease_secs: 15,
            max_attempts: 5,
            workers: 2,
        }
    }
}

impl Default for BlobSettings {
    fn default() -> Self {
        Self {
            backend: BlobBackend::Local,
            dir: PathBuf::new(),
            s3_endpoint: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".into(),
            s3_access_key: String::new(),
            s3_secret_key: None,
            s3_timeout_ms: 10_000,
            media_base_url: "/media".into(),
            max_upload_bytes: 10 * 1024 * 1024,
            max_upload_pixels: 50_000_000,
        }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            backend: SessionBackend::Memory,
            redis_url: String::new(),
            max_entries: 100_000,
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            token_ttl_secs: 30 * 24 * 3600,
            hash_concurrency: 1,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            signin_max_failures_per_account_client: 10,
            signin_max_failures_per_client: 50,
            signin_window_secs: 15 * 60,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".into(),
            file: None,
            max_bytes: 10 * 1024 * 1024,
            keep: 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IpBlock;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_blocks_hold_the_addresses_of_their_prefix() {
        let one: IpBlock = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!(one.contains(ip("::ffff:127.0.0.1")), "IPv4 written as IPv6");
        let net: IpBlock = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.200.3.4")) && !net.contains(ip("11.0.0.1")));
        let all: IpBlock = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.0.2.1")) && !all.contains(ip("2001:db8::1")));
        let v6: IpBlock = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert_eq!(String::from(net), "10.0.0.0/8");
    }

    #[test]
    fn ip_blocks_refuse_what_is_not_an_address_or_prefix() {
        for bad in [
            "",
            "localhost",
            "10.0.0.0/33",
            "10.0.0.0/x",
            "::/129",
            "1.2.3.4/",
        ] {
            assert!(bad.parse::<IpBlock>().is_err(), "{bad}");
        }
    }
}
