//! How stale a follower's state is, from promises its leader stamps on append messages.
//!
//! A leader's stamp `(commit_index, at_ms)` promises: every write acknowledged before `at_ms`
//! (on the leader's freshness clock) has an index at or below `commit_index`. The stamper takes
//! the time first and then asks openraft for the index a lease read would wait for, which it
//! answers only while the leader holds a valid lease (no other leader can have acknowledged
//! anything) and which covers every entry committed before the question, earlier leaders'
//! included. The promise is therefore true when the stamp is made, and stays true however late
//! it travels. (The bug this replaces: the commit index was read when openraft built an append
//! and the time when the pipeline sent it, possibly much later, so the pair claimed a
//! freshness the follower did not have.)
//!
//! A follower converts a stamp to its own freshness clock with the offset it probed to the
//! leader, less the probe's error, so the converted time is never later than the true one. Once
//! its applied index reaches a stamp's commit index it reflects every write acknowledged before
//! the stamp, and its staleness is at most `now - converted time`.
//!
//! Freshness clocks are wall time at node start advanced by the monotonic clock: a wall-clock
//! jump does not move them, and a restart starts a new epoch whose offset must be probed anew.

use std::collections::VecDeque;
use std::sync::Mutex;

use meridian_types::Clock;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Samples kept per group: enough to find one the applied index has passed while applies lag.
const SAMPLES_MAX: usize = 64;

/// A node's freshness clock: the wall clock read once at start, advanced by monotonic time.
pub struct FreshnessClock {
    /// Wall-clock milliseconds at start; also names this incarnation's epoch.
    start_ms: u64,
    start: Instant,
}

impl FreshnessClock {
    pub fn new(wall: &dyn Clock) -> FreshnessClock {
        FreshnessClock {
            start_ms: wall.now_ms(),
            start: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.start_ms + self.start.elapsed().as_millis() as u64
    }

    /// Names this clock's incarnation: an offset probed against one epoch says nothing of
    /// another.
    pub fn epoch(&self) -> u64 {
        self.start_ms
    }
}

/// A leader's promise: every write acknowledged before `at_ms` on its freshness clock (of
/// `epoch`) has an index at or below `commit_index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub commit_index: u64,
    pub at_ms: u64,
    pub epoch: u64,
}

/// The newest stamp of a group's leader on this node, which every append it sends carries.
#[derive(Default)]
pub struct Stamper {
    latest: Mutex<Option<Stamp>>,
}

impl Stamper {
    pub fn set(&self, stamp: Stamp) {
        let mut latest = self.latest.lock().unwrap();
        if let Some(old) = *latest {
            // Stamps of one incarnation are made in order; a promise never weakens.
            if old.epoch == stamp.epoch {
                assert!(
                    stamp.at_ms >= old.at_ms && stamp.commit_index >= old.commit_index,
                    "a leader's freshness stamp went back: {old:?} then {stamp:?}"
                );
            }
        }
        *latest = Some(stamp);
    }

    pub fn latest(&self) -> Option<Stamp> {
        *self.latest.lock().unwrap()
    }
}

/// The offset of a peer's freshness clock against this node's, as probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockOffset {
    /// The peer's clock minus this node's.
    pub offset_ms: i64,
    /// The most the true offset can differ from `offset_ms`.
    pub error_ms: u64,
    /// The peer's epoch when it was probed.
    pub epoch: u64,
}

/// What a follower knows of its freshness, per group.
#[derive(Default)]
pub struct Freshness {
    /// (commit index, time on this node's freshness clock), in arrival order.
    samples: Mutex<VecDeque<(u64, u64)>>,
    /// Why the latest stamp could not be used, if it could not (for error messages).
    refused: Mutex<Option<String>>,
}

impl Freshness {
    /// Takes in a stamp from the leader, given this node's view of the leader's clock (`Err`:
    /// why there is no usable one). A stamp that cannot be converted safely is dropped, so the
    /// follower serves no bounded read on its strength.
    pub fn receive(&self, stamp: Stamp, offset: Result<ClockOffset, String>) {
        let offset = offset.and_then(|o| {
            if o.epoch == stamp.epoch {
                Ok(o)
            } else {
                Err("the leader restarted since its clock was last probed".to_string())
            }
        });
        match offset {
            Ok(o) => {
                // The earliest this node's clock can have read when the leader's read `at_ms`.
                let local = stamp.at_ms as i64 - o.offset_ms - o.error_ms as i64;
                self.record(stamp.commit_index, local.max(0) as u64);
                *self.refused.lock().unwrap() = None;
            }
            Err(why) => *self.refused.lock().unwrap() = Some(why),
        }
    }

    /// Records that every write acknowledged before `at_ms` (this node's freshness clock) has
    /// an index at or below `commit_index`.
    pub fn record(&self, commit_index: u64, at_ms: u64) {
        let mut s = self.samples.lock().unwrap();
        if let Some(&(c, t)) = s.back() {
            if c >= commit_index && t >= at_ms {
                return;
            }
        }
        if s.len() == SAMPLES_MAX {
            s.pop_front();
        }
        s.push_back((commit_index, at_ms));
    }

    /// An upper bound on staleness for a replica that has applied up to `applied_index`:
    /// the newest promise the applied index covers, or `None` when it covers none.
    pub fn staleness_ms(&self, applied_index: u64, now_ms: u64) -> Option<u64> {
        let s = self.samples.lock().unwrap();
        s.iter()
            .filter(|(commit, _)| *commit <= applied_index)
            .map(|(_, at)| *at)
            .max()
            .map(|at| now_ms.saturating_sub(at))
    }

    /// The newest promise received: (commit index, time on this node's freshness clock).
    pub fn latest(&self) -> Option<(u64, u64)> {
        self.samples.lock().unwrap().back().copied()
    }

    /// Why the latest stamp was dropped, if it was.
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(offset_ms: i64, error_ms: u64) -> Result<ClockOffset, String> {
        Ok(ClockOffset {
            offset_ms,
            error_ms,
            epoch: 7,
        })
    }
    fn stamp(commit_index: u64, at_ms: u64) -> Stamp {
        Stamp {
            commit_index,
            at_ms,
            epoch: 7,
        }
    }

    // Goal: staleness uses the newest sample the applied index covers, never a newer one.
    #[test]
    fn staleness_uses_covered_sample() {
        let f = Freshness::default();
        assert_eq!(f.staleness_ms(10, 1000), None);
        f.record(5, 900);
        f.record(8, 950);
        f.record(12, 990);
        assert_eq!(f.staleness_ms(10, 1000), Some(50));
        assert_eq!(f.staleness_ms(12, 1000), Some(10));
        assert_eq!(f.staleness_ms(4, 1000), None);
    }

    // Goal: a leader clock ahead of this node's makes its stamps older here, by the offset and
    // its error, so the staleness reported is never below the truth; one behind makes them
    // younger by the offset, less the error.
    #[test]
    fn stamps_convert_with_the_offset_and_its_error() {
        let f = Freshness::default();
        // The leader reads 2000 ms ahead of this node, known to within 5 ms.
        f.receive(stamp(10, 12_000), offset(2_000, 5));
        assert_eq!(f.staleness_ms(10, 10_100), Some(105));
        let f = Freshness::default();
        // The leader reads 2000 ms behind.
        f.receive(stamp(10, 8_000), offset(-2_000, 5));
        assert_eq!(f.staleness_ms(10, 10_100), Some(105));
    }

    // Goal: a stamp whose clock is unknown, or from a leader incarnation other than the one
    // probed, is dropped with the reason kept.
    #[test]
    fn unusable_offsets_drop_the_stamp() {
        let f = Freshness::default();
        f.receive(stamp(10, 1_000), Err("no probe answered yet".into()));
        assert_eq!(f.staleness_ms(10, 1_000), None);
        assert_eq!(f.refused().as_deref(), Some("no probe answered yet"));
        let mut other = stamp(10, 1_000);
        other.epoch = 8;
        f.receive(other, offset(0, 1));
        assert_eq!(f.staleness_ms(10, 1_000), None);
        assert!(f.refused().unwrap().contains("restarted"));
        f.receive(stamp(10, 1_000), offset(0, 1));
        assert_eq!(f.staleness_ms(10, 1_000), Some(1));
        assert_eq!(f.refused(), None);
    }

    // Goal: the stamper refuses a promise that weakens within one incarnation.
    #[test]
    #[should_panic(expected = "went back")]
    fn a_stamp_never_goes_back() {
        let s = Stamper::default();
        s.set(stamp(10, 1_000));
        s.set(stamp(9, 1_010));
    }
}
