//! A 3-region cluster of real processes started from config files on loopback, under the WAN
//! model: writes and linearizable reads from every region, leaders kept in the home region,
//! the SIGKILL of every home-region node, and a restart of every node, with no acknowledged
//! write lost at any point.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{eventually, Cluster, NodeTweak};
use serde_json::json;

const KS: &str = "orders";
const HOME: &str = "us-east-1";
const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
/// How long writes may be unavailable after the home region dies: elections take a few
/// election timeouts (1-1.8 s) plus WAN round trips; 30 s leaves room for a loaded CI machine.
const RTO_MAX: Duration = Duration::from_secs(30);

async fn verify_all(cluster: &Cluster, via: u64, acked: &BTreeMap<String, String>) {
    for (k, v) in acked {
        let got = eventually(
            &format!("a linearizable read of {k}"),
            Duration::from_secs(30),
            || async { cluster.get(via, KS, k).await.ok() },
        )
        .await;
        assert_eq!(
            got.as_deref(),
            Some(v.as_str()),
            "acknowledged write {k} lost or changed\n{}",
            cluster.logs()
        );
    }
}

// Goal: the foundation's end-to-end promise: local-region consensus placement, reads and writes
// from every region, and RPO 0 through the loss of the home region and a full restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_survives_home_region_loss_and_restart() {
    // A 10 s hold-down (30 s by default) before leaders return to a region that failed.
    let mut cluster =
        Cluster::start_with(&[(REGIONS[0], 2), (REGIONS[1], 2), (REGIONS[2], 2)], |_| {
            NodeTweak {
                extra_config: "failover.holddown_ms = 10000\n".into(),
                ..Default::default()
            }
        });
    cluster.wait_joined(1).await;
    let r = cluster
        .create_keyspace(
            1,
            json!({"name": KS, "replication": "sync", "survive": "region", "home_region": HOME,
                                    "regions": REGIONS, "shards": 4}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    eventually(
        "every shard leader is in the home region",
        Duration::from_secs(60),
        || async {
            let regions = cluster.leader_regions(1, KS).await?;
            (regions.len() == 4 && regions.iter().all(|r| r.as_deref() == Some(HOME))).then_some(())
        },
    )
    .await;

    // Writes and linearizable reads through every node of every region.
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    for n in &cluster.nodes {
        for i in 0..5 {
            let (k, v) = (format!("n{}-k{i}", n.id), format!("v{i}"));
            let r = cluster.put(n.id, KS, &k, &v).await.expect("put");
            assert!(
                r.headers().contains_key("x-meridian-region"),
                "responses say where they were served"
            );
            acked.insert(k, v);
        }
    }
    for n in &cluster.nodes {
        for (k, v) in acked.iter().take(6) {
            assert_eq!(
                cluster.get(n.id, KS, k).await.unwrap().as_deref(),
                Some(v.as_str()),
                "read of {k} via node {}",
                n.id
            );
        }
    }

    // Kill the home region; clients in the other regions keep writing.
    let survivors: Vec<u64> = cluster
        .nodes
        .iter()
        .filter(|n| n.region != HOME)
        .map(|n| n.id)
        .collect();
    let killed_at = Instant::now();
    for id in cluster.in_region(HOME) {
        cluster.node_mut(id).kill();
    }
    // Every shard must accept a write started after the kill.
    let mut recovered = BTreeSet::new();
    let mut seq = 0;
    while recovered.len() < 4 {
        assert!(
            killed_at.elapsed() < RTO_MAX,
            "writes did not resume on every shard within {RTO_MAX:?}\n{}",
            cluster.logs()
        );
        let via = survivors[seq % survivors.len()];
        let (k, v) = (format!("after-kill-{seq}"), format!("v{seq}"));
        if cluster.put(via, KS, &k, &v).await.is_ok() {
            recovered.insert(meridian_types::shard_for_key(k.as_bytes(), 4));
            acked.insert(k, v);
        }
        seq += 1;
    }
    println!(
        "writes resumed on every shard {:?} after the home region was killed",
        killed_at.elapsed()
    );
    verify_all(&cluster, survivors[0], &acked).await;

    // Restart every node (the survivors by SIGKILL too): every acknowledged write is still there.
    let c = &mut cluster;
    for n in c.nodes.iter_mut() {
        n.kill();
    }
    for n in c.nodes.iter_mut() {
        n.start();
    }
    eventually(
        "every shard has a leader again after the restart",
        Duration::from_secs(60),
        || async {
            let regions = c.leader_regions(3, KS).await?;
            (regions.len() == 4 && regions.iter().all(|r| r.is_some())).then_some(())
        },
    )
    .await;
    verify_all(c, 1, &acked).await;
    eventually(
        "leaders return to the home region",
        Duration::from_secs(60),
        || async {
            let regions = c.leader_regions(3, KS).await?;
            (regions.len() == 4 && regions.iter().all(|r| r.as_deref() == Some(HOME))).then_some(())
        },
    )
    .await;
}
