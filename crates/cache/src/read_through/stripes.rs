//! Where a key's invalidation state lives: a stable hash of the key picks one of a fixed
//! number of stripes, each with a generation counter and a fence, so memory stays bounded
//! however many keys are invalidated.

use crescendo_domain::stable_hash;

/// How many stripes of keys have their own generation and fence.
pub(super) const STRIPES: usize = 1 << 16;

/// The stripe of a key.
pub(super) fn stripe_of(key: &str) -> usize {
    (stable_hash(key.as_bytes()) as usize) & (STRIPES - 1)
}
