//! `meridian demo --scenario async`: async keyspaces in three regions, one per conflict type
//! (profiles as last-writer-wins values, page views as counters, cart items as sets, shared
//! documents as multi-value registers), clients writing in every region at local latency,
//! eu-west-1 cut off from the other two while writes go on on both sides, the heal, and a
//! report of write and read latency per region and per type, replication lag per region
//! pair, convergence time, divergence, lost writes, the conflicts each rule resolved, and the
//! counters against the sum of acknowledged increments.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::client::Client;
use crate::demo::{percentile_ms, round1, wait_for, wait_formed, REGIONS};
use crate::local::LocalNode;

const NODES_PER_REGION: usize = 3;
const CLIENTS_PER_REGION: usize = 4;
/// The last-writer-wins keyspace (the latency, lag and lost-write figures are its).
const KEYSPACE: &str = "profiles";
/// The typed keyspaces: page views (counter), cart items (set), shared documents (mv).
const VIEWS: &str = "page_views";
const CARTS: &str = "cart_items";
const DOCS: &str = "docs";
const VIEW_KEYS: u64 = 8;
const CART_KEYS: u64 = 10;
const DOC_KEYS: u64 = 4;
const SHARDS: u16 = 4;
/// The region cut off from the other two.
const CUT: usize = 2;
/// Keys each client cycles over, and keys shared by every client (where regions conflict).
const OWN_KEYS: u64 = 200;
const SHARED_KEYS: u64 = 50;
/// Pause between a client's operations: a steady load the two-core CI machine sustains.
const PACE: Duration = Duration::from_millis(20);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// An HLC as the API shows it (`physical.logical.origin`), comparable.
fn parse_version(v: &str) -> Option<(u64, u32, u64)> {
    let mut p = v.split('.');
    let physical = p.next()?.parse().ok()?;
    let logical = p.next()?.parse().ok()?;
    let origin = u64::from_str_radix(p.next()?, 16).ok()?;
    Some((physical, logical, origin))
}

type Version = (u64, u32, u64);

#[derive(Default)]
struct ClientResult {
    writes: Vec<(bool, Duration)>,
    reads: Vec<Duration>,
    /// Steady-state samples only (before the cut), for the latency report.
    steady_writes: Vec<Duration>,
    steady_reads: Vec<Duration>,
    /// Acknowledged writes: key to the highest version acknowledged.
    acked: BTreeMap<String, Version>,
    acked_count: u64,
    session_violations: u64,
    cross_region_reads: u64,
    /// Steady-state latency of each type's updates: counter, set, mv.
    steady_typed: [Vec<Duration>; 3],
    /// Increments acknowledged, and increments whose every attempt failed (indeterminate).
    views_acked: i64,
    views_unknown: i64,
}

fn steady_or_healed(shared: &Shared) -> bool {
    !shared.cut_on.load(Ordering::Relaxed)
}

fn pace() -> Duration {
    std::env::var("MERIDIAN_DEMO_PACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(PACE, Duration::from_millis)
}

struct Shared {
    stop: AtomicBool,
    /// eu-west-1 is cut off right now.
    cut_on: AtomicBool,
    cut_started: Mutex<Option<Instant>>,
    ok: [AtomicU64; 3],
    err: [AtomicU64; 3],
}

async fn client_loop(
    region: usize,
    index: usize,
    home: Vec<Client>,
    elsewhere: Vec<Client>,
    shared: Arc<Shared>,
) -> ClientResult {
    let session = Arc::new(Mutex::new(String::new()));
    let home: Vec<Client> = home
        .iter()
        .map(|c| c.with_session(session.clone()))
        .collect();
    let elsewhere: Vec<Client> = elsewhere
        .iter()
        .map(|c| c.with_session(session.clone()))
        .collect();
    let mut out = ClientResult::default();
    let mut seq: u64 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = if seq.is_multiple_of(5) {
            format!("shared/{}", (seq * 7 + index as u64) % SHARED_KEYS)
        } else {
            format!("{}/c{index}/{}", REGIONS[region], seq % OWN_KEYS)
        };
        let node = &home[seq as usize % home.len()];
        let steady = shared.cut_started.lock().unwrap().is_none();
        let started = Instant::now();
        let written = if seq.is_multiple_of(10) {
            node.delete(KEYSPACE, &key).await.map(|(_, s)| s)
        } else {
            let value = format!("{}-c{index}-{seq}", REGIONS[region]);
            node.put(KEYSPACE, &key, value.into_bytes()).await
        };
        let took = started.elapsed();
        out.writes.push((written.is_ok(), took));
        let counter = if written.is_ok() {
            &shared.ok[region]
        } else {
            &shared.err[region]
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let Ok(served) = written else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if steady {
            out.steady_writes.push(took);
        }
        let Some(version) = served.version.as_deref().and_then(parse_version) else {
            continue;
        };
        out.acked_count += 1;
        let e = out.acked.entry(key.clone()).or_insert(version);
        *e = (*e).max(version);
        // Read it back with the session: in this region, and now and then from another
        // region (a client whose request lands elsewhere), which must wait for the write.
        // (Not across the cut: a client's requests reach the regions it can reach.)
        let (reader, cross) = if seq % 10 == 3 && !elsewhere.is_empty() && steady_or_healed(&shared)
        {
            (&elsewhere[seq as usize % elsewhere.len()], true)
        } else {
            (node, false)
        };
        let started = Instant::now();
        if let Ok((_, s)) = reader.get(KEYSPACE, &key, Some("session")).await {
            let took = started.elapsed();
            if cross {
                out.cross_region_reads += 1;
            } else {
                out.reads.push(took);
                if steady {
                    out.steady_reads.push(took);
                }
            }
            let seen = s.version.as_deref().and_then(parse_version);
            if seen.is_none_or(|v| v < version) {
                out.session_violations += 1;
            }
        }
        if seq.is_multiple_of(2) {
            typed_op(region, index, seq / 2, node, steady, &mut out).await;
        }
        tokio::time::sleep(pace()).await;
    }
    out
}

/// One update of a typed keyspace, by turns: a page view (with a request id, retried on
/// failure), a cart item added or removed, a document written.
async fn typed_op(
    region: usize,
    index: usize,
    seq: u64,
    node: &Client,
    steady: bool,
    out: &mut ClientResult,
) {
    let me = format!("{}-c{index}-{seq}", REGIONS[region]);
    let started = Instant::now();
    let (kind, ok) = match seq % 3 {
        0 => {
            let key = format!("views/{}", seq % VIEW_KEYS);
            let body = json!({"by": 1});
            let id = format!("demo-{me}");
            let mut ok = false;
            for _ in 0..3 {
                if node
                    .post_kv_with_id(VIEWS, &key, "incr", &body, &id)
                    .await
                    .is_ok()
                {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if ok {
                out.views_acked += 1;
            } else {
                out.views_unknown += 1;
            }
            (0, ok)
        }
        1 => {
            // Shared carts of a small catalogue: every region adds and removes the same items,
            // so an add and a remove of one item are sometimes concurrent (the add wins).
            let key = format!("cart/{}", (seq / 3) % CART_KEYS);
            let item = format!("item-{}", (seq / 7 + index as u64) % 5);
            let body = if seq % 4 == 1 {
                json!({"remove": [item]})
            } else {
                json!({"add": [item]})
            };
            (1, node.post_kv(CARTS, &key, "set", &body).await.is_ok())
        }
        _ => {
            let key = format!("doc/{}", (seq / 3) % DOC_KEYS);
            (2, node.put(DOCS, &key, me.into_bytes()).await.is_ok())
        }
    };
    if ok && steady {
        out.steady_typed[kind].push(started.elapsed());
    }
}

fn hist_ms(samples: impl Iterator<Item = Duration>) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
    for d in samples {
        let _ = h.record((d.as_micros() as u64).clamp(1, 120_000_000));
    }
    h
}

/// Every node's delivery histograms merged per (source, destination) region pair.
async fn delivery(clients: &[Client]) -> BTreeMap<(String, String), Histogram<u64>> {
    let mut out: BTreeMap<(String, String), Histogram<u64>> = BTreeMap::new();
    for c in clients {
        let Ok(v) = c.get_json("/v1/cluster").await else {
            continue;
        };
        for d in v["delivery_local"].as_array().into_iter().flatten() {
            if d["keyspace"] != KEYSPACE {
                continue;
            }
            let pair = (
                d["source_region"].as_str().unwrap_or("").to_string(),
                d["dest_region"].as_str().unwrap_or("").to_string(),
            );
            let h = out.entry(pair).or_insert_with(|| {
                Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid bounds")
            });
            for b in d["buckets"].as_array().into_iter().flatten() {
                let (ms, n) = (b[0].as_u64().unwrap_or(1), b[1].as_u64().unwrap_or(0));
                let _ = h.record_n(ms.max(1), n);
            }
        }
    }
    out
}

/// Whether every shipper of every node has delivered everything committed before `since`
/// (wall ms): the cut's backlog has drained. Also returns the worst pending age seen.
async fn drained_since(clients: &[Client], since_wall_ms: u64) -> bool {
    let now = wall_ms();
    for c in clients {
        let Ok(v) = c.get_json("/v1/cluster").await else {
            return false;
        };
        for l in v["async_lag_local"].as_array().into_iter().flatten() {
            if ![KEYSPACE, VIEWS, CARTS, DOCS]
                .iter()
                .any(|k| l["keyspace"] == *k)
            {
                continue;
            }
            let lag = l["lag_ms"].as_u64().unwrap_or(0);
            // The oldest pending write was committed at now - lag: it must be after `since`.
            if lag > 0 && now.saturating_sub(lag) <= since_wall_ms {
                return false;
            }
            if l["connected"] == json!(false) {
                return false;
            }
        }
    }
    true
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Every key of the keyspace as one region's node reads it (eventual: its own replicas).
async fn region_state(c: &Client) -> Result<BTreeMap<String, String>> {
    let (r, _) = c.scan(KEYSPACE, "", 10_000, Some("eventual")).await?;
    Ok(r["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["key"].as_str().unwrap_or("").to_string(),
                i["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

async fn set_cut(clients: &[Client], on: bool) -> Result<()> {
    let (cut, a, b) = (REGIONS[CUT], REGIONS[0], REGIONS[1]);
    let pairs: Vec<(&str, &str)> = if on {
        vec![(cut, a), (a, cut), (cut, b), (b, cut)]
    } else {
        Vec::new()
    };
    for c in clients {
        c.set_cut_regions(&pairs)
            .await
            .with_context(|| format!("setting faults on {}", c.base))?;
    }
    Ok(())
}

pub async fn demo(duration_s: u64, report_path: Option<PathBuf>, insecure: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cfgs, token) =
        crate::local::demo_configs(dir.path(), &REGIONS, NODES_PER_REGION, insecure)?;
    let mut nodes: Vec<LocalNode> = cfgs.into_iter().map(LocalNode::new).collect();
    println!("Meridian demo (async): {} regions x {NODES_PER_REGION} nodes in one process, WAN latency from the measured AWS matrix", REGIONS.len());
    let matrix = nodes[0].cfg.wan.matrix().map_err(anyhow::Error::msg)?;
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        println!(
            "  {} <-> {}: {} ms RTT",
            REGIONS[a],
            REGIONS[b],
            matrix.rtt_ms(REGIONS[a], REGIONS[b])
        );
    }
    for n in nodes.iter_mut() {
        n.start()
            .await
            .with_context(|| format!("starting node {}", n.cfg.node_id))?;
    }
    let clients: Vec<Client> = nodes.iter().map(|n| Client::new(&n.http())).collect();
    let by_region: Vec<Vec<Client>> = (0..REGIONS.len())
        .map(|r| {
            nodes
                .iter()
                .zip(&clients)
                .filter(|(n, _)| n.region == r)
                .map(|(_, c)| c.clone())
                .collect()
        })
        .collect();
    println!("console: {}://{}", crate::client::scheme(), nodes[0].http());
    crate::local::print_access(&token, &nodes[0].http());
    let first = clients[0].clone();
    let total = nodes.len();
    let t = wait_formed(&first, total).await?;
    println!(
        "cluster formed: {total} nodes joined in {:.1} s",
        t.as_secs_f64()
    );
    let policy = json!({"name": KEYSPACE, "replication": "async", "regions": REGIONS, "shards": SHARDS,
                        "conflict": "lww", "lag_budget_ms": 5000, "on_lag_budget": "alert"});
    first
        .create_keyspace(&policy)
        .await
        .context("creating the demo keyspace")?;
    for (name, conflict) in [(VIEWS, "counter"), (CARTS, "set"), (DOCS, "mv")] {
        let policy = json!({"name": name, "replication": "async", "regions": REGIONS, "shards": 1, "conflict": conflict});
        first
            .create_keyspace(&policy)
            .await
            .with_context(|| format!("creating the demo keyspace {name}"))?;
    }
    println!("created keyspaces: {KEYSPACE:?} (async, last-writer-wins, {SHARDS} shards per region), {VIEWS:?} (counters), {CARTS:?} (sets), {DOCS:?} (multi-value registers); every region writes locally");
    let t = wait_for("every region's groups have leaders", SETTLE_TIMEOUT, || {
        let by_region = by_region.clone();
        async move {
            for (r, list) in by_region.iter().enumerate() {
                let Ok(c) = list[0].get_json("/v1/cluster").await else {
                    return false;
                };
                let led = |ks: &str| {
                    c["shards"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|s| {
                            s["keyspace"] == ks
                                && s["region"] == REGIONS[r]
                                && !s["leader"].is_null()
                        })
                        .count()
                };
                if led(KEYSPACE) < SHARDS as usize
                    || [VIEWS, CARTS, DOCS].iter().any(|k| led(k) < 1)
                {
                    return false;
                }
            }
            true
        }
    })
    .await?;
    println!(
        "every region leads its own {SHARDS} groups after {:.1} s",
        t.as_secs_f64()
    );

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        cut_on: AtomicBool::new(false),
        cut_started: Mutex::new(None),
        ok: Default::default(),
        err: Default::default(),
    });
    let mut tasks = Vec::new();
    for region in 0..REGIONS.len() {
        let elsewhere: Vec<Client> = (0..REGIONS.len())
            .filter(|r| *r != region)
            .flat_map(|r| by_region[r].clone())
            .collect();
        for index in 0..CLIENTS_PER_REGION {
            tasks.push(tokio::spawn(client_loop(
                region,
                index,
                by_region[region].clone(),
                elsewhere.clone(),
                shared.clone(),
            )));
        }
    }
    let started = Instant::now();
    let progress = tokio::spawn(progress_loop(started, shared.clone(), clients[0].clone()));

    let steady = Duration::from_secs_f64(duration_s as f64 * 0.4);
    let cut = Duration::from_secs_f64(duration_s as f64 * 0.3);
    let recovery = Duration::from_secs(duration_s).saturating_sub(steady + cut);
    tokio::time::sleep(steady).await;
    let lag_steady = delivery(&clients).await;

    println!(
        ">>> cutting {} off from {} and {} (writes go on on both sides)",
        REGIONS[CUT], REGIONS[0], REGIONS[1]
    );
    *shared.cut_started.lock().unwrap() = Some(Instant::now());
    shared.cut_on.store(true, Ordering::Relaxed);
    set_cut(&clients, true).await?;
    tokio::time::sleep(cut).await;
    println!(">>> healing the cut");
    set_cut(&clients, false).await?;
    shared.cut_on.store(false, Ordering::Relaxed);
    let healed_at = Instant::now();
    let healed_wall = wall_ms();
    let convergence = wait_for(
        "every region has what was written before the heal",
        Duration::from_secs(60),
        || {
            let clients = clients.clone();
            async move { drained_since(&clients, healed_wall).await }
        },
    )
    .await
    .ok()
    .map(|_| healed_at.elapsed());
    match convergence {
        Some(d) => println!(
            ">>> converged: every region holds every write from before the heal, {} ms after it",
            d.as_millis()
        ),
        None => println!(">>> NOT converged 60 s after the heal"),
    }
    let elapsed = healed_at.elapsed();
    if elapsed < recovery {
        tokio::time::sleep(recovery - elapsed).await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await?);
    }
    progress.await?;

    println!("load stopped; waiting for shipping to drain, then comparing every region ...");
    let stopped_wall = wall_ms();
    let _ = wait_for("shipping has drained", Duration::from_secs(60), || {
        let clients = clients.clone();
        async move { drained_since(&clients, stopped_wall).await }
    })
    .await;
    let mut states = Vec::new();
    for list in &by_region {
        states.push(
            region_state(&list[0])
                .await
                .context("reading a region's state")?,
        );
    }
    let mut keys: std::collections::BTreeSet<&String> = std::collections::BTreeSet::new();
    for s in &states {
        keys.extend(s.keys());
    }
    let diverged: Vec<&String> = keys
        .iter()
        .copied()
        .filter(|k| states.iter().any(|s| s.get(*k) != states[0].get(*k)))
        .collect();
    // Every acknowledged write must be the key's version or below it, in every region.
    let mut acked: BTreeMap<String, Version> = BTreeMap::new();
    for r in &results {
        for (k, v) in &r.acked {
            let e = acked.entry(k.clone()).or_insert(*v);
            *e = (*e).max(*v);
        }
    }
    let mut lost = Vec::new();
    for (key, version) in &acked {
        for list in &by_region {
            let final_version = list[0]
                .get(KEYSPACE, key, Some("eventual"))
                .await
                .ok()
                .and_then(|(_, s)| s.version.as_deref().and_then(parse_version));
            if final_version.is_none_or(|f| f < *version) {
                lost.push(key.clone());
            }
        }
    }

    let typed = typed_report(&by_region, &results).await;

    println!();
    println!("=== Meridian demo report (async) ===");
    println!("steady-state latency per client region (ms; every region writes locally):");
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "region", "write p50", "write p99", "read p50", "read p99", "writes"
    );
    let mut regions_json = Vec::new();
    for (r, name) in REGIONS.iter().enumerate() {
        let mine: Vec<&ClientResult> = results
            .iter()
            .enumerate()
            .filter(|(i, _)| i / CLIENTS_PER_REGION == r)
            .map(|(_, c)| c)
            .collect();
        let w = hist_ms(mine.iter().flat_map(|c| c.steady_writes.iter().copied()));
        let rd = hist_ms(mine.iter().flat_map(|c| c.steady_reads.iter().copied()));
        let all_writes: usize = mine.iter().map(|c| c.writes.len()).sum();
        let f = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:>10} {:>10} {:>10} {:>10} {:>9}",
            name,
            f(percentile_ms(&w, 0.5)),
            f(percentile_ms(&w, 0.99)),
            f(percentile_ms(&rd, 0.5)),
            f(percentile_ms(&rd, 0.99)),
            all_writes
        );
        regions_json.push(json!({
            "region": name,
            "write_p50_ms": round1(percentile_ms(&w, 0.5)), "write_p99_ms": round1(percentile_ms(&w, 0.99)),
            "read_p50_ms": round1(percentile_ms(&rd, 0.5)), "read_p99_ms": round1(percentile_ms(&rd, 0.99)),
            "writes": all_writes,
            "writes_failed": mine.iter().map(|c| c.writes.iter().filter(|(ok, _)| !ok).count()).sum::<usize>(),
        }));
    }
    println!();
    println!("replication lag before the cut (ms, from a write's HLC to its commit in the destination region):");
    println!(
        "{:<12} {:<12} {:>8} {:>8} {:>8} {:>10}",
        "source", "dest", "p50", "p99", "RTT/2", "writes"
    );
    let mut lag_json = Vec::new();
    for ((src, dst), h) in &lag_steady {
        let half = matrix.rtt_ms(src, dst) / 2.0;
        let (p50, p99) = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
        println!(
            "{src:<12} {dst:<12} {p50:>8} {p99:>8} {half:>8.1} {:>10}",
            h.len()
        );
        lag_json.push(
            json!({"source": src, "dest": dst, "p50_ms": p50, "p99_ms": p99,
                             "rtt_half_ms": half, "writes": h.len()}),
        );
    }
    let session_violations: u64 = results.iter().map(|r| r.session_violations).sum();
    let cross: u64 = results.iter().map(|r| r.cross_region_reads).sum();
    let acked_count: u64 = results.iter().map(|r| r.acked_count).sum();
    println!();
    match convergence {
        Some(d) => println!(
            "convergence after the heal: {} ms (largest RTT + 1 s = {:.0} ms)",
            d.as_millis(),
            largest_rtt(&matrix) + 1000.0
        ),
        None => println!("convergence after the heal: not within 60 s"),
    }
    println!(
        "keys compared across regions: {}; diverged: {}",
        keys.len(),
        diverged.len()
    );
    for k in diverged.iter().take(10) {
        println!("  DIVERGED: {k}");
    }
    println!("acknowledged writes: {acked_count}; lost: {}", lost.len());
    for k in lost.iter().take(10) {
        println!("  LOST: {k}");
    }
    println!("session reads: {cross} from another region than the write; read-your-writes violations: {session_violations}");
    println!();
    println!("conflict types:");
    let lww_p50 = percentile_ms(
        &hist_ms(results.iter().flat_map(|c| c.steady_writes.iter().copied())),
        0.5,
    );
    let mut type_latency = serde_json::Map::new();
    for (i, name) in ["counter", "set", "mv"].iter().enumerate() {
        let h = hist_ms(
            results
                .iter()
                .flat_map(|c| c.steady_typed[i].iter().copied()),
        );
        let p50 = percentile_ms(&h, 0.5);
        let ratio = p50.zip(lww_p50).map(|(t, l)| t / l);
        println!(
            "  {name:<8} write p50 {} ms ({} x the lww write p50)",
            p50.map_or("-".into(), |v| format!("{v:.1}")),
            ratio.map_or("-".into(), |r| format!("{r:.2}"))
        );
        type_latency.insert(
            name.to_string(),
            json!({"write_p50_ms": round1(p50), "vs_lww_p50": ratio.map(|r| (r * 100.0).round() / 100.0)}),
        );
    }
    println!(
        "  page views: {} increments acknowledged ({} indeterminate); final per region: {}",
        typed.counter_expected,
        typed.counter_indeterminate,
        typed
            .counter_final
            .iter()
            .map(|(r, v)| format!("{r} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  carts: {} compared, {} diverged; documents: {} with siblings, {} diverged",
        CART_KEYS, typed.sets_diverged, typed.docs_with_siblings, typed.docs_diverged
    );
    println!(
        "  conflicts recorded (distinct, over every region's ledger): lww {}, mv {}, set {}",
        typed.conflicts.get("lww").unwrap_or(&0),
        typed.conflicts.get("mv").unwrap_or(&0),
        typed.conflicts.get("set").unwrap_or(&0)
    );
    let report = json!({
        "scenario": "async",
        "regions": regions_json,
        "lag": lag_json,
        "convergence_ms": convergence.map(|d| d.as_millis() as u64),
        "diverged_keys_after_heal": diverged.len(),
        "acked_writes": acked_count,
        "acked_writes_lost": lost.len(),
        "cross_region_session_reads": cross,
        "session_violations": session_violations,
        "cut_region": REGIONS[CUT],
        "duration_s": duration_s,
        "conflicts": typed.conflicts,
        "counter_expected": typed.counter_expected,
        "counter_indeterminate": typed.counter_indeterminate,
        "counter_final": typed.counter_final,
        "sets_diverged": typed.sets_diverged,
        "docs_with_siblings": typed.docs_with_siblings,
        "docs_diverged": typed.docs_diverged,
        "type_latency": type_latency,
    });
    if let Some(path) = report_path {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    for n in nodes.iter_mut() {
        n.kill();
    }
    if !lost.is_empty() || !diverged.is_empty() || session_violations > 0 || convergence.is_none() {
        bail!(
            "the async demo found problems: {} lost, {} diverged, {} session violations, converged: {}",
            lost.len(),
            diverged.len(),
            session_violations,
            convergence.is_some()
        );
    }
    let counters_off = typed.counter_final.values().any(|v| {
        *v < typed.counter_expected || *v > typed.counter_expected + typed.counter_indeterminate
    });
    if typed.sets_diverged > 0 || typed.docs_diverged > 0 || counters_off {
        bail!(
            "the async demo's typed keyspaces found problems: {} sets diverged, {} documents diverged, counters {:?} against {} acknowledged (+{} indeterminate)",
            typed.sets_diverged,
            typed.docs_diverged,
            typed.counter_final,
            typed.counter_expected,
            typed.counter_indeterminate
        );
    }
    Ok(())
}

/// What the typed keyspaces hold once shipping has drained.
struct TypedReport {
    counter_expected: i64,
    counter_indeterminate: i64,
    /// Region -> the sum of every page-view counter there.
    counter_final: BTreeMap<String, i64>,
    sets_diverged: usize,
    docs_with_siblings: usize,
    docs_diverged: usize,
    /// Rule -> distinct conflicts recorded (by id, over every region's ledger).
    conflicts: BTreeMap<String, usize>,
}

async fn typed_report(by_region: &[Vec<Client>], results: &[ClientResult]) -> TypedReport {
    let read = |c: &Client, ks: &'static str, key: String| {
        let c = c.clone();
        async move {
            c.get(ks, &key, Some("eventual"))
                .await
                .ok()
                .and_then(|(v, _)| v)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        }
    };
    let mut counter_final = BTreeMap::new();
    let mut carts: Vec<Vec<Option<String>>> = Vec::new();
    let mut docs: Vec<Vec<Option<String>>> = Vec::new();
    for (r, list) in by_region.iter().enumerate() {
        let mut sum = 0i64;
        for k in 0..VIEW_KEYS {
            let v = read(&list[0], VIEWS, format!("views/{k}")).await;
            sum += v.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        }
        counter_final.insert(REGIONS[r].to_string(), sum);
        let mut c = Vec::new();
        for k in 0..CART_KEYS {
            c.push(read(&list[0], CARTS, format!("cart/{k}")).await);
        }
        carts.push(c);
        let mut d = Vec::new();
        for k in 0..DOC_KEYS {
            d.push(read(&list[0], DOCS, format!("doc/{k}")).await);
        }
        docs.push(d);
    }
    let diverged = |all: &Vec<Vec<Option<String>>>, n: u64| {
        (0..n as usize)
            .filter(|i| all.iter().any(|r| r[*i] != all[0][*i]))
            .count()
    };
    let docs_with_siblings = docs[0]
        .iter()
        .flatten()
        .filter(|d| {
            serde_json::from_str::<Value>(d)
                .ok()
                .and_then(|v| v["siblings"].as_array().map(|s| s.len() > 1))
                .unwrap_or(false)
        })
        .count();
    let mut conflicts = BTreeMap::new();
    for (ks, rule) in [(KEYSPACE, "lww"), (DOCS, "mv"), (CARTS, "set")] {
        let mut ids = std::collections::BTreeSet::new();
        for list in by_region {
            let path = format!("/v1/conflicts/{ks}?limit=10000");
            if let Ok(v) = list[0].get_json(&path).await {
                for e in v["conflicts"].as_array().into_iter().flatten() {
                    if e["rule"] == rule {
                        ids.insert(e["id"].as_str().unwrap_or("").to_string());
                    }
                }
            }
        }
        conflicts.insert(rule.to_string(), ids.len());
    }
    TypedReport {
        counter_expected: results.iter().map(|r| r.views_acked).sum(),
        counter_indeterminate: results.iter().map(|r| r.views_unknown).sum(),
        counter_final,
        sets_diverged: diverged(&carts, CART_KEYS),
        docs_with_siblings,
        docs_diverged: diverged(&docs, DOC_KEYS),
        conflicts,
    }
}

fn largest_rtt(m: &meridian_types::wan::LatencyMatrix) -> f64 {
    [(0, 1), (0, 2), (1, 2)]
        .iter()
        .map(|(a, b)| m.rtt_ms(REGIONS[*a], REGIONS[*b]))
        .fold(0.0, f64::max)
}

async fn progress_loop(started: Instant, shared: Arc<Shared>, observer: Client) {
    let mut prev = [0u64; 3];
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let phase = match *shared.cut_started.lock().unwrap() {
            None => "steady",
            Some(_) => "cut/heal",
        };
        let mut line = format!("[{:>5.1}s] {phase:<9}", started.elapsed().as_secs_f64());
        for (r, name) in REGIONS.iter().enumerate() {
            let ok = shared.ok[r].load(Ordering::Relaxed);
            let err = shared.err[r].load(Ordering::Relaxed);
            line.push_str(&format!(" | {name}: {:>4} w/s {err:>4} err", ok - prev[r]));
            prev[r] = ok;
        }
        if let Ok(c) = observer.get_json("/v1/cluster").await {
            let lags: Vec<String> = c["async_lag"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|l| l["keyspace"] == KEYSPACE)
                .map(|l| {
                    let short = |s: &Value| {
                        s.as_str()
                            .unwrap_or("?")
                            .split('-')
                            .map(|p| &p[..1.min(p.len())])
                            .collect::<String>()
                    };
                    format!(
                        "{}>{} {}",
                        short(&l["source_region"]),
                        short(&l["dest_region"]),
                        l["lag_ms"]
                            .as_u64()
                            .map_or("-".into(), |v| format!("{v}ms"))
                    )
                })
                .collect();
            line.push_str(&format!(" | lag {}", lags.join(" ")));
        }
        println!("{line}");
    }
}
