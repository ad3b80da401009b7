//! A witness region across real processes on loopback under the WAN model: two data nodes in
//! us-east-1, two in us-west-2, one data node and one witness (`role = "witness"`) in
//! eu-west-1. A `survive = "region"` keyspace with `witness_region = "eu-west-1"` places its
//! third voter on the witness (no learner there); a keyspace without one places it on the data
//! node. Home-region writes of both are timed side by side (printed, not asserted). Then each
//! data region in turn is killed: writes to the witnessed keyspace continue through the other
//! one, every acknowledged write reads back, and the witness never leads.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{eventually, Cluster, NodeTweak};
use serde_json::{json, Value};

const WITNESSED: &str = "witnessed";
const SPREAD: &str = "spread";
const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
/// Node ids: 1-2 us-east-1, 3-4 us-west-2, 5 eu-west-1 (data), 6 eu-west-1 (witness).
const WITNESS: u64 = 6;

async fn leaders(cluster: &Cluster, via: u64, ks: &str) -> Option<Vec<u64>> {
    let c = cluster.get_json(via, "/v1/cluster").await?;
    let l: Vec<u64> = c["shards"]
        .as_array()?
        .iter()
        .filter(|s| s["keyspace"] == ks)
        .map(|s| s["leader"].as_u64())
        .collect::<Option<_>>()?;
    (!l.is_empty()).then_some(l)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

// Goal: issue 11 item 1: two data regions and a witness region survive the loss of either data
// region with nothing acknowledged lost, and the witness holds no data role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_region_votes_without_data_and_survives_either_data_region() {
    let mut cluster =
        Cluster::start_with(&[(REGIONS[0], 2), (REGIONS[1], 2), (REGIONS[2], 2)], |id| {
            NodeTweak {
                extra_config: if id == WITNESS {
                    "role = \"witness\"\n".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }
        });
    cluster.wait_joined(1).await;
    let nodes = cluster.get_json(1, "/v1/cluster").await.unwrap();
    let roles: BTreeMap<u64, String> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_u64().unwrap(),
                n["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(roles[&WITNESS], "witness", "{roles:?}");
    for (name, witness) in [(WITNESSED, Some(REGIONS[2])), (SPREAD, None)] {
        let mut p = json!({"name": name, "replication": "sync", "survive": "region",
                           "home_region": REGIONS[0], "regions": REGIONS, "shards": 2});
        if let Some(w) = witness {
            p["witness_region"] = json!(w);
        }
        let r = cluster.create_keyspace(1, p).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let described = cluster
        .get_json(1, &format!("/v1/keyspaces/{WITNESSED}"))
        .await
        .unwrap();
    for s in described["shards"].as_array().unwrap() {
        assert_eq!(s["witnesses"], json!([WITNESS]), "{described}");
        assert!(
            !s["learners"].as_array().unwrap().contains(&json!(WITNESS))
                && !s["learners"].as_array().unwrap().contains(&json!(5)),
            "no data replica in the witness region: {described}"
        );
    }
    let spread = cluster
        .get_json(1, &format!("/v1/keyspaces/{SPREAD}"))
        .await
        .unwrap();
    for s in spread["shards"].as_array().unwrap() {
        assert!(
            !s["voters"].as_array().unwrap().contains(&json!(WITNESS)),
            "{spread}"
        );
    }
    for ks in [WITNESSED, SPREAD] {
        eventually(
            &format!("{ks} has leaders"),
            Duration::from_secs(60),
            || async {
                let l = leaders(&cluster, 1, ks).await?;
                l.iter().all(|l| [1, 2].contains(l)).then_some(())
            },
        )
        .await;
    }

    // Home-region writes of both keyspaces, interleaved (one WAN quorum each: the witness
    // region votes like a data region would).
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let (mut with_witness, mut without) = (Vec::new(), Vec::new());
    for i in 0..60 {
        for (ks, times) in [(WITNESSED, &mut with_witness), (SPREAD, &mut without)] {
            let (k, v) = (format!("h{i}"), format!("v{i}"));
            let t = Instant::now();
            cluster.put(1, ks, &k, &v).await.unwrap();
            times.push(t.elapsed());
            if ks == WITNESSED {
                acked.insert(k, v);
            }
        }
    }
    println!(
        "home-region write p50: witness region {:?}, three data regions {:?}",
        median(with_witness),
        median(without)
    );

    // Lose each data region in turn; write through the other.
    for (lost, via) in [(REGIONS[0], 3u64), (REGIONS[1], 1u64)] {
        let down: Vec<u64> = cluster.in_region(lost);
        for id in &down {
            cluster.node_mut(*id).kill();
        }
        let started = Instant::now();
        let mut written = 0;
        while written < 30 {
            let (k, v) = (format!("{lost}-{written}"), format!("w{written}"));
            if cluster.put(via, WITNESSED, &k, &v).await.is_ok() {
                acked.insert(k, v);
                written += 1;
            } else {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "writes did not resume after losing {lost}\n{}",
                    cluster.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        println!(
            "lost {lost}: writes resumed through node {via} within {:?}",
            started.elapsed()
        );
        let l = leaders(&cluster, via, WITNESSED).await.unwrap_or_default();
        assert!(!l.contains(&WITNESS), "the witness leads: {l:?}");
        for id in &down {
            cluster.node_mut(*id).start();
        }
        eventually(
            "the lost region's nodes are back",
            Duration::from_secs(60),
            || async {
                let mut all = true;
                for id in &down {
                    all &= cluster.get_json(*id, "/v1/cluster").await.is_some();
                }
                all.then_some(())
            },
        )
        .await;
        // Let the returned voters catch up before the next region goes.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    for (k, v) in &acked {
        let got = eventually(
            &format!("a read of {k}"),
            Duration::from_secs(30),
            || async { cluster.get(1, WITNESSED, k).await.ok() },
        )
        .await;
        assert_eq!(
            got.as_deref(),
            Some(v.as_str()),
            "acknowledged write {k} lost"
        );
    }
    // Reads through the witness are forwarded (it serves nothing itself).
    let k = acked.keys().next().unwrap().clone();
    let got = cluster.get(WITNESS, WITNESSED, &k).await.unwrap();
    assert_eq!(got.as_deref(), Some(acked[&k].as_str()));
    let c: Value = cluster.get_json(WITNESS, "/v1/cluster").await.unwrap();
    assert!(c["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["keyspace"] == WITNESSED)
        .all(|s| s["leader"].as_u64() != Some(WITNESS)));
}
