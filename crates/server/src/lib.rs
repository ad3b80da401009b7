//! The server: the production composition root. It reads a node's config, opens redb, binds
//! the peer, HTTP and gRPC listeners, and wires the node together with the real clock and
//! sockets.
//!
//! Architecture Invariant: only this crate knows HTTP/JSON and protobuf; inner crates exchange
//! Rust types.

pub mod api;
pub mod auth;
pub mod campaign;
pub mod certs;
pub mod clock;
pub mod config;
pub mod conn_limit;
pub mod console;
pub mod encryption;
pub mod failover;
pub mod georep_rpc;
pub mod grpc;
pub mod http;
pub mod http_auth;
pub mod metrics;
pub mod node;
pub mod observe;
pub mod peer;
pub mod precise;
pub mod promotion;
pub mod reconcile;
pub mod switchover;
pub mod tls;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meridian_consensus::PeerNode;
use meridian_storage::{GroupCommitter, RedbEngine, SharedEngine};
use meridian_types::{Clock, META_GROUP};
use tokio::net::TcpListener;

pub use config::NodeConfig;
pub use node::Node;

use crate::node::NodeHandler;
use crate::transport::{Dialer, Endpoint, Listener, TcpDialer, Transport, WanModel};

/// How long a restarting node waits for a previous instance in this process to release the
/// database file.
const DB_OPEN_PATIENCE: Duration = Duration::from_secs(10);

/// A started node. Its tasks run on the runtime that called [`start`]; dropping that runtime
/// stops the node as abruptly as a crash.
pub struct RunningNode {
    pub node: Arc<Node>,
}

async fn bind(name: &str, addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {name} = {addr:?}; is another process using it?")
    })
}

type Engines = (SharedEngine, Option<Arc<meridian_storage::EncryptedEngine>>);

async fn open_engine(cfg: &NodeConfig) -> anyhow::Result<Engines> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
    let path = cfg.data_dir.join("meridian.redb");
    let started = tokio::time::Instant::now();
    let redb: SharedEngine = loop {
        match RedbEngine::open(&path) {
            Ok(e) => break Arc::new(e),
            Err(e)
                if started.elapsed() < DB_OPEN_PATIENCE
                    && e.to_string().contains("already open") =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("{e}")).context("opening the node's database"),
        }
    };
    let keyring = cfg.data_dir.join(meridian_storage::encrypted::KEYRING_FILE);
    match &cfg.encryption {
        Some(enc) => {
            let kek = enc
                .kek(&cfg.data_dir)
                .map_err(|e| anyhow::anyhow!("[encryption]: {e}"))?;
            let wrapped = meridian_storage::EncryptedEngine::open(redb, &cfg.data_dir, &kek)
                .map_err(|e| anyhow::anyhow!("[encryption]: {e}"))?;
            Ok((wrapped.clone(), Some(wrapped)))
        }
        None if keyring.exists() => Err(anyhow::anyhow!(
            "data_dir {} is encrypted at rest ({} is there): configure [encryption] with the key-encryption key it was created with",
            cfg.data_dir.display(),
            keyring.display()
        )),
        None => Ok((redb, None)),
    }
}

/// Starts a node: storage, listeners, the metadata group, joining, and the control loop.
pub async fn start(cfg: NodeConfig, clock: Arc<dyn Clock>) -> anyhow::Result<RunningNode> {
    metrics::install();
    let (engine, encrypted) = open_engine(&cfg).await?;
    let committer = GroupCommitter::start(engine, cfg.node_id.to_string());
    let peer_listener = bind("listen_peer", &cfg.listen_peer).await?;
    let http_listener = bind("listen_http", &cfg.listen_http).await?;
    let grpc_listener = bind("listen_grpc", &cfg.listen_grpc).await?;
    let http_limiter =
        conn_limit::Limiter::new("http", conn_limit::PER_PEER_MAX, conn_limit::TOTAL_MAX);
    let grpc_limiter =
        conn_limit::Limiter::new("grpc", conn_limit::PER_PEER_MAX, conn_limit::TOTAL_MAX);
    let me = Endpoint {
        node: cfg.node_id,
        region: cfg.region.clone(),
    };
    let (node, http_listener, grpc_listener) = match &cfg.tls {
        Some(t) => {
            let tls = tls::Tls::load(t, &me).map_err(|e| anyhow::anyhow!("[tls]: {e}"))?;
            let dialer = Arc::new(transport::TlsDialer { tls: tls.clone() });
            let peers = transport::TlsPeerListener::new(peer_listener, tls.clone());
            let node = start_node(cfg, clock, committer, dialer, peers).await?;
            let http = conn_limit::LimitedListener::with_tls(
                http_listener,
                http_limiter,
                tls.clone(),
                conn_limit::Api::Http,
            );
            let grpc = conn_limit::LimitedListener::with_tls(
                grpc_listener,
                grpc_limiter,
                tls,
                conn_limit::Api::Grpc,
            );
            (node, http, grpc)
        }
        None => {
            let node =
                start_node(cfg, clock, committer, Arc::new(TcpDialer), peer_listener).await?;
            (
                node,
                conn_limit::LimitedListener::new(http_listener, http_limiter),
                conn_limit::LimitedListener::new(grpc_listener, grpc_limiter),
            )
        }
    };
    if let Some(e) = encrypted {
        let _ = node.encryption.set(encryption::Encryption::new(e));
    }
    let router =
        http::router(node.clone()).into_make_service_with_connect_info::<conn_limit::ConnInfo>();
    tokio::spawn(async move { axum::serve(http_listener, router).await });
    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(grpc::KvServer::new(grpc::KvService { node: node.clone() }))
        .add_service(grpc::FailoverServer::new(grpc::FailoverService {
            node: node.clone(),
        }))
        .serve_with_incoming(grpc_listener.into_stream());
    tokio::spawn(grpc);
    let cfg = &node.cfg;
    tracing::info!(node = cfg.node_id, region = %cfg.region, http = %cfg.listen_http, grpc = %cfg.listen_grpc, peer = %cfg.listen_peer, "node started");
    Ok(RunningNode { node })
}

/// The node proper, as both composition roots run it: the peer transport over `dialer` and
/// `listener`, the metadata group, joining, the control loop and the peer probe. Production
/// passes TCP, the system clock and redb; the simulator passes simulated sockets, a skewable
/// clock and an in-memory engine.
pub async fn start_node(
    cfg: NodeConfig,
    clock: Arc<dyn Clock>,
    committer: GroupCommitter,
    dialer: Arc<dyn Dialer>,
    listener: impl Listener,
) -> anyhow::Result<Arc<Node>> {
    let wan = WanModel {
        enabled: cfg.wan.enabled,
        matrix: cfg.wan.matrix().map_err(anyhow::Error::msg)?,
        jitter_pct: cfg.wan.jitter_pct,
    };
    let me = Endpoint {
        node: cfg.node_id,
        region: cfg.region.clone(),
    };
    let transport = Transport::new(me, wan, cfg.wan.seed ^ cfg.node_id, dialer);
    if let Some(path) = &cfg.capture_frames {
        transport
            .capture_to(path)
            .map_err(|e| anyhow::anyhow!("capture_frames = {}: {e}", path.display()))?;
        tracing::warn!(path = %path.display(), "capturing every frame read from peers (debugging only)");
    }
    let node = Arc::new(Node::new(cfg.clone(), committer, transport.clone(), clock));
    let meta = node
        .ensure_group(META_GROUP)
        .await
        .map_err(anyhow::Error::msg)?;
    tokio::spawn(transport.serve(listener, Arc::new(NodeHandler(node.clone()))));
    if cfg.bootstrap && !meta.raft.is_initialized().await.unwrap_or(true) {
        let me = PeerNode {
            addr: cfg.peer_addr(),
            region: cfg.region.clone(),
        };
        meta.raft
            .initialize(BTreeMap::from([(cfg.node_id, me)]))
            .await
            .map_err(|e| anyhow::anyhow!("initialising the metadata group: {e}"))?;
        tracing::info!(node = cfg.node_id, "bootstrapped a new cluster");
    }
    tokio::spawn(reconcile::join(node.clone()));
    tokio::spawn(reconcile::run(node.clone()));
    tokio::spawn(campaign::run(node.clone()));
    tokio::spawn(promotion::lease_loop(node.clone()));
    tokio::spawn(observe::probe_loop(node.clone()));
    tokio::spawn(observe::liveness_loop(node.clone()));
    Ok(node)
}
