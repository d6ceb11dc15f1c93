//! Two regions (rung 8): every tier of the topology runs twice, once in each region, and
//! each region is a network namespace of its own, so the distance between regions is real.
//!
//! The namespaces (named `PREFIX-NAME`, the prefix made for the run):
//!
//! - `region-a`, `region-b`: a whole topology each (balancer, web nodes, cache ring,
//!   shared-state Redis, workers, PostgreSQL), started by a `crescendo up` that runs inside
//!   the namespace, on the namespace's own loopback addresses. Region A's primary takes
//!   every write; region B's database is a streaming replica of it across the WAN, which B's
//!   web nodes read, while their writes go to A's primary (remote transactions).
//! - `users-a`, `users-b`: clients near each region.
//! - `dns`: the geo DNS that sends each client to its nearest healthy region, and the
//!   witness of the automatic failover.
//! - `wan`: the relay every other namespace is linked to, which delays (and may drop)
//!   frames between locations: users-a sits with region A, users-b with region B, and the
//!   dns namespace in a third place.
//!
//! Addresses ([`public_ip`], [`private_ip`]): every namespace has one link to the WAN, with
//! an address on the public network `10.250.0.0/24`; the regions (and the witness) have one
//! on the private network `10.250.1.0/24` too, which the users' namespaces have no route to.
//! A region's public address serves the site; what must cross regions (the primary) listens
//! on its private address. No traffic to these addresses is ever sent from the machine's own
//! namespace, where it would leave the machine by the default route: every client runs
//! inside a namespace.

mod ops;
mod up;
pub mod watch;
pub mod witness;

pub use ops::{failover, prefix, site, status, wan};
pub(crate) use up::{down_regions, remove_namespaces};
pub use up::{rejoin, up};
pub(crate) use watch::{start as start_watch, stop_watchers};

use crate::model::Topology;
use crate::pg::region::Upstream;
use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};

/// The regions, in order: the first one's primary takes the writes.
pub const REGIONS: [&str; 2] = ["a", "b"];

/// A region's plan, in its own run directory (0600).
pub const PLAN_FILE: &str = "region-plan.json";

/// The private inter-region network.
pub const PRIVATE_NET: &str = "10.250.1.0/24";

/// A region's (or the dns namespace's, `n` = 2) address on the public network.
pub fn public_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, 0, 1 + n as u8)
}

/// A region's (or the witness's, `n` = 2) address on the private network.
pub fn private_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, 1, 1 + n as u8)
}

/// The address of the users' namespace near region `n`.
pub fn users_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, 0, 11 + n as u8)
}

/// Where the geo DNS answers.
pub fn dns_addr() -> SocketAddr {
    SocketAddr::from((public_ip(2), 53))
}

/// The `[regions]` table of a topology file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionsTier {
    /// The site's name, which the geo DNS answers. [default: conduit.crescendo.test]
    #[serde(default = "default_site")]
    pub site: String,
    /// One-way delay of the WAN between locations, ms. [default: 20]
    #[serde(default = "default_delay")]
    pub wan_delay_ms: u32,
    /// Share of frames the WAN drops between locations, percent. [default: 0]
    #[serde(default)]
    pub wan_loss_percent: f64,
    /// Region A's primary waits for region B's replica on each commit: a region failover
    /// then loses no acknowledged write, and every write pays a WAN round trip.
    #[serde(default)]
    pub synchronous: bool,
    /// How long resolvers may keep the geo DNS's answer, seconds. [default: 5]
    #[serde(default = "default_ttl")]
    pub dns_ttl_secs: u32,
    /// Region B promotes its replica on its own once region A's primary has been out of
    /// reach for 5 s both from B and from a witness in a third namespace (the dns one), so
    /// that a WAN cut between the regions alone never makes a second primary
    /// ([`watch`], [`witness`]). Off: only `crescendo failover --region b` promotes.
    #[serde(default)]
    pub auto_failover: bool,
}

fn default_site() -> String {
    "conduit.crescendo.test".into()
}

fn default_delay() -> u32 {
    20
}

fn default_ttl() -> u32 {
    5
}

impl RegionsTier {
    /// The rest of the topology fits two regions.
    pub(crate) fn check(&self, t: &Topology, origin: &str) -> anyhow::Result<()> {
        if t.postgres.clusters > 0 || t.postgres.synchronous {
            bail!(
                "{origin}: [regions] takes an unsharded database; regions.synchronous makes \
                 region B's replica synchronous"
            );
        }
        if t.edge.is_some() {
            bail!("{origin}: [regions] has no CDN edge yet: each region's balancer is public");
        }
        if !(0.0..=100.0).contains(&self.wan_loss_percent) || self.wan_delay_ms > 10_000 {
            bail!(
                "{origin}: regions.wan_loss_percent is 0..100, regions.wan_delay_ms at most 10000"
            );
        }
        if self.site.is_empty() || !self.site.contains('.') || self.dns_ttl_secs == 0 {
            bail!("{origin}: regions.site is a domain name and regions.dns_ttl_secs at least 1");
        }
        Ok(())
    }
}

/// What the `crescendo up` of one region is told (a 0600 file, since it holds the other
/// region's database passwords).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegionPlan {
    /// The region's name (`a`, `b`).
    pub name: String,
    /// Where the region serves the site.
    pub public: SocketAddr,
    /// Its address on the private inter-region network.
    pub private: Ipv4Addr,
    /// The private network, which its primary lets in.
    pub private_net: String,
    /// The primary in the other region that this one replicates and writes to; `None` in
    /// the region holding the primary.
    pub upstream: Option<Upstream>,
    /// This region's replica is the primary's synchronous standby.
    pub synchronous: bool,
    /// With `auto_failover`, in the region without the primary: the witness its watcher
    /// asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<witness::WitnessPlan>,
}

impl RegionPlan {
    /// Reads a plan file.
    ///
    /// # Errors
    /// Unreadable or not a plan.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// A region as the two-region topology's `state.json` lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RegionRecord {
    /// `a`, `b`.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its own run directory (its `state.json`, logs and settings).
    pub run_dir: std::path::PathBuf,
    /// Where it serves the site.
    pub public: SocketAddr,
}
