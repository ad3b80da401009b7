//! TLS across three real processes (one per region) with certificates from `meridian certs`,
//! `[auth] enabled` and client certificates optional:
//! - the nodes form a cluster over mutual TLS, and clients use HTTPS, gRPC over TLS and the CLI
//!   with the CA; plaintext HTTP to a TLS port gets no answer;
//! - a client certificate is a principal with the grants its CA signed: a `writer` certificate
//!   writes, a `reader` certificate cannot (403), none and no token gets 401;
//! - on the peer port: a node certificate from another CA is refused, a certificate from the
//!   cluster's CA naming a node in another region than the catalogue says is refused, a frame
//!   whose sender is not the node its certificate names closes the connection, and a client
//!   certificate (no node name) is refused; the certified sender is answered;
//! - a node's certificate replaced on disk is served to new connections without a restart.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Cluster, NodeTweak};
use meridian_server::certs::{write, Ca, Issued};
use reqwest::StatusCode;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .unwrap()
        .unwrap()
}

/// A raw TLS client that trusts `ca` and presents `who` (if any).
fn raw_client(ca: &Issued, who: Option<&Issued>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(chain(&ca.cert_pem).remove(0)).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match who {
        Some(w) => b
            .with_client_auth_cert(chain(&w.cert_pem), key(&w.key_pem))
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Connects to `addr` as `who` and sends the first sample frame (a ping from node 3 of
/// eu-west-1); whether an answer came back.
async fn ping_peer(addr: &str, ca: &Issued, who: &Issued) -> bool {
    let frame = meridian_server::transport::fuzz::samples().remove(0);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let Ok(mut tls) = raw_client(ca, Some(who))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
    else {
        return false;
    };
    if tls.write_all(&frame).await.is_err() || tls.flush().await.is_err() {
        return false;
    }
    let mut len = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut len)).await,
        Ok(Ok(_))
    )
}

/// The certificate node `addr` presents to a new connection.
async fn served_cert(addr: &str, ca: &Issued) -> Option<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let tls = raw_client(ca, None)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .ok()?;
    Some(tls.get_ref().1.peer_certificates()?[0].to_vec())
}

fn peer_addr(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text.lines().find(|l| l.starts_with("listen_peer")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

fn counter(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn https(ca: &Issued, who: Option<&Issued>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).unwrap());
    if let Some(w) = who {
        let pem = format!("{}{}", w.cert_pem, w.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_between_nodes_and_clients_with_certificates() {
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path().to_path_buf();
    let ca = Ca::generate(30).unwrap();
    write(&dir, "ca", &ca.issued()).unwrap();
    for (i, region) in REGIONS.iter().enumerate() {
        let id = i as u64 + 1;
        write(
            &dir,
            &format!("node-{id}"),
            &ca.node(id, region, &[], 30).unwrap(),
        )
        .unwrap();
    }
    let root = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["auth", "root-token"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    std::fs::write(dir.join("root.token"), &root).unwrap();
    let d = dir.display().to_string();
    let cluster = Cluster::start_with(&[(REGIONS[0], 1), (REGIONS[1], 1), (REGIONS[2], 1)], |id| {
        NodeTweak {
            extra_config: format!(
                "auth.enabled = true\nauth.root_token_file = \"{d}/root.token\"\n\
                 tls.ca_file = \"{d}/ca.pem\"\ntls.cert_file = \"{d}/node-{id}.pem\"\n\
                 tls.key_file = \"{d}/node-{id}.key\"\ntls.client_certs = \"optional\"\n\
                 tls.reload_interval_ms = 100\n"
            ),
            ..Default::default()
        }
    });
    let url = |id: u64, path: &str| format!("https://{}{path}", cluster.node(id).http);
    let admin = https(&ca.issued(), None);
    let c = eventually(
        "the cluster formed over mutual TLS",
        Duration::from_secs(60),
        || async {
            let r = admin
                .get(url(1, "/v1/cluster"))
                .bearer_auth(&root)
                .send()
                .await
                .ok()?;
            let c: Value = r.json().await.ok()?;
            (c["nodes"].as_array()?.len() == 3 && c["meta_spread"] == true).then_some(c)
        },
    )
    .await;
    assert_eq!(
        c["nodes"].as_array().unwrap().len(),
        3,
        "{}",
        cluster.logs()
    );

    // Plaintext HTTP to the TLS port: no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = plain
        .get(format!("http://{}/healthz", cluster.node(1).http))
        .send()
        .await;
    assert!(
        r.is_err() || !r.unwrap().status().is_success(),
        "plain HTTP answered"
    );

    // A keyspace, then client certificates as principals.
    let policy = json!({"name": "orders", "replication": "sync", "home_region": REGIONS[0],
                        "regions": REGIONS, "shards": 1});
    let r = admin
        .post(url(2, "/v1/keyspaces"))
        .bearer_auth(&root)
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let writer = ca
        .client("orders-svc", &["writer:orders".into()], 30)
        .unwrap();
    let reader = ca.client("dashboards", &["reader".into()], 30).unwrap();
    let as_writer = https(&ca.issued(), Some(&writer));
    let as_reader = https(&ca.issued(), Some(&reader));
    let who = as_writer
        .get(url(3, "/v1/auth/whoami"))
        .send()
        .await
        .unwrap();
    let who: Value = who.json().await.unwrap();
    assert_eq!(who["principal"], "cert:orders-svc", "{who}");
    let put = eventually(
        "a writer certificate writes",
        Duration::from_secs(30),
        || async {
            let r = as_writer
                .put(url(3, "/v1/kv/orders/k1"))
                .body("v1")
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(r.status())
        },
    )
    .await;
    assert!(put.is_success());
    let r = as_reader
        .put(url(1, "/v1/kv/orders/k2"))
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cert:dashboards"),
        "{body}"
    );
    let r = as_reader
        .get(url(1, "/v1/kv/orders/k1?consistency=linearizable"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "v1");
    let r = admin.get(url(1, "/v1/kv/orders/k1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("client certificate"),
        "{body}"
    );

    // The CLI with the CA and a client certificate (no token).
    let ca_file = dir.join("ca.pem");
    write(&dir, "writer", &writer).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["kv", "get", "orders", "k1", "--node", &cluster.node(2).http])
        .arg("--ca")
        .arg(&ca_file)
        .arg("--client-cert")
        .arg(dir.join("writer.pem"))
        .arg("--client-key")
        .arg(dir.join("writer.key"))
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("v1"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The peer port.
    let peer1 = peer_addr(&cluster.node(1).config);
    let rogue_ca = Ca::generate(30).unwrap();
    let rogue = rogue_ca.node(3, "eu-west-1", &[], 30).unwrap();
    assert!(
        !ping_peer(&peer1, &ca.issued(), &rogue).await,
        "a node certificate from another CA was answered"
    );
    let liar = ca.node(2, "eu-west-1", &[], 30).unwrap();
    assert!(
        !ping_peer(&peer1, &ca.issued(), &liar).await,
        "node 2 certified in eu-west-1 (the catalogue says us-west-2) was answered"
    );
    let other = ca.node(9, "eu-west-1", &[], 30).unwrap();
    assert!(
        !ping_peer(&peer1, &ca.issued(), &other).await,
        "a frame from node 3 on node 9's certificate was answered"
    );
    assert!(
        !ping_peer(&peer1, &ca.issued(), &writer).await,
        "a client certificate was answered on the peer port"
    );
    let genuine = ca.node(3, "eu-west-1", &[], 30).unwrap();
    assert!(
        ping_peer(&peer1, &ca.issued(), &genuine).await,
        "the certified sender was not answered: {}",
        cluster.logs()
    );
    let m = admin
        .get(url(1, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for side in ["accept", "catalogue", "identity"] {
        assert!(
            counter(
                &m,
                "meridian_peer_tls_refused_total",
                &format!("side=\"{side}\"")
            ) >= 1.0,
            "no refusal counted on side {side}"
        );
    }

    // gRPC over TLS: the writer certificate writes.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            &ca.issued().cert_pem,
        ))
        .identity(tonic::transport::Identity::from_pem(
            &writer.cert_pem,
            &writer.key_pem,
        ));
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://{}", cluster.node(1).grpc))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut kv = meridian_server::grpc::pb::kv_client::KvClient::new(channel);
    let r = kv
        .put(meridian_server::grpc::pb::PutRequest {
            keyspace: "orders".into(),
            key: b"g1".to_vec(),
            value: b"grpc".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(r.is_ok(), "{r:?}");

    // Certificate files replaced on disk: new connections get the new certificate.
    let http1 = cluster.node(1).http.clone();
    let before = served_cert(&http1, &ca.issued()).await.unwrap();
    let renewed = ca.node(1, REGIONS[0], &[], 60).unwrap();
    write(&dir, "node-1", &renewed).unwrap();
    let want = chain(&renewed.cert_pem)[0].to_vec();
    assert_ne!(before, want);
    eventually(
        "the renewed certificate is served",
        Duration::from_secs(20),
        || async { (served_cert(&http1, &ca.issued()).await? == want).then_some(()) },
    )
    .await;
    // And the cluster still works through node 1 with it.
    let r = as_writer
        .put(url(1, "/v1/kv/orders/k3"))
        .body("v3")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}
