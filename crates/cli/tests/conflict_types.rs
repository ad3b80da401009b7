//! Conflict types across three real processes (one per region) on loopback under the WAN
//! model: an operation that does not fit a keyspace's type is refused naming the type; an
//! overflowing increment is refused; while eu-west-1 is cut off, every region updates a counter,
//! a set, a multi-value register and an lww value; after the heal the counter holds the sum in
//! every region, the set holds the add that was concurrent with a remove, the register holds
//! both concurrent writes as siblings until a write with their context replaces them, and the
//! ledger of each region records the lww and mv conflicts under one id (the set's too, in at
//! least one region); `meridian conflicts` prints them. A sync counter counts in place.

mod common;

use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::{json, Value};

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

async fn send(
    http: &reqwest::Client,
    req: reqwest::RequestBuilder,
) -> (u16, String, reqwest::header::HeaderMap) {
    let _ = http;
    let r = req.send().await.expect("the node answers");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap_or_default(), headers)
}

/// The value of `key` at every node with an eventual read (404: `None`).
async fn everywhere(cluster: &Cluster, ks: &str, key: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for n in 1..=3u64 {
        let url = cluster
            .node(n)
            .url(&format!("/v1/kv/{ks}/{key}?consistency=eventual"));
        let r = cluster.http.get(url).send().await.unwrap();
        let ok = r.status().is_success();
        let body = r.text().await.unwrap_or_default();
        out.push(ok.then_some(body));
    }
    out
}

async fn ledger(cluster: &Cluster, node: u64, ks: &str) -> Vec<Value> {
    cluster
        .get_json(node, &format!("/v1/conflicts/{ks}?limit=1000"))
        .await
        .and_then(|c| c["conflicts"].as_array().cloned())
        .unwrap_or_default()
}

// Goal: the module doc's promises, each checked over HTTP (and the ledger also by the CLI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_keyspaces_merge_after_a_cut_and_record_their_conflicts() {
    let cluster = Cluster::start(&[(REGIONS[0], 1), (REGIONS[1], 1), (REGIONS[2], 1)]);
    cluster.wait_joined(1).await;
    let http = cluster.http.clone();
    for (name, conflict) in [
        ("views", "counter"),
        ("carts", "set"),
        ("docs", "mv"),
        ("profiles", "lww"),
    ] {
        let policy =
            json!({"name": name, "replication": "async", "regions": REGIONS, "conflict": conflict});
        let r = cluster.create_keyspace(1, policy).await;
        assert!(
            r.status().is_success(),
            "{name}: {}",
            r.text().await.unwrap()
        );
    }
    let sync = json!({"name": "hits", "home_region": REGIONS[0], "regions": REGIONS, "survive": "region", "conflict": "counter"});
    let r = cluster.create_keyspace(1, sync).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    let post =
        |node: u64, path: String, body: Value| http.post(cluster.node(node).url(&path)).json(&body);
    // The first update of each keyspace in each region, retried until its groups have leaders.
    for n in 1..=3u64 {
        eventually(
            "every region accepts counter updates",
            Duration::from_secs(60),
            || async {
                let (s, _, _) = send(
                    &http,
                    post(n, "/v1/kv/views/warmup/incr".into(), json!({"by": 1})),
                )
                .await;
                (s == 200).then_some(())
            },
        )
        .await;
        for (ks, path, body) in [
            ("carts", "/v1/kv/carts/warmup/set", json!({"add": ["w"]})),
            ("hits", "/v1/kv/hits/n/incr", json!({"by": 1})),
        ] {
            eventually(
                &format!("{ks} accepts updates"),
                Duration::from_secs(60),
                || async {
                    let (s, _, _) = send(&http, post(n, path.into(), body.clone())).await;
                    (s == 200).then_some(())
                },
            )
            .await;
        }
        for ks in ["docs", "profiles"] {
            eventually(
                &format!("{ks} accepts puts"),
                Duration::from_secs(60),
                // One key per region: the same key put in two regions at once would be a
                // genuine conflict, which the ledger assertions below do not expect.
                || async { cluster.put(n, ks, &format!("warmup-{n}"), "w").await.ok() },
            )
            .await;
        }
    }

    // Operations that do not fit the type: a 4xx naming the keyspace's type.
    for (req, names) in [
        (
            http.put(cluster.node(1).url("/v1/kv/views/x")).body("1"),
            "counter",
        ),
        (
            post(1, "/v1/kv/profiles/x/incr".into(), json!({"by": 1})),
            "lww",
        ),
        (
            post(1, "/v1/kv/views/x/set".into(), json!({"add": ["a"]})),
            "counter",
        ),
        (http.delete(cluster.node(1).url("/v1/kv/carts/x")), "set"),
        (
            post(1, "/v1/kv/views/x/incr".into(), json!({"by": "one"})),
            "by",
        ),
    ] {
        let (s, body, _) = send(&http, req).await;
        assert!((400..500).contains(&s), "{s} {body}");
        assert!(body.contains(names), "{body}");
    }
    let (s, _, _) = send(
        &http,
        post(1, "/v1/kv/views/big/incr".into(), json!({"by": i64::MAX})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, body, _) = send(
        &http,
        post(1, "/v1/kv/views/big/incr".into(), json!({"by": 1})),
    )
    .await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("64-bit"), "{body}");

    // A set member everyone has seen before the cut.
    let (s, _, _) = send(
        &http,
        post(1, "/v1/kv/carts/c1/set".into(), json!({"add": ["apple"]})),
    )
    .await;
    assert_eq!(s, 200);
    eventually(
        "the first member reached every region",
        Duration::from_secs(30),
        || async {
            let all = everywhere(&cluster, "carts", "c1").await;
            all.iter()
                .all(|v| v.as_deref() == Some(r#"["apple"]"#))
                .then_some(())
        },
    )
    .await;

    cluster
        .set_faults_everywhere(&common::cut_off(REGIONS[2], &REGIONS, true))
        .await;
    let mut expected = 0i64;
    for round in 0..5 {
        for n in 1..=3u64 {
            let by = (n as i64) * 10 - round;
            let (s, body, _) = send(
                &http,
                post(n, "/v1/kv/views/page/incr".into(), json!({"by": by})),
            )
            .await;
            assert_eq!(
                s,
                200,
                "an increment in {} during the cut: {body}",
                REGIONS[n as usize - 1]
            );
            expected += by;
        }
    }
    // eu-west-1 removes the member while us-east-1 adds it again and us-west-2 adds another.
    for (n, body) in [
        (3, json!({"remove": ["apple"]})),
        (1, json!({"add": ["apple"]})),
        (2, json!({"add": ["pear"]})),
    ] {
        let (s, b, _) = send(&http, post(n, "/v1/kv/carts/c1/set".into(), body)).await;
        assert_eq!(s, 200, "{b}");
    }
    for (n, v) in [(1, "us-draft"), (3, "eu-draft")] {
        cluster.put(n, "docs", "d", v).await.unwrap();
        cluster
            .put(n, "profiles", "u", &format!("{v}-name"))
            .await
            .unwrap();
    }
    cluster
        .set_faults_everywhere(&common::cut_off(REGIONS[2], &REGIONS, false))
        .await;

    eventually(
        "the counter holds the sum everywhere",
        Duration::from_secs(30),
        || async {
            let all = everywhere(&cluster, "views", "page").await;
            all.iter()
                .all(|v| v.as_deref() == Some(expected.to_string().as_str()))
                .then_some(())
        },
    )
    .await;
    eventually(
        "the set holds the concurrent add everywhere",
        Duration::from_secs(30),
        || async {
            let all = everywhere(&cluster, "carts", "c1").await;
            all.iter()
                .all(|v| v.as_deref() == Some(r#"["apple","pear"]"#))
                .then_some(())
        },
    )
    .await;
    let doc = eventually(
        "the register holds both drafts everywhere",
        Duration::from_secs(30),
        || async {
            let all = everywhere(&cluster, "docs", "d").await;
            let first: Value = serde_json::from_str(all[0].as_deref()?).ok()?;
            let mut sibs: Vec<String> = first["siblings"]
                .as_array()?
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            sibs.sort();
            (sibs == ["eu-draft", "us-draft"] && all.iter().all(|v| v == &all[0])).then_some(first)
        },
    )
    .await;
    let finals = eventually(
        "the lww value converged",
        Duration::from_secs(30),
        || async {
            let all = everywhere(&cluster, "profiles", "u").await;
            (all[0].is_some() && all.iter().all(|v| v == &all[0]))
                .then_some(all[0].clone().unwrap())
        },
    )
    .await;
    assert!(
        finals == "us-draft-name" || finals == "eu-draft-name",
        "{finals}"
    );

    // Both regions that wrote record the lww and mv conflicts, under one id each.
    for (ks, rule) in [("profiles", "lww"), ("docs", "mv")] {
        let ids = eventually(
            &format!("the {rule} conflict is in both writers' ledgers"),
            Duration::from_secs(30),
            || async {
                let mut ids = Vec::new();
                for n in [1u64, 3] {
                    let l = ledger(&cluster, n, ks).await;
                    let e = l.iter().find(|e| {
                        e["rule"] == rule && e["key"] == if ks == "docs" { "d" } else { "u" }
                    })?;
                    ids.push(e["id"].as_str()?.to_string());
                }
                Some(ids)
            },
        )
        .await;
        assert_eq!(ids[0], ids[1], "one conflict, one id in every region");
    }
    let set_conflicts: usize = {
        let mut n = 0;
        for node in 1..=3 {
            n += ledger(&cluster, node, "carts")
                .await
                .iter()
                .filter(|e| e["rule"] == "set" && e["outcome"] == "add_wins")
                .count();
        }
        n
    };
    assert!(
        set_conflicts >= 1,
        "the add that beat a concurrent remove is recorded"
    );
    // The console's source: each region's conflict totals and latest entries.
    let c = cluster.get_json(1, "/v1/cluster").await.unwrap();
    let profiles = c["conflicts"]
        .as_array()
        .and_then(|l| l.iter().find(|k| k["keyspace"] == "profiles"))
        .cloned()
        .unwrap_or_default();
    assert!(profiles["recorded"].as_u64().unwrap_or(0) >= 1, "{c}");
    assert_eq!(profiles["latest"][0]["rule"], "lww", "{profiles}");
    let lww: Vec<Value> = ledger(&cluster, 1, "profiles").await;
    assert!(
        lww.iter().all(|e| e["key"] == "u"),
        "only the concurrent writes: {lww:?}"
    );

    // A write with the read's context replaces both siblings, everywhere.
    let context = doc["context"].as_str().unwrap().to_string();
    let (s, body, _) = send(
        &http,
        http.put(cluster.node(2).url("/v1/kv/docs/d"))
            .header("meridian-context", &context)
            .body("merged"),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    eventually(
        "the resolving write replaced the siblings everywhere",
        Duration::from_secs(30),
        || async {
            let all = everywhere(&cluster, "docs", "d").await;
            all.iter()
                .all(|v| {
                    v.as_deref()
                        .is_some_and(|t| t.starts_with(r#"{"siblings":["merged"]"#))
                })
                .then_some(())
        },
    )
    .await;
    let (s, body, _) = send(
        &http,
        http.put(cluster.node(2).url("/v1/kv/docs/d"))
            .header("meridian-context", "zz")
            .body("x"),
    )
    .await;
    assert_eq!(s, 400, "{body}");

    // A retried increment with the same request id is applied once, on async and sync
    // counters alike; the retry is marked as replayed.
    for (ks, key) in [("views", "retry"), ("hits", "retry")] {
        for attempt in 0..3 {
            let (s, body, headers) = send(
                &http,
                post(1, format!("/v1/kv/{ks}/{key}/incr"), json!({"by": 5}))
                    .header("meridian-request-id", "req-42"),
            )
            .await;
            assert_eq!(s, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["value"], "5", "{ks} attempt {attempt}: {body}");
            assert_eq!(
                headers.contains_key("meridian-request-replayed"),
                attempt > 0,
                "{ks} attempt {attempt}"
            );
        }
        let (_, body, _) = send(
            &http,
            post(1, format!("/v1/kv/{ks}/{key}/incr"), json!({"by": 1}))
                .header("meridian-request-id", "req-43"),
        )
        .await;
        assert!(body.contains("\"6\""), "a new id applies: {body}");
    }

    // The sync counter counts in place (the warm-up added one per region).
    let (s, body, _) = send(
        &http,
        post(2, "/v1/kv/hits/n/incr".into(), json!({"by": 4})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        cluster.get(1, "hits", "n").await.unwrap().as_deref(),
        Some("7")
    );

    // The CLI prints the ledger.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["conflicts", "profiles", "--node", &cluster.node(1).http])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("lww") && text.contains("\"u\""), "{text}");
}
