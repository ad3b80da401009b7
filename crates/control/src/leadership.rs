//! Keeping leaders in the home region, without flapping.
//!
//! A leader outside its keyspace's home region hands leadership back to a home-region voter
//! only after that voter has been caught up continuously for `return_delay_ms`. A region that
//! blinks in and out therefore never pulls leadership back and forth: each return needs a full
//! quiet period. Elections themselves (failover away from a dead region) are openraft's.

use std::collections::BTreeMap;

use meridian_types::{GroupId, NodeId};

/// A voter is caught up when it is at most this many entries behind the leader's log.
pub const CAUGHT_UP_ENTRIES_MAX: u64 = 16;

/// A leader leaving an evacuated region asks the same target again after this long (a transfer
/// may be lost with the message that carried it).
pub const LEAVE_RETRY_MS: u64 = 1_000;

/// What the leader of one group sees at one tick.
#[derive(Clone, Debug)]
pub struct LeaderObservation {
    pub group: GroupId,
    pub home_region: String,
    pub my_region: String,
    pub my_last_index: u64,
    /// Every voter other than the leader: id, region and the index it has matched, if known.
    pub voters: Vec<(NodeId, String, Option<u64>)>,
    /// The leader's own region was evacuated by a committed failover decision: leadership
    /// leaves as soon as a target voter is caught up (the quiet period guards returns, not
    /// departures from a region judged down or degraded).
    pub leaving: bool,
    /// Added to the quiet period before a return: shards of a keyspace return one after
    /// another, so a failback interrupts one shard's writes at a time, not every shard's at once.
    pub stagger_ms: u64,
}

/// The stagger between successive shards' returns home.
pub const RETURN_STAGGER_MS: u64 = 500;

/// Per-node state of the leader-placement controller.
#[derive(Debug)]
pub struct LeaderPlacement {
    pub return_delay_ms: u64,
    caught_up_since: BTreeMap<GroupId, (NodeId, u64)>,
}

impl LeaderPlacement {
    pub fn new(return_delay_ms: u64) -> LeaderPlacement {
        LeaderPlacement {
            return_delay_ms,
            caught_up_since: BTreeMap::new(),
        }
    }

    /// The voter to transfer leadership to now, if any. Call once per tick per led group.
    pub fn decide(&mut self, obs: &LeaderObservation, now_ms: u64) -> Option<NodeId> {
        if obs.my_region == obs.home_region {
            self.caught_up_since.remove(&obs.group);
            return None;
        }
        let floor = obs.my_last_index.saturating_sub(CAUGHT_UP_ENTRIES_MAX);
        let best = obs
            .voters
            .iter()
            .filter(|(_, region, matched)| {
                *region == obs.home_region && matched.is_some_and(|m| m >= floor)
            })
            .max_by_key(|(id, _, matched)| (*matched, std::cmp::Reverse(*id)))
            .map(|(id, _, _)| *id);
        let Some(target) = best else {
            self.caught_up_since.remove(&obs.group);
            return None;
        };
        match self.caught_up_since.get(&obs.group) {
            Some(&(node, since))
                if obs.leaving
                    && node == target
                    && now_ms.saturating_sub(since) < LEAVE_RETRY_MS =>
            {
                None
            }
            _ if obs.leaving => {
                self.caught_up_since.insert(obs.group, (target, now_ms));
                Some(target)
            }
            Some(&(node, since)) if node == target => {
                if now_ms.saturating_sub(since) >= self.return_delay_ms + obs.stagger_ms {
                    // Restart the quiet period so a failed transfer is retried only after another.
                    self.caught_up_since.insert(obs.group, (target, now_ms));
                    Some(target)
                } else {
                    None
                }
            }
            _ => {
                self.caught_up_since.insert(obs.group, (target, now_ms));
                None
            }
        }
    }

    /// Forgets a group this node no longer leads.
    pub fn forget(&mut self, group: GroupId) {
        self.caught_up_since.remove(&group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(home_matched: Option<u64>) -> LeaderObservation {
        LeaderObservation {
            group: 9,
            home_region: "us-east-1".into(),
            my_region: "us-west-2".into(),
            my_last_index: 100,
            voters: vec![
                (1, "us-east-1".into(), home_matched),
                (5, "eu-west-1".into(), Some(100)),
            ],
            leaving: false,
            stagger_ms: 0,
        }
    }

    // Goal: leadership returns home only after the home voter stayed caught up for the delay.
    #[test]
    fn returns_home_after_quiet_period() {
        let mut p = LeaderPlacement::new(3000);
        assert_eq!(p.decide(&obs(Some(99)), 0), None);
        assert_eq!(p.decide(&obs(Some(100)), 2999), None);
        assert_eq!(p.decide(&obs(Some(100)), 3000), Some(1));
    }

    // Goal: a home voter that falls behind restarts the quiet period (no flapping).
    #[test]
    fn lagging_home_restarts_the_clock() {
        let mut p = LeaderPlacement::new(3000);
        p.decide(&obs(Some(100)), 0);
        assert_eq!(p.decide(&obs(Some(10)), 2000), None);
        assert_eq!(p.decide(&obs(Some(100)), 3500), None);
        assert_eq!(p.decide(&obs(Some(100)), 6499), None);
        assert_eq!(p.decide(&obs(Some(100)), 6500), Some(1));
    }

    // Goal: a leader whose region was evacuated hands over as soon as the target is caught up,
    // with no quiet period, and not to a target that lags.
    #[test]
    fn an_evacuated_leader_leaves_at_once() {
        let mut p = LeaderPlacement::new(3000);
        let mut o = obs(Some(100));
        o.leaving = true;
        assert_eq!(p.decide(&o, 0), Some(1));
        assert_eq!(p.decide(&o, 500), None, "not asked again at once");
        assert_eq!(p.decide(&o, LEAVE_RETRY_MS), Some(1));
        let mut lagging = obs(Some(10));
        lagging.leaving = true;
        assert_eq!(p.decide(&lagging, 10), None);
    }

    // Goal: a shard's return waits its stagger on top of the quiet period.
    #[test]
    fn returns_are_staggered_by_shard() {
        let mut p = LeaderPlacement::new(3000);
        let mut o = obs(Some(100));
        o.stagger_ms = 2 * RETURN_STAGGER_MS;
        assert_eq!(p.decide(&o, 0), None);
        assert_eq!(p.decide(&o, 3000), None);
        assert_eq!(p.decide(&o, 3000 + 2 * RETURN_STAGGER_MS), Some(1));
    }

    // Goal: a leader already in the home region never transfers.
    #[test]
    fn home_leader_stays() {
        let mut p = LeaderPlacement::new(0);
        let mut o = obs(Some(100));
        o.my_region = "us-east-1".into();
        assert_eq!(p.decide(&o, 10_000), None);
    }
}
