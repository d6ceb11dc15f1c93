//! Where an invalidator is in the stream: a low-water mark below which every row was applied
//! (or waited for long enough), and the rows above it already applied.
//!
//! Sequence numbers are taken in order but committed out of it: a writer that took 7 may
//! commit after one that took 8, so a reader can see 8 before 7. The cursor therefore
//! never moves past a gap at once: it keeps the numbers it has seen above the gap, reads
//! from the low-water mark again each time, and gives a gap up only once a number above it
//! has been seen for `gap_wait` (its transaction took its number before that one's, and a
//! recording transaction is one statement: it has committed, or rolled back, long before).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The cursor; see the module docs.
#[derive(Debug)]
pub(crate) struct Cursor {
    /// Every row at or below this was applied or given up.
    low: i64,
    /// Rows above `low` that were applied, with when each was first seen.
    seen: BTreeMap<i64, Instant>,
    gap_wait: Duration,
}

impl Cursor {
    /// A cursor that starts after row `low`.
    pub(crate) fn new(low: i64, gap_wait: Duration) -> Self {
        Self {
            low,
            seen: BTreeMap::new(),
            gap_wait,
        }
    }

    /// Where the next read starts (rows above this).
    pub(crate) fn low(&self) -> i64 {
        self.low
    }

    /// Whether row `id` is still to be applied.
    pub(crate) fn is_new(&self, id: i64) -> bool {
        id > self.low && !self.seen.contains_key(&id)
    }

    /// Whether row `id` is new (to be applied); notes it as seen (applied) at `now`.
    pub(crate) fn take(&mut self, id: i64, now: Instant) -> bool {
        if !self.is_new(id) {
            return false;
        }
        self.seen.insert(id, now);
        true
    }

    /// Moves the low-water mark over every row seen in a row from it, and over gaps that a
    /// row above them has outlasted by `gap_wait` at `now`; how many gaps were given up.
    pub(crate) fn advance(&mut self, now: Instant) -> u64 {
        let mut given_up = 0;
        while let Some((&id, &at)) = self.seen.first_key_value() {
            if id == self.low + 1 {
                self.seen.pop_first();
                self.low = id;
            } else if now.saturating_duration_since(at) >= self.gap_wait {
                // rows low+1 .. id-1 never came: rolled back (or pruned)
                given_up += 1;
                self.low = id - 1;
            } else {
                break;
            }
        }
        given_up
    }

    /// How many rows above the low-water mark are held.
    pub(crate) fn held(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_that_commits_after_a_higher_one_is_still_taken() {
        let t0 = Instant::now();
        let mut c = Cursor::new(5, Duration::from_secs(5));
        // 7 commits first: 6 is a gap
        assert!(c.take(7, t0));
        c.advance(t0);
        assert_eq!(c.low(), 5, "the mark waits below the gap");
        // the next read starts at 5 again, sees 7 (already applied) and now 6
        assert!(!c.take(7, t0 + Duration::from_secs(1)));
        assert!(c.take(6, t0 + Duration::from_secs(1)));
        c.advance(t0 + Duration::from_secs(1));
        assert_eq!(c.low(), 7);
        assert_eq!(c.held(), 0);
        assert!(
            !c.take(6, t0 + Duration::from_secs(2)),
            "nothing is applied twice"
        );
    }

    #[test]
    fn a_gap_is_given_up_once_a_row_above_it_has_waited_long_enough() {
        let t0 = Instant::now();
        let mut c = Cursor::new(0, Duration::from_secs(5));
        assert!(c.take(1, t0));
        assert!(c.take(3, t0));
        assert!(c.take(4, t0));
        assert_eq!(c.advance(t0 + Duration::from_secs(4)), 0);
        assert_eq!(c.low(), 1);
        assert_eq!(c.advance(t0 + Duration::from_secs(5)), 1);
        assert_eq!(c.low(), 4);
        assert_eq!(c.held(), 0);
    }

    #[test]
    fn rows_at_or_below_the_start_are_not_taken() {
        let mut c = Cursor::new(10, Duration::from_secs(5));
        assert!(!c.take(10, Instant::now()));
        assert!(!c.take(3, Instant::now()));
        assert!(c.take(11, Instant::now()));
    }
}
