//! Tokens, roles and the audit log across three real processes (one per region) with
//! `[auth] enabled = true`: no token gets 401 and a message that says what to send; a reader
//! token cannot write (HTTP and gRPC), and is refused alike on a keyspace that exists and one
//! that does not; a writer token cannot create a keyspace or inject faults; a revoked token
//! stops working; every administrative request, allowed or denied, is in the audit log, which
//! verifies, and an exported copy edited, cut or reordered fails verification naming the entry.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{eventually, Cluster, NodeTweak};
use meridian_server::grpc::pb;
use reqwest::StatusCode;
use serde_json::{json, Value};

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

/// Runs the CLI with `args` against `node` as `token`; (exit success, stdout, stderr).
fn cli(node: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .env("MERIDIAN_NODE", node)
        .env("MERIDIAN_TOKEN", token)
        .env("RUST_LOG", "error")
        .output()
        .expect("run meridian");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("the node answers");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_roles_and_audit() {
    let secrets = tempfile::tempdir().unwrap();
    let root_file = secrets.path().join("root.token");
    let root = {
        let (ok, out, err) = cli("127.0.0.1:1", "", &["auth", "root-token"]);
        assert!(ok, "{err}");
        out.trim().to_string()
    };
    std::fs::write(&root_file, &root).unwrap();
    let cluster = Cluster::start_with(&[(REGIONS[0], 1), (REGIONS[1], 1), (REGIONS[2], 1)], |_| {
        NodeTweak {
            extra_config: format!(
                "auth.enabled = true\nauth.root_token_file = \"{}\"\n",
                root_file.display()
            ),
            ..Default::default()
        }
    });
    let http = &cluster.http;
    let url = |id: u64, path: &str| cluster.node(id).url(path);
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let put = reqwest::Method::PUT;

    // Open by default: health and metrics (probes and scrapers carry no token).
    eventually(
        "node 1 answers /healthz",
        Duration::from_secs(60),
        || async {
            let r = http.get(url(1, "/healthz")).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    let (s, _) = call(http, get.clone(), url(1, "/metrics"), None, None).await;
    assert_eq!(s, StatusCode::OK);
    // The console page itself is open (it holds no data) and asks for a token.
    let (s, page) = call(http, get.clone(), url(1, "/"), None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.as_str().unwrap_or_default().contains("token-input"));

    // No token, a malformed one, an unknown one: 401 with what to send.
    let (s, v) = call(http, get.clone(), url(1, "/v1/cluster"), None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(message(&v).contains("Authorization: Bearer"), "{v}");
    let (s, v) = call(
        http,
        get.clone(),
        url(1, "/v1/cluster"),
        Some("hunter2"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(message(&v).contains("mrd_"), "{v}");
    // The root token with its last secret digit changed.
    let last = if root.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &root[..root.len() - 1]);
    let (s, _) = call(
        http,
        get.clone(),
        url(1, "/v1/cluster"),
        Some(&forged),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Connections are bounded per client address before any token is looked at: the one
    // over the bound is closed unanswered, and a place frees when a connection closes.
    {
        use std::io::{Read, Write};
        let addr = cluster.node(1).http.clone();
        let held: Vec<std::net::TcpStream> = (0..meridian_server::conn_limit::PER_PEER_MAX)
            .map(|_| std::net::TcpStream::connect(&addr).unwrap())
            .collect();
        let probe = |addr: &str| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        };
        // The server admits the held connections as it accepts them; the next is refused.
        eventually(
            "the connection over the bound is refused",
            Duration::from_secs(10),
            || {
                let a = addr.clone();
                async move { (!probe(&a).starts_with("HTTP/1.1 200")).then_some(()) }
            },
        )
        .await;
        drop(held);
        eventually(
            "places free once connections close",
            Duration::from_secs(10),
            || {
                let a = addr.clone();
                async move { probe(&a).starts_with("HTTP/1.1 200").then_some(()) }
            },
        )
        .await;
    }

    // The root token is cluster-admin.
    eventually("every node joined", Duration::from_secs(60), || async {
        let (s, c) = call(http, get.clone(), url(1, "/v1/cluster"), Some(&root), None).await;
        (s.is_success() && c["nodes"].as_array()?.len() == 3).then_some(())
    })
    .await;
    let policy = json!({"name": "orders", "replication": "sync", "home_region": REGIONS[0],
                        "regions": REGIONS, "shards": 2});
    let (s, v) = call(
        http,
        post.clone(),
        url(1, "/v1/keyspaces"),
        Some(&root),
        Some(policy),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Tokens through the CLI (node 2), used at node 3.
    let n2 = cluster.node(2).http.clone();
    let create = |name: &str, grant: &str| {
        let (ok, out, err) = cli(
            &n2,
            &root,
            &["auth", "token", "create", "--name", name, "--grant", grant],
        );
        assert!(ok, "{err}");
        out.lines().last().unwrap().trim().to_string()
    };
    let reader = create("dashboards", "reader");
    let writer = create("orders-svc", "writer:orders*");
    assert!(reader.starts_with("mrd_") && writer.starts_with("mrd_"));
    let (ok, out, err) = cli(&n2, &root, &["auth", "token", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("dashboards") && out.contains("writer on orders*"),
        "{out}"
    );
    assert!(
        !out.contains(&reader[20..]),
        "a listing never shows a secret"
    );

    let kv = |id: u64, ks: &str, key: &str| url(id, &format!("/v1/kv/{ks}/{key}"));
    let put_as = |token: String, ks: &'static str| {
        let u = kv(3, ks, "k1");
        let put = put.clone();
        async move {
            let r = http
                .request(put, u)
                .bearer_auth(token)
                .body("v1")
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.text().await.unwrap_or_default())
        }
    };
    let (s, body) = eventually(
        "the writer's token works at node 3",
        Duration::from_secs(30),
        || {
            let f = put_as(writer.clone(), "orders");
            async move {
                let (s, b) = f.await;
                (s != StatusCode::UNAUTHORIZED).then_some((s, b))
            }
        },
    )
    .await;
    assert!(s.is_success(), "{s}: {body}");
    let (s, body) = put_as(reader.clone(), "orders").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let m = message(&serde_json::from_str(&body).unwrap_or_default());
    assert!(
        m.contains("token:dashboards") && m.contains("`write` on keyspace \"orders\""),
        "{body}"
    );
    let (s, v) = call(
        http,
        get.clone(),
        kv(3, "orders", "k1"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The writer's grant covers orders* only; a refusal does not say whether a keyspace exists.
    let (s1, v1) = call(
        http,
        get.clone(),
        kv(3, "payroll", "k1"),
        Some(&writer),
        None,
    )
    .await;
    let (s2, v2) = call(
        http,
        get.clone(),
        kv(3, "ordersX", "k1"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(s1, StatusCode::FORBIDDEN, "{v1}");
    assert_eq!(
        s2,
        StatusCode::NOT_FOUND,
        "a reader of * may learn what does not exist: {v2}"
    );
    let (s3, v3) = call(
        http,
        get.clone(),
        kv(3, "orders", "k1"),
        Some(&writer),
        None,
    )
    .await;
    assert_eq!(s3, StatusCode::OK, "{v3}");

    // gRPC: the same token, the same answer.
    let mut grpc = pb::kv_client::KvClient::connect(format!("http://{}", cluster.node(3).grpc))
        .await
        .unwrap();
    let mut req = tonic::Request::new(pb::PutRequest {
        keyspace: "orders".into(),
        key: b"g1".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {reader}").parse().unwrap());
    let e = grpc.put(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let e = grpc
        .put(pb::PutRequest {
            keyspace: "orders".into(),
            key: b"g1".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let mut req = tonic::Request::new(pb::PutRequest {
        keyspace: "orders".into(),
        key: b"g1".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {writer}").parse().unwrap());
    grpc.put(req).await.expect("a writer writes through gRPC");

    // A writer administers nothing.
    let policy = json!({"name": "orders2", "replication": "sync", "home_region": REGIONS[0],
                        "regions": REGIONS});
    let (s, v) = call(
        http,
        post.clone(),
        url(3, "/v1/keyspaces"),
        Some(&writer),
        Some(policy),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        message(&v).contains("`admin` on keyspace \"orders2\""),
        "{v}"
    );
    let (s, v) = call(
        http,
        post.clone(),
        url(3, "/v1/admin/faults"),
        Some(&writer),
        Some(json!({"cut_regions": [["us-east-1", "eu-west-1"]]})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("cluster-admin"), "{v}");
    let (s, _) = call(
        http,
        post.clone(),
        url(3, "/v1/failover/pause"),
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Revoked: stops working (through another node than the one that revokes).
    let reader_id = &reader[4..16];
    let (ok, out, err) = cli(&n2, &root, &["auth", "token", "revoke", reader_id]);
    assert!(ok && out.contains("revoked"), "{out}{err}");
    eventually(
        "the revoked token stops working at node 3",
        Duration::from_secs(10),
        || async {
            let (s, _) = call(
                http,
                get.clone(),
                kv(3, "orders", "k1"),
                Some(&reader),
                None,
            )
            .await;
            (s == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;

    // The audit log holds the administrative requests, allowed and denied, and verifies.
    let n1 = cluster.node(1).http.clone();
    let wanted = [
        ("root", "keyspace.create", "orders", "allowed"),
        ("root", "auth.token.create", "dashboards", "allowed"),
        ("token:orders-svc", "keyspace.create", "orders2", "denied"),
        ("token:orders-svc", "admin.faults", "", "denied"),
        ("anonymous", "failover.pause", "", "denied"),
        ("root", "auth.token.revoke", reader_id, "allowed"),
    ];
    let export = eventually(
        "the audit log holds every action",
        Duration::from_secs(30),
        || {
            let n1 = n1.clone();
            let root = root.clone();
            async move {
                let (ok, out, _) = cli(&n1, &root, &["audit", "log", "--json"]);
                if !ok {
                    return None;
                }
                let v: Value = serde_json::from_str(&out).ok()?;
                let entries = v["entries"].as_array()?.clone();
                let has = |(p, a, t, o): &(&str, &str, &str, &str)| {
                    entries.iter().any(|e| {
                        e["principal"] == *p
                            && e["action"] == *a
                            && e["target"] == *t
                            && e["outcome"] == *o
                    })
                };
                wanted.iter().all(has).then_some(out)
            }
        },
    )
    .await;
    let file = secrets.path().join("audit.json");
    std::fs::write(&file, &export).unwrap();
    let f = file.to_str().unwrap();
    let (ok, _, err) = cli(&n1, &root, &["audit", "log", "--verify", "--file", f]);
    assert!(ok, "{err}");
    assert!(err.contains("verified"), "{err}");
    let (ok, _, err) = cli(&n1, &root, &["audit", "log", "--verify"]);
    assert!(ok, "the live log verifies: {err}");
    // A writer may not read the audit log.
    let (ok, _, err) = cli(&n1, &writer, &["audit", "log"]);
    assert!(!ok && err.contains("403"), "{err}");

    // Tampering with the exported copy: an edit, a removal, a reordering.
    let v: Value = serde_json::from_str(&export).unwrap();
    let entries = v["entries"].as_array().unwrap().clone();
    assert!(entries.len() >= 6);
    let check = |entries: Vec<Value>, expect: &str| {
        std::fs::write(&file, json!({ "entries": entries }).to_string()).unwrap();
        let (ok, _, err) = cli(&n1, &root, &["audit", "log", "--verify", "--file", f]);
        assert!(!ok, "a tampered log must fail verification");
        assert!(err.contains(expect), "expected {expect:?} in: {err}");
    };
    let mut edited = entries.clone();
    edited[1]["outcome"] = json!("denied");
    check(edited, "entry 1 (position 1) was edited");
    let mut removed = entries.clone();
    removed.remove(2);
    check(removed, "entry 3 (position 2) does not follow entry 1");
    let mut reordered = entries.clone();
    reordered.swap(2, 3);
    check(reordered, "entry 3 (position 2) does not follow entry 1");
}
