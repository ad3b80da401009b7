//! The failover driver: feeds region health to the pure controller
//! (`meridian_control::failover`) and commits its decisions, and the operators', to the
//! decision log in the metadata group.
//!
//! The log lives in the metadata group's data: each entry under
//! `failover/log/<seq>-<hash prefix>` and the chain's head (`{seq, hash}`) under
//! `failover/head`. An append writes the entry, then moves the head with a compare-and-swap
//! from the head it built on, so two appenders (an old and a new metadata leader) cannot both
//! extend the chain; an entry whose head move lost is an orphan that no walk from the head
//! reaches. Only a side of a partition with a majority of the metadata voters commits
//! anything, and every node derives the same [`FailoverState`] from the committed log.
//!
//! Health: every node judges every region from its own probes and from what its peers report
//! in their probe answers (which peers they heard from lately, their write and fsync p99s);
//! only the metadata leader decides.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_consensus::state_machine;
use meridian_control::failover::{
    Action, Controller, Entry, FailoverConfig, FailoverState, HealthJudge, RegionSample, RegionView,
};
use meridian_types::wire::Command;
use meridian_types::{KvError, NodeId, ReadConsistency, META_GROUP};
use openraft::async_runtime::WatchReceiver;
use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::peer::{Op, ReadConsistencyWire};

pub const HEAD_KEY: &str = "failover/head";
pub const LOG_PREFIX: &str = "failover/log/";
/// Attempts of one append against concurrent appenders.
const APPEND_ATTEMPTS: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

fn entry_key(seq: u64, hash: &str) -> Vec<u8> {
    format!("{LOG_PREFIX}{seq:020}-{}", &hash[..16.min(hash.len())]).into_bytes()
}

/// Per node: the health judge and the state derived from the committed log.
#[derive(Default)]
pub struct Failover {
    judge: Mutex<HealthJudge>,
    /// The state as of a head, rebuilt when the head moves.
    cached: Mutex<Option<(Option<Head>, FailoverState)>>,
    /// Per evacuated region: the deciding entry and when (this node's monotonic clock) this
    /// node first saw it. A hold-down counts from then at the earliest: a node that becomes
    /// the metadata leader with a judge that always found the region healthy must not bring
    /// leaders back before the hold-down has passed since the evacuation.
    evacuation_seen: Mutex<BTreeMap<String, (u64, u64)>>,
}

/// The chain from `head` back to entry 0 through `rows` (every stored entry, orphans too),
/// oldest first.
fn chain(head: Option<Head>, rows: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Entry>, KvError> {
    let Some(head) = head else {
        return Ok(Vec::new());
    };
    let by_hash: BTreeMap<String, Entry> = rows
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<Entry>(v).ok())
        .map(|e| (e.hash.clone(), e))
        .collect();
    meridian_control::chain::walk_back(&by_hash, &head.hash, head.seq, "the failover log")
        .map_err(KvError::Internal)
}

fn state_of(log: &[Entry]) -> FailoverState {
    let mut s = FailoverState::default();
    for e in log {
        s.apply(e);
    }
    s
}

/// The log as this node's replica of the metadata group holds it (may lag the leader).
pub fn local_log(node: &Node) -> Result<Vec<Entry>, KvError> {
    let engine = node.committer.engine();
    let head = local_head(node);
    let rows = state_machine::scan(engine, META_GROUP, LOG_PREFIX.as_bytes(), usize::MAX)
        .map_err(|e| KvError::Internal(format!("reading the failover log: {e}")))?;
    chain(head, &rows)
}

fn local_head(node: &Node) -> Option<Head> {
    state_machine::read(node.committer.engine(), META_GROUP, HEAD_KEY.as_bytes())
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// The committed state as of this node's replica, cached until the head moves.
pub fn local_state(node: &Node) -> FailoverState {
    let head = local_head(node);
    let mut cached = node.failover.cached.lock().unwrap();
    if let Some((h, s)) = cached.as_ref() {
        if *h == head {
            return s.clone();
        }
    }
    let state = match local_log(node) {
        Ok(log) => state_of(&log),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the failover log; keeping the last state");
            return cached.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
        }
    };
    if let (Some(h), Some((seq, _))) = (&head, &state.head) {
        debug_assert_eq!(h.seq, *seq, "the state is the head's");
    }
    *cached = Some((head, state.clone()));
    state
}

/// The log read linearizably through the metadata leader.
pub async fn read_log(node: &Arc<Node>) -> Result<Vec<Entry>, KvError> {
    let head = node
        .execute(
            META_GROUP,
            Op::get(HEAD_KEY.as_bytes().to_vec(), ReadConsistency::Linearizable),
            0,
        )
        .await?
        .value;
    let head: Option<Head> = match head {
        Some(b) => Some(
            serde_json::from_slice(&b)
                .map_err(|e| KvError::Internal(format!("the failover log's head: {e}")))?,
        ),
        None => None,
    };
    let rows = node
        .execute(
            META_GROUP,
            Op::Scan {
                prefix: LOG_PREFIX.as_bytes().to_vec(),
                limit: usize::MAX,
                consistency: ReadConsistencyWire::Linearizable,
                needs: Vec::new(),
            },
            0,
        )
        .await?
        .rows;
    chain(head, &rows)
}

/// Appends the action `build` makes of the current state (it may refuse: an approval of no
/// pending decision), retrying when another appender moved the head first. Operators' actions:
/// any node takes them, and its writes go to the metadata leader wherever it is.
pub async fn append(
    node: &Arc<Node>,
    by: &str,
    reason: &str,
    inputs: BTreeMap<String, RegionView>,
    build: impl Fn(&FailoverState) -> Result<Action, KvError>,
) -> Result<Entry, KvError> {
    append_with(node, by, reason, inputs, build, None).await
}

/// How a decision reaches the metadata group.
#[derive(Clone, Copy)]
struct Fence {
    /// The metadata leader's term when the controller decided.
    term: u64,
}

/// How long the controller waits for a quorum to confirm its leadership before committing a
/// decision; no confirmation, no decision (the next tick decides again).
const CONFIRM_WAIT: Duration = Duration::from_secs(1);

/// The controller's decisions: only the metadata leader that took one may commit it, in the
/// term it took it in, after a quorum has confirmed its leadership (a read index, not the
/// lease: the tick confirms before it judges and decides, and each attempt here again), and
/// never by forwarding. A leader cut off in a minority therefore commits nothing:
/// its proposals are discarded when the majority's new leader takes over, where a forwarded
/// retry would have carried a decision taken on the minority side to the majority after the cut
/// healed (the simulator's metadata-minority checker found exactly that, seed 196).
async fn append_as_leader(
    node: &Arc<Node>,
    by: &str,
    reason: &str,
    inputs: BTreeMap<String, RegionView>,
    build: impl Fn(&FailoverState) -> Result<Action, KvError>,
    term: u64,
) -> Result<Entry, KvError> {
    append_with(node, by, reason, inputs, build, Some(Fence { term })).await
}

fn unavailable(why: &str) -> KvError {
    KvError::Unavailable(format!("failover decision abandoned: {why}"))
}

/// A proposal of the controller's that has not committed by then is given up (it may still
/// commit, in the deciding leader's term, if the leader regains its majority before anyone
/// else is elected); the loop that runs the failover tick must not wait out a partition.
/// Long enough for a leader whose own disk is gray (every commit stalled, a queue behind it):
/// 2 s abandoned a gray leader's decisions again and again (simulator, gray seed 184).
const PROPOSE_WAIT: Duration = Duration::from_secs(10);

/// This node still leads the metadata group in `term`, as a quorum confirms now (a read
/// index, not the lease). It does not wait for its replica to apply up to that point: a
/// decision built on a replica that lags fails its compare-and-swap of the head and is built
/// again, and a gray leader (every apply behind a stalled disk) would wait a stall more for
/// each decision.
/// This node's metadata replica, if it still leads in `term`.
fn leading_in(node: &Node, term: u64) -> Result<meridian_consensus::Group, KvError> {
    let g = node
        .group(META_GROUP)
        .ok_or_else(|| unavailable("no metadata replica here"))?;
    if g.raft.metrics().borrow_watched().current_term != term || !g.raft.is_leader() {
        return Err(unavailable(
            "the metadata leadership moved since the decision",
        ));
    }
    Ok(g)
}

async fn confirm_leadership(node: &Arc<Node>, term: u64) -> Result<(), KvError> {
    let g = leading_in(node, term)?;
    match tokio::time::timeout(
        CONFIRM_WAIT,
        g.raft.get_read_linearizer(openraft::ReadPolicy::ReadIndex),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unavailable(&format!("leadership not confirmed: {e}"))),
        Err(_) => Err(unavailable("no quorum confirmed the leadership in time")),
    }
}

/// Proposes `cmd` on this node's replica of the metadata group, which must still lead in
/// `fence.term`.
async fn propose_here(
    node: &Arc<Node>,
    fence: Fence,
    cmd: Command,
) -> Result<meridian_types::wire::CommandResult, KvError> {
    let g = leading_in(node, fence.term)?;
    match tokio::time::timeout(PROPOSE_WAIT, g.raft.client_write(cmd)).await {
        Ok(Ok(r)) => Ok(r.data),
        Ok(Err(e)) => Err(unavailable(&format!(
            "not committed by the deciding leader: {e}"
        ))),
        Err(_) => Err(unavailable("not committed in time (no quorum?)")),
    }
}

async fn append_with(
    node: &Arc<Node>,
    by: &str,
    reason: &str,
    inputs: BTreeMap<String, RegionView>,
    build: impl Fn(&FailoverState) -> Result<Action, KvError>,
    fence: Option<Fence>,
) -> Result<Entry, KvError> {
    for _ in 0..APPEND_ATTEMPTS {
        let log = match fence {
            None => read_log(node).await?,
            Some(f) => {
                confirm_leadership(node, f.term).await?;
                local_log(node)?
            }
        };
        let state = state_of(&log);
        let action = build(&state)?;
        let (seq, prev) = state.next();
        // Stamped once the leadership is confirmed: the moment the decision is taken.
        let entry = Entry {
            seq,
            at_ms: node.clock.now_ms(),
            action,
            reason: reason.to_string(),
            by: by.to_string(),
            inputs: inputs.clone(),
            prev: String::new(),
            hash: String::new(),
        }
        .seal(&prev);
        let put = Command::Put {
            key: entry_key(entry.seq, &entry.hash),
            value: serde_json::to_vec(&entry).expect("entries encode"),
        };
        match fence {
            None => {
                node.execute(META_GROUP, Op::Write(put), 0).await?;
            }
            Some(f) => {
                propose_here(node, f, put).await?;
            }
        }
        let old = state.head.as_ref().map(|(seq, hash)| {
            serde_json::to_vec(&Head {
                seq: *seq,
                hash: hash.clone(),
            })
            .expect("heads encode")
        });
        let new = Head {
            seq: entry.seq,
            hash: entry.hash.clone(),
        };
        let cas = Command::Cas {
            key: HEAD_KEY.as_bytes().to_vec(),
            expected: old,
            value: Some(serde_json::to_vec(&new).expect("heads encode")),
        };
        let succeeded = match fence {
            None => {
                node.execute(META_GROUP, Op::Write(cas), 0)
                    .await?
                    .result
                    .succeeded
            }
            Some(f) => propose_here(node, f, cas).await?.succeeded,
        };
        if succeeded {
            tracing::warn!(
                seq = entry.seq,
                action = entry.action.name(),
                by,
                reason,
                "failover decision committed"
            );
            metrics::counter!("meridian_failover_decisions_total", "action" => entry.action.name())
                .increment(1);
            return Ok(entry);
        }
    }
    Err(KvError::Unavailable(format!(
        "the failover log moved under {APPEND_ATTEMPTS} attempts to append; retry"
    )))
}

/// The failover tuning with `down_after_ms` raised to ten of the largest round trip measured
/// to any peer (the configured value is the floor).
pub fn calibrated(node: &Node) -> FailoverConfig {
    let largest = node
        .observations
        .peers()
        .iter()
        .map(|p| p.rtt_ms)
        .fold(0.0, f64::max);
    let cfg = node.cfg.failover.clone();
    let floor = cfg.down_after_ms;
    cfg.calibrated(largest, floor)
}

/// One sample per region, as this node sees the cluster now.
fn samples(node: &Node, cfg: &FailoverConfig) -> Vec<RegionSample> {
    let nodes = node.catalog_nodes();
    let region_of: BTreeMap<NodeId, String> =
        nodes.iter().map(|n| (n.id, n.region.clone())).collect();
    let regions: BTreeSet<String> = region_of.values().cloned().collect();
    let down_after = Duration::from_millis(cfg.down_after_ms);
    let peers = node.observations.peers();
    // Per observing node: ms since it heard each node, as of now.
    let mut heard: BTreeMap<NodeId, BTreeMap<NodeId, u64>> = BTreeMap::new();
    let mine: BTreeMap<NodeId, u64> = peers
        .iter()
        .map(|p| (p.node, p.at.elapsed().as_millis() as u64))
        .collect();
    heard.insert(node.id(), mine);
    for p in &peers {
        let report_age = p.at.elapsed().as_millis() as u64;
        if report_age > cfg.down_after_ms {
            continue;
        }
        heard.insert(
            p.node,
            p.health
                .heard
                .iter()
                .map(|(n, age)| (*n, age + report_age))
                .collect(),
        );
    }
    let mut out = Vec::new();
    for region in &regions {
        let members: Vec<NodeId> = region_of
            .iter()
            .filter(|(_, r)| *r == region)
            .map(|(n, _)| *n)
            .collect();
        let mut by_observer: BTreeMap<&str, bool> = BTreeMap::new();
        for (observer, ages) in &heard {
            let Some(observer_region) = region_of.get(observer) else {
                continue;
            };
            if observer_region == region {
                continue;
            }
            let saw = members.iter().any(|m| {
                ages.get(m)
                    .is_some_and(|a| *a < down_after.as_millis() as u64)
            });
            *by_observer.entry(observer_region.as_str()).or_default() |= saw;
        }
        let (heard_by, unheard_by): (Vec<_>, Vec<_>) =
            by_observer.into_iter().partition(|(_, saw)| *saw);
        let lost = members
            .iter()
            .filter(|m| **m != node.id())
            .filter(|m| {
                !peers
                    .iter()
                    .any(|p| p.node == **m && p.at.elapsed() < down_after)
            })
            .count();
        let probed = members.iter().filter(|m| **m != node.id()).count();
        // The region's worst node: a gray disk on one node is the region's problem when that
        // node leads.
        let mut write_p99: Option<f64> = None;
        let mut fsync_p99: Option<f64> = None;
        let mut error_rate: Option<f64> = None;
        let worst = |acc: &mut Option<f64>, v: Option<f64>| {
            if let Some(v) = v {
                *acc = Some(acc.map_or(v, |x: f64| x.max(v)));
            }
        };
        let mut fold = |h: &HealthReport| {
            worst(&mut write_p99, h.write_p99_ms);
            worst(&mut fsync_p99, h.fsync_p99_ms);
            worst(&mut error_rate, h.write_error_rate);
        };
        for m in &members {
            if *m == node.id() {
                fold(&own_health(node));
            } else if let Some(p) = peers
                .iter()
                .find(|p| p.node == *m && p.at.elapsed() < down_after)
            {
                fold(&p.health);
            }
        }
        out.push(RegionSample {
            region: region.clone(),
            heard_by: heard_by.into_iter().map(|(r, _)| r.to_string()).collect(),
            unheard_by: unheard_by.into_iter().map(|(r, _)| r.to_string()).collect(),
            probe_loss: if probed == 0 {
                0.0
            } else {
                lost as f64 / probed as f64
            },
            write_p99_ms: write_p99,
            fsync_p99_ms: fsync_p99,
            error_rate,
        });
    }
    out
}

/// What this node reports of itself in probe answers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HealthReport {
    /// Peers this node heard from, and how many ms ago.
    pub heard: Vec<(NodeId, u64)>,
    /// p99 of the writes this node committed as a leader, and of its disk's durable commits,
    /// over the last 10 s.
    pub write_p99_ms: Option<f64>,
    pub fsync_p99_ms: Option<f64>,
    /// The share of those writes that failed, over the same window (`None`: too few).
    pub write_error_rate: Option<f64>,
}

/// Writes in the window before a node's error rate says anything.
pub const ERROR_RATE_MIN_WRITES: usize = 20;

pub fn own_health(node: &Node) -> HealthReport {
    HealthReport {
        heard: node
            .observations
            .peers()
            .iter()
            .map(|p| (p.node, p.at.elapsed().as_millis() as u64))
            .collect(),
        write_p99_ms: node.write_latency.p99_ms(),
        write_error_rate: node.write_outcomes.error_rate(ERROR_RATE_MIN_WRITES),
        fsync_p99_ms: node.committer.disk().fsync.p99_ms(),
    }
}

/// Judges health (every node) and, on the metadata leader, commits what the controller decides.
pub async fn tick(node: &Arc<Node>) {
    let cfg = calibrated(node);
    // The metadata leader confirms its leadership with a quorum first, so what it judges and
    // decides below is judged after it last had a majority (see `append_as_leader`).
    let meta_term = match node
        .group(META_GROUP)
        .filter(|g| g.raft.is_leader())
        .map(|g| g.raft.metrics().borrow_watched().current_term)
    {
        Some(term) => match confirm_leadership(node, term).await {
            Ok(()) => Some(term),
            Err(e) => {
                tracing::debug!(error = %e, "no failover decisions this tick");
                None
            }
        },
        None => None,
    };
    // Health durations on the monotonic clock; entry times on the wall clock.
    let now_ms = node.fresh_clock.now_ms();
    let wall_ms = node.clock.now_ms();
    let samples = samples(node, &cfg);
    let views = {
        let mut judge = node.failover.judge.lock().unwrap();
        judge.observe(&cfg, now_ms, &samples);
        judge.views()
    };
    let state = local_state(node);
    let mut views = views;
    {
        let mut seen = node.failover.evacuation_seen.lock().unwrap();
        seen.retain(|r, (seq, _)| state.evacuated.get(r).is_some_and(|e| e.decision == *seq));
        for (region, ev) in &state.evacuated {
            let (_, since) = *seen.entry(region.clone()).or_insert((ev.decision, now_ms));
            if let Some(v) = views.get_mut(region) {
                v.since_ms = v.since_ms.max(since);
            }
        }
    }
    let is_meta_leader = meta_term.is_some();
    for (region, v) in &views {
        metrics::gauge!("meridian_region_health", "observer" => node.id().to_string(), "region" => region.clone())
            .set(match v.health {
                meridian_control::failover::Health::Healthy => 0.0,
                meridian_control::failover::Health::Degraded => 1.0,
                meridian_control::failover::Health::Down => 2.0,
            });
    }
    if !is_meta_leader {
        return;
    }
    for (region, v) in &views {
        tracing::trace!(%region, health = v.health.as_str(), bad_share = v.bad_share, samples = v.samples, write_p99 = ?v.write_p99_ms, fsync_p99 = ?v.fsync_p99_ms, since_ms = v.since_ms, now_ms, "region health");
    }
    let zoned = zoned_keyspaces(node, &views);
    let proposals = Controller::decide_with(&cfg, &state, &views, &zoned, now_ms, wall_ms);
    let by = format!("controller@{}", node.id());
    for p in proposals {
        let wanted = same_decision(&p.action);
        let term = meta_term.expect("only the metadata leader decides");
        let result = append_as_leader(
            node,
            &by,
            &p.reason,
            views.clone(),
            |s| {
                // Decided on a possibly stale state: decide again on the committed one.
                let again = Controller::decide_with(&cfg, s, &views, &zoned, now_ms, wall_ms);
                again
                    .into_iter()
                    .map(|q| q.action)
                    .find(|a| same_decision(a) == wanted)
                    .ok_or_else(|| KvError::FailedPrecondition("decided already".into()))
            },
            term,
        )
        .await;
        match result {
            Ok(_) | Err(KvError::FailedPrecondition(_)) => {}
            Err(e) => {
                tracing::debug!(error = %e, "failover decision not committed; next tick retries");
                return;
            }
        }
    }
    crate::promotion::drive(node);
}

/// The `survive = "zone"` keyspaces, with where a promotion would take each: the nearest
/// listed region, other than the home, that holds replicas and is not judged down.
fn zoned_keyspaces(
    node: &Node,
    views: &BTreeMap<String, RegionView>,
) -> Vec<meridian_control::failover::ZoneKeyspace> {
    let regions = node.regions_by_node();
    node.catalog_keyspaces()
        .into_iter()
        .filter(|k| {
            k.policy.replication == meridian_types::Replication::Sync
                && k.policy.survive == meridian_types::Survive::Zone
        })
        .map(|k| {
            let home = k.policy.home_region.clone().unwrap_or_default();
            let to = k
                .policy
                .regions
                .iter()
                .filter(|r| **r != home)
                .filter(|r| {
                    views
                        .get(*r)
                        .is_none_or(|v| v.health != meridian_control::failover::Health::Down)
                })
                .filter(|r| {
                    k.shards.iter().all(|s| {
                        s.replicas()
                            .any(|n| regions.get(&n).is_some_and(|nr| nr == *r))
                    })
                })
                .min_by_key(|r| ((node.matrix.rtt_ms(&home, r) * 1000.0) as u64, (*r).clone()))
                .cloned();
            meridian_control::failover::ZoneKeyspace {
                name: k.policy.name.clone(),
                home,
                epoch: k.epoch,
                after_ms: k.policy.promotion_after(),
                to,
            }
        })
        .collect()
}

/// What makes two decisions the same one: the action and, for a pending one, what it holds.
fn same_decision(a: &Action) -> (&'static str, Option<String>) {
    match a {
        Action::Pending { decision, .. } => ("pending", decision.kind_key()),
        _ => (a.name(), a.kind_key()),
    }
}

/// The health this node judges, for status and the console.
pub fn views(node: &Node) -> BTreeMap<String, RegionView> {
    node.failover.judge.lock().unwrap().views()
}

/// Operator actions.
pub async fn operator(
    node: &Arc<Node>,
    who: &str,
    reason: &str,
    what: OperatorAction,
) -> Result<Entry, KvError> {
    let inputs = views(node);
    let by = format!("operator:{who}");
    append(node, &by, reason, inputs, |s| match what {
        OperatorAction::Pause if s.paused => Err(KvError::FailedPrecondition(
            "failover is already paused; `meridian failover resume` resumes it".into(),
        )),
        OperatorAction::Pause => Ok(Action::Pause),
        OperatorAction::Resume if !s.paused => {
            Err(KvError::FailedPrecondition("failover is not paused".into()))
        }
        OperatorAction::Resume => Ok(Action::Resume),
        OperatorAction::Approve(id) | OperatorAction::Reject(id) => {
            let Some(decision) = s.pending.get(&id) else {
                return Err(KvError::NotFound(format!(
                    "no pending decision {id}; pending: {:?} (see `meridian failover status`)",
                    s.pending.keys().collect::<Vec<_>>()
                )));
            };
            if matches!(what, OperatorAction::Approve(_)) && !s.applies(decision) {
                return Err(KvError::FailedPrecondition(format!(
                    "pending decision {id} ({} {}) no longer applies: the placement changed since it was proposed; reject it with `meridian failover reject {id}`",
                    decision.name(),
                    decision.kind_key().unwrap_or_default()
                )));
            }
            Ok(match what {
                OperatorAction::Approve(_) => Action::Approve {
                    id,
                    decision: Box::new(decision.clone()),
                },
                _ => Action::Reject { id },
            })
        }
    })
    .await
}

#[derive(Clone, Copy, Debug)]
pub enum OperatorAction {
    Pause,
    Resume,
    Approve(u64),
    Reject(u64),
}

/// `GET /v1/failover`: the committed state and this node's health judgement.
pub fn status(node: &Node) -> serde_json::Value {
    let state = local_state(node);
    let cfg = calibrated(node);
    serde_json::json!({
        "observed_by": {"node": node.id(), "region": node.cfg.region},
        "paused": state.paused,
        "health": views(node),
        // The clock of the health views' `since_ms` (monotonic, this node's).
        "health_clock_ms": node.fresh_clock.now_ms(),
        "evacuated": state.evacuated,
        "pending": state.pending.iter().map(|(id, a)| serde_json::json!({"id": id, "decision": a})).collect::<Vec<_>>(),
        "head": state.head.as_ref().map(|(seq, hash)| serde_json::json!({"seq": seq, "hash": hash})),
        "config": cfg,
    })
}
