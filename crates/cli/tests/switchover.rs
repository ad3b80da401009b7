//! Planned switchover across real processes (two nodes in us-east-1, two in us-west-2, one in
//! eu-west-1) on loopback under the WAN model. Under a steady write load:
//! - a `survive = "zone"` keyspace homed in us-east-1 (voters there, learners in us-west-2)
//!   moves home with `meridian failover switchover`: its voters become the us-west-2 nodes by
//!   joint consensus and its leaders follow;
//! - a `survive = "region"` keyspace moves its leaders to us-west-2 through gRPC
//!   `Failover.Switchover`;
//! - leaders stay in the new home (the reconcile loop keeps them there), a repeated switchover
//!   is a no-op, a region outside the policy is refused with a message naming the regions, and
//!   every acknowledged write reads back (RPO 0). Both switchovers are in the decision log,
//!   whose chain verifies.
//!
//! The pauses are printed (the servers' measure and the writers' longest gap between
//! acknowledgements), not asserted: timing belongs to benchmarks and the demo's report.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, Cluster};
use meridian_server::grpc::pb::failover_client::FailoverClient;
use meridian_server::grpc::pb::SwitchoverRequest;
use serde_json::{json, Value};

const ZONED: &str = "zoned";
const SPREAD: &str = "spread";
const OLD: &str = "us-east-1";
const NEW: &str = "us-west-2";
const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
/// Node 3 is in us-west-2 and holds a replica of both keyspaces.
const OBSERVER: u64 = 3;

fn cli(cluster: &Cluster, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .args(["--node", &cluster.node(OBSERVER).http])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shards of `ks` as the observer sees them, once every one has a leader.
async fn shards(cluster: &Cluster, ks: &str) -> Option<Vec<Value>> {
    let c = cluster.get_json(OBSERVER, "/v1/cluster").await?;
    let s: Vec<Value> = c["shards"]
        .as_array()?
        .iter()
        .filter(|s| s["keyspace"] == ks)
        .cloned()
        .collect();
    (!s.is_empty() && s.iter().all(|s| s["leader_region"].is_string())).then_some(s)
}

async fn leaders_in(cluster: &Cluster, ks: &str, region: &str) -> Option<()> {
    shards(cluster, ks)
        .await?
        .iter()
        .all(|s| s["leader_region"] == region)
        .then_some(())
}

/// A writer of sequential puts through one node: what was acknowledged, and when.
struct Writer {
    acked: Arc<Mutex<BTreeMap<String, String>>>,
    ack_times: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

fn writer(cluster: &Cluster, via: u64, ks: &'static str, stop: Arc<AtomicBool>) -> Writer {
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let ack_times = Arc::new(Mutex::new(Vec::new()));
    let (http, url) = (cluster.http.clone(), cluster.node(via).url(""));
    let (a, t) = (acked.clone(), ack_times.clone());
    let task = tokio::spawn(async move {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let (k, v) = (format!("k{}", i % 200), format!("v{i}"));
            let r = http
                .put(format!("{url}/v1/kv/{ks}/{k}"))
                .body(v.clone())
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                a.lock().unwrap().insert(k, v);
                t.lock().unwrap().push(Instant::now());
            }
        }
    });
    Writer {
        acked,
        ack_times,
        task,
    }
}

/// The longest gap between consecutive acknowledgements within `window`.
fn longest_gap(times: &[Instant], window: (Instant, Instant)) -> Duration {
    times
        .windows(2)
        .filter(|w| w[1] >= window.0 && w[0] <= window.1)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

// Goal: issue 11 item 3: a planned switchover moves a keyspace's home with RPO 0, for
// survive = "zone" (voters move by joint consensus) and survive = "region" (leaders move).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_moves_home_with_rpo_zero() {
    let cluster = Cluster::start(&[(REGIONS[0], 2), (REGIONS[1], 2), (REGIONS[2], 1)]);
    cluster.wait_joined(1).await;
    for policy in [
        json!({"name": ZONED, "replication": "sync", "survive": "zone", "home_region": OLD,
               "regions": [OLD, NEW], "shards": 2}),
        json!({"name": SPREAD, "replication": "sync", "survive": "region", "home_region": OLD,
               "regions": REGIONS, "shards": 2}),
    ] {
        let r = cluster.create_keyspace(1, policy).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    for ks in [ZONED, SPREAD] {
        eventually(
            &format!("{ks}'s leaders are home"),
            Duration::from_secs(60),
            || leaders_in(&cluster, ks, OLD),
        )
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writers = [
        writer(&cluster, OBSERVER, ZONED, stop.clone()),
        writer(&cluster, 1, SPREAD, stop.clone()),
    ];
    eventually(
        "both writers are acknowledged",
        Duration::from_secs(30),
        || async {
            writers
                .iter()
                .all(|w| w.acked.lock().unwrap().len() >= 20)
                .then_some(())
        },
    )
    .await;

    // A region outside the policy is refused, naming the regions.
    let (ok, _, err) = cli(
        &cluster,
        &["failover", "switchover", ZONED, "--to", "eu-west-1"],
    );
    assert!(!ok, "a switchover out of the policy's regions must fail");
    assert!(
        err.contains("us-west-2"),
        "the error names the regions: {err}"
    );

    // survive = "zone", through the CLI.
    let zoned_at = Instant::now();
    let (ok, out, err) = cli(
        &cluster,
        &[
            "failover",
            "switchover",
            ZONED,
            "--to",
            NEW,
            "--json",
            "--reason",
            "maintenance",
        ],
    );
    let zoned_done = Instant::now();
    assert!(ok, "switchover failed: {err}\n{}", cluster.logs());
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(report["decision"].is_u64(), "{report}");
    assert_eq!(report["from"], OLD);
    let west = cluster.in_region(NEW);
    for s in report["shards"].as_array().unwrap() {
        assert!(west.contains(&s["leader"].as_u64().unwrap()), "{report}");
        for v in s["voters"].as_array().unwrap() {
            assert!(west.contains(&v.as_u64().unwrap()), "voters move: {report}");
        }
    }

    // survive = "region", through gRPC.
    let mut grpc = FailoverClient::connect(format!("http://{}", cluster.node(OBSERVER).grpc))
        .await
        .unwrap();
    let spread_at = Instant::now();
    let spread = grpc
        .switchover(SwitchoverRequest {
            keyspace: SPREAD.into(),
            to: NEW.into(),
            by: "test".into(),
            reason: "maintenance".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let spread_done = Instant::now();
    assert!(spread.decision.is_some());
    assert!(
        spread.shards.iter().all(|s| west.contains(&s.leader)),
        "{spread:?}"
    );

    // The cluster shows it, and leaders stay in the new home (nothing moves them back).
    for ks in [ZONED, SPREAD] {
        eventually(
            &format!("{ks}'s leaders are in {NEW}"),
            Duration::from_secs(30),
            || leaders_in(&cluster, ks, NEW),
        )
        .await;
    }
    eventually(
        "zoned's raft voters are the us-west-2 nodes",
        Duration::from_secs(30),
        || async {
            shards(&cluster, ZONED)
                .await?
                .iter()
                .all(|s| {
                    let v: Vec<u64> = s["raft_voters"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_u64).collect())
                        .unwrap_or_default();
                    !v.is_empty() && v.iter().all(|id| west.contains(id))
                })
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    for ks in [ZONED, SPREAD] {
        assert!(
            leaders_in(&cluster, ks, NEW).await.is_some(),
            "{ks}'s leaders left the new home\n{}",
            cluster.logs()
        );
    }

    // Again: nothing to do, no new decision.
    let (ok, out, err) = cli(
        &cluster,
        &["failover", "switchover", ZONED, "--to", NEW, "--json"],
    );
    assert!(ok, "{err}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert!(again["decision"].is_null(), "{again}");
    assert_eq!(again["pause_ms_max"], 0, "{again}");

    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        w.task.await.unwrap();
        acked.push((
            w.acked.lock().unwrap().clone(),
            w.ack_times.lock().unwrap().clone(),
        ));
    }
    println!(
        "zone switchover: server pause max {} ms (shards {}), writers' longest gap {:?}, took {:?}",
        report["pause_ms_max"],
        report["shards"],
        longest_gap(&acked[0].1, (zoned_at, zoned_done)),
        zoned_done - zoned_at
    );
    println!(
        "region switchover: server pause max {} ms, writers' longest gap {:?}, took {:?}",
        spread.pause_ms_max,
        longest_gap(&acked[1].1, (spread_at, spread_done)),
        spread_done - spread_at
    );

    // RPO 0: every acknowledged write reads back, linearizably, from the new home.
    for ((values, _), ks) in acked.iter().zip([ZONED, SPREAD]) {
        for (k, v) in values {
            let got = eventually(
                &format!("a read of {ks}/{k}"),
                Duration::from_secs(30),
                || async { cluster.get(OBSERVER, ks, k).await.ok() },
            )
            .await;
            assert_eq!(got.as_deref(), Some(v.as_str()), "{ks}/{k} lost or changed");
        }
    }

    // Both switchovers are decisions in the verified log.
    let log = cluster
        .get_json(OBSERVER, "/v1/failover/log")
        .await
        .unwrap();
    assert_eq!(log["verified"], true, "{log}");
    let moved: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "switchover")
        .collect();
    assert_eq!(moved.len(), 2, "{log}");
    for e in moved {
        assert_eq!((&e["from"], &e["to"]), (&json!(OLD), &json!(NEW)), "{e}");
        assert!(e["by"].as_str().unwrap().starts_with("operator:"), "{e}");
    }
}
