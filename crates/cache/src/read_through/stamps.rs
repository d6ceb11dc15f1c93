//! [`Stamp`]s: how a value derived from several cached keys tells whether it is still valid.

use super::{ReadThrough, stripe_of};
use std::sync::atomic::Ordering;

/// A stamp of one key at one moment: its local generation, its shared version, and the
/// count of changes to it the shared tier reported, with the tier's trust epoch (a value
/// hydrated from near copies served unchecked is stale if a report comes after). A value
/// derived from several cached keys (a hydrated page of a list, say) takes stamps of its
/// keys *before* reading them ([`ReadThrough::stamps`]), and stays valid while
/// [`ReadThrough::stamps_current`] says every stamp is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    key: String,
    stripe: u32,
    generation: u64,
    version: u64,
    reported: u64,
    epoch: Option<u64>,
}

impl ReadThrough {
    /// Stamps of `keys` as they are now; take them before reading the keys.
    pub async fn stamps(&self, keys: Vec<String>) -> Vec<Stamp> {
        let epoch = self.shared.trust_epoch();
        let mut stamps: Vec<Stamp> = keys
            .into_iter()
            .map(|key| {
                let stripe = stripe_of(&key);
                let generation = self.generations[stripe].load(Ordering::Acquire);
                Stamp {
                    key,
                    stripe: stripe as u32,
                    generation,
                    version: 0,
                    reported: self.reported[stripe].load(Ordering::Acquire),
                    epoch,
                }
            })
            .collect();
        if self.versioned {
            let keys: Vec<&str> = stamps.iter().map(|s| s.key.as_str()).collect();
            // a failure leaves versions at 0, which never counts as current
            if let Ok(versions) = self.shared.versions(&keys).await {
                for (s, v) in stamps.iter_mut().zip(versions) {
                    s.version = v;
                }
            }
        }
        stamps
    }

    /// Whether no key stamped in `stamps` has been invalidated since (by this process or,
    /// with a versioned shared tier, by any), and no change to one was reported since.
    pub async fn stamps_current(&self, stamps: &[Stamp]) -> bool {
        let epoch = self.shared.trust_epoch();
        let local = stamps.iter().all(|s| self.unchanged(s, epoch));
        if !local || !self.versioned {
            return local;
        }
        let keys: Vec<&str> = stamps.iter().map(|s| s.key.as_str()).collect();
        match self.shared.versions(&keys).await {
            Ok(versions) => {
                versions.len() == stamps.len()
                    && stamps
                        .iter()
                        .zip(versions)
                        .all(|(s, v)| v != 0 && v == s.version)
            }
            Err(_) => false,
        }
    }

    /// [`ReadThrough::stamps_current`] as the shared tier's reports alone tell it, with no
    /// round trip: true while the tier has reported every change since the stamps were
    /// taken (the same trust epoch, not `None`), no report named a stamped key and this
    /// process invalidated none. False means "ask [`ReadThrough::stamps_current`]", as must a
    /// reader that sees every acknowledged write at once (a request with a raised read fence):
    /// a change whose report is still on its way is not seen here.
    pub fn stamps_unreported(&self, stamps: &[Stamp]) -> bool {
        let epoch = self.shared.trust_epoch();
        self.versioned
            && epoch.is_some()
            && stamps
                .iter()
                .all(|s| s.version != 0 && self.unchanged(s, epoch))
    }

    /// Whether this process has neither invalidated `s`'s key nor heard a report of it
    /// since the stamp, under the same trust `epoch`.
    fn unchanged(&self, s: &Stamp, epoch: Option<u64>) -> bool {
        let stripe = s.stripe as usize;
        self.generations[stripe].load(Ordering::Acquire) == s.generation
            && self.reported[stripe].load(Ordering::Acquire) == s.reported
            && s.epoch == epoch
    }
}
