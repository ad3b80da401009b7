//! An async keyspace across three real processes (one per region) on loopback under the WAN
//! model: bad policies are refused with messages; writes are accepted in every region; a
//! session reads its own writes from another region; eu-west-1 is cut off through the admin
//! fault endpoint while every region keeps writing; after the heal every region holds the same
//! state and every acknowledged write (or a higher version) is in every region; a SIGKILL of a
//! destination's leader while a source ships to it loses nothing.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::json;

const KS: &str = "carts";
const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

type Version = (u64, u32, u64);

fn parse_version(v: &str) -> Option<Version> {
    let mut p = v.split('.');
    Some((
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
        u64::from_str_radix(p.next()?, 16).ok()?,
    ))
}

struct Client {
    http: reqwest::Client,
    session: String,
}

impl Client {
    fn new() -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
            session: String::new(),
        }
    }

    fn keep(&mut self, r: &reqwest::Response) {
        if let Some(s) = r.headers().get("meridian-session") {
            self.session = s.to_str().unwrap().to_string();
        }
    }

    async fn put(
        &mut self,
        cluster: &Cluster,
        node: u64,
        key: &str,
        value: &str,
    ) -> Result<Version, String> {
        let r = self
            .http
            .put(cluster.node(node).url(&format!("/v1/kv/{KS}/{key}")))
            .header("meridian-session", &self.session)
            .body(value.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        self.keep(&r);
        if !r.status().is_success() {
            return Err(format!(
                "{}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
        }
        let v = r
            .headers()
            .get("x-meridian-version")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_version);
        v.ok_or_else(|| "no x-meridian-version on an async write".to_string())
    }

    /// (status, value, version) of a read with `consistency`.
    async fn get(
        &mut self,
        cluster: &Cluster,
        node: u64,
        key: &str,
        consistency: &str,
    ) -> (u16, Option<String>, Option<Version>) {
        let r = self
            .http
            .get(
                cluster
                    .node(node)
                    .url(&format!("/v1/kv/{KS}/{key}?consistency={consistency}")),
            )
            .header("meridian-session", &self.session)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let status = r.status().as_u16();
        let version = r
            .headers()
            .get("x-meridian-version")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_version);
        let body = r.text().await.unwrap_or_default();
        (status, (status == 200).then_some(body), version)
    }
}

async fn state(cluster: &Cluster, node: u64) -> Option<BTreeMap<String, String>> {
    let c = cluster
        .get_json(
            node,
            &format!("/v1/kv/{KS}?limit=10000&consistency=eventual"),
        )
        .await?;
    Some(
        c["items"]
            .as_array()?
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap_or("").to_string(),
                    i["value"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
    )
}

async fn converged(cluster: &Cluster) -> Option<BTreeMap<String, String>> {
    let a = state(cluster, 1).await?;
    for n in 2..=3 {
        if state(cluster, n).await? != a {
            return None;
        }
    }
    Some(a)
}

/// Every acknowledged write has, in every region, its version or a higher one.
async fn assert_nothing_lost(cluster: &Cluster, acked: &BTreeMap<String, Version>) {
    let mut reader = Client::new();
    for (key, version) in acked {
        for node in 1..=3 {
            let (_, _, v) = reader.get(cluster, node, key, "eventual").await;
            assert!(
                v.is_some_and(|v| v >= *version),
                "acknowledged write of {key:?} (version {version:?}) lost at node {node}: it holds {v:?}\n{}",
                cluster.logs()
            );
        }
    }
}

// Goal: the async keyspace's promises across real processes, as the module doc says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_regions_write_locally_converge_after_a_cut_and_survive_sigkill() {
    let mut cluster = Cluster::start(&[(REGIONS[0], 1), (REGIONS[1], 1), (REGIONS[2], 1)]);
    cluster.wait_joined(1).await;

    // Bad input: each refused with a 4xx that names what was wrong.
    let base = json!({"name": KS, "replication": "async", "regions": REGIONS});
    for (field, value, expect) in [
        ("conflict", json!("newest"), "lww"),
        ("on_lag_budget", json!("panic"), "throttle"),
        ("lag_budget_ms", json!(-5), "lag_budget_ms"),
        ("home_region", json!("us-east-1"), "home_region"),
        ("read", json!("linearizable"), "linearizable"),
    ] {
        let mut p = base.clone();
        p[field] = value;
        let r = cluster.create_keyspace(1, p).await;
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!((400..500).contains(&status), "{field}: {status} {body}");
        assert!(body.contains(expect), "{field}: {body}");
    }
    let mut policy = base.clone();
    policy["shards"] = json!(2);
    let r = cluster.create_keyspace(1, policy).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    eventually(
        "every region's groups have leaders",
        Duration::from_secs(60),
        || async {
            for n in 1..=3u64 {
                let c = cluster.get_json(n, "/v1/cluster").await?;
                let led = c["shards"]
                    .as_array()?
                    .iter()
                    .filter(|s| {
                        s["keyspace"] == KS
                            && s["region"] == REGIONS[n as usize - 1]
                            && !s["leader"].is_null()
                    })
                    .count();
                (led == 2).then_some(())?;
            }
            Some(())
        },
    )
    .await;

    // Writes in every region; a session reads each write from another region.
    let mut acked: BTreeMap<String, Version> = BTreeMap::new();
    let mut client = Client::new();
    for i in 0..30 {
        let writer = (i % 3) as u64 + 1;
        let reader = (i + 1) % 3 + 1;
        let key = format!("k{}", i % 10);
        let value = format!("v{i}");
        let version = client
            .put(&cluster, writer, &key, &value)
            .await
            .expect("a local write in a healthy cluster");
        acked.insert(key.clone(), version);
        let (status, got, seen) = client.get(&cluster, reader as u64, &key, "session").await;
        assert_eq!(status, 200, "session read of {key} from node {reader}");
        assert!(seen.is_some_and(|s| s >= version), "read-your-writes across regions: wrote {value:?} ({version:?}) at node {writer}, read {got:?} ({seen:?}) at node {reader}");
    }

    // Bounded-staleness reads: every region's replica vouches for its staleness (the other
    // regions' leaders' promises arrive with shipping, or on their own when idle).
    let http = reqwest::Client::new();
    for node in 1..=3u64 {
        let r = http
            .get(
                cluster
                    .node(node)
                    .url(&format!("/v1/kv/{KS}/k1?consistency=bounded:5000")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "bounded:5000 read at node {node}");
        let staleness: u64 = r
            .headers()
            .get("x-meridian-staleness-ms")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .expect("a bounded read reports its staleness");
        assert!(
            staleness <= 5000,
            "node {node} served {staleness} ms stale under a 5000 ms bound"
        );
    }

    // eu-west-1 cut off; every region keeps accepting writes.
    cluster
        .set_faults_everywhere(&common::cut_off(REGIONS[2], &REGIONS, true))
        .await;
    let mut during = Client::new();
    for i in 0..30 {
        let node = (i % 3) as u64 + 1;
        let key = format!("k{}", i % 10);
        let version = during
            .put(&cluster, node, &key, &format!("cut{i}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "a write in {} during the cut failed: {e}",
                    REGIONS[node as usize - 1]
                )
            });
        let e = acked.entry(key).or_insert(version);
        *e = (*e).max(version);
    }
    // Cut off, eu-west-1 cannot vouch for the other regions' writes: a tight bound is refused
    // there once the last promises it has are older than the bound (polled up to 10 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = http
            .get(
                cluster
                    .node(3)
                    .url(&format!("/v1/kv/{KS}/k1?consistency=bounded:300")),
            )
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        if status == 503 {
            assert!(body.contains("staleness bound of 300 ms"), "{body}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "a bounded:300 read in the cut-off region was still served after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    cluster
        .set_faults_everywhere(&common::cut_off(REGIONS[2], &REGIONS, false))
        .await;
    let finals = eventually(
        "every region holds the same state after the heal",
        Duration::from_secs(30),
        || converged(&cluster),
    )
    .await;
    assert_eq!(finals.len(), 10, "{finals:?}");
    assert_nothing_lost(&cluster, &acked).await;

    // SIGKILL of the destination (eu-west-1's only node, so its leader) while us-east-1 ships.
    let mut shipper_side = Client::new();
    for i in 0..60 {
        if i == 20 {
            cluster.node_mut(3).kill();
        }
        if i == 40 {
            cluster.node_mut(3).start();
        }
        let key = format!("s{}", i % 25);
        let version = shipper_side
            .put(&cluster, 1, &key, &format!("s{i}"))
            .await
            .expect("us-east-1 writes locally whatever eu-west-1 does");
        let e = acked.entry(key).or_insert(version);
        *e = (*e).max(version);
    }
    eventually(
        "every region holds the same state after the restart",
        Duration::from_secs(60),
        || converged(&cluster),
    )
    .await;
    assert_nothing_lost(&cluster, &acked).await;
    let c = cluster.get_json(1, "/v1/cluster").await.unwrap();
    assert!(
        c["async_lag"].as_array().is_some_and(|l| !l.is_empty()),
        "async lag is reported: {c}"
    );
}
