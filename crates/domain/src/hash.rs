//! [`stable_hash`]: the one hash that decides placement, the same in every build.

/// A stable 64-bit hash of `bytes`: multiply-rotate over 8-byte words, then a final mix.
/// Written out here so it never changes with the toolchain (std's hasher may), since processes
/// of different builds must agree on where a key or a logical shard lives: the cache ring
/// and the shard map both place by it.
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

#[cfg(test)]
mod tests {
    use super::*;
    const PINNED: [u64; 3] = [
        6_941_309_169_108_150_425,
        8_553_798_225_823_481_015,
        9_144_621_186_625_938_046,
    ];

    #[test]
    fn the_hash_is_the_written_down_one() {
        // placement of cache keys and logical shards depends on these exact values
        assert_eq!(stable_hash(b"127.0.0.1:6380#0"), PINNED[0]);
        assert_eq!(stable_hash(b"shard:7"), PINNED[1]);
        assert_eq!(stable_hash(b"a longer key than eight bytes"), PINNED[2]);
    }
}
