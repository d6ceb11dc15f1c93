//! `crescendo scale web=N`: sets the number of web nodes behind the balancer at runtime.

use crate::state::{Role, State};
use crate::web;
use anyhow::bail;
use std::path::Path;

/// Sets the number of web nodes behind the balancer, adding or removing nodes without
/// dropping requests. Returns the web nodes' names afterwards.
///
/// # Errors
/// No topology runs from `run_dir`, it has no load balancer, or a node does not come up.
pub fn scale(run_dir: &Path, web: usize, progress: fn(&str)) -> anyhow::Result<Vec<String>> {
    if web == 0 {
        bail!("at least one web node must run");
    }
    // absolute: HAProxy's configuration names its admin socket by this path
    let run_dir = &run_dir.canonicalize()?;
    let mut state = State::read(run_dir)?;
    web::prune(run_dir, &mut state)?;
    loop {
        let names = state.names(Role::Web);
        match names.len().cmp(&web) {
            std::cmp::Ordering::Less => {
                web::add(run_dir, &mut state, progress)?;
            }
            std::cmp::Ordering::Greater => web::remove(
                run_dir,
                &mut state,
                names.last().expect("more than one"),
                progress,
            )?,
            std::cmp::Ordering::Equal => return Ok(names),
        }
    }
}
