//! One simulated run, decided entirely by its seed: the topology (1-2 nodes in each of three
//! regions, 1-2 shards), per-link latency from the WAN matrix, the clients' operations and the
//! nemesis. A safety phase with faults is followed by a liveness phase without them, in which
//! the cluster must converge; the checkers then judge the history.
//!
//! The nodes run the production node code (`meridian_server::start_node`) on turmoil's sockets,
//! a skewable clock and the memory engine, whose state outlives a crash exactly as far as its
//! commits went (a commit is atomic and durable once it returns; queued and unflushed writes
//! die with the node).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use meridian_consensus::state_machine;
use meridian_crdt::{RegionTag, Versioned};
use meridian_georep::SessionToken;
use meridian_server::node::Node;
use meridian_server::peer::{Op, PeerRequest, PeerResponse, ReadConsistencyWire};
use meridian_server::transport::{CallError, Endpoint, Transport, WanModel};
use meridian_server::NodeConfig;
use meridian_storage::Table;
use meridian_storage::{GroupCommitter, MemEngine, SharedEngine};
use meridian_types::ids::{
    async_group_id, group_epoch, group_id, group_keyspace, group_shard, is_async_group,
    keyspace_id, sync_group_id,
};
use meridian_types::wan::LatencyMatrix;
use meridian_types::wire::Command;
use meridian_types::{shard_for_key, GroupId, KeyspacePolicy, KvError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::{
    antientropy, async_bounded, async_convergence, async_lost_writes, bounded_staleness,
    committed_stable, convergence, counter_sum, election_safety, failover_chain, failover_holddown,
    failover_paused, gray_failover, ledger_precision, ledger_recall, linearizable, lost_writes,
    lww_final, meta_minority, meta_spread, mv_siblings, promotion, residency, session, set_members,
    witness,
};
use crate::history::{Call, Op as HistoryOp, Ret};
use crate::nemesis::{self, Fault, Scheduled};
use crate::net::{SimClock, SimDialer, SimListener, EPOCH_MS};

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
const KEYSPACE: &str = "sim";
/// The async keyspace of the async and mixed workloads.
const ASYNC_KEYSPACE: &str = "asim";
/// The async counter keyspace beside it (same regions), with keys `c0`, `c1`.
const COUNTER_KEYSPACE: &str = "csim";
const COUNTER_KEYS: usize = 2;
/// The async set keyspace (same regions), with keys `s0`, `s1`; each element belongs to one
/// client process.
const SET_KEYSPACE: &str = "ssim";
const SET_KEYS: usize = 2;
/// The async multi-value register keyspace (same regions): key `m<process>` belongs to that
/// client process.
const MV_KEYSPACE: &str = "msim";
const KEYS: usize = 5;
const PEER_PORT: u16 = 7000;
/// How long a client waits for one operation before its outcome counts as unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Concurrent client processes in each region.
const WORKERS: u64 = 4;
/// One-way latency inside a region.
const INTRA_REGION: Duration = Duration::from_millis(1);
/// The bounds of the clients' bounded-staleness reads: from below a WAN round trip (mostly
/// served by the leader) to well above the followers' usual lag.
const STALE_BOUNDS_MS: [u64; 4] = [100, 250, 500, 1_000];
/// The simulated nodes' failover hold-down (short, so a run sees failbacks and failovers
/// again).
const FAILOVER_HOLDDOWN_MS: u64 = 4_000;
/// Simulated nodes' `degraded_for_ms`.
const SIM_DEGRADED_FOR_MS: u64 = 3_000;
/// How often the main loop reads every node's failover log (when each decision was committed,
/// to within this).
const LOG_POLL_EVERY: Duration = Duration::from_millis(250);
/// How often two regions race to write a duel key (see `Client::duelist`).
const DUEL_EVERY: Duration = Duration::from_millis(1_000);
/// How often the consensus observers sample every node.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Which keyspaces the clients use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// A sync keyspace in the three regions.
    Sync,
    /// An async keyspace in two or three regions (drawn from the seed).
    Async,
    /// Both, each with half of every region's client processes.
    Mixed,
}

impl std::str::FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sync" => Ok(Workload::Sync),
            "async" => Ok(Workload::Async),
            "mixed" => Ok(Workload::Mixed),
            _ => Err(format!("unknown workload {s:?}; use sync, async or mixed")),
        }
    }
}

/// How long a run is and how much it does.
#[derive(Clone, Debug)]
pub struct Options {
    pub workload: Workload,
    /// Operations the clients aim to complete over the safety phase (all regions together).
    pub ops: usize,
    pub safety: Duration,
    /// The liveness phase ends as soon as the cluster has converged, or fails after this.
    pub liveness_max: Duration,
    /// Inject a shipping bug (the second region's groups drop some shipped writes) that
    /// anti-entropy must repair.
    pub inject_shipping_loss: bool,
    /// Instead of the random nemesis: lose the sync keyspace's whole home region halfway
    /// through the safety phase (every node crashed until the phase ends) and measure each
    /// shard's recovery time (`Outcome::rto_ms`).
    pub region_loss: bool,
    /// Instead of the random nemesis: the sync keyspace's home region flaps, cut off from the
    /// others for 1-10 s, back for 1-10 s, through the whole safety phase (the failover-log
    /// checker holds it to at most one failover per hold-down window).
    pub flapping: bool,
    /// Instead of the random nemesis: gray failure of the sync keyspace's home region from a
    /// quarter of the safety phase to its end (every durable commit there stalls
    /// `GRAY_STALL_MS`, heartbeats flow): it must lose its leaders through a `failover`
    /// decision within the configured degraded time of being judged degraded.
    pub gray: bool,
    /// Instead of the random nemesis: again and again, the metadata group's leader is cut off
    /// with a minority of its voters; nothing may be decided on that side.
    pub meta_minority: bool,
    /// The sync keyspace is `survive = "zone"` (voters in its home region, learners in the
    /// next), `promotion = "auto"`; its home region is lost from a third of the safety phase to
    /// its end, so it is promoted, and returns for the liveness phase. Checked: no write
    /// acknowledged at a stale epoch, every lost acknowledged write in the reported tail.
    pub promotion: bool,
    /// The sync keyspace's third region (eu-west-1) holds only witnesses (`role = "witness"`,
    /// `witness_region`), with the random nemesis; no async keyspace. Checked: witnesses never
    /// lead and hold no data.
    pub witness: bool,
    /// Nodes start region by region (the bootstrap's region first, the others 1.5 s apart), so
    /// the metadata group's learners catch up at different times. Checked: its voter sets
    /// never give one region a majority (`meta_spread`).
    pub staggered_join: bool,
}

/// `promotion_after_ms` of the simulation's zone keyspace.
const SIM_PROMOTION_AFTER_MS: u64 = 2_000;

/// The gray failure's stall per durable commit: ten times and more a simulated write's usual
/// latency (one round trip to the nearest other region, ~65 ms).
pub const GRAY_STALL_MS: u64 = 700;

impl Default for Options {
    fn default() -> Self {
        Options {
            workload: Workload::Mixed,
            ops: 400,
            safety: Duration::from_secs(25),
            liveness_max: Duration::from_secs(60),
            inject_shipping_loss: false,
            region_loss: false,
            flapping: false,
            gray: false,
            meta_minority: false,
            promotion: false,
            witness: false,
            staggered_join: false,
        }
    }
}

/// What one seed's run found.
#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    pub nodes: usize,
    pub shards: u16,
    pub ops: usize,
    pub ops_unknown: usize,
    pub faults: Vec<String>,
    pub violations: Vec<String>,
    pub inconclusive_keys: usize,
    pub simulated: Duration,
    pub wall: Duration,
    /// A fingerprint of the history and the simulated time: two runs of one seed must agree.
    pub digest: u64,
    /// What the clients did and were told, in the order they were told.
    pub history: Vec<HistoryOp>,
    /// The same for the async keyspace's clients (empty without one).
    pub async_history: Vec<HistoryOp>,
    /// The async counter and set keyspaces' operations.
    pub typed_history: Vec<HistoryOp>,
    /// The async keyspace's regions (empty without one).
    pub async_regions: Vec<String>,
    /// Keys anti-entropy repaired, over every node.
    pub antientropy_repairs: u64,
    /// Conflict ledger entries over every replica of the async keyspace.
    pub conflicts_recorded: u64,
    /// Ledger recall: certainly concurrent duel pairs, and those some region recorded.
    pub recall_expected: usize,
    pub recall_found: usize,
    /// Of those found, the pairs both writing regions recorded.
    pub recall_in_both: usize,
    /// Entries in the failover decision log at the end (operators' included), and the
    /// failovers and failbacks executed (automatically or approved).
    pub failover_decisions: usize,
    pub failovers_executed: usize,
    pub failbacks_executed: usize,
    /// With `Options::region_loss`: per shard of the sync keyspace, the time from the loss of
    /// its home region until a leader in another region has committed an entry of its own term
    /// (the point from which writes succeed again), in ms.
    pub rto_ms: Vec<(u16, u64)>,
    /// With `Options::gray`: ms from the stall to the committed failover decision, and to
    /// every shard's leader being outside the gray region.
    pub gray_decision_ms: Option<u64>,
    pub gray_left_ms: Option<u64>,
    /// With `Options::promotion`: the sync keyspace's epoch at the end, the writes its lost
    /// tails reported, and of those the ones clients had been told succeeded.
    pub promotion_epoch: u64,
    pub lost_reported: usize,
    pub lost_acked: usize,
}

struct SimNode {
    id: u64,
    region: usize,
    host: String,
    engine: SharedEngine,
    /// The same engine, for what a crash does to it.
    mem: Arc<MemEngine>,
    /// Anti-entropy repairs of this node's earlier incarnations.
    repairs_before: Arc<std::sync::atomic::AtomicU64>,
    clock: Arc<SimClock>,
    /// `role = "witness"` (`Options::witness`: every node of the third region).
    witness: bool,
}

type Slots = Arc<Mutex<Vec<Option<Arc<Node>>>>>;

/// A node's wall-clock skew: mostly within what bounded reads tolerate (`max_clock_offset_ms`,
/// 500 ms by default), sometimes beyond it, so both the offset correction and the refusal run.
fn clock_skew_ms(rng: &mut StdRng) -> i64 {
    let sign = if rng.gen_bool(0.5) { 1 } else { -1 };
    if rng.gen_bool(0.9) {
        sign * rng.gen_range(0..=300)
    } else {
        sign * rng.gen_range(500..=1_500)
    }
}

fn key_name(i: usize) -> String {
    format!("k{i}")
}

fn node_config(node: &SimNode, bootstrap_host: &str) -> Result<NodeConfig> {
    let text = format!(
        r#"
node_id = {id}
region = "{region}"
zone = "{region}a"
data_dir = "/sim/{host}"
listen_peer = "{host}:{PEER_PORT}"
listen_http = "{host}:8000"
listen_grpc = "{host}:9000"
seeds = ["{bootstrap_host}:{PEER_PORT}"]
bootstrap = {bootstrap}
role = "{role}"
antientropy_interval_ms = 2000
antientropy_settle_ms = 1000
[wan]
enabled = false
[failover]
holddown_ms = {FAILOVER_HOLDDOWN_MS}
degraded_for_ms = {SIM_DEGRADED_FOR_MS}
"#,
        id = node.id,
        region = REGIONS[node.region],
        host = node.host,
        bootstrap = node.host == bootstrap_host,
        role = if node.witness { "witness" } else { "data" },
    );
    // Not `validated()`: that insists on IP addresses, and simulated hosts have names.
    Ok(toml::from_str(&text)?)
}

fn async_policy(name: &str, conflict: &str, shards: u16, regions: &[String]) -> KeyspacePolicy {
    let json = format!(
        r#"{{"name": "{name}", "replication": "async", "regions": {regions:?}, "shards": {shards}, "conflict": "{conflict}"}}"#
    );
    serde_json::from_str(&json).expect("the simulation's async policy is valid")
}

fn policy(shards: u16, zone: bool, witness: bool) -> KeyspacePolicy {
    if witness {
        let json = format!(
            r#"{{"name": "{KEYSPACE}", "replication": "sync", "survive": "region", "home_region": "{}",
                 "regions": ["{}", "{}", "{}"], "shards": {shards}, "witness_region": "{}"}}"#,
            REGIONS[0], REGIONS[0], REGIONS[1], REGIONS[2], REGIONS[2]
        );
        return serde_json::from_str(&json).expect("the simulation's witness policy is valid");
    }
    if zone {
        let json = format!(
            r#"{{"name": "{KEYSPACE}", "replication": "sync", "survive": "zone", "home_region": "{}",
                 "regions": ["{}", "{}"], "shards": {shards}, "promotion": "auto",
                 "promotion_after_ms": {SIM_PROMOTION_AFTER_MS}}}"#,
            REGIONS[0], REGIONS[0], REGIONS[1]
        );
        return serde_json::from_str(&json).expect("the simulation's zone policy is valid");
    }
    let json = format!(
        r#"{{"name": "{KEYSPACE}", "replication": "sync", "survive": "region", "home_region": "{}",
             "regions": ["{}", "{}", "{}"], "shards": {shards}}}"#,
        REGIONS[0], REGIONS[0], REGIONS[1], REGIONS[2]
    );
    serde_json::from_str(&json).expect("the simulation's policy is valid")
}

/// Runs seed `seed` and checks it.
pub fn run(seed: u64, opts: &Options) -> Outcome {
    let wall = Instant::now();
    meridian_consensus::runtime::install_seed(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let regions: Vec<usize> = (0..3)
        .flat_map(|r| std::iter::repeat_n(r, rng.gen_range(1..=2)))
        .collect();
    let shards: u16 = rng.gen_range(1..=2);
    let nodes: Vec<SimNode> = regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mem = Arc::new(MemEngine::new());
            SimNode {
                id: i as u64 + 1,
                region: *r,
                witness: opts.witness && *r == 2,
                host: format!("node-{}", i + 1),
                engine: mem.clone(),
                mem,
                repairs_before: Default::default(),
                clock: Arc::new(SimClock::with_skew(clock_skew_ms(&mut rng))),
            }
        })
        .collect();
    let mut schedule = nemesis::schedule(&mut rng, &regions, opts.safety.as_millis() as u64);
    if opts.flapping {
        let safety_ms = opts.safety.as_millis() as u64;
        let home: Vec<usize> = (0..regions.len()).filter(|i| regions[*i] == 0).collect();
        schedule = Vec::new();
        let mut at = rng.gen_range(1_000..3_000);
        while at < safety_ms {
            let down = rng.gen_range(1_000..=10_000);
            schedule.push(Scheduled {
                start_ms: at,
                end_ms: (at + down).min(safety_ms),
                fault: Fault::Partition {
                    side: home.clone(),
                    what: "the home region (flapping)",
                },
            });
            at += down + rng.gen_range(1_000..=10_000);
        }
    }
    if opts.promotion {
        // The home region is lost from a third of the safety phase to its end: long enough to
        // be judged down, promoted, and to take writes at the new epoch. Lost is crashed, or
        // cut off while its own clients still reach it (then only fencing keeps it from
        // accepting writes). Before that, the learners stop hearing it for a while, so the
        // promotion loses acknowledged writes that its lost tail must report.
        let safety_ms = opts.safety.as_millis() as u64;
        let home: Vec<usize> = (0..regions.len()).filter(|i| regions[*i] == 0).collect();
        let learners: Vec<usize> = (0..regions.len()).filter(|i| regions[*i] == 1).collect();
        let lose_at = safety_ms / 3;
        let lag = rng.gen_range(200..2_000);
        let lost = if rng.gen_bool(0.5) {
            Fault::Crash {
                nodes: home.clone(),
                what: "the home region",
            }
        } else {
            Fault::Partition {
                side: home.clone(),
                what: "the home region (its clients still reach it)",
            }
        };
        schedule = vec![
            Scheduled {
                start_ms: lose_at - lag,
                end_ms: lose_at,
                fault: Fault::OneWay {
                    from: home,
                    to: learners,
                },
            },
            // A millisecond later: ending the one-way cut repairs its links, which must not
            // undo part of the partition.
            Scheduled {
                start_ms: lose_at + 1,
                end_ms: safety_ms,
                fault: lost,
            },
        ];
    }
    if opts.region_loss {
        // The home region (`policy`: the first) is lost halfway, and stays lost until the
        // safety phase ends; the nodes restart for the liveness phase like any crash.
        let safety_ms = opts.safety.as_millis() as u64;
        schedule = vec![Scheduled {
            start_ms: safety_ms / 2,
            end_ms: safety_ms,
            fault: Fault::Crash {
                nodes: (0..regions.len()).filter(|i| regions[*i] == 0).collect(),
                what: "the home region",
            },
        }];
    }
    if opts.gray {
        let safety_ms = opts.safety.as_millis() as u64;
        schedule = vec![Scheduled {
            start_ms: safety_ms / 4,
            end_ms: safety_ms,
            fault: Fault::DiskStall {
                nodes: (0..regions.len()).filter(|i| regions[*i] == 0).collect(),
                delay_ms: GRAY_STALL_MS,
            },
        }];
    }
    if opts.meta_minority {
        let safety_ms = opts.safety.as_millis() as u64;
        schedule = Vec::new();
        let mut at = rng.gen_range(1_000..3_000);
        while at < safety_ms {
            let len = rng.gen_range(2_000..=6_000);
            schedule.push(Scheduled {
                start_ms: at,
                end_ms: (at + len).min(safety_ms),
                fault: Fault::MetaMinority,
            });
            at += len + rng.gen_range(1_000..=3_000);
        }
    }
    let async_regions: Vec<String> = if opts.workload == Workload::Sync || opts.witness {
        Vec::new()
    } else if rng.gen_bool(0.5) {
        REGIONS.iter().map(|r| r.to_string()).collect()
    } else {
        let left_out = rng.gen_range(0..3);
        (0..3)
            .filter(|r| *r != left_out)
            .map(|r| REGIONS[r].to_string())
            .collect()
    };
    let mut outcome = Outcome {
        seed,
        nodes: nodes.len(),
        shards,
        ops: 0,
        ops_unknown: 0,
        faults: schedule
            .iter()
            .map(|s| format!("{:>6} ms - {:>6} ms: {}", s.start_ms, s.end_ms, s.fault))
            .collect(),
        violations: Vec::new(),
        inconclusive_keys: 0,
        simulated: Duration::ZERO,
        wall: Duration::ZERO,
        digest: 0,
        history: Vec::new(),
        async_history: Vec::new(),
        typed_history: Vec::new(),
        conflicts_recorded: 0,
        recall_expected: 0,
        recall_found: 0,
        recall_in_both: 0,
        failover_decisions: 0,
        failovers_executed: 0,
        failbacks_executed: 0,
        rto_ms: Vec::new(),
        gray_decision_ms: None,
        gray_left_ms: None,
        promotion_epoch: 0,
        lost_reported: 0,
        lost_acked: 0,
        async_regions: async_regions.clone(),
        antientropy_repairs: 0,
    };
    // Every node of this simulation runs on this thread.
    meridian_consensus::state_machine::inject::lose_shipped_writes(if opts.inject_shipping_loss {
        7
    } else {
        0
    });
    let simulated = simulate(
        seed,
        opts,
        &nodes,
        shards,
        &async_regions,
        &schedule,
        &mut rng,
        &mut outcome,
    );
    meridian_consensus::state_machine::inject::lose_shipped_writes(0);
    if let Err(e) = simulated {
        outcome
            .violations
            .push(format!("the simulation failed: {e}"));
    }
    outcome.wall = wall.elapsed();
    outcome
}

#[allow(clippy::too_many_arguments)]
fn simulate(
    seed: u64,
    opts: &Options,
    nodes: &[SimNode],
    shards: u16,
    async_regions: &[String],
    schedule: &[Scheduled],
    rng: &mut StdRng,
    outcome: &mut Outcome,
) -> Result<()> {
    // A metadata-minority cut is resolved to the nodes it cuts when it begins.
    let mut schedule = schedule.to_vec();
    let sync_on = opts.workload != Workload::Async;
    let mut keyspaces = Vec::new();
    if sync_on {
        keyspaces.push(policy(shards, opts.promotion, opts.witness));
    }
    if !async_regions.is_empty() {
        keyspaces.push(async_policy(ASYNC_KEYSPACE, "lww", shards, async_regions));
        keyspaces.push(async_policy(
            COUNTER_KEYSPACE,
            "counter",
            shards,
            async_regions,
        ));
        keyspaces.push(async_policy(SET_KEYSPACE, "set", shards, async_regions));
        keyspaces.push(async_policy(MV_KEYSPACE, "mv", shards, async_regions));
    }
    let total = opts.safety + opts.liveness_max + Duration::from_secs(30);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH_MS))
        .simulation_duration(total)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_micros(100))
        .max_message_latency(Duration::from_micros(500))
        .tcp_capacity(65_536)
        .build();
    let slots: Slots = Arc::new(Mutex::new(vec![None; nodes.len()]));
    let bootstrap = nodes[0].host.clone();
    for (i, n) in nodes.iter().enumerate() {
        let cfg = node_config(n, &bootstrap)?;
        let (engine, clock, slots) = (n.engine.clone(), n.clock.clone(), slots.clone());
        let keyspaces = keyspaces.clone();
        let operator_seed = seed;
        // The drill's node is in the home region, which a region-loss run loses; its pauses
        // would also hold leaders where Raft elected them.
        let drill = !opts.region_loss && !opts.flapping && !opts.gray && !opts.promotion;
        let drill_until = opts.safety;
        let join_delay = if opts.staggered_join {
            Duration::from_millis(1500 * n.region as u64)
        } else {
            Duration::ZERO
        };
        sim.host(n.host.as_str(), move || {
            let (cfg, engine, clock, slots, keyspaces) = (
                cfg.clone(),
                engine.clone(),
                clock.clone(),
                slots.clone(),
                keyspaces.clone(),
            );
            async move {
                if !join_delay.is_zero() {
                    tokio::time::sleep(join_delay).await;
                }
                let label = cfg.node_id.to_string();
                let committer = GroupCommitter::start_task(engine, label);
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PEER_PORT)).await?;
                let node = meridian_server::start_node(
                    cfg,
                    clock,
                    committer,
                    Arc::new(SimDialer),
                    SimListener(listener),
                )
                .await
                .map_err(|e| e.to_string())?;
                if i == 0 {
                    for p in keyspaces {
                        tokio::spawn(create_keyspace(node.clone(), p));
                    }
                    if drill {
                        tokio::spawn(operator_drill(node.clone(), operator_seed, drill_until));
                    }
                }
                slots.lock().unwrap()[i] = Some(node);
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    let history: Arc<Mutex<Vec<HistoryOp>>> = Arc::default();
    let async_history: Arc<Mutex<Vec<HistoryOp>>> = Arc::default();
    let typed_history: Arc<Mutex<Vec<HistoryOp>>> = Arc::default();
    let write_epochs: Arc<Mutex<BTreeMap<(String, String), u64>>> = Arc::default();
    let stop_issuing = opts.safety.as_micros() as u64;
    // Which of a region's processes use the async keyspace.
    let async_workers: u64 = match opts.workload {
        Workload::Sync => 0,
        Workload::Async => WORKERS,
        Workload::Mixed => WORKERS / 2,
    };
    for (c, region) in REGIONS.iter().enumerate() {
        let targets: Vec<(u64, String)> = nodes
            .iter()
            .filter(|n| REGIONS[n.region] == *region)
            .map(|n| (n.id, n.host.clone()))
            .collect();
        let client = Client {
            id: c as u64 + 1,
            region: region.to_string(),
            targets,
            everywhere: nodes
                .iter()
                .map(|n| (n.id, n.host.clone(), REGIONS[n.region].to_string()))
                .collect(),
            shards,
            seed: rng.gen(),
            history: history.clone(),
            async_history: async_history.clone(),
            typed_history: typed_history.clone(),
            epoch: Arc::default(),
            write_epochs: write_epochs.clone(),
            async_regions: async_regions.to_vec(),
            async_workers,
            ops_per_worker: opts.ops.div_ceil(3 * WORKERS as usize),
            stop_issuing_us: stop_issuing,
        };
        sim.client(format!("client-{region}"), client.run());
    }
    set_latencies(&sim, nodes, 1);

    let mut election = election_safety::ElectionSafety::default();
    let mut leaders_seen: BTreeMap<(GroupId, u64, u64), (u64, u64)> = BTreeMap::new();
    // The metadata leader's (non-joint) voter sets and members, as they changed.
    let mut meta_timeline: Vec<meta_spread::Sample> = Vec::new();
    let mut committed = committed_stable::CommittedStable::default();
    let mut active: Vec<(usize, Scheduled)> = Vec::new();
    let mut next_fault = 0;
    let mut last_sample = Duration::ZERO;
    let mut last_convergence_check = Duration::ZERO;
    let mut healed = false;
    let mut clients_done = false;
    let mut last_log_poll = Duration::ZERO;
    let mut decisions_seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut converged = None;
    // Region-loss runs: when the home region was lost, and per shard when it recovered.
    let mut lost_at: Option<Duration> = None;
    let mut recovered: BTreeMap<u16, Duration> = BTreeMap::new();
    // Gray runs: when the home region's disks began to stall, and when every shard of the
    // sync keyspace had a leader outside it since.
    let mut gray_at: Option<Duration> = None;
    // (µs, every shard led outside the gray region) while it is gray, every 10 ms.
    let mut gray_samples: Vec<(u64, bool)> = Vec::new();
    // Metadata-minority runs: each cut (from, to, the ids on the minority side).
    let mut meta_cuts: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    loop {
        if !clients_done {
            clients_done = sim.step().map_err(|e| anyhow!("{e}"))?;
        } else {
            sim.step().map_err(|e| anyhow!("{e}"))?;
        }
        let now = sim.elapsed();
        if now - last_sample >= SAMPLE_EVERY {
            last_sample = now;
            sample(&slots, &mut election, &mut committed);
            for node in slots.lock().unwrap().iter().flatten() {
                if let Some(g) = node.group(meridian_types::META_GROUP) {
                    let m = g.raft.metrics();
                    let m = openraft::async_runtime::WatchReceiver::borrow_watched(&m).clone();
                    let membership = m.membership_config.membership();
                    if m.current_leader == Some(node.id())
                        && membership.get_joint_config().len() == 1
                    {
                        let sample = meta_spread::Sample {
                            at: now.as_micros() as u64,
                            voters: membership.voter_ids().collect(),
                            members: membership.nodes().map(|(id, _)| *id).collect(),
                        };
                        let changed = meta_timeline.last().is_none_or(|l| {
                            l.voters != sample.voters || l.members != sample.members
                        });
                        if changed {
                            meta_timeline.push(sample);
                        }
                    }
                }
            }
            if opts.witness {
                let at = now.as_micros() as u64;
                for node in slots.lock().unwrap().iter().flatten() {
                    for st in node.group_status().into_iter().filter(|st| st.is_leader) {
                        leaders_seen
                            .entry((st.group, st.term, node.id()))
                            .and_modify(|(_, last)| *last = at)
                            .or_insert((at, at));
                    }
                }
            }
            if let (Some(_), false, true) = (gray_at, healed, sync_on) {
                let outside = (0..shards).all(|shard| {
                    leader_region(&slots, nodes, group_id(keyspace_id(KEYSPACE), shard))
                        .is_some_and(|r| r != 0)
                });
                gray_samples.push((now.as_micros() as u64, outside));
            }
            if let (Some(at), true) = (lost_at, sync_on) {
                for shard in 0..shards {
                    if !recovered.contains_key(&shard)
                        && serving_outside(&slots, nodes, group_id(keyspace_id(KEYSPACE), shard), 0)
                    {
                        recovered.insert(shard, now - at);
                    }
                }
            }
        }
        if now - last_log_poll >= LOG_POLL_EVERY {
            last_log_poll = now;
            for node in slots.lock().unwrap().iter().flatten() {
                for e in meridian_server::failover::local_log(node).unwrap_or_default() {
                    decisions_seen
                        .entry(e.seq)
                        .or_insert(now.as_micros() as u64);
                }
            }
        }
        let now_ms = now.as_millis() as u64;
        if !healed {
            while next_fault < schedule.len() && schedule[next_fault].start_ms <= now_ms {
                if opts.region_loss {
                    lost_at = Some(now);
                }
                if matches!(schedule[next_fault].fault, Fault::DiskStall { .. }) {
                    gray_at = Some(now);
                }
                if matches!(schedule[next_fault].fault, Fault::MetaMinority) {
                    let side = meta_minority_side(&slots);
                    meta_cuts.push((
                        schedule[next_fault].start_ms * 1000,
                        schedule[next_fault].end_ms * 1000,
                        side.iter().map(|i| nodes[*i].id).collect(),
                    ));
                    schedule[next_fault].fault = Fault::Partition {
                        side,
                        what: "the metadata group's leader and a minority of its voters",
                    };
                }
                begin(&mut sim, nodes, &slots, &schedule[next_fault].fault);
                active.push((next_fault, schedule[next_fault].clone()));
                next_fault += 1;
            }
            let (ending, still): (Vec<_>, Vec<_>) =
                active.drain(..).partition(|(_, s)| s.end_ms <= now_ms);
            active = still;
            for (_, s) in ending {
                end(&mut sim, nodes, &slots, &s.fault);
            }
            if now >= opts.safety {
                for (_, s) in active.drain(..) {
                    end(&mut sim, nodes, &slots, &s.fault);
                }
                heal_all(&mut sim, nodes);
                healed = true;
            }
            continue;
        }
        if clients_done && now - last_convergence_check >= Duration::from_secs(1) {
            last_convergence_check = now;
            let (problems, finals) = converge_check(
                &slots,
                nodes,
                shards,
                sync_on,
                opts.promotion,
                async_regions,
            );
            if problems.is_empty() {
                converged = Some(finals);
                break;
            }
            if now >= opts.safety + opts.liveness_max {
                outcome.violations.push(format!(
                    "the cluster did not converge within {:?} after the faults ended: {}",
                    opts.liveness_max,
                    problems.join("; ")
                ));
                break;
            }
        }
    }
    outcome.simulated = sim.elapsed();
    if lost_at.is_some() && sync_on {
        for shard in 0..shards {
            match recovered.get(&shard) {
                Some(d) => outcome.rto_ms.push((shard, d.as_millis() as u64)),
                None => outcome.violations.push(format!(
                    "shard {shard} of the sync keyspace had no leader outside the lost home region committing in its term before the region returned"
                )),
            }
        }
    }
    let logs: Vec<(u64, Vec<meridian_control::failover::Entry>)> = slots
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .map(|n| {
            (
                n.id(),
                meridian_server::failover::local_log(n).unwrap_or_default(),
            )
        })
        .collect();
    outcome.failover_decisions = logs.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
    if let Some((_, longest)) = logs.iter().max_by_key(|(_, l)| l.len()) {
        for e in longest {
            let executed = match &e.action {
                meridian_control::failover::Action::Approve { decision, .. } => decision.name(),
                a => a.name(),
            };
            match executed {
                "failover" => outcome.failovers_executed += 1,
                "failback" => outcome.failbacks_executed += 1,
                _ => {}
            }
        }
    }
    let (problems, merged) = failover_chain::check(&logs);
    outcome.violations.extend(problems);
    outcome.violations.extend(failover_paused::check(&merged));
    outcome.violations.extend(failover_holddown::check(
        &merged,
        &decisions_seen,
        2 * LOG_POLL_EVERY.as_micros() as u64,
    ));
    let chain: Vec<meridian_control::failover::Entry> =
        merged.values().map(|e| (*e).clone()).collect();
    if let (Some(at), true) = (gray_at, sync_on) {
        outcome.gray_decision_ms =
            gray_failover::decision_us(REGIONS[0], at.as_micros() as u64, &chain, &decisions_seen)
                .map(|d| (d - at.as_micros() as u64) / 1000);
        let decided = outcome
            .gray_decision_ms
            .map(|d| at.as_micros() as u64 + d * 1000);
        outcome.gray_left_ms = decided
            .and_then(|d| gray_failover::left_us(&gray_samples, d))
            .map(|t| (t - at.as_micros() as u64) / 1000);
        let cfg = meridian_control::failover::FailoverConfig::default();
        outcome
            .violations
            .extend(gray_failover::check(&gray_failover::GrayRun {
                region: REGIONS[0],
                stall_at_us: at.as_micros() as u64,
                degraded_for_ms: SIM_DEGRADED_FOR_MS,
                // The first stalled commits reach the judge through the latency windows and the
                // probes (a stall, two probe rounds, a tick: 3.5 s), then enough bad samples to
                // enter `degraded` (a share of the window).
                judged_within_ms: (cfg.window_ms as f64 * cfg.degraded_enter_share) as u64 + 3_500,
                // The decider confirms its leadership with a quorum, then commits the entry and the
                // head: when it sits in the gray region each step can wait behind a stalled flush.
                commit_within_ms: 3 * GRAY_STALL_MS + 2 * LOG_POLL_EVERY.as_millis() as u64,
                // A transfer to a caught-up voter in the next region (ticks every 200 ms, retried
                // after a second), through a leader whose every commit stalls.
                move_within_ms: 4_000,
                chain: &chain,
                seen_us: &decisions_seen,
                samples: &gray_samples,
            }));
    }
    // When each controller decision was taken, on the simulated clock (its stamp, less its
    // decider's skew).
    let decided_us: BTreeMap<u64, u64> = chain
        .iter()
        .filter_map(|e| {
            let id: u64 = e.by.strip_prefix("controller@")?.parse().ok()?;
            let n = nodes.iter().find(|n| n.id == id)?;
            Some((e.seq, n.clock.sim_us_of(e.at_ms)))
        })
        .collect();
    outcome
        .violations
        .extend(meta_minority::check(&meta_cuts, &chain, &decided_us));
    let node_regions: BTreeMap<u64, String> = nodes
        .iter()
        .map(|n| (n.id, REGIONS[n.region].to_string()))
        .collect();
    outcome.violations.extend(meta_spread::check(
        &node_regions,
        &meta_timeline,
        sim.elapsed().as_micros() as u64,
    ));
    outcome
        .violations
        .extend(election.violations().iter().cloned());
    outcome
        .violations
        .extend(committed.violations().iter().cloned());
    if opts.witness {
        let witnesses: std::collections::BTreeSet<u64> =
            nodes.iter().filter(|n| n.witness).map(|n| n.id).collect();
        let rows: Vec<(u64, usize)> = nodes
            .iter()
            .map(|n| (n.id, data_rows(&n.engine, keyspace_id(KEYSPACE))))
            .collect();
        outcome.violations.extend(witness::check(&witness::Seen {
            witnesses: &witnesses,
            leaders: &leaders_seen,
            rows: &rows,
        }));
    }
    let history = history.lock().unwrap().clone();
    let async_history = async_history.lock().unwrap().clone();
    let typed_history = typed_history.lock().unwrap().clone();
    let mut hasher = std::hash::DefaultHasher::new();
    format!(
        "{history:?} {async_history:?} {typed_history:?} {:?}",
        outcome.simulated
    )
    .hash(&mut hasher);
    outcome.digest = hasher.finish();
    outcome.ops = history.len() + async_history.len() + typed_history.len();
    outcome.ops_unknown = history
        .iter()
        .chain(async_history.iter())
        .chain(typed_history.iter())
        .filter(|o| o.returned.is_none())
        .count();
    if !async_regions.is_empty() {
        let live = slots.lock().unwrap().clone();
        let repairs: u64 = nodes
            .iter()
            .zip(live.iter())
            .map(|(n, node)| {
                n.repairs_before.load(Ordering::Relaxed)
                    + node.as_ref().map_or(0, |node| node.antientropy_repairs())
            })
            .sum();
        outcome.antientropy_repairs = repairs;
        outcome
            .violations
            .extend(antientropy::check(repairs, opts.inject_shipping_loss));
        // The injected bug moves cursors past writes it drops, so a session or bounded read
        // served where the cursor says the write is may miss it: broken by design, not judged.
        if !opts.inject_shipping_loss {
            outcome.violations.extend(session::check(&async_history));
        }
        if !opts.inject_shipping_loss {
            outcome
                .violations
                .extend(async_bounded::check(&async_history));
        }
        let holdings: Vec<residency::NodeHoldings> = nodes
            .iter()
            .map(|n| residency::NodeHoldings {
                node: n.id,
                region: REGIONS[n.region].to_string(),
                rows: keyspace_rows(&n.engine, keyspace_id(ASYNC_KEYSPACE)),
            })
            .collect();
        outcome
            .violations
            .extend(residency::check(async_regions, &holdings));
        if let Some(f) = &mut converged {
            // A key no region holds was never written anywhere (or its tombstone is purged).
            for keys in f.async_finals.values_mut() {
                for op in &async_history {
                    keys.entry(op.key.clone()).or_insert(None);
                }
            }
            let any_region = f.async_finals.values().next().cloned().unwrap_or_default();
            outcome
                .violations
                .extend(lww_final::check(&async_history, &any_region));
            outcome
                .violations
                .extend(async_lost_writes::check(&async_history, &f.async_finals));
            outcome
                .violations
                .extend(counter_sum::check(&typed_history, &f.counter_finals));
            outcome
                .violations
                .extend(set_members::check(&typed_history, &f.set_finals));
            outcome
                .violations
                .extend(mv_siblings::check(&typed_history, &f.mv_finals, fastest_us));
            let ledger_of = |keyspace: &str| {
                let mut ledgers = Vec::new();
                let id = keyspace_id(keyspace);
                for n in nodes.iter() {
                    for (ri, region) in async_regions.iter().enumerate() {
                        for shard in 0..shards {
                            let group = async_group_id(id, ri, shard);
                            let entries = meridian_consensus::ledger::entries(
                                &n.engine,
                                group,
                                0,
                                usize::MAX,
                            )
                            .unwrap_or_default();
                            ledgers.extend(entries.into_iter().map(|e| (region.clone(), e)));
                        }
                    }
                }
                ledgers
            };
            let lww_ledgers = ledger_of(ASYNC_KEYSPACE);
            let mv_ledgers = ledger_of(MV_KEYSPACE);
            outcome.conflicts_recorded += lww_ledgers.len() as u64;
            outcome
                .violations
                .extend(ledger_precision::check(&async_history, &lww_ledgers));
            for (history, ledgers) in [
                (&async_history, &lww_ledgers),
                (&typed_history, &mv_ledgers),
            ] {
                let recall = ledger_recall::check(history, ledgers, async_regions, fastest_us);
                outcome.recall_expected += recall.expected;
                outcome.recall_found += recall.found;
                outcome.recall_in_both += recall.in_both;
                outcome.violations.extend(recall.violations);
            }
        }
    }
    // A promotion may lose what the old home had not shipped: such writes must be in the
    // reported tail (and are then taken out, with reads that saw them, before the ordinary
    // checkers judge what remains), and none may be acknowledged at a stale epoch.
    let judged = if opts.promotion {
        outcome.promotion_epoch = sync_epoch(&slots.lock().unwrap());
        let tails = lost_tails(&nodes[0].engine);
        let reported: std::collections::BTreeSet<(String, String)> = tails
            .iter()
            .flat_map(|t| t.recovered.iter().flat_map(|r| r.entries.iter()))
            .filter_map(|e| Some((e.key.clone(), e.value.clone()?)))
            .collect();
        outcome.lost_reported = tails
            .iter()
            .filter_map(|t| t.recovered.as_ref().map(|r| r.writes as usize))
            .sum();
        outcome.lost_acked = history
            .iter()
            .filter(|o| o.acknowledged_write())
            .filter(|o| {
                o.written()
                    .is_some_and(|v| reported.contains(&(o.key.clone(), v.to_string())))
            })
            .count();
        let epochs = write_epochs.lock().unwrap().clone();
        outcome
            .violations
            .extend(promotion::stale_epoch(&history, &epochs));
        if let Some(f) = &converged {
            outcome
                .violations
                .extend(promotion::not_merged_back(&f.sync_finals, &reported));
        }
        promotion::without_reported(&history, &reported)
    } else {
        history.clone()
    };
    outcome.violations.extend(bounded_staleness::check(&judged));
    let lin = linearizable::check(&judged);
    outcome.violations.extend(lin.violations);
    outcome.inconclusive_keys = lin.inconclusive_keys.len();
    if let Some(finals) = converged.filter(|_| sync_on) {
        outcome
            .violations
            .extend(lost_writes::check(&judged, &finals.sync_finals));
    }
    outcome.history = history;
    outcome.async_history = async_history;
    outcome.typed_history = typed_history;
    Ok(())
}

/// An operator on node 1 for the safety phase: pauses failover at seeded times, approves or
/// rejects what is pending, and resumes, so the paused path runs under the nemesis (the
/// failover-log checker judges it). Calls that fail (no quorum, a lost leader) are retried at
/// the next step.
async fn operator_drill(node: Arc<Node>, seed: u64, until: Duration) {
    use meridian_server::failover::{local_state, operator, OperatorAction};
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0f0f);
    let until_us = until.as_micros() as u64;
    while sim_now_us() < until_us {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(2_000..6_000))).await;
        let state = local_state(&node);
        let what = if !state.paused {
            OperatorAction::Pause
        } else if let Some(id) = state.pending.keys().next() {
            if rng.gen_bool(0.5) {
                OperatorAction::Approve(*id)
            } else {
                OperatorAction::Reject(*id)
            }
        } else {
            OperatorAction::Resume
        };
        let _ = operator(&node, "sim", "drill", what).await;
    }
    let _ = operator(&node, "sim", "end of drill", OperatorAction::Resume).await;
}

/// Rows of any group of keyspace `id` in an engine (data, log and group meta).
/// Rows of keyspace `id`'s data (every epoch's groups) in one node's engine.
fn data_rows(engine: &SharedEngine, id: u64) -> usize {
    let start = (id << 16).to_be_bytes().to_vec();
    let end = ((id + 1) << 16).to_be_bytes().to_vec();
    engine
        .scan(Table::Data, &start, &end, usize::MAX)
        .map_or(0, |r| r.len())
}

fn keyspace_rows(engine: &SharedEngine, id: u64) -> usize {
    let start = (id << 16).to_be_bytes().to_vec();
    let end = ((id + 1) << 16).to_be_bytes().to_vec();
    [Table::Data, Table::Log, Table::Meta]
        .into_iter()
        .map(|t| {
            engine
                .scan(t, &start, &end, usize::MAX)
                .map_or(0, |r| r.len())
        })
        .sum()
}

/// A keyspace the clients use, created through the first node once the cluster allows it.
async fn create_keyspace(node: Arc<Node>, policy: KeyspacePolicy) {
    loop {
        match node.create_keyspace(policy.clone()).await {
            Ok(_) => return,
            Err(KvError::FailedPrecondition(m)) if m.contains("already exists") => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

fn host_pairs(nodes: &[SimNode]) -> Vec<(String, String, Duration)> {
    let matrix = LatencyMatrix::aws_default();
    let mut hosts: Vec<(String, usize)> =
        nodes.iter().map(|n| (n.host.clone(), n.region)).collect();
    for (c, _) in REGIONS.iter().enumerate() {
        hosts.push((format!("client-{}", REGIONS[c]), c));
    }
    let mut pairs = Vec::new();
    for (i, (a, ra)) in hosts.iter().enumerate() {
        for (b, rb) in &hosts[i + 1..] {
            pairs.push((a.clone(), b.clone(), one_way(&matrix, *ra, *rb)));
        }
    }
    pairs
}

/// The usual one-way latency between two regions (by index): half the matrix's RTT, or
/// `INTRA_REGION` inside one region.
fn one_way(matrix: &LatencyMatrix, a: usize, b: usize) -> Duration {
    if a == b {
        INTRA_REGION
    } else {
        Duration::from_micros((matrix.rtt_ms(REGIONS[a], REGIONS[b]) * 500.0) as u64)
    }
}

/// The least time a write of region `a` takes to reach region `b`: the direct link or a relay
/// through the third region, whichever is faster (faults only slow links down).
fn fastest_us(a: RegionTag, b: RegionTag) -> u64 {
    let matrix = LatencyMatrix::aws_default();
    let index = |t: RegionTag| {
        REGIONS
            .iter()
            .position(|r| RegionTag::of(r) == t)
            .expect("a simulated region")
    };
    let (a, b) = (index(a), index(b));
    let via = (0..REGIONS.len())
        .map(|c| one_way(&matrix, a, c) + one_way(&matrix, c, b))
        .min()
        .unwrap_or(Duration::MAX);
    one_way(&matrix, a, b).min(via).as_micros() as u64
}

/// Every link's latency: the WAN matrix's one-way delay times `factor`.
fn set_latencies(sim: &turmoil::Sim, nodes: &[SimNode], factor: u32) {
    for (a, b, one_way) in host_pairs(nodes) {
        sim.set_link_latency(a.as_str(), b.as_str(), one_way * factor);
    }
}

fn begin(sim: &mut turmoil::Sim, nodes: &[SimNode], slots: &Slots, fault: &Fault) {
    let n = nodes.len();
    for (a, b) in nemesis::cut_pairs(fault, n) {
        sim.partition(nodes[a].host.as_str(), nodes[b].host.as_str());
    }
    match fault {
        Fault::OneWay { from, to } => {
            for a in from {
                for b in to {
                    sim.partition_oneway(nodes[*a].host.as_str(), nodes[*b].host.as_str());
                }
            }
        }
        Fault::Crash { nodes: crashed, .. } => {
            for i in crashed {
                sim.crash(nodes[*i].host.as_str());
                // A crash loses what was not yet durable: state machine applies since the
                // last log append.
                nodes[*i].mem.lose_deferred();
                if let Some(node) = slots.lock().unwrap()[*i].take() {
                    nodes[*i]
                        .repairs_before
                        .fetch_add(node.antientropy_repairs(), Ordering::Relaxed);
                }
            }
        }
        Fault::DelaySpike {
            nodes: slow,
            factor,
        } => {
            let matrix = LatencyMatrix::aws_default();
            for a in slow {
                for (b, other) in nodes.iter().enumerate().filter(|(b, _)| b != a) {
                    let usual = one_way(&matrix, nodes[*a].region, other.region);
                    sim.set_link_latency(
                        nodes[*a].host.as_str(),
                        nodes[b].host.as_str(),
                        usual * *factor,
                    );
                }
            }
        }
        Fault::ClockJump { node, offset_ms } => nodes[*node].clock.set_offset_ms(*offset_ms),
        Fault::DiskStall {
            nodes: slow,
            delay_ms,
        } => set_disk_stall(slots, slow, *delay_ms),
        Fault::Partition { .. } | Fault::Ring | Fault::MetaMinority => {}
    }
}

fn set_disk_stall(slots: &Slots, which: &[usize], delay_ms: u64) {
    for i in which {
        if let Some(node) = &slots.lock().unwrap()[*i] {
            node.committer
                .disk()
                .injected_delay_ms
                .store(delay_ms, Ordering::Relaxed);
        }
    }
}

fn end(sim: &mut turmoil::Sim, nodes: &[SimNode], slots: &Slots, fault: &Fault) {
    for (a, b) in nemesis::cut_pairs(fault, nodes.len()) {
        sim.repair(nodes[a].host.as_str(), nodes[b].host.as_str());
    }
    match fault {
        Fault::OneWay { from, to } => {
            for a in from {
                for b in to {
                    sim.repair_oneway(nodes[*a].host.as_str(), nodes[*b].host.as_str());
                }
            }
        }
        Fault::Crash { nodes: crashed, .. } => {
            for i in crashed {
                sim.bounce(nodes[*i].host.as_str());
            }
        }
        Fault::DelaySpike { .. } => set_latencies(sim, nodes, 1),
        Fault::ClockJump { node, .. } => nodes[*node].clock.set_offset_ms(0),
        Fault::DiskStall { nodes: slow, .. } => set_disk_stall(slots, slow, 0),
        Fault::Partition { .. } | Fault::Ring | Fault::MetaMinority => {}
    }
}

/// Undoes everything: links repaired, latencies restored, clocks reset, every node running.
fn heal_all(sim: &mut turmoil::Sim, nodes: &[SimNode]) {
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            sim.repair(a.host.as_str(), b.host.as_str());
        }
        a.clock.set_offset_ms(0);
        if !sim.is_host_running(a.host.as_str()) {
            sim.bounce(a.host.as_str());
        }
    }
    set_latencies(sim, nodes, 1);
}

/// Whether a node outside region `lost` leads `group` and has applied an entry of its own term
/// (its election's first entry is committed, so writes commit again).
/// The region index of `group`'s leader, as the node that leads it says (the highest term
/// wins if two think they lead).
fn leader_region(slots: &Slots, nodes: &[SimNode], group: GroupId) -> Option<usize> {
    slots
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let s = n.as_ref()?.group_status();
            let s = s.iter().find(|s| s.group == group && s.is_leader)?;
            Some((s.term, nodes[i].region))
        })
        .max()
        .map(|(_, r)| r)
}

/// The metadata group's leader and the lowest-numbered other voters that keep the side a
/// minority of the voters (node indexes); empty while there is no leader.
fn meta_minority_side(slots: &Slots) -> Vec<usize> {
    let slots = slots.lock().unwrap();
    // The self-declared leader of the highest term (a deposed one may not know yet).
    let Some((_, leader, voters)) = slots
        .iter()
        .flatten()
        .filter_map(|n| {
            let g = n.group(meridian_types::META_GROUP)?;
            let m = g.raft.metrics();
            let m = openraft::async_runtime::WatchReceiver::borrow_watched(&m);
            (m.state == openraft::ServerState::Leader).then(|| {
                let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
                (m.current_term, n.id(), voters)
            })
        })
        .max_by_key(|(term, id, _)| (*term, *id))
    else {
        return Vec::new();
    };
    // With fewer than three voters no side of one is a minority: no cut this time.
    if voters.len() < 3 {
        return Vec::new();
    }
    let room = (voters.len() - 1) / 2;
    let mut side: Vec<u64> = vec![leader];
    side.extend(
        voters
            .iter()
            .copied()
            .filter(|v| *v != leader)
            .take(room.saturating_sub(1)),
    );
    debug_assert!(side.len() * 2 < voters.len());
    // Node ids are indexes + 1.
    side.iter().map(|id| (*id - 1) as usize).collect()
}

fn serving_outside(slots: &Slots, nodes: &[SimNode], group: GroupId, lost: usize) -> bool {
    slots.lock().unwrap().iter().enumerate().any(|(i, n)| {
        let Some(node) = n else { return false };
        nodes[i].region != lost
            && node
                .group_status()
                .iter()
                .any(|s| s.group == group && s.is_leader && s.applied_term == Some(s.term))
    })
}

fn sample(
    slots: &Slots,
    election: &mut election_safety::ElectionSafety,
    committed: &mut committed_stable::CommittedStable,
) {
    for node in slots.lock().unwrap().iter().flatten() {
        for s in node.group_status() {
            if s.is_leader {
                election.observe(s.group, s.term, node.id());
            }
            if let Some((index, proposer)) = &s.applied {
                committed.observe(s.group, *index, proposer, node.id());
            }
        }
    }
}

/// Every key's final value once converged: the sync keyspace's values, and per region the
/// async keyspace's versions.
struct Finals {
    sync_finals: BTreeMap<String, Option<String>>,
    async_finals: BTreeMap<String, BTreeMap<String, Option<Versioned>>>,
    /// Per region, each counter key's value.
    counter_finals: BTreeMap<String, BTreeMap<String, Option<i64>>>,
    /// Per region, each set key's members.
    set_finals: BTreeMap<String, BTreeMap<String, std::collections::BTreeSet<String>>>,
    /// Per region, each register key's sibling values.
    mv_finals: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// Whether the replicas have converged, and if so every key's final value.
fn converge_check(
    slots: &Slots,
    nodes: &[SimNode],
    shards: u16,
    sync_on: bool,
    promotion: bool,
    async_regions: &[String],
) -> (Vec<String>, Finals) {
    let mut finals = Finals {
        sync_finals: BTreeMap::new(),
        async_finals: BTreeMap::new(),
        counter_finals: BTreeMap::new(),
        set_finals: BTreeMap::new(),
        mv_finals: BTreeMap::new(),
    };
    let slots = slots.lock().unwrap();
    if slots.iter().any(Option::is_none) {
        return (vec!["not every node is running yet".into()], finals);
    }
    let mut groups: BTreeMap<GroupId, Vec<convergence::Replica>> = BTreeMap::new();
    let mut async_shards: BTreeMap<u16, Vec<async_convergence::RegionReplica>> = BTreeMap::new();
    let mut counter_shards: BTreeMap<u16, Vec<async_convergence::RegionReplica>> = BTreeMap::new();
    let async_id = keyspace_id(ASYNC_KEYSPACE);
    let counter_id = keyspace_id(COUNTER_KEYSPACE);
    let set_id = keyspace_id(SET_KEYSPACE);
    let mv_id = keyspace_id(MV_KEYSPACE);
    let mut mv_shards: BTreeMap<u16, Vec<async_convergence::RegionReplica>> = BTreeMap::new();
    let mut set_shards: BTreeMap<u16, Vec<async_convergence::RegionReplica>> = BTreeMap::new();
    for (node, sim_node) in slots.iter().flatten().zip(nodes) {
        for s in node.group_status() {
            // A witness's replica of a keyspace's group holds no data by design.
            if sim_node.witness && s.group != meridian_types::META_GROUP {
                continue;
            }
            let data =
                state_machine::scan(&sim_node.engine, s.group, b"", usize::MAX).unwrap_or_default();
            groups
                .entry(s.group)
                .or_default()
                .push(convergence::Replica {
                    node: node.id(),
                    is_leader: s.is_leader,
                    // An async group's log never stops growing (idle shipping carries freshness
                    // promises), so its replicas are compared at their last write and on data.
                    applied_index: if is_async_group(s.group) {
                        state_machine::last_write(&sim_node.engine, s.group).unwrap_or(0)
                    } else {
                        s.applied.as_ref().map_or(0, |(i, _)| *i)
                    },
                    data,
                });
            let ks = group_keyspace(s.group);
            if is_async_group(s.group) && [async_id, counter_id, set_id, mv_id].contains(&ks) {
                let rows =
                    state_machine::scan_versioned(&sim_node.engine, s.group, b"", usize::MAX)
                        .unwrap_or_default();
                let by_shard = if ks == async_id {
                    &mut async_shards
                } else if ks == counter_id {
                    &mut counter_shards
                } else if ks == set_id {
                    &mut set_shards
                } else {
                    &mut mv_shards
                };
                by_shard.entry(group_shard(s.group)).or_default().push(
                    async_convergence::RegionReplica {
                        node: node.id(),
                        region: REGIONS[sim_node.region].to_string(),
                        group: s.group,
                        rows,
                    },
                );
            }
        }
    }
    let ks = keyspace_id(KEYSPACE);
    let epoch = sync_epoch(&slots);
    let mut problems = Vec::new();
    if promotion {
        if epoch == 0 {
            problems.push("the zone keyspace was not promoted".to_string());
        }
        let tails = lost_tails(&nodes[0].engine);
        if tails.len() < usize::from(shards) || tails.iter().any(|t| !t.is_exact()) {
            problems.push(format!(
                "the returned home region has not reported the exact lost tail yet ({} of {shards} shards)",
                tails.iter().filter(|t| t.is_exact()).count()
            ));
        }
    }
    for shard in 0..shards {
        if sync_on && !groups.contains_key(&sync_group_id(ks, shard, epoch)) {
            problems.push(format!("no node runs shard {shard} of the keyspace"));
        }
        for (ri, _) in async_regions.iter().enumerate() {
            for id in [async_id, counter_id, set_id, mv_id] {
                if !groups.contains_key(&async_group_id(id, ri, shard)) {
                    problems.push(format!(
                        "no node runs shard {shard} of async keyspace {id} in {}",
                        async_regions[ri]
                    ));
                }
            }
        }
    }
    problems.extend(convergence::check(&groups));
    problems.extend(async_convergence::check(&async_shards));
    problems.extend(async_convergence::check(&counter_shards));
    problems.extend(async_convergence::check(&set_shards));
    problems.extend(async_convergence::check(&mv_shards));
    if problems.is_empty() {
        finals.mv_finals = by_region(&mv_shards, |v| match &v.typed {
            Some(meridian_crdt::Typed::Mv(m)) => m
                .siblings()
                .iter()
                .map(|s| {
                    String::from_utf8_lossy(s.value.as_deref().unwrap_or(b"<delete>")).into_owned()
                })
                .collect(),
            _ => vec!["<not a register>".to_string()],
        });
        finals.set_finals = by_region(&set_shards, |v| {
            v.render()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default()
        });
        finals.counter_finals = by_region(&counter_shards, |v| {
            v.render()
                .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
        });
        for k in 0..KEYS {
            let key = key_name(k);
            let shard = shard_for_key(key.as_bytes(), shards);
            if sync_on {
                let value = groups[&sync_group_id(ks, shard, epoch)][0]
                    .data
                    .iter()
                    .find(|(kk, _)| kk == key.as_bytes())
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                finals.sync_finals.insert(key.clone(), value);
            }
        }
        for r in async_shards.values().flatten() {
            let region = finals.async_finals.entry(r.region.clone()).or_default();
            for (key, v) in &r.rows {
                region.insert(String::from_utf8_lossy(key).into_owned(), Some(v.clone()));
            }
        }
    }
    (problems, finals)
}

/// The sync keyspace's epoch: the newest any running node's catalogue has.
fn sync_epoch(slots: &[Option<Arc<Node>>]) -> u64 {
    slots
        .iter()
        .flatten()
        .filter_map(|n| {
            n.catalog_keyspaces()
                .into_iter()
                .find(|k| k.policy.name == KEYSPACE)
                .map(|k| k.epoch)
        })
        .max()
        .unwrap_or(0)
}

/// The sync keyspace's lost tails of its latest promotion, from a node's metadata replica.
fn lost_tails(engine: &SharedEngine) -> Vec<meridian_server::promotion::LostTail> {
    let prefix = format!(
        "{}{KEYSPACE}/",
        meridian_server::promotion::LOST_TAIL_PREFIX
    );
    let tails: Vec<meridian_server::promotion::LostTail> = state_machine::scan(
        engine,
        meridian_types::META_GROUP,
        prefix.as_bytes(),
        usize::MAX,
    )
    .unwrap_or_default()
    .iter()
    .filter_map(|(_, v)| serde_json::from_slice(v).ok())
    .collect();
    let latest = tails.iter().map(|t| t.epoch).max().unwrap_or(0);
    tails.into_iter().filter(|t| t.epoch == latest).collect()
}

/// Every row of a typed keyspace's replicas, decoded, per region (each region's replicas agree
/// once converged; the last one read stands).
fn by_region<T>(
    shards: &BTreeMap<u16, Vec<async_convergence::RegionReplica>>,
    decode: impl Fn(&Versioned) -> T,
) -> BTreeMap<String, BTreeMap<String, T>> {
    let mut out: BTreeMap<String, BTreeMap<String, T>> = BTreeMap::new();
    for r in shards.values().flatten() {
        let region = out.entry(r.region.clone()).or_default();
        for (key, v) in &r.rows {
            region.insert(String::from_utf8_lossy(key).into_owned(), decode(v));
        }
    }
    out
}

/// The clients of one region: `WORKERS` concurrent processes that talk to that region's nodes
/// through the same transport the nodes use, and record every operation.
struct Client {
    id: u64,
    region: String,
    targets: Vec<(u64, String)>,
    /// Every node with its region: async processes sometimes travel (a client whose requests
    /// reach another region), which is where session tokens matter.
    everywhere: Vec<(u64, String, String)>,
    shards: u16,
    seed: u64,
    history: Arc<Mutex<Vec<HistoryOp>>>,
    async_history: Arc<Mutex<Vec<HistoryOp>>>,
    typed_history: Arc<Mutex<Vec<HistoryOp>>>,
    /// The sync keyspace's epoch as this client last learned it (a promotion's fencing error
    /// names the new one).
    epoch: Arc<std::sync::atomic::AtomicU64>,
    /// Acknowledged sync writes (key, value) and the epoch of the group that acknowledged each.
    write_epochs: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    async_regions: Vec<String>,
    /// The first `async_workers` processes of the region use the async keyspace.
    async_workers: u64,
    ops_per_worker: usize,
    stop_issuing_us: u64,
}

fn sim_now_us() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_micros() as u64
}

impl Client {
    async fn run(self) -> turmoil::Result {
        let me = Endpoint {
            node: 1000 + self.id,
            region: self.region.clone(),
        };
        let wan = WanModel {
            enabled: false,
            matrix: LatencyMatrix::aws_default(),
            jitter_pct: 0.0,
        };
        let transport = Transport::new(me, wan, self.seed, Arc::new(SimDialer));
        let this = Arc::new(self);
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            let rng = StdRng::seed_from_u64(this.seed ^ (w + 1));
            let process = this.id * 100 + w;
            let worker = if w < this.async_workers {
                tokio::spawn(this.clone().async_worker(transport.clone(), process, rng))
            } else {
                tokio::spawn(this.clone().worker(transport.clone(), process, rng))
            };
            workers.push(worker);
        }
        if this.async_workers > 0 && this.async_regions.contains(&this.region) {
            for (i, mv) in [false, true].into_iter().enumerate() {
                let rng = StdRng::seed_from_u64(this.seed ^ (0xd0e1 + i as u64));
                let process = this.id * 100 + 50 + i as u64;
                workers.push(tokio::spawn(this.clone().duelist(
                    transport.clone(),
                    process,
                    rng,
                    mv,
                )));
            }
        }
        for w in workers {
            w.await?;
        }
        Ok(())
    }

    /// One sequential process: an operation at a time, each on a random key through a random
    /// node of the region.
    async fn worker(self: Arc<Self>, transport: Arc<Transport>, process: u64, mut rng: StdRng) {
        let mut written = 0u64;
        let mut last_seen: BTreeMap<String, Option<String>> = BTreeMap::new();
        // Wait for the keyspace (not recorded: nothing is written).
        while sim_now_us() < self.stop_issuing_us {
            let (node, host) = self.targets[rng.gen_range(0..self.targets.len())].clone();
            if let Reply::Done(_) = self
                .call(&transport, node, &host, &key_name(0), &Call::Get)
                .await
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut issued = 0;
        while issued < self.ops_per_worker && sim_now_us() < self.stop_issuing_us {
            let key = key_name(rng.gen_range(0..KEYS));
            let call = match rng.gen_range(0..10) {
                0..=3 => {
                    written += 1;
                    Call::Put(format!("p{process}-{written}"))
                }
                4..=5 => Call::Get,
                6..=7 => Call::StaleGet {
                    bound_ms: STALE_BOUNDS_MS[rng.gen_range(0..STALE_BOUNDS_MS.len())],
                },
                _ => {
                    written += 1;
                    Call::Cas {
                        expected: last_seen.get(&key).cloned().flatten(),
                        value: format!("p{process}-{written}"),
                    }
                }
            };
            let (node, host) = self.targets[rng.gen_range(0..self.targets.len())].clone();
            let invoked_us = sim_now_us();
            tracing::debug!(process, node, %key, ?call, "client invokes");
            let reply = self.call(&transport, node, &host, &key, &call).await;
            tracing::debug!(process, node, %key, "client hears back");
            let returned = match reply {
                Reply::NotSent => {
                    // Never left this client: it cannot have taken effect.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Reply::Unknown if matches!(call, Call::Get | Call::StaleGet { .. }) => continue,
                Reply::Unknown => None,
                Reply::Done(ret) => {
                    if let Ret::Get(v) | Ret::StaleGet { value: v, .. } = &ret {
                        last_seen.insert(key.clone(), v.clone());
                    }
                    Some((sim_now_us(), ret))
                }
            };
            issued += 1;
            self.history.lock().unwrap().push(HistoryOp {
                client: process,
                key,
                call,
                invoked_us,
                returned,
            });
            // Think time that spreads the process's operations over the safety phase, so that
            // they meet the faults, and lets concurrent processes interleave.
            let pace_ms = self.stop_issuing_us / 1000 / self.ops_per_worker.max(1) as u64;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=pace_ms / 2))).await;
        }
    }

    async fn call(
        &self,
        transport: &Arc<Transport>,
        node: u64,
        host: &str,
        key: &str,
        call: &Call,
    ) -> Reply {
        let group = sync_group_id(
            keyspace_id(KEYSPACE),
            shard_for_key(key.as_bytes(), self.shards),
            self.epoch.load(Ordering::Relaxed),
        );
        let key_name = key.to_string();
        let key = key.as_bytes().to_vec();
        let op = match call {
            Call::Put(v) => Op::Write(Command::Put {
                key,
                value: v.clone().into_bytes(),
            }),
            Call::Get => Op::Get {
                key,
                consistency: ReadConsistencyWire::Linearizable,
                needs: Vec::new(),
            },
            Call::StaleGet { bound_ms } => Op::Get {
                key,
                consistency: ReadConsistencyWire::Bounded(*bound_ms),
                needs: Vec::new(),
            },
            Call::Cas { expected, value } => Op::Write(Command::Cas {
                key,
                expected: expected.clone().map(String::into_bytes),
                value: Some(value.clone().into_bytes()),
            }),
            _ => unreachable!("async calls go through async_call"),
        };
        let to = Endpoint {
            node,
            region: self.region.clone(),
        };
        let addr = format!("{host}:{PEER_PORT}");
        let req = PeerRequest::Op { group, op, hops: 0 };
        let reply = transport.call(&to, &addr, req, OP_TIMEOUT).await;
        match &reply {
            Ok(PeerResponse::Op(Ok(r))) => {
                let written = match call {
                    Call::Put(v) => Some(v.clone()),
                    Call::Cas { value, .. } if r.result.succeeded => Some(value.clone()),
                    _ => None,
                };
                if let (Some(v), Some((g, _))) = (written, r.positions.first()) {
                    self.write_epochs
                        .lock()
                        .unwrap()
                        .insert((key_name, v), group_epoch(*g));
                }
            }
            Ok(PeerResponse::Op(Err(e))) => {
                if let Some(e) = fenced_epoch(&e.to_string()) {
                    self.epoch.fetch_max(e, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        match reply {
            Err(CallError::NotSent(..)) => Reply::NotSent,
            Err(_) => Reply::Unknown,
            Ok(PeerResponse::Op(Ok(r))) => Reply::Done(match call {
                Call::Put(_) => Ret::Put,
                Call::Get => Ret::Get(r.value.map(|v| String::from_utf8_lossy(&v).into_owned())),
                Call::StaleGet { .. } => Ret::StaleGet {
                    value: r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                    // A node that gives no staleness claims none: judged as 0.
                    staleness_ms: r.served_by.staleness_ms.unwrap_or(0),
                },
                Call::Cas { .. } => Ret::Cas {
                    succeeded: r.result.succeeded,
                },
                _ => unreachable!("async calls go through async_call"),
            }),
            // Refused before anything was written.
            Ok(PeerResponse::Op(Err(
                KvError::NotFound(_) | KvError::InvalidArgument(_) | KvError::FailedPrecondition(_),
            ))) => Reply::NotSent,
            // Another error from the cluster: a write may or may not have been applied.
            Ok(_) => Reply::Unknown,
        }
    }
}

impl Client {
    /// The async keyspace's group that serves this client's region: its own region's group,
    /// or the nearest listed region's when its region is not listed (the request then passes
    /// through a node of this region that stores nothing of the keyspace).
    fn async_group(&self, key: &str, from: &str) -> GroupId {
        let matrix = LatencyMatrix::aws_default();
        let region = if self.async_regions.iter().any(|r| r == from) {
            from.to_string()
        } else {
            self.async_regions
                .iter()
                .min_by_key(|r| ((matrix.rtt_ms(from, r) * 1000.0) as u64, (*r).clone()))
                .cloned()
                .expect("an async keyspace lists regions")
        };
        let ri = self
            .async_regions
            .iter()
            .position(|r| *r == region)
            .expect("listed");
        let keyspace = if key.starts_with('c') {
            COUNTER_KEYSPACE
        } else if key.starts_with('s') {
            SET_KEYSPACE
        } else if key.starts_with('m') {
            MV_KEYSPACE
        } else {
            ASYNC_KEYSPACE
        };
        async_group_id(
            keyspace_id(keyspace),
            ri,
            shard_for_key(key.as_bytes(), self.shards),
        )
    }

    /// One sequential process on the async keyspace with one session token: puts and deletes
    /// of shared keys, session reads and eventual reads, all through its region's nodes.
    async fn async_worker(
        self: Arc<Self>,
        transport: Arc<Transport>,
        process: u64,
        mut rng: StdRng,
    ) {
        let mut written = 0u64;
        let mut token = SessionToken::default();
        while sim_now_us() < self.stop_issuing_us {
            let (node, host) = self.targets[rng.gen_range(0..self.targets.len())].clone();
            let region = self.region.clone();
            if let Reply::Done(_) = self
                .async_call(
                    &transport,
                    (node, &host, &region),
                    &key_name(0),
                    &Call::EventualGet,
                    &mut token,
                    None,
                )
                .await
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut issued = 0;
        while issued < self.ops_per_worker && sim_now_us() < self.stop_issuing_us {
            let mut key = key_name(rng.gen_range(0..KEYS));
            let mut home_only = false;
            let call = match rng.gen_range(0..31) {
                28..=30 => {
                    // This process's own register, written through its own region.
                    key = format!("m{process}");
                    home_only = true;
                    written += 1;
                    Call::MvPut(format!("m{process}-{written}"))
                }
                24..=27 => {
                    // An element of this process's own, updated only through its own region
                    // (its operations stay ordered for the checker).
                    key = format!("s{}", rng.gen_range(0..SET_KEYS));
                    home_only = true;
                    let element = format!("p{process}-e{}", rng.gen_range(0..3));
                    if rng.gen_bool(0.6) {
                        Call::SetAdd(element)
                    } else {
                        Call::SetRemove(element)
                    }
                }
                20..=23 => {
                    key = format!("c{}", rng.gen_range(0..COUNTER_KEYS));
                    let by = rng.gen_range(-3i64..=5);
                    Call::Incr(if by == 0 { 7 } else { by })
                }
                0..=6 => {
                    written += 1;
                    Call::Write(Some(format!("a{process}-{written}")))
                }
                7..=9 => Call::Write(None),
                10..=15 => Call::SessionGet,
                16..=17 => Call::BoundedGet {
                    bound_ms: [300, 1_000, 5_000][rng.gen_range(0..3)],
                },
                _ => Call::EventualGet,
            };
            // Mostly the home region's nodes; one operation in four travels to any node.
            let (node, host, region) = if rng.gen_bool(0.25) && !home_only {
                self.everywhere[rng.gen_range(0..self.everywhere.len())].clone()
            } else {
                let (n, h) = self.targets[rng.gen_range(0..self.targets.len())].clone();
                (n, h, self.region.clone())
            };
            let invoked_us = sim_now_us();
            // Counter updates carry a request id and are retried, with it, while their outcome
            // is unknown: the retry must not count twice.
            let request_id = matches!(call, Call::Incr(_)).then(|| {
                written += 1;
                format!("p{process}-i{written}")
            });
            let target = (node, host.as_str(), region.as_str());
            let mut reply = self
                .async_call(
                    &transport,
                    target,
                    &key,
                    &call,
                    &mut token,
                    request_id.as_deref(),
                )
                .await;
            for _ in 0..3 {
                if request_id.is_none() || !matches!(reply, Reply::Unknown) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                reply = match self
                    .async_call(
                        &transport,
                        target,
                        &key,
                        &call,
                        &mut token,
                        request_id.as_deref(),
                    )
                    .await
                {
                    // Not delivered says nothing of the first attempt.
                    Reply::NotSent => Reply::Unknown,
                    r => r,
                };
            }
            let returned = match reply {
                Reply::NotSent => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Reply::Unknown
                    if !matches!(
                        call,
                        Call::Write(_)
                            | Call::Incr(_)
                            | Call::SetAdd(_)
                            | Call::SetRemove(_)
                            | Call::MvPut(_)
                    ) =>
                {
                    continue
                }
                Reply::Unknown => None,
                Reply::Done(ret) => Some((sim_now_us(), ret)),
            };
            issued += 1;
            self.record_async(HistoryOp {
                client: process,
                key,
                call,
                invoked_us,
                returned,
            });
            let pace_ms = self.stop_issuing_us / 1000 / self.ops_per_worker.max(1) as u64;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=pace_ms / 2))).await;
        }
    }

    /// Records an async operation: typed ones (counter, set, mv) in the typed history.
    fn record_async(&self, op: HistoryOp) {
        let history = if matches!(
            op.call,
            Call::Incr(_) | Call::SetAdd(_) | Call::SetRemove(_) | Call::MvPut(_)
        ) {
            &self.typed_history
        } else {
            &self.async_history
        };
        history.lock().unwrap().push(op);
    }

    /// Writes the "duel" keys: in round `k` (every `DUEL_EVERY` of simulated time, the same
    /// instant in every region) the two regions of pair `k mod pairs` each write key `d<k>`
    /// (lww) or `md<k>` (mv) once, with a value naming the round and the region, and nobody
    /// else writes it. The two writes race across the WAN, so the ledger-recall oracle and the
    /// register checker know what each region must have seen and recorded.
    async fn duelist(
        self: Arc<Self>,
        transport: Arc<Transport>,
        process: u64,
        mut rng: StdRng,
        mv: bool,
    ) {
        let mut pairs = Vec::new();
        for (i, a) in self.async_regions.iter().enumerate() {
            for b in &self.async_regions[i + 1..] {
                pairs.push([a.clone(), b.clone()]);
            }
        }
        let every = DUEL_EVERY.as_micros() as u64;
        let mut round = sim_now_us() / every + 1;
        loop {
            let at = round * every;
            if at >= self.stop_issuing_us {
                break;
            }
            tokio::time::sleep(Duration::from_micros(at.saturating_sub(sim_now_us()))).await;
            let k = round;
            round = sim_now_us() / every + 1;
            if !pairs[k as usize % pairs.len()].contains(&self.region) {
                continue;
            }
            let (key, call) = if mv {
                (
                    format!("md{k}"),
                    Call::MvPut(format!("md{k}-{}", self.region)),
                )
            } else {
                (
                    format!("d{k}"),
                    Call::Write(Some(format!("d{k}-{}", self.region))),
                )
            };
            let (node, host) = self.targets[rng.gen_range(0..self.targets.len())].clone();
            let invoked_us = sim_now_us();
            let reply = self
                .async_call(
                    &transport,
                    (node, &host, &self.region),
                    &key,
                    &call,
                    &mut SessionToken::default(),
                    None,
                )
                .await;
            let returned = match reply {
                Reply::NotSent => continue,
                Reply::Unknown => None,
                Reply::Done(ret) => Some((sim_now_us(), ret)),
            };
            self.record_async(HistoryOp {
                client: process,
                key,
                call,
                invoked_us,
                returned,
            });
        }
    }

    async fn async_call(
        &self,
        transport: &Arc<Transport>,
        (node, host, region): (u64, &str, &str),
        key: &str,
        call: &Call,
        token: &mut SessionToken,
        request_id: Option<&str>,
    ) -> Reply {
        let group = self.async_group(key, region);
        let same_shard = |g: GroupId| {
            is_async_group(g)
                && group_keyspace(g) == group_keyspace(group)
                && group_shard(g) == group_shard(group)
        };
        let key = key.as_bytes().to_vec();
        let op = match call {
            Call::Write(v) => Op::Write(Command::Write {
                key,
                value: v.clone().map(String::into_bytes),
                hlc: Default::default(),
                seen: Default::default(),
            }),
            Call::Incr(by) => {
                let update = Command::Update {
                    key,
                    op: meridian_crdt::Op::Incr(*by),
                    hlc: None,
                };
                Op::Write(match request_id {
                    Some(id) => Command::Idempotent {
                        id: id.as_bytes().to_vec(),
                        at_ms: 0,
                        window_ms: 600_000,
                        cmd: Box::new(update),
                    },
                    None => update,
                })
            }
            Call::MvPut(v) => Op::Write(Command::Update {
                key,
                op: meridian_crdt::Op::Mv {
                    value: Some(v.clone().into_bytes()),
                    context: None,
                },
                hlc: None,
            }),
            Call::SetAdd(e) | Call::SetRemove(e) => {
                let e = vec![e.clone().into_bytes()];
                let (add, remove) = if matches!(call, Call::SetAdd(_)) {
                    (e, Vec::new())
                } else {
                    (Vec::new(), e)
                };
                Op::Write(Command::Update {
                    key,
                    op: meridian_crdt::Op::Set { add, remove },
                    hlc: None,
                })
            }
            Call::SessionGet => Op::Get {
                key,
                consistency: ReadConsistencyWire::Session,
                needs: token.select(same_shard),
            },
            Call::EventualGet => Op::Get {
                key,
                consistency: ReadConsistencyWire::Eventual,
                needs: Vec::new(),
            },
            Call::BoundedGet { bound_ms } => Op::Get {
                key,
                consistency: ReadConsistencyWire::Bounded(*bound_ms),
                needs: Vec::new(),
            },
            _ => unreachable!("sync calls go through call"),
        };
        let to = Endpoint {
            node,
            region: region.to_string(),
        };
        let addr = format!("{host}:{PEER_PORT}");
        let req = PeerRequest::Op { group, op, hops: 0 };
        match transport.call(&to, &addr, req, OP_TIMEOUT).await {
            Err(CallError::NotSent(..)) => Reply::NotSent,
            Err(_) => Reply::Unknown,
            Ok(PeerResponse::Op(Ok(r))) => {
                for (g, i) in &r.positions {
                    token.observe(*g, *i);
                }
                if r.result.refused.is_some() {
                    // Refused before it was applied (an overflow): nothing happened.
                    return Reply::NotSent;
                }
                Reply::Done(match call {
                    Call::Incr(_) => match r.result.hlc {
                        Some(_) => Ret::Incremented,
                        None => return Reply::Unknown,
                    },
                    Call::SetAdd(_) | Call::SetRemove(_) => match r.result.hlc {
                        Some(_) => Ret::SetUpdated,
                        None => return Reply::Unknown,
                    },
                    Call::MvPut(_) => match r.result.hlc {
                        Some(hlc) => Ret::MvWritten { hlc },
                        None => return Reply::Unknown,
                    },
                    Call::Write(_) => match r.result.hlc {
                        Some(hlc) => Ret::Written { hlc },
                        None => return Reply::Unknown,
                    },
                    _ => Ret::Read {
                        value: r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                        version: r.version,
                    },
                })
            }
            Ok(PeerResponse::Op(Err(
                KvError::NotFound(_) | KvError::InvalidArgument(_) | KvError::FailedPrecondition(_),
            ))) => Reply::NotSent,
            Ok(_) => Reply::Unknown,
        }
    }
}

/// The epoch a fencing error names (`... the keyspace is at epoch N ...`).
fn fenced_epoch(message: &str) -> Option<u64> {
    let rest = message.split("is at epoch ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

enum Reply {
    NotSent,
    Unknown,
    Done(Ret),
}
