//! Failover and failback decisions: which regions leaders must leave, and when they may come
//! back. Pure: the inputs are health signals and time, the output is decisions; the driver in
//! the server commits each decision to the metadata group's decision log (so only a side of a
//! partition that holds a majority of the metadata voters decides anything), and every node
//! applies the committed log the same way ([`FailoverState::apply`]).
//!
//! Three parts:
//!
//! - [`HealthJudge`] turns noisy per-tick signals into a steady `healthy | degraded | down`
//!   per region, with hysteresis: a region turns `degraded` only when most samples of a
//!   sliding window are bad (write or fsync p99 ten times the region's own normal, or most
//!   probes lost), and healthy again only when almost none are; `down` when no observer has heard
//!   from it for `down_after_ms`, as voted by the observing regions.
//! - [`Controller::decide`]: a region that is down, or degraded for longer than
//!   `degraded_for_ms`, loses its leaders (`failover`); it gets them back (`failback`) only
//!   after it has stayed healthy for its hold-down, which doubles (up to a cap) each time the
//!   region fails again within a hold-down of coming back. While the cluster is paused every
//!   decision waits as `pending` until an operator approves or rejects it.
//! - The log: entries chained by hash ([`Entry::seal`], [`verify`]), so an edited, removed or
//!   reordered entry is found.
//!
//! Raft still elects a leader when one dies, paused or not: these decisions govern placement
//! (where leaders are moved to and kept), not liveness.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// A region's judged state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Degraded,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }
}

/// Tuning of health judgement and decisions. `down_after_ms` should be derived from the
/// measured round trips (see [`FailoverConfig::calibrated`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverConfig {
    /// Sliding window over which samples are judged.
    pub window_ms: u64,
    /// A region a majority of observers has not heard from for this long is down (the floor:
    /// the driver raises it to ten of the largest measured round trips).
    pub down_after_ms: u64,
    /// A sample is bad when a latency p99 exceeds this many times both the region's normal
    /// and the other regions' median.
    pub slow_factor: f64,
    /// A region turns degraded when at least this share of the window's samples are bad ...
    pub degraded_enter_share: f64,
    /// ... and healthy again when at most this share are.
    pub degraded_leave_share: f64,
    /// Samples needed in the window before a region can be judged degraded.
    pub min_samples: usize,
    /// A region degraded this long loses its leaders as if it were down.
    pub degraded_for_ms: u64,
    /// A region must be healthy this long before leaders return (the first time).
    pub holddown_ms: u64,
    /// The hold-down doubles up to this.
    pub holddown_max_ms: u64,
    /// Latencies below this are never called slow (a 0.1 ms fsync turning 1 ms is noise).
    pub latency_floor_ms: f64,
    /// A sample is bad when more than this share of the region's writes failed (storage
    /// errors, entries lost to leader changes), whatever their latency.
    pub error_rate_max: f64,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            window_ms: 10_000,
            down_after_ms: 3_000,
            slow_factor: 10.0,
            degraded_enter_share: 0.6,
            degraded_leave_share: 0.2,
            min_samples: 5,
            degraded_for_ms: 15_000,
            holddown_ms: 30_000,
            holddown_max_ms: 480_000,
            latency_floor_ms: 20.0,
            error_rate_max: 0.05,
        }
    }
}

impl FailoverConfig {
    /// `down_after_ms` from the largest measured round trip between regions: ten of them,
    /// and never under `floor_ms` (a probe interval must fit).
    pub fn calibrated(mut self, largest_rtt_ms: f64, floor_ms: u64) -> FailoverConfig {
        self.down_after_ms = ((largest_rtt_ms * 10.0).ceil() as u64).max(floor_ms);
        self
    }
}

/// What one observer measured of one region at one tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionSample {
    pub region: String,
    /// Observing regions (other than `region`) that heard from some node of `region` within
    /// `down_after_ms`, and those that did not: the votes.
    pub heard_by: Vec<String>,
    pub unheard_by: Vec<String>,
    /// Share of this tick's probes to the region's nodes that went unanswered.
    pub probe_loss: f64,
    /// The region's nodes' p99 write (propose to commit) and fsync latencies, if measured.
    pub write_p99_ms: Option<f64>,
    pub fsync_p99_ms: Option<f64>,
    /// The worst share of failed writes among the region's leaders over their recent window
    /// (`None`: too few writes to say).
    pub error_rate: Option<f64>,
}

/// What a decision saw of one region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionView {
    pub health: Health,
    pub bad_share: f64,
    pub samples: usize,
    pub write_p99_ms: Option<f64>,
    pub fsync_p99_ms: Option<f64>,
    /// The region's write error rate in its last sample.
    #[serde(default)]
    pub error_rate: Option<f64>,
    pub normal_write_ms: Option<f64>,
    pub normal_fsync_ms: Option<f64>,
    pub heard_by: Vec<String>,
    pub unheard_by: Vec<String>,
    /// How long since a majority of observers last heard from the region.
    pub unheard_ms: u64,
    /// Since when the region has been in this health (ms on the deciding node's clock).
    pub since_ms: u64,
}

#[derive(Debug, Default)]
struct RegionWindow {
    /// (at_ms, bad) of the samples in the window.
    samples: VecDeque<(u64, bool)>,
    /// The region's normal latencies: a slow moving average of good samples.
    normal_write: Option<f64>,
    normal_fsync: Option<f64>,
    health: Option<(Health, u64)>,
    /// When some observer last heard from the region, and how long ago that was at the last
    /// sample.
    last_heard_ms: Option<u64>,
    last_unheard_ms: u64,
    last: RegionSample,
}

/// Sliding-window health with hysteresis, per region.
#[derive(Debug, Default)]
pub struct HealthJudge {
    regions: BTreeMap<String, RegionWindow>,
}

/// Weight of a new good sample in a region's normal latency.
const NORMAL_WEIGHT: f64 = 0.05;

impl HealthJudge {
    /// Folds in one tick's samples (one per region) taken at `now_ms`.
    pub fn observe(&mut self, cfg: &FailoverConfig, now_ms: u64, samples: &[RegionSample]) {
        // The other regions' median, per signal: a region is slow against its peers, not just
        // against its own past (leaders arriving raise a region's write latency; a machine-wide
        // stall slows every region alike). With no peer measuring, nothing is called slow: a
        // gray failure is one region against the others.
        let peers_median = |me: &str, pick: fn(&RegionSample) -> Option<f64>| {
            let mut v: Vec<f64> = samples
                .iter()
                .filter(|o| o.region != me)
                .filter_map(pick)
                .collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| v[v.len() / 2])
        };
        for s in samples {
            let peer_write = peers_median(&s.region, |o| o.write_p99_ms);
            let peer_fsync = peers_median(&s.region, |o| o.fsync_p99_ms);
            let w = self.regions.entry(s.region.clone()).or_default();
            // Heard by a majority of the regions that voted; a lone observer's broken link
            // does not make a region unheard.
            // No vote at all (an observer cut off from everyone) is no evidence either way.
            let heard = s.heard_by.len() * 2 >= s.heard_by.len() + s.unheard_by.len();
            if heard {
                w.last_heard_ms = Some(now_ms);
            } else if w.last_heard_ms.is_none() {
                // Never heard: counted from the first sample.
                w.last_heard_ms = Some(now_ms);
            }
            let slow = |p99: Option<f64>, normal: Option<f64>, peers: Option<f64>| match p99 {
                Some(p) => {
                    p > cfg.latency_floor_ms
                        && normal.is_some_and(|n| p > n * cfg.slow_factor)
                        && peers.is_some_and(|m| p > m * cfg.slow_factor)
                }
                None => false,
            };
            let failing = s.error_rate.is_some_and(|e| e > cfg.error_rate_max);
            let bad = slow(s.write_p99_ms, w.normal_write, peer_write)
                || slow(s.fsync_p99_ms, w.normal_fsync, peer_fsync)
                || failing
                || s.probe_loss > 0.5;
            if !bad && heard {
                let fold = |normal: &mut Option<f64>, p99: Option<f64>| {
                    if let Some(p) = p99 {
                        *normal = Some(match *normal {
                            Some(n) => n + NORMAL_WEIGHT * (p - n),
                            None => p,
                        });
                    }
                };
                fold(&mut w.normal_write, s.write_p99_ms);
                fold(&mut w.normal_fsync, s.fsync_p99_ms);
            }
            if let Some(&(last_at, _)) = w.samples.back() {
                debug_assert!(last_at <= now_ms, "health samples go back in time");
            }
            // An unheard region is judged by `down_after_ms`; its silence is not a gray sample
            // (it would keep a recovered region degraded for a window).
            if heard {
                w.samples.push_back((now_ms, bad));
            }
            while w
                .samples
                .front()
                .is_some_and(|(t, _)| *t + cfg.window_ms <= now_ms)
            {
                w.samples.pop_front();
            }
            w.last = s.clone();
            let n = w.samples.len();
            let bad_share = w.samples.iter().filter(|(_, b)| *b).count() as f64 / n.max(1) as f64;
            let unheard_for = now_ms.saturating_sub(w.last_heard_ms.unwrap_or(now_ms));
            w.last_unheard_ms = unheard_for;
            let previous = w.health.map(|(h, _)| h).unwrap_or(Health::Healthy);
            let next = if unheard_for >= cfg.down_after_ms {
                Health::Down
            } else if (n >= cfg.min_samples && bad_share >= cfg.degraded_enter_share)
                || (previous == Health::Degraded && bad_share > cfg.degraded_leave_share)
            {
                // Enters at the high mark, leaves only below the low one.
                Health::Degraded
            } else if previous == Health::Down && !heard {
                Health::Down
            } else {
                Health::Healthy
            };
            match w.health {
                Some((h, _)) if h == next => {}
                _ => w.health = Some((next, now_ms)),
            }
        }
    }

    /// The judged state of every region seen, with what it rests on.
    pub fn views(&self) -> BTreeMap<String, RegionView> {
        self.regions
            .iter()
            .map(|(r, w)| {
                let n = w.samples.len();
                let (health, since_ms) = w.health.unwrap_or((Health::Healthy, 0));
                (
                    r.clone(),
                    RegionView {
                        health,
                        bad_share: w.samples.iter().filter(|(_, b)| *b).count() as f64
                            / n.max(1) as f64,
                        samples: n,
                        write_p99_ms: w.last.write_p99_ms,
                        fsync_p99_ms: w.last.fsync_p99_ms,
                        error_rate: w.last.error_rate,
                        normal_write_ms: w.normal_write,
                        normal_fsync_ms: w.normal_fsync,
                        heard_by: w.last.heard_by.clone(),
                        unheard_by: w.last.unheard_by.clone(),
                        unheard_ms: w.last_unheard_ms,
                        since_ms,
                    },
                )
            })
            .collect()
    }
}

/// What a decision does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Leaders leave `region`; it must then stay healthy for `holddown_ms` before they return.
    Failover {
        region: String,
        holddown_ms: u64,
    },
    /// Leaders may return to `region`.
    Failback {
        region: String,
    },
    Pause,
    Resume,
    /// An automatic decision taken while paused, waiting for an operator.
    Pending {
        id: u64,
        decision: Box<Action>,
    },
    /// Pending decision `id` is executed.
    Approve {
        id: u64,
        decision: Box<Action>,
    },
    Reject {
        id: u64,
    },
    /// A planned switchover (an operator's): keyspace `keyspace`'s home region moves from
    /// `from` to `to`, its leaders (and for `survive = "zone"` its voters) with it, losing
    /// nothing. The catalogue holds the new home; the log records who moved it and why.
    Switchover {
        keyspace: String,
        from: String,
        to: String,
    },
    /// A promotion of a `survive = "zone"` keyspace whose home region `from` is down: the most
    /// caught-up replicas in `to` become the voters of a new group per shard at `epoch`, forced
    /// from the survivors; anything of an older epoch is fenced. Entries the promoted replicas
    /// never received are lost, and reported (see `Promoted`).
    Promote {
        keyspace: String,
        from: String,
        to: String,
        epoch: u64,
    },
    /// A promotion was carried out: the new epoch's groups are in the catalogue. At least
    /// `lost_entries_at_least` entries the old home had committed never reached the promoted
    /// replicas (the exact tail is known when the old region returns; see
    /// `GET /v1/failover/lost-tail/{keyspace}`).
    Promoted {
        keyspace: String,
        epoch: u64,
        lost_entries_at_least: u64,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Failover { .. } => "failover",
            Action::Failback { .. } => "failback",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Pending { .. } => "pending",
            Action::Approve { .. } => "approve",
            Action::Reject { .. } => "reject",
            Action::Switchover { .. } => "switchover",
            Action::Promote { .. } => "promote",
            Action::Promoted { .. } => "promoted",
        }
    }

    /// "failover:<region>" or "failback:<region>": decisions of one kind about one region.
    pub fn kind_key(&self) -> Option<String> {
        match self {
            Action::Failover { region, .. } | Action::Failback { region } => {
                Some(format!("{}:{region}", self.name()))
            }
            Action::Promote { keyspace, .. } => Some(format!("promote:{keyspace}")),
            _ => None,
        }
    }

    /// Whether this entry moves leaders (what a pause holds back).
    pub fn executes_placement(&self) -> bool {
        matches!(
            self,
            Action::Failover { .. }
                | Action::Failback { .. }
                | Action::Approve { .. }
                | Action::Promote { .. }
        )
    }
}

/// One committed decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub at_ms: u64,
    #[serde(flatten)]
    pub action: Action,
    pub reason: String,
    /// Who asked: `controller@<node>` or `operator:<name>`.
    pub by: String,
    /// Health per region as the deciding node judged it.
    pub inputs: BTreeMap<String, RegionView>,
    /// Hex of the previous entry's hash (64 zeros for the first).
    pub prev: String,
    /// Hex of this entry's hash over everything above.
    pub hash: String,
}

pub use crate::chain::GENESIS;

impl Entry {
    /// Fills `prev` and `hash`, chaining this entry after `prev`.
    pub fn seal(mut self, prev: &str) -> Entry {
        self.prev = prev.to_string();
        self.hash = self.compute_hash();
        self
    }

    /// SHA-256 over the canonical JSON of the entry with `hash` empty.
    pub fn compute_hash(&self) -> String {
        let mut bare = self.clone();
        bare.hash = String::new();
        let json = serde_json::to_vec(&bare).expect("an entry serialises");
        sha256_hex(&json)
    }
}

use crate::chain::sha256_hex;

impl crate::chain::Chained for Entry {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn prev(&self) -> &str {
        &self.prev
    }
    fn hash(&self) -> &str {
        &self.hash
    }
    fn compute_hash(&self) -> String {
        Entry::compute_hash(self)
    }
}

/// Checks a log (in order): see [`crate::chain::verify`].
pub fn verify(entries: &[Entry]) -> Result<usize, String> {
    crate::chain::verify(entries)
}

/// A region leaders have left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evacuated {
    pub since_ms: u64,
    pub holddown_ms: u64,
    /// The log entry that decided it.
    pub decision: u64,
}

/// The committed state every node derives from the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverState {
    pub paused: bool,
    pub evacuated: BTreeMap<String, Evacuated>,
    /// Per region: when leaders last returned and the hold-down they returned under.
    pub returned: BTreeMap<String, (u64, u64)>,
    pub pending: BTreeMap<u64, Action>,
    /// An operator approved a decision since the pause began: leaders may be moved to carry
    /// out the placement it set (and only that).
    #[serde(default)]
    pub approved_in_pause: bool,
    /// Decisions an operator rejected ("failover:<region>"), and when: the controller does not
    /// propose the same again for a base hold-down.
    #[serde(default)]
    pub rejected: BTreeMap<String, u64>,
    /// Per keyspace: the epoch its latest executed promotion moved it to.
    #[serde(default)]
    pub promoted: BTreeMap<String, u64>,
    /// The last entry applied: its sequence number and hash.
    pub head: Option<(u64, String)>,
}

impl FailoverState {
    /// Applies one committed entry. Entries apply in sequence order, each exactly once.
    pub fn apply(&mut self, e: &Entry) {
        let expected = self.head.as_ref().map_or(0, |(s, _)| s + 1);
        assert_eq!(
            e.seq, expected,
            "failover log entries apply in order, without gaps"
        );
        assert_eq!(
            e.prev,
            self.head.as_ref().map_or(GENESIS, |(_, h)| h.as_str()),
            "a failover log entry chains to the one before"
        );
        self.execute(&e.action, e.at_ms, e.seq);
        self.head = Some((e.seq, e.hash.clone()));
    }

    fn execute(&mut self, action: &Action, at_ms: u64, seq: u64) {
        match action {
            Action::Failover {
                region,
                holddown_ms,
            } => {
                debug_assert!(
                    !self.evacuated.contains_key(region),
                    "decision {seq}: leaders leave {region} twice"
                );
                self.evacuated.insert(
                    region.clone(),
                    Evacuated {
                        since_ms: at_ms,
                        holddown_ms: *holddown_ms,
                        decision: seq,
                    },
                );
            }
            Action::Failback { region } => {
                if let Some(ev) = self.evacuated.remove(region) {
                    self.returned
                        .insert(region.clone(), (at_ms, ev.holddown_ms));
                }
            }
            Action::Pause => {
                self.paused = true;
                self.approved_in_pause = false;
            }
            Action::Resume => {
                self.paused = false;
                self.approved_in_pause = false;
            }
            Action::Pending { id, decision } => {
                self.pending.insert(*id, (**decision).clone());
            }
            Action::Approve { id, decision } => {
                self.pending.remove(id);
                self.approved_in_pause |= self.paused;
                self.execute(decision, at_ms, seq);
            }
            Action::Reject { id } => {
                if let Some(a) = self.pending.remove(id) {
                    if let Some(k) = a.kind_key() {
                        self.rejected.insert(k, at_ms);
                    }
                }
            }
            // The catalogue record carries the new home; nothing here derives from it.
            Action::Switchover { from, to, .. } => {
                debug_assert_ne!(from, to, "decision {seq}: a switchover moves the home");
            }
            Action::Promote {
                keyspace, epoch, ..
            } => {
                let before = self.promoted.insert(keyspace.clone(), *epoch);
                debug_assert!(
                    before.is_none_or(|e| e < *epoch),
                    "decision {seq}: a promotion moves {keyspace} to a newer epoch"
                );
            }
            Action::Promoted { .. } => {}
        }
    }

    /// The next entry's sequence number and previous hash.
    pub fn next(&self) -> (u64, String) {
        match &self.head {
            Some((s, h)) => (s + 1, h.clone()),
            None => (0, GENESIS.to_string()),
        }
    }

    /// Whether a (pending) decision still applies: leaders can leave only a region they have
    /// not left, and return only to one they left.
    pub fn applies(&self, action: &Action) -> bool {
        match action {
            Action::Failover { region, .. } => !self.evacuated.contains_key(region),
            Action::Failback { region } => self.evacuated.contains_key(region),
            Action::Promote {
                keyspace, epoch, ..
            } => self.promoted.get(keyspace).is_none_or(|e| e < epoch),
            _ => true,
        }
    }

    /// Whether leaders may be moved now: not while paused, unless to carry out a decision an
    /// operator approved during the pause.
    pub fn may_move_leaders(&self) -> bool {
        !self.paused || self.approved_in_pause
    }

    /// Where a keyspace's leaders belong: its home region unless leaders left it, else the
    /// first listed region (nearest first) that is not evacuated; `None` if all are.
    pub fn preferred_region<'a>(
        &self,
        home: &'a str,
        nearest_first: &'a [String],
    ) -> Option<&'a str> {
        if !self.evacuated.contains_key(home) {
            return Some(home);
        }
        nearest_first
            .iter()
            .map(String::as_str)
            .find(|r| *r != home && !self.evacuated.contains_key(*r))
    }
}

/// A decision the controller wants committed.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    pub action: Action,
    pub reason: String,
}

/// Decides from health and the committed state. Holds nothing of its own but timing, so any
/// node that becomes the metadata leader can take over.
#[derive(Debug, Default)]
pub struct Controller;

impl Controller {
    /// The decisions to commit now, from every region's judged health (`views`). `now_ms` is
    /// the judge's clock (monotonic: durations of health are measured on it, so a wall clock
    /// that jumps cannot shorten a hold-down); `wall_ms` is compared with the log's entry
    /// times (when leaders returned, when an operator rejected).
    pub fn decide(
        cfg: &FailoverConfig,
        state: &FailoverState,
        views: &BTreeMap<String, RegionView>,
        now_ms: u64,
        wall_ms: u64,
    ) -> Vec<Proposal> {
        Self::decide_with(cfg, state, views, &[], now_ms, wall_ms)
    }

    /// As `decide`, and promotions of `survive = "zone"` keyspaces whose home region is down:
    /// `promotion = "auto"` ones once it has been down for their `promotion_after_ms`, manual
    /// ones as a pending decision at once (an operator approves it).
    pub fn decide_with(
        cfg: &FailoverConfig,
        state: &FailoverState,
        views: &BTreeMap<String, RegionView>,
        zoned: &[ZoneKeyspace],
        now_ms: u64,
        wall_ms: u64,
    ) -> Vec<Proposal> {
        let mut wanted = Vec::new();
        let mut manual = Vec::new();
        for k in zoned {
            let Some(v) = views.get(&k.home).filter(|v| v.health == Health::Down) else {
                continue;
            };
            let Some(to) = &k.to else { continue };
            let action = Action::Promote {
                keyspace: k.name.clone(),
                from: k.home.clone(),
                to: to.clone(),
                epoch: k.epoch + 1,
            };
            if !state.applies(&action) {
                continue;
            }
            let down_for = now_ms.saturating_sub(v.since_ms);
            let reason = format!(
                "{} (survive = \"zone\") has lost its home region {}: down for {down_for} ms, unheard by {:?}; its replicas in {to} take over at epoch {}",
                k.name,
                k.home,
                v.unheard_by,
                k.epoch + 1
            );
            match k.after_ms {
                Some(after) if down_for >= after => wanted.push(Proposal { action, reason }),
                Some(_) => {}
                None => manual.push(Proposal {
                    action,
                    reason: format!("promotion = \"manual\": {reason}"),
                }),
            }
        }
        for (region, v) in views {
            let evacuated = state.evacuated.get(region);
            match (evacuated, v.health) {
                (None, Health::Down) => {
                    wanted.push(Proposal {
                        action: Action::Failover {
                            region: region.clone(),
                            holddown_ms: next_holddown(cfg, state, region, wall_ms),
                        },
                        reason: format!(
                            "{region} is down: unheard for {} ms (limit {} ms; unheard by {:?}, heard by {:?})",
                            v.unheard_ms,
                            cfg.down_after_ms,
                            v.unheard_by,
                            v.heard_by
                        ),
                    });
                }
                (None, Health::Degraded)
                    if now_ms.saturating_sub(v.since_ms) >= cfg.degraded_for_ms =>
                {
                    wanted.push(Proposal {
                        action: Action::Failover {
                            region: region.clone(),
                            holddown_ms: next_holddown(cfg, state, region, wall_ms),
                        },
                        reason: format!(
                            "{region} has been degraded for {} ms (limit {} ms): {:.0}% of {} samples bad, write p99 {:?} ms against a normal {:?} ms, fsync p99 {:?} ms against {:?} ms, write errors {}",
                            now_ms.saturating_sub(v.since_ms),
                            cfg.degraded_for_ms,
                            v.bad_share * 100.0,
                            v.samples,
                            v.write_p99_ms.map(|x| x.round()),
                            v.normal_write_ms.map(|x| x.round()),
                            v.fsync_p99_ms.map(|x| x.round()),
                            v.normal_fsync_ms.map(|x| x.round()),
                            v.error_rate.map_or("unmeasured".to_string(), |e| format!("{:.1}%", e * 100.0)),
                        ),
                    });
                }
                (Some(ev), Health::Healthy) => {
                    let healthy_for = now_ms.saturating_sub(v.since_ms);
                    if healthy_for >= ev.holddown_ms {
                        wanted.push(Proposal {
                            action: Action::Failback {
                                region: region.clone(),
                            },
                            reason: format!(
                                "{region} has been healthy for {healthy_for} ms, its hold-down is {} ms",
                                ev.holddown_ms
                            ),
                        });
                    }
                }
                _ => {}
            }
        }
        // An operator said no: not again for a base hold-down.
        wanted.retain(|p| {
            p.action
                .kind_key()
                .and_then(|k| state.rejected.get(&k))
                .is_none_or(|at| wall_ms.saturating_sub(*at) >= cfg.holddown_ms)
        });
        manual.retain(|p| {
            p.action
                .kind_key()
                .and_then(|k| state.rejected.get(&k))
                .is_none_or(|at| wall_ms.saturating_sub(*at) >= cfg.holddown_ms)
        });
        let (mut held, wanted) = if state.paused {
            (wanted, Vec::new())
        } else {
            (Vec::new(), wanted)
        };
        held.extend(manual);
        let mut next_id = state.head.as_ref().map_or(0, |(s, _)| s + 1);
        let pending: Vec<Proposal> = held
            .into_iter()
            .filter(|p| {
                !state
                    .pending
                    .values()
                    .any(|a| a.kind_key() == p.action.kind_key())
            })
            .map(|p| {
                let id = next_id;
                next_id += 1;
                Proposal {
                    reason: if state.paused {
                        format!("paused: waits for an operator ({})", p.reason)
                    } else {
                        format!("waits for an operator ({})", p.reason)
                    },
                    action: Action::Pending {
                        id,
                        decision: Box::new(p.action),
                    },
                }
            })
            .collect();
        wanted.into_iter().chain(pending).collect()
    }
}

/// A `survive = "zone"` keyspace, as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneKeyspace {
    pub name: String,
    pub home: String,
    pub epoch: u64,
    /// `promotion = "auto"`: how long the home region must be down first; `None`: manual.
    pub after_ms: Option<u64>,
    /// The region a promotion would move it to (the nearest listed region with live
    /// replicas), if any.
    pub to: Option<String>,
}

/// The hold-down a region gets if it fails now: doubled (up to the cap) when it fails again
/// within a hold-down of its leaders coming back, else the base.
fn next_holddown(cfg: &FailoverConfig, state: &FailoverState, region: &str, now_ms: u64) -> u64 {
    match state.returned.get(region) {
        Some(&(at, holddown)) if now_ms.saturating_sub(at) < holddown => {
            (holddown * 2).min(cfg.holddown_max_ms)
        }
        _ => cfg.holddown_ms,
    }
}

#[cfg(test)]
mod tests;
