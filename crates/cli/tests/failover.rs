//! Failover control across three real processes (one per region) on loopback under the WAN
//! model. A gray home region (its disk stalls, heartbeats fine) is judged degraded and loses
//! its leaders through a committed `failover` decision; with failover paused, the failback
//! that follows the repair waits as a pending decision (leaders stay put) until an operator
//! approves it with `meridian failover approve`; the decision log verifies with
//! `meridian failover log --verify`, and an exported copy that was edited, lost an entry or
//! had two swapped fails verification naming the entry. The gRPC `Failover` service answers the
//! same status, log and operator actions.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, Cluster, NodeTweak};
use meridian_server::grpc::pb::failover_client::FailoverClient;
use meridian_server::grpc::pb::{FailoverLogRequest, FailoverStatusRequest, OperatorRequest};
use serde_json::{json, Value};

const KS: &str = "accounts";
const HOME: &str = "us-east-1";
const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
const DEGRADED_FOR_MS: u64 = 4_000;

fn cli(cluster: &Cluster, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .args(["--node", &cluster.node(2).http])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn status(cluster: &Cluster) -> Value {
    cluster
        .get_json(2, "/v1/failover")
        .await
        .unwrap_or(Value::Null)
}

async fn log(cluster: &Cluster) -> Vec<Value> {
    cluster
        .get_json(2, "/v1/failover/log")
        .await
        .and_then(|l| l["entries"].as_array().cloned())
        .unwrap_or_default()
}

async fn leaders_home(cluster: &Cluster) -> Option<bool> {
    let r = cluster.leader_regions(2, KS).await?;
    if r.iter().any(Option::is_none) || r.is_empty() {
        return None;
    }
    Some(r.iter().all(|r| r.as_deref() == Some(HOME)))
}

// Goal: the module doc's promises, over HTTP and the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gray_region_loses_leaders_and_paused_failback_waits_for_approval() {
    let cluster = Cluster::start_with(&[(REGIONS[0], 1), (REGIONS[1], 1), (REGIONS[2], 1)], |_| {
        NodeTweak {
            extra_config: format!(
                "failover.holddown_ms = 5000\nfailover.degraded_for_ms = {DEGRADED_FOR_MS}\n"
            ),
            ..Default::default()
        }
    });
    cluster.wait_joined(1).await;
    let r = cluster
        .create_keyspace(
            1,
            json!({"name": KS, "replication": "sync", "survive": "region", "home_region": HOME,
                   "regions": REGIONS, "shards": 2}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    eventually("leaders are home", Duration::from_secs(60), || async {
        leaders_home(&cluster).await?.then_some(())
    })
    .await;

    // A steady trickle of writes through the home node gives the disk a normal.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (http, url, stop) = (cluster.http.clone(), cluster.node(1).url(""), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let _ = http
                    .put(format!("{url}/v1/kv/{KS}/k{}", i % 50))
                    .body(format!("v{i}"))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    eventually(
        "the home region is judged healthy",
        Duration::from_secs(30),
        || async {
            let s = status(&cluster).await;
            (s["health"][HOME]["health"] == "healthy"
                && s["health"][HOME]["normal_fsync_ms"].is_number())
            .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The home node's disk stalls: a second per durable commit (far above any machine's normal
    // fsync p99 times ten). Heartbeats still flow.
    let gray_at = Instant::now();
    let r = cluster
        .http
        .post(cluster.node(1).url("/v1/admin/disk"))
        .json(&json!({"delay_ms": 1000}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let failover = eventually(
        "a failover decision evacuates the gray home region",
        Duration::from_secs(60),
        || async {
            log(&cluster)
                .await
                .into_iter()
                .find(|e| e["action"] == "failover" && e["region"] == HOME)
        },
    )
    .await;
    let decided_after = gray_at.elapsed();
    let reason = failover["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("degraded"), "{failover}");
    assert_eq!(failover["inputs"][HOME]["health"], "degraded", "{failover}");
    assert!(
        decided_after >= Duration::from_millis(DEGRADED_FOR_MS),
        "decided {decided_after:?} after the stall, before the degraded time"
    );
    eventually(
        "leaders leave the gray region",
        Duration::from_secs(60),
        || async { (!leaders_home(&cluster).await?).then_some(()) },
    )
    .await;
    // The console's timeline links the transfers out of the region to the decision.
    let seq = failover["seq"].as_u64().unwrap();
    let linked = eventually(
        "a leader change carries out the decision",
        Duration::from_secs(30),
        || async {
            for id in 1..=3 {
                let c = cluster.get_json(id, "/v1/cluster").await?;
                let e = c["events"].as_array()?.iter().find(|e| {
                    e["keyspace"] == KS && e["kind"] == "transfer" && e["decision"] == seq
                });
                if let Some(e) = e {
                    return Some(e.clone());
                }
            }
            None
        },
    )
    .await;
    assert!(
        linked["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("decision #{seq}")),
        "{linked}"
    );

    // Paused: the repair makes the region healthy, and the failback waits.
    let (ok, out, err) = cli(
        &cluster,
        &["failover", "pause", "--by", "alice", "--reason", "drill"],
    );
    assert!(ok, "{out} {err}");
    assert_eq!(status(&cluster).await["paused"], true);
    let r = cluster
        .http
        .post(cluster.node(1).url("/v1/admin/disk"))
        .json(&json!({"delay_ms": 0}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let pending_id = eventually(
        "the failback waits as a pending decision",
        Duration::from_secs(90),
        || async {
            let s = status(&cluster).await;
            s["pending"].as_array()?.iter().find_map(|p| {
                (p["decision"]["action"] == "failback" && p["decision"]["region"] == HOME)
                    .then(|| p["id"].as_u64())
                    .flatten()
            })
        },
    )
    .await;
    // Well past the hold-down and the return delay: nothing moved while paused.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(leaders_home(&cluster).await, Some(false));
    let (ok, out, err) = cli(&cluster, &["failover", "approve", &pending_id.to_string()]);
    assert!(ok, "{out} {err}");
    let (ok, _, err) = cli(&cluster, &["failover", "approve", "999"]);
    assert!(!ok && err.contains("no pending decision 999"), "{err}");
    eventually(
        "leaders return home once approved",
        Duration::from_secs(60),
        || async { leaders_home(&cluster).await?.then_some(()) },
    )
    .await;
    // The same operations over gRPC: status, a refused reject, resume, and the log.
    let mut grpc = FailoverClient::connect(format!("http://{}", cluster.node(2).grpc))
        .await
        .unwrap();
    let st = grpc
        .status(FailoverStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(st.paused && st.pending.is_empty(), "{st:?}");
    assert_eq!(st.health.len(), REGIONS.len(), "{st:?}");
    assert!(st.json.contains("\"paused\":true"), "{}", st.json);
    let refused = grpc
        .reject(OperatorRequest {
            id: 999,
            by: "bob".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    assert!(
        refused.message().contains("no pending decision 999"),
        "{refused:?}"
    );
    let resumed = grpc
        .resume(OperatorRequest {
            id: 0,
            by: "bob".into(),
            reason: "drill over".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(
        (resumed.action.as_str(), resumed.by.as_str()),
        ("resume", "operator:bob")
    );
    let again = grpc.resume(OperatorRequest::default()).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();

    // The log holds every decision in order, with who asked, and verifies.
    let entries = log(&cluster).await;
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap_or("?"))
        .collect();
    let expected = ["failover", "pause", "pending", "approve", "resume"];
    let mut at = 0;
    for a in &actions {
        if at < expected.len() && *a == expected[at] {
            at += 1;
        }
    }
    assert_eq!(at, expected.len(), "{actions:?}");
    assert!(entries.iter().any(|e| e["by"] == "operator:alice"));
    let (ok, out, err) = cli(&cluster, &["failover", "log", "--verify"]);
    assert!(ok && err.contains("verified"), "{out} {err}");
    let glog = grpc.log(FailoverLogRequest {}).await.unwrap().into_inner();
    assert!(glog.verified, "{}", glog.problem);
    assert!(glog.entries.len() >= entries.len());
    for (g, h) in glog.entries.iter().zip(&entries) {
        assert_eq!(g.hash, h["hash"].as_str().unwrap());
        let as_json: Value = serde_json::from_str(&g.json).unwrap();
        assert_eq!(&as_json, h, "the gRPC entry's JSON is the hashed entry");
    }

    // Tampered exports fail, naming the entry.
    let (ok, export, err) = cli(&cluster, &["failover", "log", "--json"]);
    assert!(ok, "{err}");
    let export: Value = serde_json::from_str(&export).unwrap();
    let path = cluster.path().join("log.json");
    let write = |v: &Value| std::fs::write(&path, serde_json::to_vec(v).unwrap()).unwrap();
    let verify = || {
        cli(
            &cluster,
            &[
                "failover",
                "log",
                "--verify",
                "--file",
                path.to_str().unwrap(),
            ],
        )
    };
    write(&export);
    let (ok, _, err) = verify();
    assert!(ok, "{err}");
    let mut edited = export.clone();
    edited["entries"][1]["reason"] = json!("nothing happened");
    write(&edited);
    let (ok, _, err) = verify();
    assert!(
        !ok && err.contains("entry 1 ") && err.contains("edited"),
        "{err}"
    );
    let mut removed = export.clone();
    removed["entries"].as_array_mut().unwrap().remove(1);
    write(&removed);
    let (ok, _, err) = verify();
    assert!(!ok && err.contains("entry 2 "), "{err}");
    let mut swapped = export.clone();
    swapped["entries"].as_array_mut().unwrap().swap(1, 2);
    write(&swapped);
    let (ok, _, err) = verify();
    assert!(!ok, "{err}");
}
