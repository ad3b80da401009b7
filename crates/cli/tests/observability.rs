//! What an operator sees: `/metrics` in the Prometheus text format (checked by `promtool check
//! metrics` when it is installed), replication lag, clock offsets and failovers with their RTO,
//! and the web console rendered by headless Chromium (when it is installed).
//!
//! `.ci/run` installs promtool and Chromium and sets `MERIDIAN_REQUIRE_TOOLS=1`, so there a
//! missing tool fails the test instead of skipping that part.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::{json, Value};

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

/// The path of `tool` when it can be run here. A missing tool fails the test under
/// `MERIDIAN_REQUIRE_TOOLS=1` and is reported as skipped otherwise.
fn tool(candidates: &[&str]) -> Option<String> {
    for c in candidates {
        if Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return Some(c.to_string());
        }
    }
    let required = std::env::var("MERIDIAN_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "none of {candidates:?} is installed; .ci/run installs them (apt-get install prometheus chromium)"
    );
    eprintln!("SKIPPED: none of {candidates:?} is installed; that part of the test did not run");
    None
}

/// `promtool check metrics` on `text`: its complaints, empty when it accepts the text.
fn promtool_complaints(promtool: &str, text: &str) -> String {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        String::new()
    } else {
        complaints
    }
}

/// The page at `url` after its scripts ran, as headless Chromium renders it.
fn rendered_dom(chromium: &str, url: &str, profile: &Path) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .expect("chromium starts");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<svg id="...">` element of `dom`, up to its end.
fn svg_of(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id} in the console:\n{dom}"));
    let end = dom[start..].find("</svg>").map_or(dom.len(), |e| start + e);
    dom[start..end].to_string()
}

/// The value of attribute `name` in the element text `el` (empty: absent).
fn attr(el: &str, name: &str) -> String {
    el.find(&format!("{name}=\""))
        .map(|i| {
            let rest = &el[i + name.len() + 2..];
            rest[..rest.find('"').unwrap_or(rest.len())].to_string()
        })
        .unwrap_or_default()
}

async fn metrics(cluster: &Cluster, id: u64) -> Option<String> {
    let r = cluster
        .http
        .get(cluster.node(id).url("/metrics"))
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

// Goal: the metrics, the lag matrix, clock offsets and failover accounting are real and
// readable by standard tools. Method: a 3-region cluster of real processes takes writes, is
// scraped and rendered, then loses its home-region node; the new leader must count a failover
// with an RTO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_console_and_failover_accounting() {
    let mut cluster = Cluster::start(&[(REGIONS[0], 1), (REGIONS[1], 1), (REGIONS[2], 1)]);
    cluster.wait_joined(1).await;
    let policy =
        json!({"name": "obs", "home_region": "us-east-1", "regions": REGIONS, "shards": 2});
    let r = cluster.create_keyspace(2, policy).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    eventually(
        "leaders in the home region",
        Duration::from_secs(60),
        || async {
            let l = cluster.leader_regions(1, "obs").await?;
            (l.len() == 2 && l.iter().all(|r| r.as_deref() == Some("us-east-1"))).then_some(())
        },
    )
    .await;
    for i in 0..20 {
        let key = format!("k{i}");
        eventually("a put succeeds", Duration::from_secs(30), || async {
            cluster.put(1, "obs", &key, "v").await.ok()
        })
        .await;
        cluster.get(2, "obs", &key).await.unwrap();
    }

    // Every family the issue names is exported, with the labels it names.
    let text = eventually(
        "the metrics show lag and clock offsets",
        Duration::from_secs(30),
        || async {
            let t = metrics(&cluster, 1).await?;
            let wanted = [
                "meridian_request_duration_seconds_bucket{",
                "op=\"put\"",
                "serving_region=\"us-east-1\"",
                "consistency=\"linearizable\"",
                "meridian_replication_lag_entries{",
                "meridian_clock_offset_seconds{",
                "meridian_peer_rtt_seconds{",
                "meridian_fsync_seconds_bucket{",
                "meridian_group_commit_batch_size_bucket{",
                "meridian_leaders{",
            ];
            wanted.iter().all(|w| t.contains(w)).then_some(t)
        },
    )
    .await;
    assert!(
        text.contains("dest_region=\"us-west-2\"") && text.contains("source_region=\"us-east-1\""),
        "lag is labelled by source and destination region:\n{text}"
    );
    // Followers measure how stale their applied state may be.
    let follower = eventually(
        "a follower exports its lag",
        Duration::from_secs(30),
        || async {
            let t = metrics(&cluster, 2).await?;
            t.contains("meridian_replication_lag_seconds{").then_some(t)
        },
    )
    .await;
    if let Some(promtool) = tool(&["promtool"]) {
        for t in [&text, &follower] {
            let complaints = promtool_complaints(&promtool, t);
            assert!(
                complaints.is_empty(),
                "promtool check metrics: {complaints}"
            );
        }
    }

    // The lag matrix and peers, as the console reads them.
    let c: Value = cluster.get_json(2, "/v1/cluster").await.unwrap();
    let lag = c["lag"].as_array().unwrap();
    assert!(
        lag.iter()
            .any(|l| l["source_region"] == "us-east-1" && l["dest_region"] == "eu-west-1"),
        "the lag matrix has the us-east-1 -> eu-west-1 cell: {lag:?}"
    );
    let peers = c["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "node 2 probes both peers: {peers:?}");
    // Loopback round trips under the WAN model are at least the us-west-2 links' RTT.
    assert!(
        peers.iter().all(|p| p["rtt_ms"].as_f64().unwrap() >= 60.0),
        "{peers:?}"
    );

    if let Some(chromium) = tool(&["chromium", "chromium-browser"]) {
        let profile = cluster.path().join("chromium-profile");
        let dom = rendered_dom(&chromium, &cluster.node(3).url("/"), &profile);
        for region in REGIONS {
            assert!(
                dom.contains(&format!("data-region=\"{region}\"")),
                "the console shows region {region}:\n{dom}"
            );
        }
        assert!(
            dom.contains("<td>obs</td><td>0</td><td>us-east-1</td><td>1</td><td>us-east-1</td>"),
            "the console shows shard 0's leader (node 1 in us-east-1):\n{dom}"
        );
        assert!(
            dom.contains("data-lag=\"us-east-1|us-west-2\">"),
            "the console draws the lag matrix:\n{dom}"
        );
        // The charts and the region graph are drawn, and their data moves with the load.
        for chart in ["chart-tput", "chart-lag"] {
            let svg = svg_of(&dom, chart);
            assert!(svg.contains("<path"), "chart {chart} has a line:\n{svg}");
        }
        svg_of(&dom, "chart-read");
        assert!(
            dom.contains("data-link=\"us-east-1|us-west-2\"") && dom.contains("rtt "),
            "the region graph labels links with round trips:\n{}",
            svg_of(&dom, "graph")
        );
        let before = attr(&svg_of(&dom, "chart-tput"), "data-requests-total");
        for i in 20..40 {
            let key = format!("k{i}");
            eventually("a put succeeds", Duration::from_secs(30), || async {
                cluster.put(1, "obs", &key, "v").await.ok()
            })
            .await;
        }
        // Node 3 learns node 1's counts with its next probe.
        eventually(
            "node 3 sees the new writes",
            Duration::from_secs(30),
            || async {
                let c = cluster.get_json(3, "/v1/cluster").await?;
                let us = c["region_requests"]
                    .as_array()?
                    .iter()
                    .find(|r| r["region"] == "us-east-1")?
                    .clone();
                (us["writes_total"].as_u64()? >= 40).then_some(())
            },
        )
        .await;
        let dom2 = rendered_dom(&chromium, &cluster.node(3).url("/"), &profile);
        let after = attr(&svg_of(&dom2, "chart-tput"), "data-requests-total");
        assert!(
            after.parse::<u64>().unwrap() > before.parse::<u64>().unwrap(),
            "the throughput chart's data moved with 20 more writes: {before} then {after}"
        );
        let write = svg_of(&dom2, "chart-write");
        assert!(
            write.contains("<path") && attr(&write, "data-last").contains("us-east-1"),
            "the write latency chart draws the writes just made:\n{write}"
        );
    }

    // Losing the home region: a surviving node takes over and accounts for the failover.
    cluster.node_mut(1).kill();
    let failover = eventually(
        "a failover is recorded",
        Duration::from_secs(60),
        || async {
            for id in [2, 3] {
                let c = cluster.get_json(id, "/v1/cluster").await?;
                let event = c["events"]
                    .as_array()?
                    .iter()
                    .find(|e| e["kind"] == "failover" && e["keyspace"] == "obs" && e["to"] == id)
                    .cloned();
                if let Some(e) = event {
                    return Some((id, e));
                }
            }
            None
        },
    )
    .await;
    let (new_leader, event) = failover;
    let rto_ms = event["rto_ms"].as_u64().expect("the failover has an RTO");
    // Nobody can take over before the election timeout (1 s by default) has passed.
    assert!(rto_ms >= 1000, "RTO {rto_ms} ms: {event}");
    let text = metrics(&cluster, new_leader).await.unwrap();
    assert!(
        text.contains("meridian_failovers_total{") && text.contains("from_region=\"us-east-1\""),
        "the new leader counts the failover:\n{text}"
    );
    assert!(
        text.contains("meridian_failover_rto_seconds_bucket{"),
        "{text}"
    );
}
