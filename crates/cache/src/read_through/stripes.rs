//! Where a key's invalidation state lives: a stable hash of the key picks one of a fixed
//! number of stripes, each with a generation counter and a fence, so memory stays bounded
//! however many keys are invalidated.

/// How many stripes of keys have their own generation and fence.
pub(super) const STRIPES: usize = 1 << 16;

/// A stable 64-bit hash of `bytes`: multiply-rotate over 8-byte words, then a final mix.
/// Written out here so it never changes with the toolchain (std's hasher may), since cache
/// servers and web nodes of different builds must agree on where a key lives.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("chunks of 8"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^= h >> 32;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 29)
}

/// The stripe of a key.
pub(super) fn stripe_of(key: &str) -> usize {
    (stable_hash(key.as_bytes()) as usize) & (STRIPES - 1)
}
