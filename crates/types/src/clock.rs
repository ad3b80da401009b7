//! The clock seam: node code reads time only through [`Clock`], so the simulator can skew it.

/// Wall-clock milliseconds since the Unix epoch, as this node believes them.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}
