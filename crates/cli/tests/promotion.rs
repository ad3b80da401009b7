//! Promotion of a `survive = "zone"` keyspace across real processes (two nodes in us-east-1,
//! its home; two in us-west-2 holding learners; one in eu-west-1) on loopback under the WAN
//! model. Under a steady load of writes to unique keys through us-west-2:
//! - both home nodes are killed (SIGKILL): the controller proposes a promotion, pending (the
//!   default `promotion = "manual"`), which an operator approves with
//!   `meridian failover approve`; writes resume in us-west-2 at epoch 1;
//! - the lost tail is reported at once (at least what the promoted replica knew was committed)
//!   and exactly once the old home returns: every acknowledged write the promotion lost is in
//!   it (RPO honesty), and none is silently merged back;
//! - the returning old home is fenced: every write acknowledged through it afterwards is in the
//!   new epoch (readable through us-west-2), and its nodes rejoin as learners of the new epoch.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, Cluster};
use serde_json::{json, Value};

const KS: &str = "ledger";
const HOME: &str = "us-east-1";
const TO: &str = "us-west-2";
const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
/// In us-west-2: holds learners of every shard.
const VIA: u64 = 3;

fn cli(cluster: &Cluster, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .args(["--node", &cluster.node(VIA).http])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn leaders_in(cluster: &Cluster, observer: u64, region: &str) -> Option<()> {
    let r = cluster.leader_regions(observer, KS).await?;
    (!r.is_empty() && r.iter().all(|r| r.as_deref() == Some(region))).then_some(())
}

// Goal: issue 11 item 2: a zone keyspace survives its home region's loss through an approved
// promotion, with the lost tail reported honestly and the old home fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_promotion_reports_the_lost_tail_and_fences_the_old_home() {
    let mut cluster = Cluster::start(&[(REGIONS[0], 2), (REGIONS[1], 2), (REGIONS[2], 1)]);
    cluster.wait_joined(1).await;
    let r = cluster
        .create_keyspace(
            1,
            json!({"name": KS, "replication": "sync", "survive": "zone", "home_region": HOME,
                   "regions": [HOME, TO], "shards": 2}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    eventually("leaders are home", Duration::from_secs(60), || {
        leaders_in(&cluster, VIA, HOME)
    })
    .await;

    // Four writers of unique keys through us-west-2: key w<writer>-<i> = v<i>.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeMap<String, (String, Instant)>>> = Default::default();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (http, url, stop, acked) = (
                cluster.http.clone(),
                cluster.node(VIA).url(""),
                stop.clone(),
                acked.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let (k, v) = (format!("w{w}-{i:06}"), format!("v{i}"));
                    let r = http
                        .put(format!("{url}/v1/kv/{KS}/{k}"))
                        .body(v.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().insert(k, (v, Instant::now()));
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        })
        .collect();
    eventually(
        "writes are acknowledged",
        Duration::from_secs(30),
        || async { (acked.lock().unwrap().len() >= 100).then_some(()) },
    )
    .await;

    // The home region dies.
    let lost_at = Instant::now();
    for id in cluster.in_region(HOME) {
        cluster.node_mut(id).kill();
    }
    let pending = eventually("a pending promotion", Duration::from_secs(60), || async {
        let s = cluster.get_json(VIA, "/v1/failover").await?;
        s["pending"].as_array()?.iter().find_map(|p| {
            (p["decision"]["action"] == "promote" && p["decision"]["keyspace"] == KS)
                .then(|| p["id"].as_u64())
                .flatten()
        })
    })
    .await;
    let decided_at = Instant::now();
    // Nothing is promoted before an operator approves.
    let record = cluster
        .get_json(VIA, &format!("/v1/keyspaces/{KS}"))
        .await
        .unwrap();
    assert_eq!(record["keyspace"]["epoch"], 0, "{record}");
    let (ok, out, err) = cli(&cluster, &["failover", "approve", &pending.to_string()]);
    assert!(ok, "approve failed: {err}");
    assert!(out.contains("approve"), "{out}");
    let approved_at = Instant::now();

    // Writes resume in us-west-2 at epoch 1.
    let acked_before = acked.lock().unwrap().len();
    let resumed_at = eventually("writes resume", Duration::from_secs(60), || async {
        let a = acked.lock().unwrap();
        (a.len() > acked_before + 20)
            .then(|| {
                a.values()
                    .map(|(_, t)| *t)
                    .filter(|t| *t > approved_at)
                    .min()
            })
            .flatten()
    })
    .await;
    let record = cluster
        .get_json(VIA, &format!("/v1/keyspaces/{KS}"))
        .await
        .unwrap();
    assert_eq!(record["keyspace"]["epoch"], 1, "{record}");
    assert_eq!(record["keyspace"]["policy"]["home_region"], TO, "{record}");
    println!(
        "promotion: pending decision {:?} after the loss, writes resumed {:?} after approval ({:?} after the loss)",
        decided_at - lost_at,
        resumed_at - approved_at,
        resumed_at - lost_at
    );
    let report = cluster
        .get_json(VIA, &format!("/v1/failover/lost-tail/{KS}"))
        .await
        .unwrap();
    assert_eq!(
        report["promotions"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert_eq!(report["promotions"][0]["recovered"], false, "{report}");
    let log = cluster.get_json(VIA, "/v1/failover/log").await.unwrap();
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "promoted"),
        "{log}"
    );

    // The old home returns: fenced, it rejoins the new epoch and hands over its tail.
    for id in cluster.in_region(HOME) {
        cluster.node_mut(id).start();
    }
    let old = cluster.in_region(HOME)[0];
    let report = eventually("the exact lost tail", Duration::from_secs(60), || async {
        let r = cluster
            .get_json(VIA, &format!("/v1/failover/lost-tail/{KS}"))
            .await?;
        (r["promotions"][0]["recovered"] == true).then_some(r)
    })
    .await;
    // Writes through the old home after its return: whatever is acknowledged is in the new
    // epoch (it reads back through us-west-2).
    let mut through_old = BTreeMap::new();
    for i in 0..30 {
        let (k, v) = (format!("old{i}"), format!("o{i}"));
        if cluster.put(old, KS, &k, &v).await.is_ok() {
            through_old.insert(k, v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    // RPO honesty: every acknowledged write that is gone is in the reported tail.
    let acked = acked.lock().unwrap().clone();
    let mut lost = BTreeSet::new();
    for (k, (v, _)) in &acked {
        let got = eventually(
            &format!("a read of {k}"),
            Duration::from_secs(30),
            || async { cluster.get(VIA, KS, k).await.ok() },
        )
        .await;
        match got {
            Some(g) => assert_eq!(&g, v, "{k} changed"),
            None => {
                lost.insert(k.clone());
            }
        }
    }
    let tail_keys: BTreeSet<String> = report["promotions"][0]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["recovered"]["entries"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| e["key"].as_str().map(str::to_string))
        .collect();
    let reported = report["promotions"][0]["lost_writes"].as_u64().unwrap();
    println!(
        "lost tail: {} acknowledged writes lost, {reported} reported (at least {} known at promotion); {} writes acknowledged in all",
        lost.len(),
        report["promotions"][0]["lost_entries_at_least"],
        acked.len()
    );
    assert!(
        lost.is_subset(&tail_keys),
        "acknowledged writes lost but not reported: {:?}",
        lost.difference(&tail_keys).collect::<Vec<_>>()
    );
    assert!(lost.len() as u64 <= reported, "{report}");
    // Nothing of the tail was merged back.
    for k in &tail_keys {
        if !acked.contains_key(k) {
            continue;
        }
        assert!(lost.contains(k), "{k} is in the lost tail yet readable");
    }
    // Fencing: writes the old home acknowledged are in the new epoch.
    assert!(
        !through_old.is_empty(),
        "the returned old home forwards to the new epoch"
    );
    for (k, v) in &through_old {
        assert_eq!(
            cluster.get(VIA, KS, k).await.unwrap().as_deref(),
            Some(v.as_str())
        );
    }
    // The old home's nodes are learners of the new epoch.
    eventually(
        "the old home follows the new epoch",
        Duration::from_secs(30),
        || async {
            let c = cluster.get_json(old, "/v1/cluster").await?;
            let shards: Vec<&Value> = c["shards"]
                .as_array()?
                .iter()
                .filter(|s| s["keyspace"] == KS)
                .collect();
            shards
                .iter()
                .all(|s| {
                    s["leader_region"] == TO
                        && s["raft_voters"]
                            .as_array()
                            .is_some_and(|v| !v.iter().any(|id| id.as_u64() == Some(old)))
                })
                .then_some(())
        },
    )
    .await;
}
