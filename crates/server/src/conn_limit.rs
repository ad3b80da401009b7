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

impl Limited {
    pub fn stream(&self) -> &TcpStream {
        &self.inner
    }
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

impl tonic::transport::server::Connected for Limited {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// A TCP listener whose connections are admitted by a [`Limiter`] (Nagle off, as every
/// request-response listener here wants).
pub struct LimitedListener {
    listener: TcpListener,
    limiter: Limiter,
}

impl LimitedListener {
    pub fn new(listener: TcpListener, limiter: Limiter) -> LimitedListener {
        LimitedListener { listener, limiter }
    }

    /// The next admitted connection (connections over a bound are closed and skipped), with
    /// Nagle's algorithm off: with it on, a gRPC response written in several frames waited for
    /// the client's delayed ACK (reads took 44 ms on loopback instead of under 1 ms).
    pub async fn next(&mut self) -> (Limited, SocketAddr) {
        loop {
            let (stream, addr) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, listener = self.limiter.name, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(admission) = self.limiter.admit(addr.ip()) else {
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

    /// The admitted connections as a stream (for tonic's `serve_with_incoming`).
    pub fn into_stream(self) -> impl tokio_stream::Stream<Item = io::Result<Limited>> {
        futures::stream::unfold(self, |mut l| async move {
            let (c, _) = l.next().await;
            Some((Ok(c), l))
        })
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Limited;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.next().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
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
