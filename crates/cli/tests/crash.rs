//! The crash test: a node process is SIGKILLed mid-write, again and again, and every write it
//! acknowledged must be there after each restart (group commit must fsync before it acks).
//! The kill point is drawn from a seed (`MERIDIAN_TEST_SEED`), printed on failure.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, Cluster};
use rand::{Rng, SeedableRng};
use serde_json::json;

const ROUNDS: usize = 6;
const WRITERS: usize = 8;

// Goal: no acknowledged write is lost to a SIGKILL at an arbitrary point of a write-heavy load;
// method: 8 concurrent writers, kill after a seeded number of acknowledgements, restart, read
// back every acknowledged key linearizably, repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let seed: u64 = std::env::var("MERIDIAN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261122);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::start(&[("us-east-1", 1)]);
    cluster.wait_joined(1).await;
    let policy = json!({"name": "c", "survive": "zone", "home_region": "us-east-1", "regions": ["us-east-1"], "shards": 2});
    assert_eq!(cluster.create_keyspace(1, policy).await.status(), 201);
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let http = cluster.http.clone();
    let base = cluster.node(1).url("");
    for round in 0..ROUNDS {
        let kill_after = rng.gen_range(20..150usize);
        let before = acked.lock().unwrap().len();
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (http, base, acked, stop) =
                (http.clone(), base.clone(), acked.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (k, v) = (
                        format!("r{round}-w{w}-{i}"),
                        format!("value-{round}-{w}-{i}"),
                    );
                    let r = http
                        .put(format!("{base}/v1/kv/c/{k}"))
                        .body(v.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().insert(k, v);
                        }
                        // The node is down or restarting: retry the loop until stopped.
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                    i += 1;
                }
            }));
        }
        eventually(
            "enough writes were acknowledged",
            Duration::from_secs(60),
            || async { (acked.lock().unwrap().len() >= before + kill_after).then_some(()) },
        )
        .await;
        // Kill while the writers still have requests in flight.
        cluster.node_mut(1).kill();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        cluster.node_mut(1).start();
        let snapshot = acked.lock().unwrap().clone();
        for (k, v) in &snapshot {
            let got = eventually(
                "the restarted node serves reads",
                Duration::from_secs(60),
                || async { cluster.get(1, "c", k).await.ok() },
            )
            .await;
            assert_eq!(
                got.as_deref(),
                Some(v.as_str()),
                "round {round}: acknowledged write {k} lost after SIGKILL; replay with MERIDIAN_TEST_SEED={seed}\n{}",
                cluster.logs()
            );
        }
        println!("round {round}: killed after {} acknowledged writes; all {} acknowledged writes present", snapshot.len() - before, snapshot.len());
    }
}
