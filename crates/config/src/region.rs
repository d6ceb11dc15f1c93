//! The `region` section: which region (rung 8's data centres) a process belongs to, and how
//! its `crescendo invalidator` keeps the region's cache in step with writes made elsewhere.

use serde::{Deserialize, Serialize};

/// The region a node runs in. With a name, every write also records the cache keys it
/// invalidated in the cross-region invalidation stream (a table on the primary), and each
/// region runs one `crescendo invalidator` that applies the other regions' rows to its own
/// cache tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegionSettings {
    /// This node's region, e.g. `a`; empty: no regions (nothing is recorded).
    pub name: String,
    /// How often the invalidator reads the stream, ms.
    pub poll_ms: u64,
    /// How long the invalidator may be unable to read the stream, or see its replica not
    /// receiving WAL, before it empties the region's cache, ms; while that lasts it empties
    /// it again every this often.
    pub lost_after_ms: u64,
    /// How long a gap in the stream's sequence numbers is waited for (a row whose
    /// transaction took its number before a higher one but commits after it), ms.
    pub gap_wait_ms: u64,
    /// Rows older than this are deleted by the invalidator that reads the primary, seconds.
    pub keep_secs: u64,
}

impl Default for RegionSettings {
    fn default() -> Self {
        Self {
            name: String::new(),
            poll_ms: 20,
            lost_after_ms: 2_000,
            gap_wait_ms: 5_000,
            keep_secs: 3_600,
        }
    }
}
