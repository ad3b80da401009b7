//! `meridian demo`: three regions of three nodes in this process under the WAN model, clients
//! in every region, the loss of the whole home region, its return, and a report.
//!
//! Each node runs on its own tokio runtime, so killing a node is dropping its runtime: its
//! tasks stop mid-flight and its sockets close, as in a crash. Its data directory stays, and a
//! restart recovers from it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::client::Client;
use crate::local::LocalNode;

pub const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
const HOME: usize = 0;
const NODES_PER_REGION: usize = 3;
const CLIENTS_PER_REGION: usize = 4;
const KEYSPACE: &str = "demo";
const SHARDS: u16 = 4;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Phase {
    Steady,
    Outage,
    Recovery,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Steady => "steady",
            Phase::Outage => "home region down",
            Phase::Recovery => "recovery",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Write,
    Read,
    BoundedRead,
}

struct Sample {
    region: usize,
    kind: Kind,
    phase: Phase,
    started: Instant,
    ended: Instant,
    ok: bool,
    shard: u16,
}

/// When the home region was killed and restored.
#[derive(Default)]
struct Timeline {
    killed: OnceLock<Instant>,
    restored: OnceLock<Instant>,
}

impl Timeline {
    fn phase(&self, at: Instant) -> Phase {
        match (self.killed.get(), self.restored.get()) {
            (_, Some(r)) if at >= *r => Phase::Recovery,
            (Some(k), _) if at >= *k => Phase::Outage,
            _ => Phase::Steady,
        }
    }
}

/// Polls `check` every 200 ms until it returns true or `timeout` passes.
/// Waits until `client`'s node sees all `total` nodes joined and metadata voters that no one
/// region can take down with it (the failover decisions the demos show need the metadata
/// quorum); returns how long that took.
pub(crate) async fn wait_formed(client: &Client, total: usize) -> Result<Duration> {
    wait_for(
        "every node has joined and the metadata voters span the regions",
        SETTLE_TIMEOUT,
        || {
            let c = client.clone();
            async move {
                c.get_json("/v1/cluster").await.is_ok_and(|c| {
                    c["nodes"].as_array().is_some_and(|n| n.len() == total)
                        && c["meta_spread"] == true
                })
            }
        },
    )
    .await
}

pub(crate) async fn wait_for<F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check().await {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("timed out after {timeout:?} waiting until {what}")
}

/// The region of each shard's leader, as `node` sees it.
async fn leader_regions(node: &Client) -> BTreeMap<u16, Option<String>> {
    let Ok(c) = node.get_json("/v1/cluster").await else {
        return BTreeMap::new();
    };
    c["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["keyspace"] == KEYSPACE)
        .map(|s| {
            (
                s["shard"].as_u64().unwrap_or(0) as u16,
                s["leader_region"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn all_home(leaders: &BTreeMap<u16, Option<String>>) -> bool {
    leaders.len() == SHARDS as usize
        && leaders
            .values()
            .all(|r| r.as_deref() == Some(REGIONS[HOME]))
}

fn placement_summary(leaders: &BTreeMap<u16, Option<String>>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in leaders.values() {
        *m.entry(r.clone().unwrap_or_else(|| "none".into()))
            .or_insert(0) += 1;
    }
    m
}

struct Counters {
    ok: [AtomicU64; 3],
    err: [AtomicU64; 3],
}

struct ClientResult {
    region: usize,
    samples: Vec<Sample>,
    acked: Vec<(String, String)>,
    read_mismatches: u64,
    /// Tries that failed (each retried on the next endpoint, after a backoff).
    attempt_failures: u64,
    /// Requests that failed after every retry.
    errors: u64,
    /// Requests answered by a node outside the client's own region.
    served_elsewhere: u64,
    /// Times the client moved to another region.
    moves: u64,
}

/// Tries of one request before it fails.
const ATTEMPTS: u32 = 5;
/// Backoff before retry `n` (from 1): a random wait up to `min(cap, base * 2^(n-1))`.
const BACKOFF_BASE: Duration = Duration::from_millis(25);
const BACKOFF_CAP: Duration = Duration::from_millis(800);
/// A client away from its home region tries home again this often.
const HOME_RETRY: Duration = Duration::from_secs(2);

/// A demo client's view of the cluster: every region's endpoints, its own region's first, then
/// the others by round trip from it. A failed try is retried on the next endpoint after an
/// exponential backoff with full jitter, at most `ATTEMPTS` tries a request; two failures in a
/// row (or one while trying home again) move the client on to the next region, and a client
/// away from home tries home again every `HOME_RETRY`. So the clients of a lost region keep
/// going through the nearest healthy one instead of failing for the whole outage.
struct Roamer {
    /// Endpoints per region, in order of preference (index 0: the client's own region).
    tiers: Vec<Vec<Client>>,
    tier: usize,
    turn: usize,
    streak: u32,
    home_retry_at: Option<Instant>,
    trying_home: bool,
    rng: rand::rngs::StdRng,
}

impl Roamer {
    fn new(tiers: Vec<Vec<Client>>, seed: u64) -> Roamer {
        use rand::SeedableRng;
        assert!(
            tiers.iter().all(|t| !t.is_empty()),
            "every region has endpoints"
        );
        Roamer {
            tiers,
            tier: 0,
            turn: 0,
            streak: 0,
            home_retry_at: None,
            trying_home: false,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }

    fn pick(&mut self) -> (usize, Client) {
        if self.tier != 0 && self.home_retry_at.is_some_and(|t| Instant::now() >= t) {
            self.tier = 0;
            self.trying_home = true;
            self.home_retry_at = None;
        }
        let tier = &self.tiers[self.tier];
        let c = tier[self.turn % tier.len()].clone();
        self.turn += 1;
        (self.tier, c)
    }

    /// Records a failed try on `tier`; whether the client moved on to another region.
    fn failed(&mut self, tier: usize) -> bool {
        if tier != self.tier {
            return false;
        }
        self.streak += 1;
        if self.streak < 2 && !self.trying_home {
            return false;
        }
        self.streak = 0;
        self.trying_home = false;
        self.tier = (self.tier + 1) % self.tiers.len();
        self.home_retry_at = (self.tier != 0).then(|| Instant::now() + HOME_RETRY);
        true
    }

    fn succeeded(&mut self) {
        self.streak = 0;
        self.trying_home = false;
    }

    fn backoff(&mut self, retry: u32) -> Duration {
        use rand::Rng;
        debug_assert!(retry >= 1);
        let ceiling = BACKOFF_BASE
            .saturating_mul(1 << (retry - 1).min(16))
            .min(BACKOFF_CAP);
        Duration::from_micros(self.rng.gen_range(0..=ceiling.as_micros() as u64))
    }

    /// Runs `op` with retries; the answer and whether a node outside the home region gave it.
    async fn call<T, F, Fut>(&mut self, out: &mut ClientResult, op: F) -> Result<(T, bool)>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                let wait = self.backoff(attempt);
                tokio::time::sleep(wait).await;
            }
            let (tier, client) = self.pick();
            match op(client).await {
                Ok(v) => {
                    self.succeeded();
                    if tier != 0 {
                        out.served_elsewhere += 1;
                    }
                    return Ok((v, tier != 0));
                }
                Err(e) => {
                    out.attempt_failures += 1;
                    if self.failed(tier) {
                        out.moves += 1;
                    }
                    last = Some(e);
                }
            }
        }
        out.errors += 1;
        Err(last.expect("at least one attempt"))
    }
}

async fn client_loop(
    region: usize,
    index: usize,
    tiers: Vec<Vec<Client>>,
    stop: Arc<AtomicBool>,
    timeline: Arc<Timeline>,
    counters: Arc<Counters>,
) -> ClientResult {
    let mut out = ClientResult {
        region,
        samples: Vec::new(),
        acked: Vec::new(),
        read_mismatches: 0,
        attempt_failures: 0,
        errors: 0,
        served_elsewhere: 0,
        moves: 0,
    };
    let mut roamer = Roamer::new(tiers, (region * 1000 + index) as u64);
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{}/c{index}/{seq:08}", REGIONS[region]);
        let value = format!("v{seq}");
        let shard = meridian_types::shard_for_key(key.as_bytes(), SHARDS);
        let record = |out: &mut ClientResult, kind, started: Instant, ok: bool| {
            out.samples.push(Sample {
                region,
                kind,
                phase: timeline.phase(started),
                started,
                ended: Instant::now(),
                ok,
                shard,
            });
            let c = if ok {
                &counters.ok[region]
            } else {
                &counters.err[region]
            };
            c.fetch_add(1, Ordering::Relaxed);
        };
        let started = Instant::now();
        // A retried put writes the same value again: idempotent for the verification.
        let put = roamer
            .call(&mut out, |c: Client| {
                let (key, value) = (key.clone(), value.clone().into_bytes());
                async move { c.put(KEYSPACE, &key, value).await }
            })
            .await;
        record(&mut out, Kind::Write, started, put.is_ok());
        if put.is_err() {
            seq += 1;
            continue;
        }
        out.acked.push((key.clone(), value.clone()));
        let started = Instant::now();
        let read = roamer
            .call(&mut out, |c: Client| {
                let key = key.clone();
                async move { c.get(KEYSPACE, &key, Some("linearizable")).await }
            })
            .await;
        if let Ok(((v, _), _)) = &read {
            if v.as_deref() != Some(value.as_bytes()) {
                out.read_mismatches += 1;
            }
        }
        record(&mut out, Kind::Read, started, read.is_ok());
        let started = Instant::now();
        let bounded = roamer
            .call(&mut out, |c: Client| {
                let key = key.clone();
                async move { c.get(KEYSPACE, &key, Some("bounded:5000")).await }
            })
            .await;
        record(&mut out, Kind::BoundedRead, started, bounded.is_ok());
        seq += 1;
    }
    out
}

pub(crate) fn percentile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

fn histogram(samples: &[&Sample]) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
    for s in samples {
        let us = s.ended.duration_since(s.started).as_micros().max(1) as u64;
        let _ = h.record(us.min(120_000_000));
    }
    h
}

pub(crate) fn round1(v: Option<f64>) -> Value {
    v.map(|x| json!((x * 10.0).round() / 10.0))
        .unwrap_or(Value::Null)
}

pub fn run(duration_s: u64, report: Option<PathBuf>, scenario: &str, insecure: bool) -> Result<()> {
    if duration_s < 9 {
        bail!(
            "--duration {duration_s} is too short; use at least 9 seconds so each phase has load"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match scenario {
        "sync" => rt.block_on(demo(duration_s, report, insecure)),
        "async" => rt.block_on(crate::demo_async::demo(duration_s, report, insecure)),
        "zone-promotion" => rt.block_on(crate::demo_zone::demo(duration_s, report, insecure)),
        other => bail!("unknown --scenario {other:?}; use sync (a region failure), async (a cut between regions) or zone-promotion (a survive = \"zone\" keyspace promoted out of its lost home region)"),
    }
}

async fn demo(duration_s: u64, report_path: Option<PathBuf>, insecure: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cfgs, token) =
        crate::local::demo_configs(dir.path(), &REGIONS, NODES_PER_REGION, insecure)?;
    let mut nodes: Vec<LocalNode> = cfgs.into_iter().map(LocalNode::new).collect();
    println!("Meridian demo: {} regions x {NODES_PER_REGION} nodes in one process, WAN latency from the measured AWS matrix", REGIONS.len());
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        println!(
            "  {} <-> {}: {} ms RTT",
            REGIONS[a],
            REGIONS[b],
            nodes[0]
                .cfg
                .wan
                .matrix()
                .unwrap()
                .rtt_ms(REGIONS[a], REGIONS[b])
        );
    }
    for n in nodes.iter_mut() {
        n.start()
            .await
            .with_context(|| format!("starting node {}", n.cfg.node_id))?;
    }
    let clients: Vec<Client> = nodes.iter().map(|n| Client::new(&n.http())).collect();
    let s = crate::client::scheme();
    println!(
        "console: {s}://{}  (survives the outage: {s}://{})",
        nodes[0].http(),
        nodes[NODES_PER_REGION].http()
    );
    crate::local::print_access(&token, &nodes[NODES_PER_REGION].http());

    let first = clients[0].clone();
    let total = nodes.len();
    let t = wait_formed(&first, total).await?;
    println!(
        "cluster formed: {total} nodes joined in {:.1} s",
        t.as_secs_f64()
    );
    let policy = json!({"name": KEYSPACE, "replication": "sync", "survive": "region", "home_region": REGIONS[HOME],
                        "regions": REGIONS, "shards": SHARDS});
    first
        .create_keyspace(&policy)
        .await
        .context("creating the demo keyspace")?;
    println!(
        "created keyspace {KEYSPACE:?}: sync, survive = region, home = {}, {SHARDS} shards",
        REGIONS[HOME]
    );
    let t = wait_for(
        "every shard has a leader in the home region",
        SETTLE_TIMEOUT,
        || {
            let first = first.clone();
            async move { all_home(&leader_regions(&first).await) }
        },
    )
    .await?;
    println!(
        "all {SHARDS} shard leaders in {} after {:.1} s",
        REGIONS[HOME],
        t.as_secs_f64()
    );
    let leaders_before = leader_regions(&first).await;

    let stop = Arc::new(AtomicBool::new(false));
    let timeline = Arc::new(Timeline::default());
    let counters = Arc::new(Counters {
        ok: Default::default(),
        err: Default::default(),
    });
    let mut tasks = Vec::new();
    let matrix = nodes[0].cfg.wan.matrix().unwrap();
    for (region, name) in REGIONS.iter().enumerate() {
        // This region's nodes, then every other region's, nearest first.
        let mut order: Vec<usize> = (0..REGIONS.len()).collect();
        order.sort_by(|&a, &b| {
            let rtt = |r: usize| {
                if r == region {
                    -1.0
                } else {
                    matrix.rtt_ms(name, REGIONS[r])
                }
            };
            rtt(a).total_cmp(&rtt(b))
        });
        let tiers: Vec<Vec<Client>> = order
            .iter()
            .map(|&r| {
                nodes
                    .iter()
                    .zip(&clients)
                    .filter(|(n, _)| n.region == r)
                    .map(|(_, c)| c.clone())
                    .collect()
            })
            .collect();
        for index in 0..CLIENTS_PER_REGION {
            tasks.push(tokio::spawn(client_loop(
                region,
                index,
                tiers.clone(),
                stop.clone(),
                timeline.clone(),
                counters.clone(),
            )));
        }
    }
    let load_started = Instant::now();
    let observer = clients[NODES_PER_REGION].clone();
    let progress = tokio::spawn(progress_loop(
        load_started,
        stop.clone(),
        timeline.clone(),
        counters.clone(),
        observer.clone(),
    ));

    let steady = Duration::from_secs_f64(duration_s as f64 * 0.35);
    let outage = Duration::from_secs_f64(duration_s as f64 * 0.30);
    let recovery = Duration::from_secs(duration_s).saturating_sub(steady + outage);
    tokio::time::sleep(steady).await;

    println!(
        ">>> killing every node of {} (nodes {:?})",
        REGIONS[HOME],
        nodes
            .iter()
            .filter(|n| n.region == HOME)
            .map(|n| n.cfg.node_id)
            .collect::<Vec<_>>()
    );
    let killed_at = Instant::now();
    let _ = timeline.killed.set(killed_at);
    for n in nodes.iter_mut().filter(|n| n.region == HOME) {
        n.kill();
    }
    tokio::time::sleep(outage).await;
    let leaders_during = leader_regions(&observer).await;

    println!(">>> restoring {}", REGIONS[HOME]);
    for n in nodes.iter_mut().filter(|n| n.region == HOME) {
        n.start()
            .await
            .with_context(|| format!("restarting node {}", n.cfg.node_id))?;
    }
    let restored_at = Instant::now();
    let _ = timeline.restored.set(restored_at);
    // Ask a node that stayed up: a restarted node may still report the leaders it knew before.
    let failback = wait_for(
        "leaders are back home",
        recovery.max(Duration::from_secs(1)),
        || {
            let observer = observer.clone();
            async move { all_home(&leader_regions(&observer).await) }
        },
    )
    .await
    .ok();
    let elapsed = restored_at.elapsed();
    if elapsed < recovery {
        tokio::time::sleep(recovery - elapsed).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await?);
    }
    progress.await?;
    let leaders_after = leader_regions(&observer).await;

    println!("verifying every acknowledged write with linearizable scans ...");
    let acked: BTreeMap<String, String> = results
        .iter()
        .flat_map(|r| r.acked.iter().cloned())
        .collect();
    let mut stored: BTreeMap<String, String> = BTreeMap::new();
    for region in REGIONS {
        for c in 0..CLIENTS_PER_REGION {
            let prefix = format!("{region}/c{c}/");
            let (r, _) = first
                .scan(KEYSPACE, &prefix, 10_000, Some("linearizable"))
                .await
                .context("verification scan")?;
            for item in r["items"].as_array().into_iter().flatten() {
                stored.insert(
                    item["key"].as_str().unwrap_or("").into(),
                    item["value"].as_str().unwrap_or("").into(),
                );
            }
        }
    }
    let lost: Vec<&String> = acked
        .iter()
        .filter(|(k, v)| stored.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    let samples: Vec<Sample> = results
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.samples))
        .collect();
    let read_mismatches: u64 = results.iter().map(|r| r.read_mismatches).sum();

    // RTO: per shard, the first write that started after the kill and succeeded; the service
    // is back when every shard has accepted one.
    let mut first_success: BTreeMap<u16, Instant> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.kind == Kind::Write && s.ok && s.started >= killed_at)
    {
        let e = first_success.entry(s.shard).or_insert(s.ended);
        *e = (*e).min(s.ended);
    }
    let rto_ms_by_shard: BTreeMap<String, f64> = first_success
        .iter()
        .map(|(shard, t)| {
            (
                shard.to_string(),
                (t.duration_since(killed_at).as_secs_f64() * 1000.0).round(),
            )
        })
        .collect();
    let rto_ms = (first_success.len() == SHARDS as usize).then(|| {
        first_success
            .values()
            .map(|t| t.duration_since(killed_at).as_secs_f64() * 1000.0)
            .fold(0.0, f64::max)
    });

    let mut regions_json = Vec::new();
    println!();
    println!("=== Meridian demo report ===");
    println!(
        "steady-state latency per client region (ms; clients talk to a node in their own region):"
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9}",
        "region", "write p50", "write p99", "read p50", "read p99", "bounded p50", "requests"
    );
    for (r, name) in REGIONS.iter().enumerate() {
        let pick = |kind: Kind| -> Vec<&Sample> {
            samples
                .iter()
                // Steady: started and answered before the kill (a request in flight when the
                // region died waits for the failover, which the outage figures report).
                .filter(|s| {
                    s.region == r
                        && s.kind == kind
                        && s.ok
                        && s.phase == Phase::Steady
                        && s.ended < killed_at
                })
                .collect()
        };
        let (w, rd, b) = (
            histogram(&pick(Kind::Write)),
            histogram(&pick(Kind::Read)),
            histogram(&pick(Kind::BoundedRead)),
        );
        let outage_writes: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.region == r && s.kind == Kind::Write && s.phase == Phase::Outage)
            .collect();
        let outage_ok = outage_writes.iter().filter(|s| s.ok).count();
        let ow = histogram(
            &outage_writes
                .iter()
                .copied()
                .filter(|s| s.ok)
                .collect::<Vec<_>>(),
        );
        let f = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9}",
            name,
            f(percentile_ms(&w, 0.5)),
            f(percentile_ms(&w, 0.99)),
            f(percentile_ms(&rd, 0.5)),
            f(percentile_ms(&rd, 0.99)),
            f(percentile_ms(&b, 0.5)),
            w.len() + rd.len() + b.len()
        );
        let clients: Vec<&ClientResult> = results.iter().filter(|c| c.region == r).collect();
        let sum = |f: fn(&ClientResult) -> u64| clients.iter().map(|c| f(c)).sum::<u64>();
        regions_json.push(json!({
            "region": name,
            "client_errors": sum(|c| c.errors),
            "client_retries": sum(|c| c.attempt_failures),
            "client_moves": sum(|c| c.moves),
            "served_elsewhere": sum(|c| c.served_elsewhere),
            "write_p50_ms": round1(percentile_ms(&w, 0.5)), "write_p99_ms": round1(percentile_ms(&w, 0.99)),
            "read_p50_ms": round1(percentile_ms(&rd, 0.5)), "read_p99_ms": round1(percentile_ms(&rd, 0.99)),
            "bounded_read_p50_ms": round1(percentile_ms(&b, 0.5)),
            "writes_steady": w.len(),
            "writes_during_outage_ok": outage_ok, "writes_during_outage_failed": outage_writes.len() - outage_ok,
            "write_p50_during_outage_ms": round1(percentile_ms(&ow, 0.5)),
        }));
    }
    let bound = nodes[0]
        .cfg
        .wan
        .matrix()
        .unwrap()
        .rtt_ms(REGIONS[0], REGIONS[1]);
    let home_p50 = regions_json[HOME]["write_p50_ms"].as_f64();
    println!();
    println!("home-region strong write p50: {} ms; physical bound (RTT to the nearest other voter region): {bound} ms; goal <= {:.1} ms",
        home_p50.map(|v| format!("{v:.1}")).unwrap_or("-".into()), bound * 1.1 + 4.0);
    println!("leaders before: {:?}", placement_summary(&leaders_before));
    println!(
        "leaders while {} was down: {:?}",
        REGIONS[HOME],
        placement_summary(&leaders_during)
    );
    println!(
        "leaders after recovery: {:?}",
        placement_summary(&leaders_after)
    );
    match rto_ms {
        Some(ms) => println!(
            "RTO: writes to every shard succeeded again {ms:.0} ms after the home region died"
        ),
        None => println!("RTO: some shard accepted no write after the home region died"),
    }
    if let Some(fb) = failback {
        println!(
            "failback: leaders returned home {:.1} s after the region was restored",
            fb.as_secs_f64()
        );
    }
    println!("clients (each given every region's endpoints; retries with jittered exponential backoff, {ATTEMPTS} tries a request):");
    for r in &regions_json {
        println!(
            "  {:<10} {} requests failed after every retry, {} tries retried, moved region {} times, {} requests served by another region",
            r["region"].as_str().unwrap_or("?"),
            r["client_errors"],
            r["client_retries"],
            r["client_moves"],
            r["served_elsewhere"]
        );
    }
    println!("acknowledged writes: {}; lost: {}; linearizable reads that missed the client's own write: {read_mismatches}", acked.len(), lost.len());
    for k in lost.iter().take(10) {
        println!("  LOST: {k}");
    }
    // The decision log of the run, from a node that stayed up.
    let decisions = observer
        .get_json("/v1/failover/log")
        .await
        .map(|l| l["entries"].clone())
        .unwrap_or(Value::Null);
    let decided: Vec<String> = decisions
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "#{} {} {}",
                e["seq"],
                e["action"].as_str().unwrap_or("?"),
                e["region"].as_str().unwrap_or("")
            )
        })
        .collect();
    println!("failover decisions: {decided:?}");
    let report = json!({
        "rto_ms_by_shard": rto_ms_by_shard,
        "client_errors": regions_json.iter().map(|r| (r["region"].as_str().unwrap_or("?").to_string(), r["client_errors"].clone())).collect::<BTreeMap<String, Value>>(),
        "decisions": decisions,
        "acked_writes": acked.len(),
        "acked_writes_lost": lost.len(),
        "read_your_write_violations": read_mismatches,
        "rto_ms": rto_ms.map(|v| v.round()),
        "failback_ms": failback.map(|d| d.as_millis() as u64),
        "physical_bound_ms": bound,
        "home_region": REGIONS[HOME],
        "regions": regions_json,
        "leaders_before": placement_summary(&leaders_before),
        "leaders_during_outage": placement_summary(&leaders_during),
        "leaders_after": placement_summary(&leaders_after),
        "duration_s": duration_s,
    });
    if let Some(path) = report_path {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    for n in nodes.iter_mut() {
        n.kill();
    }
    if !lost.is_empty() {
        bail!("{} acknowledged writes were lost", lost.len());
    }
    Ok(())
}

async fn progress_loop(
    started: Instant,
    stop: Arc<AtomicBool>,
    timeline: Arc<Timeline>,
    counters: Arc<Counters>,
    observer: Client,
) {
    let last: Mutex<[u64; 3]> = Mutex::new([0; 3]);
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let leaders = leader_regions(&observer).await;
        let mut line = format!(
            "[{:>5.1}s] {:<17}",
            started.elapsed().as_secs_f64(),
            timeline.phase(Instant::now()).name()
        );
        let mut prev = last.lock().unwrap();
        for (r, name) in REGIONS.iter().enumerate() {
            let ok = counters.ok[r].load(Ordering::Relaxed);
            let err = counters.err[r].load(Ordering::Relaxed);
            line.push_str(&format!(
                " | {name}: {:>4} ok/s {:>5} err",
                ok - prev[r],
                err
            ));
            prev[r] = ok;
        }
        let regions: BTreeSet<String> = leaders.values().flatten().cloned().collect();
        line.push_str(&format!(" | leaders in {regions:?}"));
        println!("{line}");
    }
}
