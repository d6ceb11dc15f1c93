//! `crescendo restart`: a rolling restart of the web tier.

use crate::state::{Role, State};
use crate::web;
use std::path::Path;

/// Replaces every web node, one at a time: a new node starts and takes traffic before an
/// old one leaves the balancer and drains. Returns the new nodes' names.
///
/// # Errors
/// As [`crate::scale`].
pub fn restart_web(run_dir: &Path, progress: fn(&str)) -> anyhow::Result<Vec<String>> {
    // absolute: HAProxy's configuration names its admin socket by this path
    let run_dir = &run_dir.canonicalize()?;
    let mut state = State::read(run_dir)?;
    web::prune(run_dir, &mut state)?;
    let mut new = Vec::new();
    for name in state.names(Role::Web) {
        new.push(web::add(run_dir, &mut state, progress)?);
        web::remove(run_dir, &mut state, &name, progress)?;
    }
    Ok(new)
}
