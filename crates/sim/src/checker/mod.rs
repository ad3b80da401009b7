//! Checkers, one property per file, each citing where the property comes from. Each returns the
//! violations it found as sentences that name what was observed.

pub mod bounded_staleness;
pub mod committed_stable;
pub mod convergence;
pub mod election_safety;
pub mod linearizable;
pub mod lost_writes;
