//! A region's cache invalidator (rung 8): one `crescendo invalidator` process per region,
//! on loopback address 127.0.10.1 of the region's namespace for `/health`, `/ready` and
//! `/metrics`. It runs with the region's node settings (`region.name`, the region's cache
//! ring and database copy), so the caller sets `up.node` for the region first.

use crate::launch::free_addr;
use crate::state::Role;
use std::time::Duration;

/// How long it may take to stop: it finishes the poll in hand.
const DRAIN: Duration = Duration::from_secs(5);

/// Starts the invalidator of the region `up.node` describes and records it.
///
/// # Errors
/// `up.node` names no region (`region.name`), or the process does not come up.
pub(crate) fn start(up: &mut crate::up::Up) -> anyhow::Result<()> {
    if up.node.region.name.trim().is_empty() {
        anyhow::bail!("an invalidator needs the nodes' region.name");
    }
    let env = up.node.to_env();
    let addr = free_addr([127, 0, 10, 1])?;
    up.progress(&format!(
        "starting the cache invalidator of region {} on {addr}",
        up.node.region.name
    ));
    up.start_node(Role::Invalidator, 1, addr, &env, DRAIN)?;
    Ok(())
}
