//! `meridian demo --scenario zone-promotion`: a `survive = "zone"` keyspace (voters only in
//! its home region, us-east-1; learners in us-west-2) under load from both regions; the home
//! region lost; the pending promotion approved through the API; writes resuming in us-west-2
//! at a new epoch; the old region returning fenced, handing over its lost tail; and a planned
//! switchover back home.
//!
//! The report verifies what the promotion promised: every acknowledged write is read back
//! except those the promotion lost, each of which must be in the reported lost tail
//! (`acked_writes_lost` <= `rpo_writes_reported`; the tail may also hold writes whose client
//! saw an error, `indeterminate_writes`), and no write is acknowledged at a stale epoch
//! (`stale_epoch_writes_accepted` = 0: a write acknowledged after the promotion that is not in
//! the new epoch).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::client::Client;
use crate::demo::{wait_for, REGIONS};
use crate::local::LocalNode;

const KEYSPACE: &str = "ledger";
const NODES_PER_REGION: usize = 3;
const CLIENTS_PER_REGION: usize = 4;
const SHARDS: u16 = 4;
const HOME: usize = 0;
const TO: usize = 1;
const PACE: Duration = Duration::from_millis(20);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One write's outcome as its client saw it.
#[derive(Clone)]
struct Written {
    key: String,
    value: String,
    /// Acknowledged (else the client saw an error: indeterminate).
    acked: bool,
    at: Instant,
}

struct Shared {
    stop: AtomicBool,
    ok: AtomicU64,
    err: AtomicU64,
}

/// Writes unique keys through `nodes` (its own region's first), moving to the next node after
/// an error. Each write is tried once: an error leaves it indeterminate.
async fn client_loop(name: String, nodes: Vec<Client>, shared: Arc<Shared>) -> Vec<Written> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut moved: Option<Instant> = None;
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        seq += 1;
        // Back to its own region's node every 2 s after moving away (so writes also go
        // through the old home once it returns).
        if moved.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            at = 0;
            moved = None;
        }
        let key = format!("{name}/{seq:07}");
        let value = format!("{name}-{seq}");
        let r = nodes[at % nodes.len()]
            .put(KEYSPACE, &key, value.clone().into_bytes())
            .await;
        let acked = r.is_ok();
        out.push(Written {
            key,
            value,
            acked,
            at: Instant::now(),
        });
        if acked {
            shared.ok.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(PACE).await;
        } else {
            shared.err.fetch_add(1, Ordering::Relaxed);
            at += 1;
            moved.get_or_insert_with(Instant::now);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    out
}

pub async fn demo(duration_s: u64, report_path: Option<PathBuf>, insecure: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cfgs, token) =
        crate::local::demo_configs(dir.path(), &REGIONS, NODES_PER_REGION, insecure)?;
    let mut nodes: Vec<LocalNode> = cfgs.into_iter().map(LocalNode::new).collect();
    let result = scenario(&mut nodes, duration_s, report_path, &token).await;
    // A node's runtime cannot be dropped inside this one: stop them all first.
    for n in nodes.iter_mut() {
        n.kill();
    }
    result
}

async fn scenario(
    nodes: &mut [LocalNode],
    duration_s: u64,
    report_path: Option<PathBuf>,
    token: &Option<String>,
) -> Result<()> {
    println!(
        "Meridian demo (zone promotion): {} regions x {NODES_PER_REGION} nodes in one process, WAN latency from the measured AWS matrix",
        REGIONS.len()
    );
    for n in nodes.iter_mut() {
        n.start()
            .await
            .with_context(|| format!("starting node {}", n.cfg.node_id))?;
    }
    let clients: Vec<Client> = nodes.iter().map(|n| Client::new(&n.http())).collect();
    let regions_of: Vec<usize> = nodes.iter().map(|n| n.region).collect();
    let in_region = |r: usize| -> Vec<Client> {
        regions_of
            .iter()
            .zip(&clients)
            .filter(|(nr, _)| **nr == r)
            .map(|(_, c)| c.clone())
            .collect()
    };
    let observer = in_region(TO)[0].clone();
    let s = crate::client::scheme();
    println!(
        "console: {s}://{} (in {})",
        nodes[NODES_PER_REGION].http(),
        REGIONS[TO]
    );
    crate::local::print_access(token, &nodes[NODES_PER_REGION].http());
    let total = nodes.len();
    let t = crate::demo::wait_formed(&observer, total).await?;
    println!("cluster formed: {total} nodes in {:.1} s", t.as_secs_f64());
    let policy = json!({"name": KEYSPACE, "replication": "sync", "survive": "zone",
                        "home_region": REGIONS[HOME], "regions": [REGIONS[HOME], REGIONS[TO]],
                        "shards": SHARDS, "promotion": "manual"});
    observer
        .create_keyspace(&policy)
        .await
        .context("creating the demo keyspace")?;
    println!(
        "created keyspace {KEYSPACE:?}: sync, survive = zone (voters in {} only, learners in {}), promotion = manual",
        REGIONS[HOME], REGIONS[TO]
    );
    wait_for("leaders in the home region", SETTLE_TIMEOUT, || {
        let o = observer.clone();
        async move { leaders_in(&o, REGIONS[HOME]).await }
    })
    .await?;

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        ok: AtomicU64::new(0),
        err: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for r in [HOME, TO] {
        let mut order = in_region(r);
        order.extend(in_region(if r == HOME { TO } else { HOME }));
        for i in 0..CLIENTS_PER_REGION {
            // Each client starts at a different node of its region.
            let mut mine = order.clone();
            mine.rotate_left(i % NODES_PER_REGION);
            tasks.push(tokio::spawn(client_loop(
                format!("{}-c{i}", REGIONS[r]),
                mine,
                shared.clone(),
            )));
        }
    }
    let steady = Duration::from_secs_f64(duration_s as f64 * 0.3);
    tokio::time::sleep(steady).await;
    println!(
        ">>> losing {}: killing nodes {:?} ({} writes acknowledged so far)",
        REGIONS[HOME],
        nodes
            .iter()
            .filter(|n| n.region == HOME)
            .map(|n| n.cfg.node_id)
            .collect::<Vec<_>>(),
        shared.ok.load(Ordering::Relaxed)
    );
    let lost_at = Instant::now();
    for n in nodes.iter_mut().filter(|n| n.region == HOME) {
        n.kill();
    }
    // (decision id, the decision) once seen.
    type Seen = Option<(Option<u64>, Value)>;
    let pending: Arc<Mutex<Seen>> = Default::default();
    let waited = wait_for("a pending promotion", SETTLE_TIMEOUT, || {
        let (o, found) = (observer.clone(), pending.clone());
        async move {
            let Ok(s) = o.get_json("/v1/failover").await else {
                return false;
            };
            let p = s["pending"].as_array().and_then(|p| {
                p.iter().find_map(|p| {
                    (p["decision"]["action"] == "promote")
                        .then(|| (p["id"].as_u64(), p["decision"].clone()))
                })
            });
            let seen = p.is_some();
            *found.lock().unwrap() = p;
            seen
        }
    })
    .await?;
    let (id, decision) = pending.lock().unwrap().clone().expect("found");
    let id = id.context("a pending decision has an id")?;
    println!(
        "pending decision {id} after {:.1} s: promote {KEYSPACE} from {} to {} at epoch {} (waits for an operator)",
        waited.as_secs_f64(),
        decision["from"].as_str().unwrap_or("?"),
        decision["to"].as_str().unwrap_or("?"),
        decision["epoch"]
    );
    let approved = observer
        .post_json(
            &format!("/v1/failover/approve/{id}"),
            &json!({"by": "demo", "reason": "home region lost; promoting"}),
        )
        .await
        .context("approving the promotion")?;
    let approved_at = Instant::now();
    println!(
        ">>> approved: decision {} ({})",
        approved["seq"], approved["action"]
    );
    let ok_before = shared.ok.load(Ordering::Relaxed);
    wait_for("writes resume", SETTLE_TIMEOUT, || {
        let s = shared.clone();
        async move { s.ok.load(Ordering::Relaxed) > ok_before + 10 }
    })
    .await?;
    let record = observer
        .get_json(&format!("/v1/keyspaces/{KEYSPACE}"))
        .await?;
    println!(
        "writes resumed in {} at epoch {}",
        record["keyspace"]["policy"]["home_region"]
            .as_str()
            .unwrap_or("?"),
        record["keyspace"]["epoch"]
    );
    let promoted_at = Instant::now();
    let outage = Duration::from_secs_f64(duration_s as f64 * 0.2);
    tokio::time::sleep(outage).await;

    println!(">>> {} returns", REGIONS[HOME]);
    for n in nodes.iter_mut().filter(|n| n.region == HOME) {
        n.start()
            .await
            .with_context(|| format!("restarting node {}", n.cfg.node_id))?;
    }
    let returned_at = Instant::now();
    let found: Arc<Mutex<Value>> = Default::default();
    wait_for(
        "the old home hands over its lost tail",
        SETTLE_TIMEOUT,
        || {
            let (o, t) = (observer.clone(), found.clone());
            async move {
                match o
                    .get_json(&format!("/v1/failover/lost-tail/{KEYSPACE}"))
                    .await
                {
                    Ok(r) if r["promotions"][0]["recovered"] == true => {
                        *t.lock().unwrap() = r;
                        true
                    }
                    _ => false,
                }
            }
        },
    )
    .await?;
    let tail = found.lock().unwrap().clone();
    let rpo_writes_reported = tail["promotions"][0]["lost_writes"].as_u64().unwrap_or(0);
    println!(
        "lost tail: {rpo_writes_reported} writes (at least {} entries were known lost at promotion)",
        tail["promotions"][0]["lost_entries_at_least"]
    );
    tokio::time::sleep(Duration::from_secs_f64(duration_s as f64 * 0.15)).await;

    // A region failover evacuated must be failed back (healthy for its hold-down) before a
    // switchover may take a keyspace there.
    let t = wait_for("the old home is failed back", SETTLE_TIMEOUT, || {
        let o = observer.clone();
        async move {
            o.get_json("/v1/failover")
                .await
                .is_ok_and(|s| s["evacuated"].get(REGIONS[HOME]).is_none())
        }
    })
    .await?;
    println!(
        "{} failed back ({:.1} s after its lost tail was in)",
        REGIONS[HOME],
        t.as_secs_f64()
    );
    println!(
        ">>> planned switchover of {KEYSPACE} back to {}",
        REGIONS[HOME]
    );
    let switch_started = Instant::now();
    let switched = observer
        .post_json_waiting(
            &format!("/v1/failover/switchover/{KEYSPACE}"),
            &json!({"to": REGIONS[HOME], "by": "demo", "reason": "home region back"}),
            Duration::from_secs(120),
        )
        .await
        .context("switching over back home")?;
    let switch_done = Instant::now();
    println!(
        "switchover done in {} ms; longest write pause {} ms (per shard: {})",
        switched["took_ms"],
        switched["pause_ms_max"],
        switched["shards"]
            .as_array()
            .map(|s| s
                .iter()
                .map(|s| s["pause_ms"].to_string())
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    tokio::time::sleep(
        Duration::from_secs_f64(duration_s as f64 * 0.1).max(Duration::from_secs(2)),
    )
    .await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut writes = Vec::new();
    for t in tasks {
        writes.extend(t.await?);
    }

    // Verification: read back every write, acknowledged or not, through the home region.
    let reader = in_region(HOME);
    let present = read_all(&reader, &writes).await?;
    let tail_keys: BTreeSet<String> = tail["promotions"][0]["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| {
            s["recovered"]["entries"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| e["key"].as_str().map(str::to_string))
        .collect();
    let acked: Vec<&Written> = writes.iter().filter(|w| w.acked).collect();
    let missing = |w: &&&Written| present.get(&w.key) != Some(&w.value);
    // No new epoch exists before the approval: a write acknowledged (as its client saw it) by
    // then and missing now was lost by the promotion (the old home acknowledged it while dying;
    // the client's clock may read just after the kill); one acknowledged after it and missing
    // was accepted at a stale epoch.
    let acked_lost: Vec<&Written> = acked
        .iter()
        .filter(|w| w.at < approved_at)
        .filter(missing)
        .copied()
        .collect();
    let stale: Vec<&Written> = acked
        .iter()
        .filter(|w| w.at >= approved_at)
        .filter(missing)
        .copied()
        .collect();
    let unreported: Vec<&str> = acked_lost
        .iter()
        .filter(|w| !tail_keys.contains(&w.key))
        .map(|w| w.key.as_str())
        .collect();
    let indeterminate = writes.iter().filter(|w| !w.acked).count();
    let first_after = acked.iter().filter(|w| w.at > lost_at).map(|w| w.at).min();
    let promotion_rto_ms = first_after.map(|t| (t - lost_at).as_millis() as u64);
    let writes_of = |from: Instant, to: Instant| {
        let mut t: Vec<Instant> = acked
            .iter()
            .map(|w| w.at)
            .filter(|t| *t >= from && *t <= to)
            .collect();
        t.sort();
        t
    };
    let during = writes_of(switch_started, switch_done);
    let client_gap_ms = during
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .max();
    let report = json!({
        "scenario": "zone-promotion",
        "keyspace": KEYSPACE,
        "home_region": REGIONS[HOME],
        "promoted_to": REGIONS[TO],
        "writes_acknowledged": acked.len(),
        "indeterminate_writes": indeterminate,
        "rpo_writes_reported": rpo_writes_reported,
        "acked_writes_lost": acked_lost.len(),
        "lost_writes_unreported": unreported.len(),
        "stale_epoch_writes_accepted": stale.len(),
        "lost_entries_known_at_promotion": tail["promotions"][0]["lost_entries_at_least"],
        "promotion_rto_ms": promotion_rto_ms,
        "pending_decision_after_ms": waited.as_millis() as u64,
        "writes_resumed_after_approval_ms": (promoted_at - approved_at).as_millis() as u64,
        "old_region_returned_after_ms": (returned_at - lost_at).as_millis() as u64,
        "switchover_pause_ms": switched["pause_ms_max"],
        "switchover_client_gap_ms": client_gap_ms,
        "switchover_took_ms": switched["took_ms"],
        "switchover_shards": switched["shards"],
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(p) = report_path {
        std::fs::write(&p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if !stale.is_empty() {
        bail!(
            "{} writes were acknowledged at a stale epoch and are not in the new one (first: {})",
            stale.len(),
            stale[0].key
        );
    }
    if !unreported.is_empty() {
        bail!(
            "{} acknowledged writes were lost without being in the reported tail (first: {})",
            unreported.len(),
            unreported[0]
        );
    }
    println!(
        "verified: {} acknowledged writes, {} lost by the promotion and all of them reported ({} in the tail), 0 acknowledged at a stale epoch",
        acked.len(),
        acked_lost.len(),
        rpo_writes_reported
    );
    Ok(())
}

async fn leaders_in(c: &Client, region: &str) -> bool {
    let Ok(cl) = c.get_json("/v1/cluster").await else {
        return false;
    };
    let shards: Vec<&Value> = cl["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["keyspace"] == KEYSPACE)
        .collect();
    !shards.is_empty() && shards.iter().all(|s| s["leader_region"] == region)
}

/// Reads every written key linearizably (16 at a time): key to value, for those present.
async fn read_all(reader: &[Client], writes: &[Written]) -> Result<BTreeMap<String, String>> {
    let found = Arc::new(Mutex::new(BTreeMap::new()));
    let keys: Vec<String> = writes.iter().map(|w| w.key.clone()).collect();
    let chunks: Vec<Vec<String>> = keys
        .chunks(keys.len().div_ceil(16).max(1))
        .map(<[String]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let (c, found) = (reader[i % reader.len()].clone(), found.clone());
        tasks.push(tokio::spawn(async move {
            for k in chunk {
                let mut tries = 0;
                loop {
                    match c.get(KEYSPACE, &k, Some("linearizable")).await {
                        Ok((Some(v), _)) => {
                            found
                                .lock()
                                .unwrap()
                                .insert(k, String::from_utf8_lossy(&v).into_owned());
                            break;
                        }
                        Ok((None, _)) => break,
                        Err(e) if tries < 50 => {
                            tries += 1;
                            tracing::debug!(key = %k, error = %e, "verification read retried");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let found = found.lock().unwrap().clone();
    Ok(found)
}
