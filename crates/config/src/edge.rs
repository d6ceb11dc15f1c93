//! The `edge` section: the CDN edge caches (rung 6) in front of the balancer, as the web
//! nodes see them.

use crate::Secret;
use serde::{Deserialize, Serialize};

/// The edge caches in front of the service: what the origin lets them keep, and where a
/// write's purges go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeSettings {
    /// Each edge's private purge listener, e.g. `http://127.0.0.1:8091`; every acknowledged
    /// write soft-purges its surrogate keys on each of them. Empty: no edge to purge.
    pub purge_urls: Vec<String>,
    /// The token a purge carries (`X-Purge-Token`); each edge refuses purges without it.
    pub purge_token: Option<Secret>,
    /// How long an edge may keep an anonymous page or API read, seconds
    /// (`Surrogate-Control: max-age`); purges end it sooner.
    pub ttl_secs: u64,
    /// How long a browser may keep an anonymous page or API read, seconds
    /// (`Cache-Control: public, max-age`).
    pub browser_ttl_secs: u64,
    /// How long after a write its purges are sent a second time, milliseconds: by then
    /// every node's near cache has dropped the old entry, so an edge that refetched in
    /// between from a node that had not yet heard of the write is corrected. The writing
    /// node sends it; the write's outbox entry stays leased by that node for this plus 3 s,
    /// after which any relay publishes it as an `edge-purge` job (the node died, or an edge
    /// missed the purge).
    pub purge_settle_ms: u64,
    /// How often each web node tells every edge that it is still heard, milliseconds (a
    /// purge of no keys); 0: never. An edge that hears from no node for a few seconds while
    /// the origin answers may have missed purges, and drops everything before it serves
    /// again (see `crates/topology/src/edge.vcl`).
    pub heartbeat_ms: u64,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            purge_urls: Vec::new(),
            purge_token: None,
            ttl_secs: 60,
            browser_ttl_secs: 5,
            purge_settle_ms: 1_000,
            heartbeat_ms: 1_000,
        }
    }
}
