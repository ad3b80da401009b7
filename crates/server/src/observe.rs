//! What a node measures about the cluster while it runs: replication lag per pair of regions,
//! clock offset and round-trip time to every peer, and failovers with their recovery time.
//! The reconcile loop and the probe loop feed it; `/metrics`, `/v1/cluster` and the console
//! read it.
//!
//! Lag is measured where it is known: a leader knows how many entries each follower lacks; a
//! follower knows how old the leader state it has applied may be (`Freshness`). The lag matrix
//! merges this node's view with the latest reports of its peers.

use openraft::async_runtime::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_consensus::ClockOffset;
use meridian_types::catalog::NodeRecord;
use meridian_types::NodeId;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::node::Node;
use crate::peer::{NodeStats, PeerRequest, PeerResponse, RegionLag};
use crate::transport::Endpoint;

/// How often every peer is probed for its clock and lag report.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probe unanswered this long counts as failed (longer than any WAN round trip). A round of
/// probes takes at most interval + timeout, which `failover.down_after_ms` (3 s) must exceed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// A peer's report older than this is left out of the lag matrix.
const REPORT_AGE_MAX: Duration = Duration::from_secs(10);
/// A clock offset probed longer ago than this is not trusted for bounded reads.
const OFFSET_AGE_MAX: Duration = Duration::from_secs(60);
/// How fast two freshness clocks may drift apart, in parts per million: monotonic clocks of
/// healthy machines drift by tens of ppm; this allows for far worse.
const CLOCK_DRIFT_PPM_MAX: u64 = 1_000;

/// The last successful probe of one peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerProbe {
    pub node: NodeId,
    pub region: String,
    /// The peer's clock minus this node's, estimated at the midpoint of the round trip; the
    /// error is at most half the round trip.
    pub clock_offset_ms: i64,
    pub rtt_ms: f64,
    /// The peer's freshness clock against this node's (see `meridian_consensus::freshness`),
    /// which bounded-staleness reads rely on.
    #[serde(skip)]
    pub freshness_offset: ClockOffset,
    #[serde(skip)]
    pub at: Instant,
    #[serde(skip)]
    pub lag: Vec<RegionLag>,
    #[serde(skip)]
    pub async_lag: Vec<AsyncLag>,
    #[serde(skip)]
    pub health: crate::failover::HealthReport,
    #[serde(skip)]
    pub requests: RequestStats,
}

/// What a node reports about the client requests it received (reads: gets and scans; writes:
/// everything else), for the console's per-region charts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RequestStats {
    /// Requests served since the node started (rates come from the difference of two reports).
    pub writes_total: u64,
    pub reads_total: u64,
    /// Latency percentiles over the last [`REQUEST_WINDOW`].
    pub write_p50_ms: Option<f64>,
    pub write_p99_ms: Option<f64>,
    pub read_p50_ms: Option<f64>,
    pub read_p99_ms: Option<f64>,
    /// The node's measured round trips to its peers: (peer, ms).
    pub rtt_ms: Vec<(NodeId, f64)>,
}

/// How far back request latency percentiles look.
pub const REQUEST_WINDOW: Duration = Duration::from_secs(30);

/// The client requests this node received: counts and recent latencies.
pub struct RequestCounters {
    writes: std::sync::atomic::AtomicU64,
    reads: std::sync::atomic::AtomicU64,
    write_latency: meridian_storage::LatencyWindow,
    read_latency: meridian_storage::LatencyWindow,
}

impl Default for RequestCounters {
    fn default() -> Self {
        RequestCounters {
            writes: Default::default(),
            reads: Default::default(),
            write_latency: meridian_storage::LatencyWindow::new(REQUEST_WINDOW, 8192),
            read_latency: meridian_storage::LatencyWindow::new(REQUEST_WINDOW, 8192),
        }
    }
}

impl RequestCounters {
    /// Records one request of operation `op` that took `took`.
    pub fn record(&self, op: &str, took: Duration) {
        use std::sync::atomic::Ordering;
        if matches!(op, "get" | "scan" | "read") {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.read_latency.record(took);
        } else {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.write_latency.record(took);
        }
    }

    fn stats(&self, peers: &[PeerProbe]) -> RequestStats {
        use std::sync::atomic::Ordering;
        let w = self.write_latency.quantiles_ms(&[0.5, 0.99]);
        let r = self.read_latency.quantiles_ms(&[0.5, 0.99]);
        RequestStats {
            writes_total: self.writes.load(Ordering::Relaxed),
            reads_total: self.reads.load(Ordering::Relaxed),
            write_p50_ms: w.as_ref().map(|q| q[0]),
            write_p99_ms: w.as_ref().map(|q| q[1]),
            read_p50_ms: r.as_ref().map(|q| q[0]),
            read_p99_ms: r.as_ref().map(|q| q[1]),
            rtt_ms: peers.iter().map(|p| (p.node, p.rtt_ms)).collect(),
        }
    }
}

/// This node's request report.
pub fn request_stats(node: &Node) -> RequestStats {
    node.requests.stats(&node.observations.peers())
}

/// The node's measurements, refreshed by [`measure_lag`] and [`probe_loop`].
#[derive(Default)]
pub struct Observations {
    lag: Mutex<Vec<RegionLag>>,
    peers: Mutex<BTreeMap<NodeId, PeerProbe>>,
    /// Region pairs whose lag gauges were set, so a pair no longer measured reads NaN, not its
    /// last value.
    lag_pairs_exported: Mutex<BTreeSet<(String, String)>>,
    /// Async keyspaces: per (keyspace, source region, destination region), the delay from a
    /// write's HLC to its commit here, over every batch this node committed as destination.
    delivery: Mutex<BTreeMap<(String, String, String), hdrhistogram::Histogram<u64>>>,
    /// Shipped stamps further ahead of this node's wall clock than `max_clock_offset_ms`.
    pub skew_alarms: std::sync::atomic::AtomicU64,
}

/// Replication of one async keyspace from one region to another, as one node sees it: the
/// source's leaders know how far behind the destination is; the destination's leaders know
/// how long delivered writes took.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncLag {
    pub keyspace: String,
    pub source_region: String,
    pub dest_region: String,
    /// Age of the oldest write committed at the source and not yet applied at the
    /// destination (0: nothing pending), worst over shards.
    pub lag_ms: Option<u64>,
    pub lag_entries: Option<u64>,
    /// Every shard's shipper had its last exchange succeed.
    pub connected: Option<bool>,
    /// Delivery delay of writes (HLC to commit at the destination), over this node's life.
    pub delivery_p50_ms: Option<u64>,
    pub delivery_p99_ms: Option<u64>,
    pub delivered: u64,
}

impl Observations {
    /// This node's own lag view (answers peers' probes).
    pub fn lag(&self) -> Vec<RegionLag> {
        self.lag.lock().unwrap().clone()
    }

    pub fn peers(&self) -> Vec<PeerProbe> {
        self.peers.lock().unwrap().values().cloned().collect()
    }

    /// Peer `node`'s freshness clock against this node's, with an error that covers the
    /// probe's round trip and the drift since, if it is known and within `max_offset_ms`.
    /// `Err` says why bounded reads cannot rest on it.
    pub fn clock_offset(&self, node: NodeId, max_offset_ms: u64) -> Result<ClockOffset, String> {
        let peers = self.peers.lock().unwrap();
        let Some(p) = peers.get(&node) else {
            return Err(format!(
                "the clock of node {node} has not been probed yet (every {PROBE_INTERVAL:?})"
            ));
        };
        let age = p.at.elapsed();
        if age > OFFSET_AGE_MAX {
            return Err(format!(
                "the clock of node {node} was last probed {age:?} ago, longer than {OFFSET_AGE_MAX:?}"
            ));
        }
        let drift_ms = (age.as_millis() as u64 * CLOCK_DRIFT_PPM_MAX).div_ceil(1_000_000);
        let o = ClockOffset {
            error_ms: p.freshness_offset.error_ms + drift_ms,
            ..p.freshness_offset
        };
        if o.offset_ms.unsigned_abs() + o.error_ms > max_offset_ms {
            return Err(format!(
                "the clock of node {node} is {} ms off this node's (± {} ms), beyond max_clock_offset_ms = {max_offset_ms}; fix the clocks (NTP) or raise the limit",
                o.offset_ms, o.error_ms
            ));
        }
        Ok(o)
    }
}

fn worse(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Merges lag views into the worst lag per (source, destination) region pair.
pub fn merge_lag<'a>(views: impl Iterator<Item = &'a RegionLag>) -> Vec<RegionLag> {
    let mut worst: BTreeMap<(String, String), RegionLag> = BTreeMap::new();
    for l in views {
        let e = worst
            .entry((l.source_region.clone(), l.dest_region.clone()))
            .or_insert_with(|| RegionLag {
                source_region: l.source_region.clone(),
                dest_region: l.dest_region.clone(),
                ..Default::default()
            });
        e.lag_ms = worse(e.lag_ms, l.lag_ms);
        e.lag_entries = worse(e.lag_entries, l.lag_entries);
    }
    worst.into_values().collect()
}

/// Measures this node's lag view over every group it runs and exports it as gauges.
pub fn measure_lag(node: &Node) {
    let regions = node.regions_by_node();
    let fresh_now_ms = node.fresh_clock.now_ms();
    let mut views = Vec::new();
    for g in node.groups() {
        let m = g.raft.metrics().borrow_watched().clone();
        let Some(leader_region) = m.current_leader.and_then(|l| regions.get(&l)) else {
            continue;
        };
        if m.current_leader == Some(node.id()) {
            let last = m.last_log_index.unwrap_or(0);
            for (id, matched) in m.replication.iter().flatten() {
                let Some(region) = regions.get(id).filter(|_| *id != node.id()) else {
                    continue;
                };
                let matched = matched.as_ref().map(|l| l.index()).unwrap_or(0);
                views.push(RegionLag {
                    source_region: leader_region.clone(),
                    dest_region: region.clone(),
                    lag_ms: None,
                    lag_entries: Some(last.saturating_sub(matched)),
                });
            }
        } else {
            let applied = m.last_applied.as_ref().map(|l| l.index()).unwrap_or(0);
            if let Some(ms) = g.freshness.staleness_ms(applied, fresh_now_ms) {
                views.push(RegionLag {
                    source_region: leader_region.clone(),
                    dest_region: node.cfg.region.clone(),
                    lag_ms: Some(ms),
                    lag_entries: None,
                });
            }
        }
    }
    let lag = merge_lag(views.iter());
    export_lag(node, &lag);
    *node.observations.lag.lock().unwrap() = lag;
}

fn export_lag(node: &Node, lag: &[RegionLag]) {
    let id = node.id().to_string();
    let mut exported = node.observations.lag_pairs_exported.lock().unwrap();
    let current: BTreeSet<(String, String)> = lag
        .iter()
        .map(|l| (l.source_region.clone(), l.dest_region.clone()))
        .collect();
    for (src, dst) in exported.difference(&current) {
        let labels = [
            ("node", id.clone()),
            ("source_region", src.clone()),
            ("dest_region", dst.clone()),
        ];
        metrics::gauge!("meridian_replication_lag_seconds", &labels).set(f64::NAN);
        metrics::gauge!("meridian_replication_lag_entries", &labels).set(f64::NAN);
    }
    for l in lag {
        let labels = [
            ("node", id.clone()),
            ("source_region", l.source_region.clone()),
            ("dest_region", l.dest_region.clone()),
        ];
        if let Some(ms) = l.lag_ms {
            metrics::gauge!("meridian_replication_lag_seconds", &labels).set(ms as f64 / 1000.0);
        }
        if let Some(n) = l.lag_entries {
            metrics::gauge!("meridian_replication_lag_entries", &labels).set(n as f64);
        }
    }
    exported.extend(current);
}

/// The lag matrix: this node's view merged with every fresh peer report.
pub fn lag_matrix(node: &Node) -> Vec<RegionLag> {
    let own = node.observations.lag();
    let peers = node.observations.peers.lock().unwrap();
    let fresh = peers
        .values()
        .filter(|p| p.at.elapsed() < REPORT_AGE_MAX)
        .flat_map(|p| p.lag.iter());
    merge_lag(own.iter().chain(fresh))
}

/// Records writes a shipped batch delivered to `dest` (committed here): their delay from HLC
/// to now, on this node's wall clock (which includes the clock offset between the regions).
pub fn record_shipped(
    node: &Node,
    dest: meridian_types::GroupId,
    source: meridian_types::GroupId,
    stamps: &[meridian_crdt::Hlc],
) {
    use meridian_types::ids::{async_region_index, group_keyspace};
    let Some(ks) = node.keyspace_by_id(group_keyspace(dest)) else {
        return;
    };
    let region = |g| {
        ks.policy
            .regions
            .get(async_region_index(g))
            .cloned()
            .unwrap_or_default()
    };
    let (src, dst) = (region(source), region(dest));
    let now = node.clock.now_ms();
    let hist = metrics::histogram!(
        "meridian_async_delivery_seconds",
        "keyspace" => ks.policy.name.clone(),
        "source_region" => src.clone(),
        "dest_region" => dst.clone(),
    );
    let mut all = node.observations.delivery.lock().unwrap();
    let h = all
        .entry((ks.policy.name.clone(), src, dst))
        .or_insert_with(|| {
            hdrhistogram::Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid bounds")
        });
    for s in stamps {
        let ms = now.saturating_sub(s.physical_ms);
        hist.record(ms as f64 / 1000.0);
        h.saturating_record(ms.max(1));
    }
}

/// Counts a shipped stamp further ahead of this node's clock than `max_clock_offset_ms`.
pub fn record_skew_alarm(node: &Node, group: meridian_types::GroupId, ahead_ms: u64) {
    node.observations
        .skew_alarms
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    metrics::counter!("meridian_hlc_skew_alarms_total", "node" => node.id().to_string())
        .increment(1);
    tracing::warn!(
        group,
        ahead_ms,
        max_clock_offset_ms = node.cfg.max_clock_offset_ms,
        "a shipped write's HLC is ahead of this node's clock by more than max_clock_offset_ms; applied all the same"
    );
}

/// This node's view of async replication: its shippers (as source) and deliveries (as
/// destination), merged per (keyspace, source, destination); exported as gauges.
pub fn async_lag_own(node: &Node) -> Vec<AsyncLag> {
    let mut rows: BTreeMap<(String, String, String), AsyncLag> = BTreeMap::new();
    let wall = node.clock.now_ms();
    for r in node.shippers.lock().unwrap().values() {
        if r.task.is_finished() {
            continue;
        }
        let p = r.status.get();
        let e = rows
            .entry((
                r.keyspace.clone(),
                r.source_region.clone(),
                r.dest_region.clone(),
            ))
            .or_insert_with(|| AsyncLag {
                keyspace: r.keyspace.clone(),
                source_region: r.source_region.clone(),
                dest_region: r.dest_region.clone(),
                ..Default::default()
            });
        e.lag_ms = worse(e.lag_ms, Some(p.lag_ms(wall)));
        e.lag_entries = worse(e.lag_entries, Some(p.entries_behind()));
        e.connected = Some(e.connected.unwrap_or(true) && p.connected);
    }
    for ((ks, src, dst), h) in node.observations.delivery.lock().unwrap().iter() {
        let e = rows
            .entry((ks.clone(), src.clone(), dst.clone()))
            .or_insert_with(|| AsyncLag {
                keyspace: ks.clone(),
                source_region: src.clone(),
                dest_region: dst.clone(),
                ..Default::default()
            });
        e.delivery_p50_ms = Some(h.value_at_quantile(0.5));
        e.delivery_p99_ms = Some(h.value_at_quantile(0.99));
        e.delivered = h.len();
    }
    let id = node.id().to_string();
    for l in rows.values() {
        let labels = [
            ("node", id.clone()),
            ("keyspace", l.keyspace.clone()),
            ("source_region", l.source_region.clone()),
            ("dest_region", l.dest_region.clone()),
        ];
        if let Some(ms) = l.lag_ms {
            metrics::gauge!("meridian_async_lag_seconds", &labels).set(ms as f64 / 1000.0);
        }
        if let Some(n) = l.lag_entries {
            metrics::gauge!("meridian_async_lag_entries", &labels).set(n as f64);
        }
    }
    rows.into_values().collect()
}

/// This node's own delivery histograms (as destination), as `[delay_ms, count]` buckets, so
/// a client can merge every node's into exact cluster-wide percentiles.
pub fn delivery_local(node: &Node) -> Vec<serde_json::Value> {
    node.observations
        .delivery
        .lock()
        .unwrap()
        .iter()
        .map(|((ks, src, dst), h)| {
            let buckets: Vec<[u64; 2]> = h
                .iter_recorded()
                .map(|v| [v.value_iterated_to(), v.count_at_value()])
                .collect();
            serde_json::json!({"keyspace": ks, "source_region": src, "dest_region": dst, "buckets": buckets})
        })
        .collect()
}

/// Merges async lag views: the worst lag, and the delivery figures of the destination node
/// that delivered the most.
pub fn merge_async_lag<'a>(views: impl Iterator<Item = &'a AsyncLag>) -> Vec<AsyncLag> {
    let mut out: BTreeMap<(String, String, String), AsyncLag> = BTreeMap::new();
    for l in views {
        let e = out
            .entry((
                l.keyspace.clone(),
                l.source_region.clone(),
                l.dest_region.clone(),
            ))
            .or_insert_with(|| AsyncLag {
                keyspace: l.keyspace.clone(),
                source_region: l.source_region.clone(),
                dest_region: l.dest_region.clone(),
                ..Default::default()
            });
        e.lag_ms = worse(e.lag_ms, l.lag_ms);
        e.lag_entries = worse(e.lag_entries, l.lag_entries);
        e.connected = match (e.connected, l.connected) {
            (Some(a), Some(b)) => Some(a && b),
            (a, b) => a.or(b),
        };
        if l.delivered > e.delivered {
            e.delivered = l.delivered;
            e.delivery_p50_ms = l.delivery_p50_ms;
            e.delivery_p99_ms = l.delivery_p99_ms;
        }
    }
    out.into_values().collect()
}

/// The async lag matrix: this node's view merged with every fresh peer report.
pub fn async_lag_matrix(node: &Node) -> Vec<AsyncLag> {
    let own = async_lag_own(node);
    let peers = node.observations.peers.lock().unwrap();
    let fresh: Vec<AsyncLag> = peers
        .values()
        .filter(|p| p.at.elapsed() < REPORT_AGE_MAX)
        .flat_map(|p| p.async_lag.iter().cloned())
        .collect();
    merge_async_lag(own.iter().chain(fresh.iter()))
}

/// This node's answer to a peer's probe.
pub fn stats(node: &Node) -> NodeStats {
    NodeStats {
        clock_ms: node.clock.now_ms(),
        freshness_clock_ms: node.fresh_clock.now_ms(),
        freshness_epoch: node.fresh_clock.epoch(),
        lag: node.observations.lag(),
        async_lag: async_lag_own(node),
        health: crate::failover::own_health(node),
        requests: request_stats(node),
    }
}

/// Probes every peer every [`PROBE_INTERVAL`], forever.
/// How often every peer is pinged, so that `Transport::last_heard` says within about this
/// much (plus a round trip) whether a peer is alive: election turns skip voters that fell
/// silent with a leader (see `crate::campaign`), and must not skip live ones.
pub const PING_INTERVAL: Duration = Duration::from_millis(250);

/// Pings every peer every [`PING_INTERVAL`], forever; an answer is recorded by the transport.
pub async fn liveness_loop(node: Arc<Node>) {
    let mut every = tokio::time::interval(PING_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for peer in node
            .catalog_nodes()
            .into_iter()
            .filter(|n| n.id != node.id())
        {
            let node = node.clone();
            tokio::spawn(async move {
                let to = Endpoint {
                    node: peer.id,
                    region: peer.region.clone(),
                };
                let _ = node
                    .transport
                    .call(&to, &peer.peer_addr, PeerRequest::Ping, PROBE_TIMEOUT)
                    .await;
            });
        }
    }
}

/// A round starts every interval whatever the last one is still waiting for: a dead peer's
/// probe takes its whole timeout, and the live peers' answers must keep coming meanwhile (the
/// election turns judge who is alive by them; see `crate::campaign`).
pub async fn probe_loop(node: Arc<Node>) {
    let mut every = tokio::time::interval(PROBE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        tokio::spawn(probe_round(node.clone()));
    }
}

async fn probe_round(node: Arc<Node>) {
    let peers: Vec<NodeRecord> = node
        .catalog_nodes()
        .into_iter()
        .filter(|n| n.id != node.id())
        .collect();
    let probes = futures::future::join_all(peers.iter().map(|p| probe(&node, p))).await;
    let mut offset_max_ms = 0i64;
    for p in probes.into_iter().flatten() {
        let labels = [
            ("node", node.id().to_string()),
            ("peer", p.node.to_string()),
            ("peer_region", p.region.clone()),
        ];
        metrics::gauge!("meridian_clock_offset_seconds", &labels)
            .set(p.clock_offset_ms as f64 / 1000.0);
        metrics::gauge!("meridian_peer_rtt_seconds", &labels).set(p.rtt_ms / 1000.0);
        offset_max_ms = offset_max_ms.max(p.clock_offset_ms.abs());
        node.observations.peers.lock().unwrap().insert(p.node, p);
    }
    metrics::gauge!("meridian_clock_offset_max_seconds", "node" => node.id().to_string())
        .set(offset_max_ms as f64 / 1000.0);
}

async fn probe(node: &Arc<Node>, peer: &NodeRecord) -> Option<PeerProbe> {
    let to = Endpoint {
        node: peer.id,
        region: peer.region.clone(),
    };
    let sent_ms = node.clock.now_ms();
    let sent_fresh_ms = node.fresh_clock.now_ms();
    let started = Instant::now();
    let reply = node
        .transport
        .call(&to, &peer.peer_addr, PeerRequest::Stats, PROBE_TIMEOUT)
        .await;
    let Ok(PeerResponse::Stats(stats)) = reply else {
        return None;
    };
    let rtt = started.elapsed();
    let midpoint_ms = (sent_ms + node.clock.now_ms()) / 2;
    let received_fresh_ms = node.fresh_clock.now_ms();
    debug_assert!(
        received_fresh_ms >= sent_fresh_ms,
        "a freshness clock went back"
    );
    // The peer read its clock somewhere in the round trip: at the midpoint, give or take half
    // of it, plus a millisecond for each side's rounding.
    let fresh_midpoint_ms = (sent_fresh_ms + received_fresh_ms) / 2;
    let freshness_offset = ClockOffset {
        offset_ms: stats.freshness_clock_ms as i64 - fresh_midpoint_ms as i64,
        error_ms: (received_fresh_ms - sent_fresh_ms).div_ceil(2) + 2,
        epoch: stats.freshness_epoch,
    };
    Some(PeerProbe {
        node: peer.id,
        region: peer.region.clone(),
        clock_offset_ms: stats.clock_ms as i64 - midpoint_ms as i64,
        rtt_ms: rtt.as_secs_f64() * 1000.0,
        freshness_offset,
        at: Instant::now(),
        lag: stats.lag,
        async_lag: stats.async_lag,
        health: stats.health,
        requests: stats.requests,
    })
}

/// How a leadership change came about, as seen by this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The first leader this node has seen for the group.
    First,
    /// The previous leader had gone silent: an election replaced it.
    Failover,
    /// The previous leader was alive and handed over (e.g. leadership returning home).
    Transfer,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::First => "first",
            ChangeKind::Failover => "failover",
            ChangeKind::Transfer => "transfer",
        }
    }
}

/// Classifies a change of leader from `from` and, for a failover, says how long the group was
/// without a working leader as seen here: from the last frame of the old leader to now.
/// A leader that was heard from within half the minimum election timeout was alive, so the
/// change was a handover.
pub fn classify_change(
    node: &Node,
    from: Option<NodeId>,
    election_min_ms: u64,
) -> (ChangeKind, Option<u64>) {
    let Some(from) = from else {
        return (ChangeKind::First, None);
    };
    if from == node.id() {
        return (ChangeKind::Transfer, None);
    }
    let silence_min = Duration::from_millis(election_min_ms / 2);
    match node.transport.last_heard(from).map(|t| t.elapsed()) {
        Some(silence) if silence < silence_min => (ChangeKind::Transfer, None),
        Some(silence) => (ChangeKind::Failover, Some(silence.as_millis() as u64)),
        None => (ChangeKind::Failover, None),
    }
}

/// Counts a failover on the node that became leader, with its recovery time.
pub fn record_failover(node: &Node, keyspace: &str, from_region: &str, rto_ms: Option<u64>) {
    let id = node.id().to_string();
    metrics::counter!("meridian_failovers_total", "node" => id.clone(), "keyspace" => keyspace.to_string(),
        "from_region" => from_region.to_string(), "to_region" => node.cfg.region.clone())
    .increment(1);
    if let Some(ms) = rto_ms {
        metrics::histogram!("meridian_failover_rto_seconds", "node" => id, "keyspace" => keyspace.to_string())
            .record(ms as f64 / 1000.0);
    }
}

/// Counts the conflicts a command's merge resolved in group `group` (this region):
/// `meridian_conflicts_total{keyspace,rule,origin,dest}`, origin being the region of the other
/// write (the incoming one when neither is this region's).
pub fn record_conflicts(
    node: &Node,
    group: meridian_types::GroupId,
    conflicts: &[meridian_crdt::Conflict],
) {
    use meridian_types::ids::group_keyspace;
    if conflicts.is_empty() {
        return;
    }
    let Some(ks) = node.keyspace_by_id(group_keyspace(group)) else {
        return;
    };
    let dest = node.cfg.region.clone();
    let here = meridian_crdt::RegionTag::of(&dest);
    for c in conflicts {
        let tag = if c.b.hlc.origin == here {
            c.a.hlc.origin
        } else {
            c.b.hlc.origin
        };
        let origin = region_name(&ks.policy.regions, tag);
        metrics::counter!("meridian_conflicts_total",
            "keyspace" => ks.policy.name.clone(),
            "rule" => c.rule.as_str(),
            "origin" => origin,
            "dest" => dest.clone())
        .increment(1);
    }
}

/// The name of the region whose tag is `tag` among `regions` ("unknown" if none).
pub fn region_name(regions: &[String], tag: meridian_crdt::RegionTag) -> String {
    regions
        .iter()
        .find(|r| meridian_crdt::RegionTag::of(r) == tag)
        .cloned()
        .unwrap_or_else(|| "unknown".into())
}

/// Per async keyspace with groups on this node: the conflicts recorded in this region so far
/// (ledger sequence numbers over its shards), drops, and the latest few, for the console.
pub fn conflicts_summary(node: &Node) -> Vec<serde_json::Value> {
    let engine = node.committer.engine();
    let mut out = Vec::new();
    for ks in node
        .catalog_keyspaces()
        .into_iter()
        .filter(|k| k.is_async())
    {
        let (mut recorded, mut dropped) = (0u64, 0u64);
        let mut latest: Vec<meridian_consensus::ledger::Entry> = Vec::new();
        let mut any = false;
        for shard in 0..ks.policy.shards {
            let Some(group) = ks.region_group(&node.cfg.region, shard) else {
                continue;
            };
            if node.group(group).is_none() {
                continue;
            }
            any = true;
            let Ok((next, d)) = meridian_consensus::ledger::position(engine, group) else {
                continue;
            };
            recorded += next;
            dropped += d;
            if let Ok(e) =
                meridian_consensus::ledger::entries(engine, group, next.saturating_sub(5), 5)
            {
                latest.extend(e);
            }
        }
        if !any {
            continue;
        }
        latest.sort_by_key(|e| std::cmp::Reverse(e.detected));
        latest.truncate(5);
        let regions = &ks.policy.regions;
        let latest: Vec<serde_json::Value> = latest
            .iter()
            .map(|e| {
                serde_json::json!({
                    "key": String::from_utf8_lossy(&e.key),
                    "rule": e.rule.as_str(),
                    "outcome": e.outcome,
                    "a_origin": region_name(regions, e.a.hlc.origin),
                    "b_origin": region_name(regions, e.b.hlc.origin),
                    "detected_at_ms": e.detected.physical_ms,
                })
            })
            .collect();
        out.push(serde_json::json!({
            "keyspace": ks.policy.name,
            "conflict": ks.policy.conflict.as_str(),
            "region": node.cfg.region,
            "recorded": recorded,
            "dropped": dropped,
            "latest": latest,
        }));
    }
    out
}

/// Client requests per region, from this node's report and its peers' last ones: totals
/// summed (the console turns two readings into a rate) and latency percentiles the worst of the
/// region's nodes (a conservative merge of percentiles that cannot be added).
pub fn region_requests(node: &Node) -> Vec<serde_json::Value> {
    let mut by_region: BTreeMap<String, Vec<RequestStats>> = BTreeMap::new();
    by_region
        .entry(node.cfg.region.clone())
        .or_default()
        .push(request_stats(node));
    for p in node.observations.peers() {
        by_region
            .entry(p.region.clone())
            .or_default()
            .push(p.requests);
    }
    let worst = |v: &[RequestStats], f: fn(&RequestStats) -> Option<f64>| {
        v.iter()
            .filter_map(f)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    };
    by_region
        .into_iter()
        .map(|(region, v)| {
            serde_json::json!({
                "region": region,
                "nodes_reporting": v.len(),
                "writes_total": v.iter().map(|s| s.writes_total).sum::<u64>(),
                "reads_total": v.iter().map(|s| s.reads_total).sum::<u64>(),
                "write_p50_ms": worst(&v, |s| s.write_p50_ms),
                "write_p99_ms": worst(&v, |s| s.write_p99_ms),
                "read_p50_ms": worst(&v, |s| s.read_p50_ms),
                "read_p99_ms": worst(&v, |s| s.read_p99_ms),
            })
        })
        .collect()
}

/// Measured round trips between regions: for each pair, the smallest any node measured to a
/// node of the other region (this node's probes and its peers' reports).
pub fn region_rtt(node: &Node) -> Vec<serde_json::Value> {
    let region_of: BTreeMap<NodeId, String> = node
        .catalog_nodes()
        .into_iter()
        .map(|n| (n.id, n.region))
        .collect();
    let mut best: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut add = |a: &str, b: &str, ms: f64| {
        if a == b {
            return;
        }
        let key = if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        };
        let e = best.entry(key).or_insert(ms);
        *e = e.min(ms);
    };
    let peers = node.observations.peers();
    for p in &peers {
        add(&node.cfg.region, &p.region, p.rtt_ms);
    }
    for p in &peers {
        for (peer, ms) in &p.requests.rtt_ms {
            if let Some(r) = region_of.get(peer) {
                add(&p.region, r, *ms);
            }
        }
    }
    best.into_iter()
        .map(|((a, b), ms)| serde_json::json!({"a": a, "b": b, "rtt_ms": ms}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(src: &str, dst: &str, ms: Option<u64>, entries: Option<u64>) -> RegionLag {
        RegionLag {
            source_region: src.into(),
            dest_region: dst.into(),
            lag_ms: ms,
            lag_entries: entries,
        }
    }

    // Goal: the matrix keeps the worst lag per region pair, and a leader's entry count and a
    // follower's milliseconds for the same pair end up in one cell.
    #[test]
    fn merge_keeps_the_worst_per_pair() {
        let views = [
            lag("a", "b", Some(40), None),
            lag("a", "b", Some(90), None),
            lag("a", "b", None, Some(3)),
            lag("a", "c", None, Some(7)),
            lag("a", "c", None, Some(2)),
        ];
        let merged = merge_lag(views.iter());
        assert_eq!(
            merged,
            vec![
                lag("a", "b", Some(90), Some(3)),
                lag("a", "c", None, Some(7))
            ]
        );
    }
}
