//! How stale a follower's state is, from the leader's append messages.
//!
//! Every append message carries the leader's commit index and the leader's clock when it sent
//! the message. Every write the leader acknowledged before that moment has an index at or below
//! that commit index. So once this replica has applied up to the commit index, it reflects every
//! write acknowledged before the send time, and its staleness is at most `now - sent_at`
//! (assuming node clocks agree to within their offset bound).

use std::collections::VecDeque;
use std::sync::Mutex;

/// Samples kept per group: enough to find one the applied index has passed while applies lag.
const SAMPLES_MAX: usize = 64;

#[derive(Default)]
pub struct Freshness {
    samples: Mutex<VecDeque<(u64, u64)>>,
}

impl Freshness {
    /// Records that the leader's commit index was `commit_index` at leader time `sent_at_ms`.
    pub fn record(&self, commit_index: u64, sent_at_ms: u64) {
        let mut s = self.samples.lock().unwrap();
        if let Some(&(c, t)) = s.back() {
            if c >= commit_index && t >= sent_at_ms {
                return;
            }
        }
        if s.len() == SAMPLES_MAX {
            s.pop_front();
        }
        s.push_back((commit_index, sent_at_ms));
    }

    /// An upper bound on staleness for a replica that has applied up to `applied_index`, or
    /// `None` when no sample is known to be covered.
    pub fn staleness_ms(&self, applied_index: u64, now_ms: u64) -> Option<u64> {
        let s = self.samples.lock().unwrap();
        s.iter()
            .rev()
            .find(|(commit, _)| *commit <= applied_index)
            .map(|(_, sent_at)| now_ms.saturating_sub(*sent_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
