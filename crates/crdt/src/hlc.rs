//! Hybrid logical clocks: timestamps that follow wall time where clocks allow, never go
//! backwards, and order every write of an async keyspace totally and the same way everywhere.
//!
//! Algorithm: Kulkarni, Demirbas et al., "Logical Physical Clocks and Consistent Snapshots in
//! Globally Distributed Databases" (OPODIS 2014), as CockroachDB uses it: a timestamp is the
//! largest physical time seen (`physical_ms`) and a counter of events at that physical time
//! (`logical`); the origin region breaks the remaining ties, so two regions never produce
//! equal timestamps. Invariants, asserted where they are kept: a clock's timestamps strictly
//! increase, whatever the wall clock does; a timestamp issued after observing a remote one is
//! greater than it.

use serde::{Deserialize, Serialize};

/// A region's tie-break: a stable 64-bit FNV-1a hash of its name, equal on every node. Two
/// region names colliding is as likely as a 64-bit hash collision among a few dozen names.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct RegionTag(pub u64);

impl RegionTag {
    pub fn of(region: &str) -> RegionTag {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in region.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        RegionTag(h)
    }
}

/// A hybrid logical timestamp. The derived order (physical, then logical, then origin) is the
/// order of last-writer-wins.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc {
    pub physical_ms: u64,
    pub logical: u32,
    pub origin: RegionTag,
}

/// What observing a remote timestamp found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// How far the remote timestamp was ahead of this node's wall clock (0 when behind).
    pub ahead_ms: u64,
    /// It was further ahead than the allowed offset: applied all the same (data is never
    /// dropped for a clock), but worth an alarm.
    pub skew_alarm: bool,
}

/// One region's clock on one node (the state of the HLC algorithm). Not thread-safe by
/// itself: the owner serialises calls.
#[derive(Clone, Debug)]
pub struct HlcClock {
    origin: RegionTag,
    /// The last (physical, logical) issued or observed.
    last_physical_ms: u64,
    last_logical: u32,
}

impl HlcClock {
    pub fn new(origin: RegionTag) -> HlcClock {
        HlcClock {
            origin,
            last_physical_ms: 0,
            last_logical: 0,
        }
    }

    /// The latest (physical, logical) this clock has issued or observed.
    pub fn last(&self) -> (u64, u32) {
        (self.last_physical_ms, self.last_logical)
    }

    /// A timestamp for a local write at wall time `wall_ms`: greater than every timestamp this
    /// clock issued or observed before.
    pub fn now(&mut self, wall_ms: u64) -> Hlc {
        let before = self.last();
        if wall_ms > self.last_physical_ms {
            self.last_physical_ms = wall_ms;
            self.last_logical = 0;
        } else {
            self.tick();
        }
        let stamp = self.stamp();
        assert!(
            self.last() > before,
            "an HLC went backwards: {before:?} then {:?}",
            self.last()
        );
        stamp
    }

    /// Takes in a timestamp received from another region at wall time `wall_ms`, so every
    /// later local timestamp exceeds it; reports how far ahead of the wall clock it was.
    pub fn observe(&mut self, remote: Hlc, wall_ms: u64, max_offset_ms: u64) -> Observed {
        let before = self.last();
        let theirs = (remote.physical_ms, remote.logical);
        if theirs > before {
            self.last_physical_ms = remote.physical_ms;
            self.last_logical = remote.logical;
        }
        debug_assert!(self.last() >= before && self.last() >= theirs);
        let ahead_ms = remote.physical_ms.saturating_sub(wall_ms);
        Observed {
            ahead_ms,
            skew_alarm: ahead_ms > max_offset_ms,
        }
    }

    fn tick(&mut self) {
        match self.last_logical.checked_add(1) {
            Some(l) => self.last_logical = l,
            // 4 billion events in one millisecond: borrow the next millisecond.
            None => {
                self.last_physical_ms += 1;
                self.last_logical = 0;
            }
        }
    }

    fn stamp(&self) -> Hlc {
        Hlc {
            physical_ms: self.last_physical_ms,
            logical: self.last_logical,
            origin: self.origin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clock(region: &str) -> HlcClock {
        HlcClock::new(RegionTag::of(region))
    }

    // Goal: wall time leads while it moves forward; the counter takes over when it stalls or
    // jumps back, so the clock never goes backwards.
    #[test]
    fn follows_wall_time_and_survives_a_jump_back() {
        let mut c = clock("us-east-1");
        let a = c.now(1_000);
        assert_eq!((a.physical_ms, a.logical), (1_000, 0));
        let b = c.now(1_000);
        assert_eq!((b.physical_ms, b.logical), (1_000, 1));
        let d = c.now(400);
        assert_eq!((d.physical_ms, d.logical), (1_000, 2));
        let e = c.now(1_001);
        assert_eq!((e.physical_ms, e.logical), (1_001, 0));
        assert!(a < b && b < d && d < e);
    }

    // Goal: after observing a remote timestamp, local ones exceed it, and one far ahead of the
    // wall clock raises the alarm without being refused.
    #[test]
    fn observing_moves_the_clock_past_the_remote_stamp() {
        let mut c = clock("eu-west-1");
        let mut remote = clock("us-east-1");
        let r = remote.now(5_000);
        let seen = c.observe(r, 1_000, 500);
        assert_eq!(
            seen,
            Observed {
                ahead_ms: 4_000,
                skew_alarm: true
            }
        );
        let mine = c.now(1_001);
        assert!(mine > r, "{mine:?} must follow {r:?}");
        let seen = c.observe(clock("us-west-2").now(1_200), 1_100, 500);
        assert!(!seen.skew_alarm);
    }

    // Goal: equal physical and logical parts are ordered by region, the same on every node.
    #[test]
    fn regions_break_ties() {
        let a = clock("us-east-1").now(7);
        let b = clock("us-west-2").now(7);
        assert_ne!(a, b);
        assert_eq!(
            a < b,
            RegionTag::of("us-east-1") < RegionTag::of("us-west-2")
        );
        assert_ne!(RegionTag::of("eu-west-1"), RegionTag::of("eu-west-2"));
    }

    // Goal: the logical counter's overflow borrows a millisecond instead of wrapping.
    #[test]
    fn logical_overflow_borrows_a_millisecond() {
        let mut c = clock("us-east-1");
        c.observe(
            Hlc {
                physical_ms: 10,
                logical: u32::MAX,
                origin: RegionTag::of("x"),
            },
            10,
            500,
        );
        let s = c.now(10);
        assert_eq!((s.physical_ms, s.logical), (11, 0));
    }

    proptest! {
        // Goal: whatever the wall clock reads (jumps back included) and whatever is observed,
        // every timestamp issued exceeds everything issued or observed before it.
        #[test]
        fn never_goes_backwards(events in proptest::collection::vec(
            (any::<bool>(), 0u64..10_000, 0u64..10_000, 0u32..4), 1..200)) {
            let mut c = clock("us-east-1");
            let mut high: Option<Hlc> = None;
            for (is_local, wall, remote_physical, remote_logical) in events {
                if is_local {
                    let s = c.now(wall);
                    if let Some(h) = high {
                        prop_assert!(s > h, "{s:?} after {h:?}");
                    }
                    high = Some(s);
                } else {
                    let r = Hlc { physical_ms: remote_physical, logical: remote_logical, origin: RegionTag::of("eu-west-1") };
                    c.observe(r, wall, 500);
                    high = Some(high.map_or(r, |h| h.max(r)));
                }
            }
        }

        // Goal: a timestamp stays within the largest wall time or remote time seen (plus
        // logical ticks): an HLC never runs ahead of the clocks that fed it.
        #[test]
        fn stays_close_to_the_clocks_that_fed_it(walls in proptest::collection::vec(0u64..1_000_000, 1..100)) {
            let mut c = clock("us-west-2");
            let mut max_wall = 0;
            for w in walls {
                max_wall = max_wall.max(w);
                let s = c.now(w);
                prop_assert!(s.physical_ms <= max_wall);
            }
        }
    }
}
