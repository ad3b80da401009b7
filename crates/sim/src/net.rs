//! The simulator's side of the transport seam: turmoil's sockets behind the server's `Dialer`
//! and `Listener`, and a clock that reads simulated time with a per-node offset the nemesis
//! can skew and jump.

use std::io;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use meridian_server::transport::{Accepted, BoxStream, Dialer, Listener};
use meridian_types::Clock;

/// Milliseconds since the Unix epoch at the start of every simulation (2026-01-01).
pub const EPOCH_MS: u64 = 1_767_225_600_000;

pub struct SimDialer;

impl Dialer for SimDialer {
    fn dial(&self, addr: &str) -> BoxFuture<'static, io::Result<BoxStream>> {
        let addr = addr.to_string();
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}

pub struct SimListener(pub turmoil::net::TcpListener);

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Accepted>> {
        Box::pin(async move {
            let (stream, _) = self.0.accept().await?;
            Ok(Accepted {
                stream: Box::new(stream),
                identity: None,
            })
        })
    }
}

/// A node's wall clock: simulated time since [`EPOCH_MS`] plus the node's fixed skew plus an
/// offset the nemesis jumps.
#[derive(Default)]
pub struct SimClock {
    skew_ms: i64,
    offset_ms: AtomicI64,
}

impl SimClock {
    /// A clock that reads `skew_ms` off the simulation's true time (before any jump).
    pub fn with_skew(skew_ms: i64) -> SimClock {
        SimClock {
            skew_ms,
            offset_ms: AtomicI64::new(0),
        }
    }

    /// Jumps the clock to `offset_ms` off its skewed reading (0: back to the skew alone).
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    /// The simulated time (µs since the start) at which this clock read `wall_ms`, with its
    /// current skew and offset.
    pub fn sim_us_of(&self, wall_ms: u64) -> u64 {
        let off = self.skew_ms + self.offset_ms.load(Ordering::Relaxed);
        (wall_ms as i64 - EPOCH_MS as i64 - off).max(0) as u64 * 1000
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_millis() as i64;
        let off = self.skew_ms + self.offset_ms.load(Ordering::Relaxed);
        (EPOCH_MS as i64 + elapsed + off).max(0) as u64
    }
}

/// The clock handed to a node: shared with the nemesis, which moves its offset.
pub fn clock(shared: &Arc<SimClock>) -> Arc<dyn Clock> {
    shared.clone()
}
