//! Client connections are bounded before anything else happens on them (before TLS or a token
//! is looked at): at most [`PER_PEER_MAX`] open connections per client address and
//! [`TOTAL_MAX`] per listener. A connection over either bound is closed at once and counted
//! (`meridian_connections_refused_total`), so an anonymous client cannot exhaust memory or
//! file descriptors by opening connections. Request sizes are bounded by the servers
//! themselves (HTTP bodies by `HTTP_BODY_BYTES_MAX`, headers by hyper's 100 headers and
//! ~400 KiB buffer, gRPC messages by tonic's 4 MiB).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::auth::Principal;

/// Open connections from one client address, per listener.
pub const PER_PEER_MAX: usize = 512;
/// Open connections per listener.
pub const TOTAL_MAX: usize = 8192;

#[derive(Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// Admits connections within the bounds; shared by a listener's connections.
#[derive(Clone)]
pub struct Limiter {
    name: &'static str,
    per_peer_max: usize,
    total_max: usize,
    counts: Arc<Mutex<Counts>>,
}

/// Held by an admitted connection; frees its place when dropped.
pub struct Admission {
    peer: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap();
        debug_assert!(c.total > 0, "a connection leaves that was counted in");
        c.total -= 1;
        if let Some(n) = c.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                c.per_peer.remove(&self.peer);
            }
        }
    }
}

impl Limiter {
    pub fn new(name: &'static str, per_peer_max: usize, total_max: usize) -> Limiter {
        assert!(per_peer_max > 0 && total_max >= per_peer_max);
        Limiter {
            name,
            per_peer_max,
            total_max,
            counts: Default::default(),
        }
    }

    /// A place for a connection from `peer`, or None over a bound.
    pub fn admit(&self, peer: IpAddr) -> Option<Admission> {
        let mut c = self.counts.lock().unwrap();
        let mine = c.per_peer.get(&peer).copied().unwrap_or(0);
        if c.total >= self.total_max || mine >= self.per_peer_max {
            metrics::counter!("meridian_connections_refused_total", "listener" => self.name)
                .increment(1);
            return None;
        }
        c.total += 1;
        *c.per_peer.entry(peer).or_default() += 1;
        Some(Admission {
            peer,
            counts: self.counts.clone(),
        })
    }

    /// Open connections now (total, from `peer`).
    pub fn open(&self, peer: IpAddr) -> (usize, usize) {
        let c = self.counts.lock().unwrap();
        (c.total, c.per_peer.get(&peer).copied().unwrap_or(0))
    }
}

/// An admitted connection.
pub struct Limited {
    inner: TcpStream,
    _admission: Admission,
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What the servers learn about a connection: where it comes from, and the principal its
/// verified client certificate stands for (TLS with client certificates only).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub cert: Option<Arc<Principal>>,
}

enum Io {
    Plain(Limited),
    Tls(Box<tokio_rustls::server::TlsStream<Limited>>),
}

/// An admitted client connection, plain or TLS.
pub struct Conn {
    io: Io,
    info: ConnInfo,
}

impl Conn {
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

macro_rules! delegate {
    ($self:ident, $io:ident => $e:expr) => {
        match &mut $self.io {
            Io::Plain($io) => {
                let $io = Pin::new($io);
                $e
            }
            Io::Tls($io) => {
                let $io = Pin::new($io.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, io => io.poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => io.poll_write(cx, buf))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => io.poll_flush(cx))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => io.poll_shutdown(cx))
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => io.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(p) => p.is_write_vectored(),
            Io::Tls(t) => t.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, LimitedListener>>
    for ConnInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, LimitedListener>) -> ConnInfo {
        stream.io().info.clone()
    }
}

/// Which API a TLS listener serves (they differ in ALPN).
#[derive(Clone, Copy, Debug)]
pub enum Api {
    Http,
    Grpc,
}

enum Source {
    Plain(TcpListener, Limiter),
    /// Connections whose handshake has completed (handshakes run in their own tasks).
    Tls(tokio::sync::mpsc::Receiver<(Conn, SocketAddr)>),
}

/// A TCP listener whose connections are admitted by a [`Limiter`] (Nagle off, as every
/// request-response listener here wants), optionally with TLS.
pub struct LimitedListener {
    local: SocketAddr,
    source: Source,
}

/// The next connection the limiter admits (connections over a bound are closed and skipped),
/// with Nagle's algorithm off: with it on, a gRPC response written in several frames waited
/// for the client's delayed ACK (reads took 44 ms on loopback instead of under 1 ms).
async fn admit_next(listener: &TcpListener, limiter: &Limiter) -> (Limited, SocketAddr) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, listener = limiter.name, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admission) = limiter.admit(addr.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        return (
            Limited {
                inner: stream,
                _admission: admission,
            },
            addr,
        );
    }
}

impl LimitedListener {
    pub fn new(listener: TcpListener, limiter: Limiter) -> LimitedListener {
        LimitedListener {
            local: listener
                .local_addr()
                .expect("a bound listener has an address"),
            source: Source::Plain(listener, limiter),
        }
    }

    /// As [`LimitedListener::new`], with TLS from `tls` (its files are re-read when they
    /// change). A connection is admitted by the limiter before its handshake; handshakes run
    /// in their own tasks, at most `tls::HANDSHAKES_MAX` at once, each within
    /// `tls::HANDSHAKE_TIMEOUT`, so a client that stalls one holds up no other.
    pub fn with_tls(
        listener: TcpListener,
        limiter: Limiter,
        tls: Arc<crate::tls::Tls>,
        api: Api,
    ) -> LimitedListener {
        let local = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(crate::tls::HANDSHAKES_MAX));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (conn, addr) = admit_next(&listener, &limiter).await;
                let m = tls.material();
                let config = match api {
                    Api::Http => m.http_server.clone(),
                    Api::Grpc => m.grpc_server.clone(),
                };
                let tx = tx.clone();
                let name = limiter.name;
                tokio::spawn(async move {
                    let _slot = slot;
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    let stream = match tokio::time::timeout(
                        crate::tls::HANDSHAKE_TIMEOUT,
                        acceptor.accept(conn),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            metrics::counter!("meridian_tls_handshakes_failed_total", "listener" => name).increment(1);
                            tracing::debug!(client = %addr, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            metrics::counter!("meridian_tls_handshakes_failed_total", "listener" => name).increment(1);
                            return;
                        }
                    };
                    // The verifier accepted the chain; a certificate that names no usable
                    // principal just gives none (a token may still authenticate).
                    let cert = match stream.get_ref().1.peer_certificates() {
                        Some([leaf, ..]) => crate::tls::cert_principal(leaf).ok().map(Arc::new),
                        _ => None,
                    };
                    let conn = Conn {
                        io: Io::Tls(Box::new(stream)),
                        info: ConnInfo { remote: addr, cert },
                    };
                    let _ = tx.send((conn, addr)).await;
                });
            }
        });
        LimitedListener {
            local,
            source: Source::Tls(rx),
        }
    }

    /// The next admitted connection (TLS: with its handshake done).
    pub async fn next(&mut self) -> (Conn, SocketAddr) {
        match &mut self.source {
            Source::Plain(listener, limiter) => {
                let (c, addr) = admit_next(listener, limiter).await;
                (
                    Conn {
                        io: Io::Plain(c),
                        info: ConnInfo {
                            remote: addr,
                            cert: None,
                        },
                    },
                    addr,
                )
            }
            Source::Tls(rx) => match rx.recv().await {
                Some(c) => c,
                // The accepting task ended (only with the runtime): accept nothing more.
                None => std::future::pending().await,
            },
        }
    }

    /// The admitted connections as a stream (for tonic's `serve_with_incoming`).
    pub fn into_stream(self) -> impl tokio_stream::Stream<Item = io::Result<Conn>> {
        futures::stream::unfold(self, |mut l| async move {
            let (c, _) = l.next().await;
            Some((Ok(c), l))
        })
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.next().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a peer gets at most its share, others still get in, and a place frees on drop.
    #[test]
    fn bounds_per_peer_and_total() {
        let l = Limiter::new("test", 2, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert!(l.admit(a).is_none(), "a third from one peer");
        let _b1 = l.admit(b).unwrap();
        assert!(l.admit(b).is_none(), "over the total");
        drop(a1);
        assert_eq!(l.open(a), (2, 1));
        assert!(l.admit(b).is_some());
    }
}
