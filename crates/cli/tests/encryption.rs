//! Encryption at rest across three real processes: canary values written through the API
//! never appear in plaintext in any file under any data directory, before and after a key
//! rotation (`meridian admin rotate-key`) and after the log has been compacted into a
//! snapshot; the rotation re-encrypts and retires the old key, the data stays readable, a
//! restart with the keyring works, and a node started with the wrong KEK refuses with a
//! clear error. A control shows the scan finds a canary that redb stores unencrypted.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Cluster, NodeTweak};
use serde_json::{json, Value};

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

/// Every file under `dir` holding `needle`.
fn files_with(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

fn scan_all(cluster: &Cluster, needle: &[u8]) -> Vec<String> {
    (1..=3)
        .flat_map(|id| files_with(&cluster.dir.path().join(format!("data{id}")), needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_never_reach_the_disk_in_plaintext() {
    // Control: the scan finds a value redb stores in the clear.
    let control = tempfile::tempdir().unwrap();
    {
        let e = meridian_storage_control(control.path());
        let mut b = meridian_storage::WriteBatch::default();
        b.put(
            meridian_storage::Table::Data,
            b"k".to_vec(),
            b"CONTROL-CANARY-7f3a".to_vec(),
        );
        e.commit(&[b]).unwrap();
    }
    assert!(!files_with(control.path(), b"CONTROL-CANARY-7f3a").is_empty());

    let secrets = tempfile::tempdir().unwrap();
    let kek = secrets.path().join("kek");
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["admin", "new-kek"])
        .output()
        .unwrap();
    std::fs::write(&kek, &out.stdout).unwrap();
    let k = kek.display().to_string();
    let mut cluster =
        Cluster::start_with(&[(REGIONS[0], 1), (REGIONS[1], 1), (REGIONS[2], 1)], |_| {
            NodeTweak {
                extra_config: format!("encryption.kek_file = \"{k}\"\n"),
                ..Default::default()
            }
        });
    cluster.wait_joined(1).await;
    let policy = json!({"name": "vault", "replication": "sync", "home_region": REGIONS[0],
                        "regions": REGIONS, "shards": 1});
    let r = cluster.create_keyspace(1, policy).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let canary = |i: usize| format!("CANARY-{i:05}-a91c");
    let write = |from: usize, to: usize| {
        let cluster = &cluster;
        async move {
            let mut tasks = futures::stream::iter(from..to)
                .map(|i| async move {
                    eventually("a write", Duration::from_secs(30), || async {
                        cluster
                            .put(1 + (i % 3) as u64, "vault", &format!("k{i}"), &canary(i))
                            .await
                            .ok()
                    })
                    .await;
                })
                .buffer_unordered(32);
            while tasks.next().await.is_some() {}
        }
    };
    use futures::StreamExt;
    write(0, 200).await;
    let hits = scan_all(&cluster, b"-a91c");
    assert!(hits.is_empty(), "plaintext canaries in {hits:?}");

    // Rotate on every node through the CLI; old values are re-sealed and the old key retired.
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "admin",
            "rotate-key",
            "--output",
            "json",
            "--node",
            &cluster.node(2).http,
        ])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated.as_array().unwrap().len(), 3, "{rotated}");
    for id in 1..=3 {
        eventually(
            "the old key is retired",
            Duration::from_secs(30),
            || async {
                let s = cluster.get_json(id, "/v1/admin/encryption").await?;
                (s["keys"] == json!([2]) && s["active_key"] == 2).then_some(())
            },
        )
        .await;
    }
    // Enough writes for a snapshot and a purged log (every 5000 entries).
    write(200, 5400).await;
    for id in 1..=3 {
        eventually(
            "the log was compacted into a snapshot",
            Duration::from_secs(30),
            || async {
                let c = cluster.get_json(id, "/v1/cluster").await?;
                let shard = c["shards"]
                    .as_array()?
                    .iter()
                    .find(|s| s["keyspace"] == "vault")?
                    .clone();
                (shard["snapshot_index"].as_u64()? > 0 && shard["purged_index"].as_u64()? > 0)
                    .then_some(())
            },
        )
        .await;
    }
    let hits = scan_all(&cluster, b"-a91c");
    assert!(
        hits.is_empty(),
        "plaintext canaries after rotation in {hits:?}"
    );
    for i in [0, 199, 5399] {
        let v = cluster
            .http
            .get(
                cluster
                    .node(3)
                    .url(&format!("/v1/kv/vault/k{i}?consistency=linearizable")),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(v, canary(i));
    }
    let m = cluster
        .http
        .get(cluster.node(1).url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("meridian_encryption_rotations_total"),
        "no rotation metric"
    );

    // A restart reads the keyring; a wrong KEK is refused, naming the fix.
    cluster.node_mut(3).kill();
    cluster.node_mut(3).start();
    eventually(
        "node 3 serves after a restart",
        Duration::from_secs(30),
        || async {
            let r = cluster
                .http
                .get(
                    cluster
                        .node(3)
                        .url("/v1/kv/vault/k7?consistency=linearizable"),
                )
                .send()
                .await
                .ok()?;
            (r.text().await.ok()? == canary(7)).then_some(())
        },
    )
    .await;
    cluster.node_mut(3).kill();
    let wrong = secrets.path().join("wrong-kek");
    std::fs::write(
        &wrong,
        Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["admin", "new-kek"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let cfg = std::fs::read_to_string(&cluster.node(3).config).unwrap();
    let bad = secrets.path().join("bad.toml");
    std::fs::write(&bad, cfg.replace(&k, &wrong.display().to_string())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["server", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not open"), "{err}");
}

fn meridian_storage_control(dir: &Path) -> Arc<dyn meridian_storage::Engine> {
    Arc::new(meridian_storage::RedbEngine::open(&dir.join("plain.redb")).unwrap())
}
