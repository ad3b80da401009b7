//! Residency, proven on bytes: canary values written to keyspaces limited to two regions (an
//! async keyspace over us-east-1 and us-west-2, and a sync `survive = "zone"` keyspace homed in
//! us-east-1 with learners in us-west-2) never reach the third region, eu-west-1: neither any
//! file under its node's data directory nor any frame its node read from a peer (captured with
//! `capture_frames`) holds a canary's bytes. Positive controls make the scan able to fail: the
//! canaries are found in us-east-1's data directory and in the frames us-west-2's node read.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, Cluster, NodeTweak};
use serde_json::json;

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The canaries found in `paths`' bytes, with the file each was found in.
fn found(paths: &[std::path::PathBuf], canaries: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in paths {
        let bytes = std::fs::read(p).unwrap_or_default();
        for c in canaries {
            if holds(&bytes, c.as_bytes()) {
                out.push((c.clone(), p.display().to_string()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_region_keyspaces_never_reach_the_third_region() {
    let captures = tempfile::tempdir().unwrap();
    let capture = |id: u64| captures.path().join(format!("frames-{id}.bin"));
    // us-east-1: nodes 1-3, us-west-2: node 4, eu-west-1: node 5.
    let cluster = Cluster::start_with(&[(REGIONS[0], 3), (REGIONS[1], 1), (REGIONS[2], 1)], |id| {
        NodeTweak {
            extra_config: format!("capture_frames = \"{}\"\n", capture(id).display()),
            ..Default::default()
        }
    });
    cluster.wait_joined(1).await;
    for policy in [
        json!({"name": "eu_free_async", "replication": "async", "regions": [REGIONS[0], REGIONS[1]]}),
        json!({"name": "eu_free_sync", "replication": "sync", "survive": "zone",
               "home_region": REGIONS[0], "regions": [REGIONS[0], REGIONS[1]], "shards": 2}),
    ] {
        let r = cluster.create_keyspace(1, policy.clone()).await;
        assert!(
            r.status().is_success(),
            "{policy}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let nonce = format!("{:016x}", rand::random::<u64>());
    let mut canaries = Vec::new();
    for i in 0..20 {
        for (ks, via) in [
            ("eu_free_async", if i % 2 == 0 { 1 } else { 4 }),
            ("eu_free_sync", 1),
        ] {
            let canary = format!("CANARY-{nonce}-{ks}-{i}");
            eventually(
                &format!("writing {canary}"),
                Duration::from_secs(30),
                || async { cluster.put(via, ks, &format!("k{i}"), &canary).await.ok() },
            )
            .await;
            canaries.push(canary);
        }
    }
    // Everything has reached us-west-2 (the learners of the sync keyspace, the async copy).
    for i in 0..20 {
        for ks in ["eu_free_async", "eu_free_sync"] {
            let want = format!("CANARY-{nonce}-{ks}-{i}");
            eventually(
                &format!("{want} in us-west-2"),
                Duration::from_secs(30),
                || async {
                    let v = cluster
                        .http
                        .get(
                            cluster
                                .node(4)
                                .url(&format!("/v1/kv/{ks}/k{i}?consistency=eventual")),
                        )
                        .send()
                        .await
                        .ok()?;
                    let text = v.text().await.ok()?;
                    (text == want).then_some(())
                },
            )
            .await;
        }
    }

    // eu-west-1: nothing, in its data directory or on its wire.
    let mut eu = files(&cluster.data_dir(5));
    eu.push(capture(5));
    let leaked = found(&eu, &canaries);
    assert!(
        leaked.is_empty(),
        "canaries of keyspaces limited to us-east-1 and us-west-2 reached eu-west-1: {leaked:?}"
    );
    let eu_bytes: u64 = eu
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    assert!(
        std::fs::metadata(capture(5)).map_or(0, |m| m.len()) > 0,
        "eu-west-1's node read frames (the capture works)"
    );
    // Positive controls: the scan finds what is there.
    let home = found(&files(&cluster.data_dir(1)), &canaries);
    assert!(
        !home.is_empty(),
        "the canaries are stored in us-east-1's data directory"
    );
    let wire = found(&[capture(4)], &canaries);
    assert!(
        wire.len() >= canaries.len() / 2,
        "us-west-2's node read the canaries off the wire ({} of {})",
        wire.len(),
        canaries.len()
    );
    eprintln!(
        "residency: {} canaries; eu-west-1 scanned {} files, {eu_bytes} bytes: none found; found in us-east-1's files {} times, in us-west-2's frames {} times",
        canaries.len(),
        eu.len(),
        home.len(),
        wire.len()
    );
}
