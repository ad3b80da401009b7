//! Election timing from the round trips between a group's regions, and staggered candidates.
//!
//! openraft refuses a vote (and a pre-vote) while the voter's leader lease runs, and the lease
//! is `election_timeout_max` after the leader's last append. Every randomised election timeout
//! is shorter than that, so after a leader dies every surviving voter's timer has fired by the
//! time the leases end, and they all stand at once: with the two or three survivors of a lost
//! region the votes split, every round, and the simulator saw a group stay leaderless for the
//! whole 12 s of a region loss. So a voter here campaigns (openraft's tick election, pre-vote
//! and all) only when it is its turn: the voters other than the silent leader are ranked by
//! round trip from the leader's region (the nearest first, so leadership stays close to where
//! it was), voters that fell silent with the leader (in a lost region) are skipped, and the
//! voter of rank `k` may stand once the leader has been silent for the lease, a small margin
//! and `k` staggers, each long enough for one election to finish.
//!
//! Timing follows from the largest round trip `r` between the group's regions: a heartbeat
//! every 1.25 r (openraft waits one interval for its answer), the lease (detection) 10 r, and
//! floors that keep a group inside one region (r below a millisecond) from electing on every
//! fsync stall.

use std::sync::Mutex;

use meridian_types::NodeId;
use tokio::time::Instant;

use crate::group::GroupOptions;

/// A voter heard from within this long is alive for the ranking (see [`rank`]).
pub const LIVE_HORIZON_MS: u64 = 450;

/// Floors for groups whose regions are close (or one region).
const HEARTBEAT_MIN_MS: u64 = 50;
const LEASE_MIN_MS: u64 = 500;

/// The timing of one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionTiming {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    /// openraft's `election_timeout_max`, which is also the leader lease every voter honours:
    /// the detection time of a dead leader.
    pub lease_ms: u64,
    /// After the lease, before the first candidate stands: covers the differences between the
    /// voters' last heartbeats (a pre-vote that arrives before a voter's lease ends is refused,
    /// and openraft retries only an election timeout later).
    pub margin_ms: u64,
    /// Between the turns of successive candidates: a pre-vote, a vote and the first append.
    pub stagger_ms: u64,
}

impl ElectionTiming {
    /// The timing for a group whose regions are at most `max_rtt_ms` apart.
    pub fn from_rtt(max_rtt_ms: f64) -> ElectionTiming {
        let rtt = max_rtt_ms.max(0.0).ceil() as u64;
        let heartbeat_ms = (rtt * 5 / 4).max(HEARTBEAT_MIN_MS);
        let lease_ms = (10 * rtt).max(8 * heartbeat_ms).max(LEASE_MIN_MS);
        let t = ElectionTiming {
            heartbeat_ms,
            election_min_ms: lease_ms * 3 / 4,
            lease_ms,
            margin_ms: (heartbeat_ms / 4).max(20),
            stagger_ms: 3 * rtt + 2 * heartbeat_ms,
        };
        debug_assert!(t.heartbeat_ms * 3 <= t.election_min_ms && t.election_min_ms < t.lease_ms);
        t
    }

    /// Explicit timing (a node's `[raft]` settings): the lease is the maximum timeout.
    pub fn from_options(o: &GroupOptions) -> ElectionTiming {
        ElectionTiming {
            heartbeat_ms: o.heartbeat_interval_ms,
            election_min_ms: o.election_timeout_min_ms,
            lease_ms: o.election_timeout_max_ms,
            margin_ms: (o.heartbeat_interval_ms / 4).max(20),
            stagger_ms: 2 * o.heartbeat_interval_ms + 100,
        }
    }

    pub fn options(&self) -> GroupOptions {
        GroupOptions {
            heartbeat_interval_ms: self.heartbeat_ms,
            election_timeout_min_ms: self.election_min_ms,
            election_timeout_max_ms: self.lease_ms,
        }
    }

    /// Whether a voter of rank `rank` may stand after `silence_ms` without the leader.
    pub fn may_stand(&self, rank: usize, silence_ms: u64) -> bool {
        silence_ms >= self.lease_ms + self.margin_ms + rank as u64 * self.stagger_ms
    }
}

/// A voter of the group as this node sees it.
#[derive(Clone, Debug)]
pub struct Voter {
    pub id: NodeId,
    pub region: String,
    /// How long since this node last heard anything from it (`None`: never).
    pub heard_ms: Option<u64>,
}

/// This node's turn among the voters that may replace the silent `leader` (in `leader_region`):
/// voters ranked by round trip from the leader's region, then by id; the leader itself is no
/// candidate, and a voter this node has not heard for `LIVE_HORIZON_MS` (it fell with the
/// leader, or is cut off) is skipped. `None`: this node is not a voter.
pub fn rank(
    me: NodeId,
    leader: NodeId,
    leader_region: &str,
    voters: &[Voter],
    rtt_ms: impl Fn(&str, &str) -> f64,
) -> Option<usize> {
    if !voters.iter().any(|v| v.id == me) {
        return None;
    }
    // A voter unheard for `LIVE_HORIZON_MS` is down or cut off from here: peers are pinged every
    // 250 ms, so a live one is heard within about that plus a round trip. (An earlier rule also
    // asked that it fell silent within 50 ms of the leader: a crashed region-mate whose last
    // ping answer landed 58 ms after the leader's last append then kept the first turn, and the
    // live voters waited a whole stagger for it; simulator seed 87, region loss.)
    let fell_with_leader =
        |v: &Voter| v.id != me && v.heard_ms.is_none_or(|h| h >= LIVE_HORIZON_MS);
    let mut order: Vec<(u64, NodeId)> = voters
        .iter()
        .filter(|v| v.id != leader && !fell_with_leader(v))
        .map(|v| ((rtt_ms(leader_region, &v.region) * 1000.0) as u64, v.id))
        .collect();
    order.sort_unstable();
    let r = order.iter().position(|(_, id)| *id == me);
    debug_assert!(
        r.is_some() || me == leader,
        "a voter other than the leader is ranked"
    );
    r
}

/// When this replica last accepted an append (a heartbeat included) from a leader.
#[derive(Debug)]
pub struct LeaderContact {
    at: Mutex<Instant>,
}

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact {
            at: Mutex::new(Instant::now()),
        }
    }
}

impl LeaderContact {
    pub fn heard(&self) {
        self.heard_at(Instant::now());
    }

    /// A leader was heard at `when` (answers may complete out of order: the latest stands).
    pub fn heard_at(&self, when: Instant) {
        let mut at = self.at.lock().unwrap();
        *at = (*at).max(when);
    }

    /// Milliseconds since the last append from a leader (or since the group opened).
    pub fn silence_ms(&self) -> u64 {
        self.at.lock().unwrap().elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtt(a: &str, b: &str) -> f64 {
        let d = |r: &str| -> f64 {
            match r {
                "east" => 0.0,
                "west" => 64.0,
                _ => 75.0,
            }
        };
        if a == b {
            1.0
        } else {
            (d(a) - d(b)).abs().max(1.0) + if a == "eu" || b == "eu" { 60.0 } else { 0.0 }
        }
    }

    fn voter(id: NodeId, region: &str, heard_ms: Option<u64>) -> Voter {
        Voter {
            id,
            region: region.into(),
            heard_ms,
        }
    }

    // Goal: timing scales with the round trip and keeps openraft's rules (heartbeat x 3 <= min
    // timeout < lease); a group inside one region gets the floors, not a 10 ms lease.
    #[test]
    fn timing_follows_the_round_trip() {
        let wan = ElectionTiming::from_rtt(134.0);
        assert_eq!(wan.heartbeat_ms, 167);
        assert_eq!(wan.lease_ms, 1_340);
        assert!(wan.heartbeat_ms * 3 <= wan.election_min_ms);
        assert!(wan.election_min_ms < wan.lease_ms);
        let local = ElectionTiming::from_rtt(0.4);
        assert_eq!(local.heartbeat_ms, HEARTBEAT_MIN_MS);
        assert_eq!(local.lease_ms, LEASE_MIN_MS);
        assert_eq!(ElectionTiming::from_options(&wan.options()).lease_ms, 1_340);
    }

    // Goal: the nearest live voter to the leader's region stands first, the next one a stagger
    // later; voters that fell silent with the leader are skipped (a lost region), a voter heard
    // since is not, and a non-voter has no turn.
    #[test]
    fn the_nearest_live_voter_stands_first() {
        let voters = [
            voter(1, "east", Some(1_400)),
            voter(2, "east", Some(300)),
            voter(3, "west", Some(200)),
            voter(4, "west", Some(100)),
            voter(5, "eu", Some(900)),
        ];
        // Leader 1 silent for 1.4 s; node 2 in its region was heard 300 ms ago: it goes first.
        let r = |me| rank(me, 1, "east", &voters, rtt);
        assert_eq!(
            (r(2), r(3), r(4), r(5)),
            (Some(0), Some(1), Some(2), Some(3))
        );
        // The whole east region fell: node 2 is unheard as long as the leader.
        let mut lost = voters.clone();
        lost[1].heard_ms = Some(1_380);
        let r = |me| rank(me, 1, "east", &lost, rtt);
        assert_eq!((r(3), r(4), r(5)), (Some(0), Some(1), Some(2)));
        assert_eq!(rank(9, 1, "east", &voters, rtt), None);
        // A region-mate of the leader whose last frame came a little after the leader's (a
        // ping answer) but long ago fell with it too (seed 87): the west voters go first.
        let mut late = voters.clone();
        late[1].heard_ms = Some(1_176);
        let r = |me| rank(me, 1, "east", &late, rtt);
        assert_eq!((r(3), r(4)), (Some(0), Some(1)));
        let t = ElectionTiming::from_rtt(134.0);
        assert!(!t.may_stand(0, t.lease_ms));
        assert!(t.may_stand(0, t.lease_ms + t.margin_ms));
        assert!(!t.may_stand(1, t.lease_ms + t.margin_ms));
        assert!(t.may_stand(1, t.lease_ms + t.margin_ms + t.stagger_ms));
    }
}
