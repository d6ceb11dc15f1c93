//! Time-ordered IDs made without a central counter.
//!
//! Layout of an [`Id`] (users, articles), after Instagram's, 63 bits so it stays a positive i64.
//! The shard sits in the low bits, so IDs from one generator sort in the order they were made
//! even within one millisecond:
//!
//! ```text
//!  62            22 21       12 11         0
//! [ms since EPOCH ][ seq (10)  ][ shard (12) ]
//! ```
//!
//! The shard field is the *logical* shard (one of [`SHARD_COUNT`]) that owns the row: an
//! article carries its author's shard, so any node can route by ID alone. Logical shards map
//! to physical shard groups through a shard map; resharding moves logical shards and never
//! rewrites IDs.
//!
//! A [`CommentId`] appears in JSON as a number, so it stays below 2^53: 41 bits of
//! milliseconds and 12 bits of sequence. Comments are always reached through their article,
//! so they need no shard bits.
//!
//! Uniqueness: an [`IdGen`] hands out strictly increasing values within one process; each
//! writer of a shard (the SQLite store, a shard group's primary) owns one, so IDs never collide.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch of Crescendo's epoch, 2026-01-01T00:00:00Z.
pub const EPOCH_MS: u64 = 1_767_225_600_000;
/// Number of logical shards. Users are spread over them; physical groups own ranges of them.
pub const SHARD_COUNT: u16 = 4096;

const SHARD_BITS: u32 = 12;
const SEQ_BITS: u32 = 10;
const COMMENT_SEQ_BITS: u32 = 12;
const TIME_BITS: u32 = 41;

/// A logical shard number in `0..SHARD_COUNT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogicalShard(u16);

impl LogicalShard {
    /// Wraps `n`, reducing it modulo [`SHARD_COUNT`].
    pub fn new(n: u16) -> Self {
        Self(n % SHARD_COUNT)
    }

    /// The shard a new user is placed on: a stable hash of the lower-cased username, so
    /// that the placement is reproducible and spreads evenly (FNV-1a, written out here
    /// because std's `DefaultHasher` may change between Rust releases).
    pub fn for_new_user(username: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in username.bytes().map(|b| b.to_ascii_lowercase()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self((h % u64::from(SHARD_COUNT)) as u16)
    }

    /// The shard number.
    pub fn get(self) -> u16 {
        self.0
    }
}

/// A 63-bit, time-ordered ID for users and articles, carrying its logical shard.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Id(i64);

impl Id {
    /// Wraps a stored value (from the database). Any non-negative i64 is accepted.
    pub fn from_i64(v: i64) -> Self {
        Self(v)
    }

    /// The value as stored in the database.
    pub fn as_i64(self) -> i64 {
        self.0
    }

    /// The logical shard that owns this ID's row.
    pub fn shard(self) -> LogicalShard {
        LogicalShard((self.0 as u64 & ((1 << SHARD_BITS) - 1)) as u16)
    }

    /// Milliseconds since the Unix epoch at which the ID was made.
    pub fn unix_ms(self) -> u64 {
        (self.0 as u64 >> (SEQ_BITS + SHARD_BITS)) + EPOCH_MS
    }

    /// Base-36 text of the ID, as used in slugs.
    pub fn to_base36(self) -> String {
        to_base36(self.0 as u64)
    }

    /// Parses base-36 text made by [`Id::to_base36`]; `None` if it is not one.
    pub fn parse_base36(s: &str) -> Option<Self> {
        if s.is_empty()
            || s.len() > 13
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        {
            return None;
        }
        let v = u64::from_str_radix(s, 36).ok()?;
        i64::try_from(v).ok().map(Self)
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A comment's ID: time-ordered and at most 2^53 − 1, so JavaScript keeps it exact.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct CommentId(i64);

impl CommentId {
    /// Wraps a stored value.
    pub fn from_i64(v: i64) -> Self {
        Self(v)
    }
    /// The value as stored and as sent in JSON.
    pub fn as_i64(self) -> i64 {
        self.0
    }
}

fn to_base36(mut v: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if v == 0 {
        return "0".into();
    }
    let mut out = Vec::with_capacity(13);
    while v > 0 {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// Makes [`Id`]s and [`CommentId`]s that increase strictly within this generator.
///
/// The clock is read per call; when it stands still or steps back, the generator keeps
/// counting from its last value, so IDs never repeat or go backwards.
#[derive(Debug, Default)]
pub struct IdGen {
    /// Last value handed out, per kind: (IDs with shard bits masked out, comment IDs).
    last: Mutex<(u64, u64)>,
}

impl IdGen {
    /// A new generator.
    pub fn new() -> Self {
        Self::default()
    }

    fn now_ms() -> u64 {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(EPOCH_MS);
        ms.saturating_sub(EPOCH_MS) & ((1 << TIME_BITS) - 1)
    }

    /// A new ID owned by `shard`.
    pub fn next_id(&self, shard: LogicalShard) -> Id {
        let next = self.advance(|last| &mut last.0, Self::now_ms() << SEQ_BITS);
        // time and sequence as one counter, above the shard bits
        Id(((next << SHARD_BITS) | u64::from(shard.0)) as i64)
    }

    /// A new comment ID.
    pub fn next_comment_id(&self) -> CommentId {
        let next = self.advance(|last| &mut last.1, Self::now_ms() << COMMENT_SEQ_BITS);
        CommentId(next as i64)
    }

    /// Moves the counter `which` picks from the last values to `now` (time shifted above the
    /// sequence bits), or one past its last value when the clock has not passed it.
    fn advance(&self, which: impl FnOnce(&mut (u64, u64)) -> &mut u64, now: u64) -> u64 {
        let mut last = self
            .last
            .lock()
            .expect("id generator lock is never poisoned");
        let counter = which(&mut last);
        *counter = if now > *counter { now } else { *counter + 1 };
        *counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_carry_their_shard_and_increase() {
        let g = IdGen::new();
        let shard = LogicalShard::new(4095);
        let mut prev = g.next_id(LogicalShard::new(0));
        for i in 0..5000u16 {
            let shard = if i % 2 == 0 {
                shard
            } else {
                LogicalShard::new(i)
            };
            let id = g.next_id(shard);
            assert_eq!(id.shard(), shard);
            assert!(id > prev, "{id:?} after {prev:?}");
            assert!(id.as_i64() > 0);
            prev = id;
        }
    }

    #[test]
    fn id_time_is_close_to_now() {
        let id = IdGen::new().next_id(LogicalShard::new(7));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now.abs_diff(id.unix_ms()) < 5_000);
    }

    #[test]
    fn comment_ids_stay_exact_in_javascript() {
        let g = IdGen::new();
        let mut prev = CommentId(0);
        for _ in 0..10_000 {
            let c = g.next_comment_id();
            assert!(c.as_i64() < (1i64 << 53));
            assert!(c > prev);
            prev = c;
        }
        // the largest possible value, at the end of the 41-bit clock, still fits
        let max = (((1u64 << TIME_BITS) - 1) << COMMENT_SEQ_BITS) | ((1 << COMMENT_SEQ_BITS) - 1);
        assert_eq!(max, (1u64 << 53) - 1);
    }

    #[test]
    fn new_users_spread_over_shards() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..2000 {
            seen.insert(LogicalShard::for_new_user(&format!("user{i}")));
        }
        assert!(seen.len() > 1500, "only {} shards used", seen.len());
        assert_eq!(
            LogicalShard::for_new_user("Alice"),
            LogicalShard::for_new_user("alice")
        );
    }

    proptest! {
        #[test]
        fn base36_round_trips(v in 0i64..i64::MAX) {
            let id = Id::from_i64(v);
            prop_assert_eq!(Id::parse_base36(&id.to_base36()), Some(id));
        }

        #[test]
        fn base36_rejects_junk(s in "[^0-9a-z]{1,5}") {
            prop_assert_eq!(Id::parse_base36(&s), None);
        }
    }
}
