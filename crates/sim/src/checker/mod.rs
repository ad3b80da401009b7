//! Checkers, one property per file, each citing where the property comes from. Each returns the
//! violations it found as sentences that name what was observed.

pub mod antientropy;
pub mod async_bounded;
pub mod async_convergence;
pub mod async_lost_writes;
pub mod bounded_staleness;
pub mod committed_stable;
pub mod convergence;
pub mod counter_sum;
pub mod election_safety;
pub mod failover_chain;
pub mod failover_holddown;
pub mod failover_paused;
pub mod gray_failover;
pub mod ledger_precision;
pub mod ledger_recall;
pub mod linearizable;
pub mod lost_writes;
pub mod lww_final;
pub mod meta_minority;
pub mod meta_spread;
pub mod mv_siblings;
pub mod promotion;
pub mod residency;
pub mod session;
pub mod set_members;
pub mod witness;
