//! Pure merge logic for asynchronous keyspaces: the hybrid logical clock that orders writes
//! across regions, the last-writer-wins register that merges them, the other conflict
//! types (version vectors, PN-counters, multi-value registers, add-wins observed-remove sets),
//! and the row that holds any of them with the merges that report conflicts.
//!
//! Architecture Invariant: `crdt` does no I/O, reads no clock and draws no randomness; wall
//! time is an argument, so the simulator and property tests drive it.

pub mod counter;
pub mod hlc;
pub mod lww;
pub mod mv;
pub mod orset;
pub mod row;
pub mod vv;

pub use counter::PnCounter;
pub use hlc::{Hlc, HlcClock, Observed, RegionTag};
pub use mv::MvRegister;
pub use orset::OrSet;
pub use row::{Conflict, Op, OpError, Outcome, Rule, Side, Typed, Versioned};
pub use vv::{Causal, Dot, VersionVector};

/// Shorthands the property tests share.
#[cfg(test)]
mod testing {
    use crate::hlc::{Hlc, RegionTag};

    /// Region number `i`.
    pub fn r(i: u64) -> RegionTag {
        RegionTag(i)
    }

    /// A stamp at `t` ms (its origin does not matter where it is used).
    pub fn h(t: u64) -> Hlc {
        Hlc {
            physical_ms: t,
            logical: 0,
            origin: RegionTag(0),
        }
    }
}
