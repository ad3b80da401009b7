//! The transport seam: every message between nodes goes through here.
//!
//! Frames are length-prefixed bincode over TCP; one multiplexed connection per peer address
//! carries requests tagged with ids. The WAN model sits here: each frame waits its one-way
//! delay (RTT/2 of the sender and receiver regions, plus jitter) in the sender's outbound queue
//! before it is written, so a cluster on one machine sees the latencies of a real deployment.
//! Fault injection sits here too: a cut link drops frames in the chosen direction.
//!
//! Architecture Invariant: no other module opens a socket to a peer.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_types::limits::{FRAME_BYTES_MAX, PEER_INFLIGHT_MAX, PEER_QUEUE_MAX};
use meridian_types::wan::LatencyMatrix;
use meridian_types::NodeId;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::peer::{PeerRequest, PeerResponse};

/// A byte stream to or from a peer: a TCP connection in production, a simulated connection in
/// the simulator.
pub trait PeerStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerStream for T {}
pub type BoxStream = Box<dyn PeerStream>;

/// How a node opens connections to peers.
pub trait Dialer: Send + Sync + 'static {
    fn dial(&self, addr: &str) -> BoxFuture<'static, io::Result<BoxStream>>;
}

/// A connection from a peer, with the node identity its certificate proved (mutual TLS), if
/// the listener verifies one.
pub struct Accepted {
    pub stream: BoxStream,
    pub identity: Option<Endpoint>,
}

/// How a node accepts connections from peers.
pub trait Listener: Send + 'static {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Accepted>>;
}

/// Real TCP, with Nagle off (frames are small and latency-bound).
pub struct TcpDialer;

impl Dialer for TcpDialer {
    fn dial(&self, addr: &str) -> BoxFuture<'static, io::Result<BoxStream>> {
        let addr = addr.to_string();
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}

impl Listener for TcpListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Accepted>> {
        Box::pin(async move {
            let (stream, _) = TcpListener::accept(self).await?;
            stream.set_nodelay(true)?;
            Ok(Accepted {
                stream: Box::new(stream),
                identity: None,
            })
        })
    }
}

/// TCP with mutual TLS: presents this node's certificate and accepts only a peer whose
/// certificate, from the cluster CA, names a node (see `crate::tls`).
pub struct TlsDialer {
    pub tls: Arc<crate::tls::Tls>,
}

impl Dialer for TlsDialer {
    fn dial(&self, addr: &str) -> BoxFuture<'static, io::Result<BoxStream>> {
        let addr = addr.to_string();
        let connector = tokio_rustls::TlsConnector::from(self.tls.material().peer_client.clone());
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let tls = connector
                .connect(crate::tls::Tls::peer_sni(), stream)
                .await
                .inspect_err(|_| {
                    metrics::counter!("meridian_peer_tls_refused_total", "side" => "dial")
                        .increment(1)
                })?;
            Ok(Box::new(tls) as BoxStream)
        })
    }
}

/// A peer listener with mutual TLS. Handshakes run in their own tasks (at most
/// `tls::HANDSHAKES_MAX` at once, each within `tls::HANDSHAKE_TIMEOUT`), so a peer that
/// stalls its handshake holds up no other; a peer without a certificate from the CA naming a
/// node is refused.
pub struct TlsPeerListener {
    ready: mpsc::Receiver<Accepted>,
}

impl TlsPeerListener {
    pub fn new(listener: TcpListener, tls: Arc<crate::tls::Tls>) -> TlsPeerListener {
        let (tx, ready) = mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(crate::tls::HANDSHAKES_MAX));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, addr) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "peer accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.material().peer_server.clone());
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let refuse = |why: String| {
                        metrics::counter!("meridian_peer_tls_refused_total", "side" => "accept")
                            .increment(1);
                        tracing::warn!(peer = %addr, "peer connection refused: {why}");
                    };
                    let tls = match tokio::time::timeout(
                        crate::tls::HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => return refuse(format!("TLS handshake: {e}")),
                        Err(_) => return refuse("TLS handshake timed out".into()),
                    };
                    let identity = match tls.get_ref().1.peer_certificates() {
                        Some([leaf, ..]) => crate::tls::node_identity(leaf),
                        _ => Err("no client certificate".into()),
                    };
                    match identity {
                        Ok(id) => {
                            let _ = tx
                                .send(Accepted {
                                    stream: Box::new(tls),
                                    identity: Some(id),
                                })
                                .await;
                        }
                        Err(e) => refuse(e),
                    }
                });
            }
        });
        TlsPeerListener { ready }
    }
}

impl Listener for TlsPeerListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Accepted>> {
        Box::pin(async move {
            self.ready
                .recv()
                .await
                .ok_or_else(|| io::Error::other("the peer listener stopped"))
        })
    }
}

/// How long a dial may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// The WAN model applied at this node's outbound queue.
#[derive(Clone, Debug)]
pub struct WanModel {
    pub enabled: bool,
    pub matrix: LatencyMatrix,
    pub jitter_pct: f64,
}

/// Links cut by an operator or a test (`POST /v1/admin/faults`). Directional: a cut from A to B
/// drops frames A sends to B; B's frames to A still flow unless that direction is cut too.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// `[from_region, to_region]` pairs whose frames are dropped.
    #[serde(default)]
    pub cut_regions: Vec<[String; 2]>,
    /// Nodes whose frames, in both directions, are dropped.
    #[serde(default)]
    pub isolate_nodes: Vec<NodeId>,
}

struct FaultSets {
    cut_regions: BTreeSet<(String, String)>,
    isolate_nodes: BTreeSet<NodeId>,
}

impl From<&Faults> for FaultSets {
    fn from(f: &Faults) -> Self {
        FaultSets {
            cut_regions: f
                .cut_regions
                .iter()
                .map(|[a, b]| (a.clone(), b.clone()))
                .collect(),
            isolate_nodes: f.isolate_nodes.iter().copied().collect(),
        }
    }
}

/// Who is at either end of a frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub node: NodeId,
    pub region: String,
}

#[derive(Serialize, Deserialize)]
enum Body {
    Request(PeerRequest),
    Response(PeerResponse),
}

#[derive(Serialize, Deserialize)]
struct Frame {
    id: u64,
    from: Endpoint,
    body: Body,
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request never left this node (link cut, connection refused): safe to retry.
    #[error("peer {0} unreachable: {1}")]
    NotSent(String, String),
    /// The connection failed after the request was sent: it may or may not have been processed.
    #[error("connection to {0} lost: {1}")]
    Unreachable(String, String),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
}

/// Handles requests arriving from peers.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, from: Endpoint, req: PeerRequest)
        -> impl Future<Output = PeerResponse> + Send;

    /// Requests that must be handled in arrival order share a lane (e.g. one group's appends);
    /// `None` lets a request run concurrently with everything else.
    fn lane(&self, req: &PeerRequest) -> Option<u64>;

    /// Whether a peer whose certificate proved `who` may talk to this node: what the catalogue
    /// says about node `who.node` must not contradict it (an unknown node may be joining).
    fn admit(&self, who: &Endpoint) -> Result<(), String> {
        let _ = who;
        Ok(())
    }
}

struct Conn {
    out: mpsc::Sender<(Instant, Vec<u8>)>,
    /// Ordered, so that failing every pending call (the connection died) wakes the callers in
    /// the same order every time: the simulator replays a seed exactly.
    pending: Mutex<BTreeMap<u64, oneshot::Sender<PeerResponse>>>,
    /// Set when the reader saw the connection end, or when a call on it timed out and it was
    /// given up; it is not used for new calls.
    dead: AtomicBool,
    /// Stops the reader, which holds the read half of the socket.
    reader: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Conn {
    /// A given-up connection closes once no call waits on it any more: the reader stops, and
    /// with the last handle gone the writer ends, so the socket is released rather than kept
    /// open by its own tasks.
    fn close_if_drained(&self) {
        if self.dead.load(Ordering::SeqCst) && self.pending.lock().unwrap().is_empty() {
            if let Some(reader) = self.reader.lock().unwrap().take() {
                reader.abort();
            }
        }
    }
}

/// A request on the wire, waiting for its answer.
pub struct PendingCall {
    transport: Arc<Transport>,
    conn: Arc<Conn>,
    id: u64,
    rx: oneshot::Receiver<PeerResponse>,
    addr: String,
    node: NodeId,
}

impl PendingCall {
    /// Waits up to `timeout` for the answer.
    pub async fn wait(self, timeout: Duration) -> Result<PeerResponse, CallError> {
        match tokio::time::timeout(timeout, self.rx).await {
            Ok(Ok(resp)) => {
                self.transport
                    .last_heard
                    .lock()
                    .unwrap()
                    .insert(self.node, Instant::now());
                Ok(resp)
            }
            Ok(Err(_)) => Err(CallError::Unreachable(self.addr, "connection lost".into())),
            Err(_) => {
                self.conn.pending.lock().unwrap().remove(&self.id);
                // A connection that lost a frame may never deliver again (a silently dropped
                // segment stalls TCP until it gives up, and a simulated network never
                // retransmits), so the next call dials afresh.
                self.conn.dead.store(true, Ordering::SeqCst);
                self.transport.forget(&self.addr, &self.conn).await;
                self.conn.close_if_drained();
                Err(CallError::Timeout(self.addr, timeout))
            }
        }
    }
}

pub struct Transport {
    pub me: Endpoint,
    wan: WanModel,
    faults: Mutex<FaultSets>,
    faults_spec: Mutex<Faults>,
    conns: tokio::sync::Mutex<BTreeMap<String, Arc<Conn>>>,
    /// One dial at a time per address, and none under `conns`' lock: a dial to a dead peer
    /// may wait its whole timeout, and every other peer's calls must not wait with it (they
    /// did: a lost region stalled the survivors' votes to each other for a second per dial).
    dialing: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    next_id: AtomicU64,
    rng: Mutex<rand::rngs::StdRng>,
    /// Last time each peer answered, in ms of the node clock, for health reports.
    last_heard: Mutex<BTreeMap<NodeId, Instant>>,
    dialer: Arc<dyn Dialer>,
    /// Every frame this node reads from a peer, appended as received (see
    /// `NodeConfig::capture_frames`): residency tests scan it.
    capture: std::sync::OnceLock<Arc<Capture>>,
}

/// Bytes a frame capture file grows to at most; frames beyond are not captured.
pub const CAPTURE_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// A file that frames are appended to (length prefix and body, exactly as received).
pub struct Capture {
    file: Mutex<std::fs::File>,
    written: AtomicU64,
}

impl Capture {
    fn append(&self, len: [u8; 4], body: &[u8]) {
        let n = (4 + body.len()) as u64;
        if self.written.fetch_add(n, Ordering::Relaxed) + n > CAPTURE_BYTES_MAX {
            return;
        }
        use std::io::Write;
        let mut f = self.file.lock().unwrap();
        let _ = f.write_all(&len).and_then(|()| f.write_all(body));
    }
}

impl Transport {
    pub fn new(me: Endpoint, wan: WanModel, seed: u64, dialer: Arc<dyn Dialer>) -> Arc<Transport> {
        Arc::new(Transport {
            me,
            wan,
            dialer,
            faults: Mutex::new(FaultSets::from(&Faults::default())),
            faults_spec: Mutex::new(Faults::default()),
            conns: tokio::sync::Mutex::new(BTreeMap::new()),
            dialing: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
            last_heard: Mutex::new(BTreeMap::new()),
            capture: std::sync::OnceLock::new(),
        })
    }

    /// Appends every frame read from a peer from now on to `path` (created or truncated).
    /// Debugging and residency tests only: the file holds data as it crossed the network.
    pub fn capture_to(&self, path: &std::path::Path) -> io::Result<()> {
        let file = std::fs::File::create(path)?;
        let _ = self.capture.set(Arc::new(Capture {
            file: Mutex::new(file),
            written: AtomicU64::new(0),
        }));
        Ok(())
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = FaultSets::from(&faults);
        *self.faults_spec.lock().unwrap() = faults;
    }

    pub fn faults(&self) -> Faults {
        self.faults_spec.lock().unwrap().clone()
    }

    /// Whether a frame from `from` to `to` is dropped by an injected fault.
    fn is_cut(&self, from: &Endpoint, to: &Endpoint) -> bool {
        let f = self.faults.lock().unwrap();
        f.isolate_nodes.contains(&from.node)
            || f.isolate_nodes.contains(&to.node)
            || f.cut_regions
                .contains(&(from.region.clone(), to.region.clone()))
    }

    /// The moment a frame to `to_region` sent now may be written.
    fn due(&self, to_region: &str) -> Instant {
        if !self.wan.enabled {
            return Instant::now();
        }
        let unit: f64 = self.rng.lock().unwrap().gen_range(-1.0..=1.0);
        let ms =
            self.wan
                .matrix
                .one_way_delay_ms(&self.me.region, to_region, self.wan.jitter_pct, unit);
        Instant::now() + Duration::from_micros((ms * 1000.0) as u64)
    }

    /// When `node` last answered a call from this node.
    pub fn last_heard(&self, node: NodeId) -> Option<Instant> {
        self.last_heard.lock().unwrap().get(&node).copied()
    }

    /// Sends `req` to the node at `addr` and waits up to `timeout` for its answer, queueing
    /// included: a queue to a cut-off peer that stays full fails the call as not sent.
    pub async fn call(
        self: &Arc<Self>,
        to: &Endpoint,
        addr: &str,
        req: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, CallError> {
        let deadline = Instant::now() + timeout;
        self.send_until(to, addr, req, Some(deadline))
            .await?
            .wait(deadline.saturating_duration_since(Instant::now()))
            .await
    }

    /// Queues `req` for the node at `addr` and returns once it is queued, in order behind every
    /// earlier frame to that address; the answer is awaited separately, so callers can pipeline.
    /// A full queue holds the caller (backpressure) for as long as it stays full.
    pub async fn send(
        self: &Arc<Self>,
        to: &Endpoint,
        addr: &str,
        req: PeerRequest,
    ) -> Result<PendingCall, CallError> {
        self.send_until(to, addr, req, None).await
    }

    /// `send`, giving up at `deadline` (if any) while the queue stays full.
    async fn send_until(
        self: &Arc<Self>,
        to: &Endpoint,
        addr: &str,
        req: PeerRequest,
        deadline: Option<Instant>,
    ) -> Result<PendingCall, CallError> {
        if self.is_cut(&self.me, to) {
            return Err(CallError::NotSent(
                addr.to_string(),
                "link cut by an injected fault".into(),
            ));
        }
        let conn = self.connection(addr).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().unwrap().insert(id, tx);
        if conn.dead.load(Ordering::SeqCst) {
            conn.pending.lock().unwrap().remove(&id);
            self.conns.lock().await.remove(addr);
            return Err(CallError::NotSent(
                addr.to_string(),
                "connection closed".into(),
            ));
        }
        let frame = encode(&Frame {
            id,
            from: self.me.clone(),
            body: Body::Request(req),
        });
        let queued = conn.out.send((self.due(&to.region), frame));
        let queued = match deadline {
            Some(d) => match tokio::time::timeout_at(d, queued).await {
                Ok(r) => r,
                Err(_) => {
                    conn.pending.lock().unwrap().remove(&id);
                    return Err(CallError::NotSent(
                        addr.to_string(),
                        "the queue to the peer stayed full until the call's deadline".into(),
                    ));
                }
            },
            None => queued.await,
        };
        if queued.is_err() {
            conn.pending.lock().unwrap().remove(&id);
            self.conns.lock().await.remove(addr);
            return Err(CallError::NotSent(
                addr.to_string(),
                "connection closed".into(),
            ));
        }
        Ok(PendingCall {
            transport: self.clone(),
            conn,
            id,
            rx,
            addr: addr.to_string(),
            node: to.node,
        })
    }

    /// Drops the connection to `addr` if it is still `conn`.
    async fn forget(&self, addr: &str, conn: &Arc<Conn>) {
        let mut conns = self.conns.lock().await;
        if conns.get(addr).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            conns.remove(addr);
        }
    }

    /// The open connection to `addr`, if it is still usable.
    async fn open_connection(&self, addr: &str) -> Option<Arc<Conn>> {
        let conns = self.conns.lock().await;
        conns
            .get(addr)
            .filter(|c| !c.out.is_closed() && !c.dead.load(Ordering::SeqCst))
            .cloned()
    }

    async fn connection(self: &Arc<Self>, addr: &str) -> Result<Arc<Conn>, CallError> {
        if let Some(c) = self.open_connection(addr).await {
            return Ok(c);
        }
        let gate = self
            .dialing
            .lock()
            .unwrap()
            .entry(addr.to_string())
            .or_default()
            .clone();
        let _dialing = gate.lock().await;
        // Another call may have dialed while this one waited.
        if let Some(c) = self.open_connection(addr).await {
            return Ok(c);
        }
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, self.dialer.dial(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(CallError::NotSent(addr.to_string(), e.to_string())),
            Err(_) => {
                return Err(CallError::NotSent(
                    addr.to_string(),
                    "connect timed out".into(),
                ))
            }
        };
        let (read, write) = tokio::io::split(stream);
        let (out, out_rx) = mpsc::channel(PEER_QUEUE_MAX);
        let conn = Arc::new(Conn {
            out,
            pending: Mutex::new(BTreeMap::new()),
            dead: AtomicBool::new(false),
            reader: Mutex::new(None),
        });
        tokio::spawn(write_loop(write, out_rx));
        let reader_conn = conn.clone();
        let capture = self.capture.get().cloned();
        let reader = tokio::spawn(async move {
            let mut read = tokio::io::BufReader::with_capacity(READ_BUFFER_BYTES, read);
            while let Ok(frame) = read_frame(&mut read, capture.as_deref()).await {
                if let Body::Response(resp) = frame.body {
                    if let Some(tx) = reader_conn.pending.lock().unwrap().remove(&frame.id) {
                        let _ = tx.send(resp);
                    }
                }
                if reader_conn.dead.load(Ordering::SeqCst)
                    && reader_conn.pending.lock().unwrap().is_empty()
                {
                    // Given up and drained: close (see `Conn::close_if_drained`).
                    return;
                }
            }
            // Dropping the senders fails every waiting call as "connection lost"; marking the
            // connection dead first makes a call racing with this see it and not wait forever.
            reader_conn.dead.store(true, Ordering::SeqCst);
            reader_conn.pending.lock().unwrap().clear();
        });
        *conn.reader.lock().unwrap() = Some(reader.abort_handle());
        self.conns
            .lock()
            .await
            .insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    /// Accepts peer connections on `listener` and serves them with `handler` until dropped.
    pub async fn serve<H: Handler, L: Listener>(self: Arc<Self>, mut listener: L, handler: Arc<H>) {
        loop {
            let Ok(accepted) = listener.accept().await else {
                continue;
            };
            if let Some(who) = &accepted.identity {
                if let Err(why) = handler.admit(who) {
                    metrics::counter!("meridian_peer_tls_refused_total", "side" => "catalogue")
                        .increment(1);
                    tracing::warn!(node = who.node, region = %who.region, "peer refused: {why}");
                    continue;
                }
            }
            let me = self.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                me.serve_conn(accepted.stream, accepted.identity, handler)
                    .await
            });
        }
    }

    async fn serve_conn<H: Handler>(
        self: Arc<Self>,
        stream: BoxStream,
        identity: Option<Endpoint>,
        handler: Arc<H>,
    ) {
        let (read, write) = tokio::io::split(stream);
        let mut read = tokio::io::BufReader::with_capacity(READ_BUFFER_BYTES, read);
        let (out, out_rx) = mpsc::channel::<(Instant, Vec<u8>)>(PEER_QUEUE_MAX);
        tokio::spawn(write_loop(write, out_rx));
        let inflight = Arc::new(Semaphore::new(PEER_INFLIGHT_MAX));
        let mut lanes: BTreeMap<u64, mpsc::Sender<(u64, Endpoint, PeerRequest)>> = BTreeMap::new();
        let capture = self.capture.get().cloned();
        while let Ok(frame) = read_frame(&mut read, capture.as_deref()).await {
            let Body::Request(req) = frame.body else {
                continue;
            };
            if let Some(who) = &identity {
                // The certificate proved who is at the other end: a frame claiming another
                // sender is forged, and nothing more from this connection is believed.
                if frame.from != *who {
                    metrics::counter!("meridian_peer_tls_refused_total", "side" => "identity")
                        .increment(1);
                    tracing::warn!(
                        certified = %crate::tls::node_name(who.node, &who.region),
                        claimed = %crate::tls::node_name(frame.from.node, &frame.from.region),
                        "peer frame from another node than its certificate names: connection closed"
                    );
                    return;
                }
            }
            if self.is_cut(&frame.from, &self.me) {
                continue;
            }
            self.last_heard
                .lock()
                .unwrap()
                .insert(frame.from.node, Instant::now());
            if let Some(lane) = handler.lane(&req) {
                // Requests of one lane are handled one at a time, in arrival order.
                let tx = lanes.entry(lane).or_insert_with(|| {
                    let (tx, mut rx) =
                        mpsc::channel::<(u64, Endpoint, PeerRequest)>(PEER_QUEUE_MAX);
                    let (me, handler, out) = (self.clone(), handler.clone(), out.clone());
                    tokio::spawn(async move {
                        while let Some((id, from, req)) = rx.recv().await {
                            let resp = handler.handle(from.clone(), req).await;
                            me.respond(&out, id, &from, resp).await;
                        }
                    });
                    tx
                });
                if tx.send((frame.id, frame.from, req)).await.is_err() {
                    return;
                }
                continue;
            }
            let Ok(permit) = inflight.clone().acquire_owned().await else {
                return;
            };
            let (me, handler, out) = (self.clone(), handler.clone(), out.clone());
            tokio::spawn(async move {
                let resp = handler.handle(frame.from.clone(), req).await;
                drop(permit);
                me.respond(&out, frame.id, &frame.from, resp).await;
            });
        }
    }

    async fn respond(
        &self,
        out: &mpsc::Sender<(Instant, Vec<u8>)>,
        id: u64,
        to: &Endpoint,
        resp: PeerResponse,
    ) {
        if self.is_cut(&self.me, to) {
            return;
        }
        let bytes = encode(&Frame {
            id,
            from: self.me.clone(),
            body: Body::Response(resp),
        });
        let _ = out.send((self.due(&to.region), bytes)).await;
    }
}

fn encode(frame: &Frame) -> Vec<u8> {
    let body = bincode::serialize(frame).expect("frames always encode");
    let mut bytes = Vec::with_capacity(4 + body.len());
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

async fn read_frame<R: AsyncReadExt + Unpin>(
    read: &mut R,
    capture: Option<&Capture>,
) -> io::Result<Frame> {
    let mut len = [0u8; 4];
    read.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit"),
        ));
    }
    let mut body = vec![0u8; len];
    read.read_exact(&mut body).await?;
    if let Some(c) = capture {
        c.append((len as u32).to_be_bytes(), &body);
    }
    decode_body(&body)
}

/// A frame from its body (the bytes after the length prefix), as a peer sent it: any bytes
/// decode to a frame or an error, never a panic or an allocation beyond the body's size.
fn decode_body(body: &[u8]) -> io::Result<Frame> {
    bincode::deserialize(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Hooks for the fuzz targets (`crates/server/tests/fuzz.rs`): the frame decoder on arbitrary
/// bytes, and well-formed frames to mutate.
pub mod fuzz {
    use super::*;

    /// Decodes `bytes` as one length-prefixed frame, as a connection's reader does: the frame's
    /// id and whether it is a request, or why it was refused.
    pub fn decode_frame(bytes: &[u8]) -> Result<(u64, bool), String> {
        let (len, body) = bytes
            .split_first_chunk::<4>()
            .ok_or("shorter than a length prefix")?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > FRAME_BYTES_MAX {
            return Err(format!("frame of {len} bytes exceeds the limit"));
        }
        let body = body.get(..len).ok_or("cut off")?;
        let f = decode_body(body).map_err(|e| e.to_string())?;
        Ok((f.id, matches!(f.body, Body::Request(_))))
    }

    /// Encoded frames of several kinds (requests and responses).
    pub fn samples() -> Vec<Vec<u8>> {
        let from = Endpoint {
            node: 3,
            region: "eu-west-1".into(),
        };
        let bodies = vec![
            Body::Request(PeerRequest::Ping),
            Body::Request(PeerRequest::Stats),
            Body::Request(PeerRequest::Op {
                group: 7,
                op: crate::peer::Op::Write(meridian_types::wire::Command::Put {
                    key: b"k".to_vec(),
                    value: b"value".to_vec(),
                }),
                hops: 1,
            }),
            Body::Request(PeerRequest::Digest {
                group: 9,
                horizon_ms: 1_700_000_000_000,
            }),
            Body::Response(PeerResponse::Pong),
            Body::Response(PeerResponse::Join(Err(
                meridian_types::KvError::Unavailable("x".into()),
            ))),
        ];
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                encode(&Frame {
                    id: i as u64,
                    from: from.clone(),
                    body,
                })
            })
            .collect()
    }
}

/// Bytes of already-due frames written with one system call.
const WRITE_COALESCE_BYTES: usize = 256 * 1024;
/// Read buffer of a peer connection: one read system call takes many small frames.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Writes frames in order, each no earlier than its due time (the simulated one-way delay).
/// Frames already queued and already due go out together in one write (one system call, and
/// on loopback one wake-up of the reader, for many small frames).
async fn write_loop<W: AsyncWriteExt + Unpin>(
    mut write: W,
    mut rx: mpsc::Receiver<(Instant, Vec<u8>)>,
) {
    let mut held: Option<(Instant, Vec<u8>)> = None;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let (due, bytes) = match held.take() {
            Some(f) => f,
            None => match rx.recv().await {
                Some(f) => f,
                None => return,
            },
        };
        // Tokio's timer rounds up to its next millisecond tick, which would make a 0.5 ms
        // intra-region hop cost 1 to 2 ms: waits go to the precise timer. The WAN model runs on
        // real time only (the simulator models latency in turmoil and disables it).
        if due > Instant::now() {
            crate::precise::sleep_until(due).await;
        }
        buf.clear();
        buf.extend_from_slice(&bytes);
        let now = Instant::now();
        while buf.len() < WRITE_COALESCE_BYTES {
            match rx.try_recv() {
                // Frames stay in order: one not yet due waits, and so does all behind it.
                Ok((due, next)) if due > now => {
                    held = Some((due, next));
                    break;
                }
                Ok((_, next)) => buf.extend_from_slice(&next),
                Err(_) => break,
            }
        }
        if write.write_all(&buf).await.is_err() {
            return;
        }
        if buf.capacity() > 4 * WRITE_COALESCE_BYTES {
            buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a connection given up after a call timed out is closed, not kept open by its own
    // reader and writer (one leaked socket per timeout, without end, under a flaky peer).
    #[tokio::test]
    async fn a_timed_out_connection_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let me = Endpoint {
            node: 1,
            region: "us-east-1".into(),
        };
        let to = Endpoint {
            node: 2,
            region: "us-east-1".into(),
        };
        let wan = WanModel {
            enabled: false,
            matrix: LatencyMatrix::aws_default(),
            jitter_pct: 0.0,
        };
        let transport = Transport::new(me, wan, 1, Arc::new(TcpDialer));
        let call = {
            let (t, to, addr) = (transport.clone(), to.clone(), addr.clone());
            tokio::spawn(async move {
                t.call(&to, &addr, PeerRequest::Stats, Duration::from_millis(50))
                    .await
            })
        };
        // The peer reads the request and never answers.
        let (mut peer, _) = listener.accept().await.unwrap();
        let result = call.await.unwrap();
        assert!(
            matches!(result, Err(CallError::Timeout(..))),
            "the call did not time out"
        );
        // After the timeout the caller closes its side: the peer reads to end of stream.
        let mut sink = Vec::new();
        let eof = tokio::time::timeout(Duration::from_secs(10), peer.read_to_end(&mut sink)).await;
        assert!(eof.is_ok(), "the timed-out connection was left open");
    }

    /// Dials `dead` never completes (a host that swallows SYNs); others dial over TCP.
    struct HangingDialer {
        dead: String,
    }

    impl Dialer for HangingDialer {
        fn dial(&self, addr: &str) -> BoxFuture<'static, io::Result<BoxStream>> {
            if addr == self.dead {
                return Box::pin(std::future::pending());
            }
            TcpDialer.dial(addr)
        }
    }

    // Goal: a dial that hangs (a dead peer) does not hold up calls to live peers: the live
    // peer is reached while the dead one's dial is still waiting out its timeout.
    #[tokio::test]
    async fn a_hanging_dial_does_not_stall_other_peers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap().to_string();
        let dead = "10.255.255.1:7000".to_string();
        let wan = WanModel {
            enabled: false,
            matrix: LatencyMatrix::aws_default(),
            jitter_pct: 0.0,
        };
        let me = Endpoint {
            node: 1,
            region: "us-east-1".into(),
        };
        let dialer = Arc::new(HangingDialer { dead: dead.clone() });
        let transport = Transport::new(me, wan, 1, dialer);
        let to = |node| Endpoint {
            node,
            region: "us-east-1".into(),
        };
        let stuck = {
            let t = transport.clone();
            let to = to(3);
            tokio::spawn(
                async move { t.call(&to, &dead, PeerRequest::Ping, CONNECT_TIMEOUT).await },
            )
        };
        tokio::task::yield_now().await;
        let live_call = {
            let t = transport.clone();
            let to = to(2);
            tokio::spawn(async move {
                t.call(&to, &live, PeerRequest::Ping, Duration::from_millis(50))
                    .await
            })
        };
        let accepted = tokio::time::timeout(CONNECT_TIMEOUT / 2, listener.accept()).await;
        assert!(
            accepted.is_ok(),
            "the live peer was not dialed while the dead peer's dial hung"
        );
        assert!(
            !stuck.is_finished(),
            "the dead dial should still be waiting"
        );
        live_call.abort();
        stuck.abort();
    }
}
