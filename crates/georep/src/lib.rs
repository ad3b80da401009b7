//! Geo-replication of async keyspaces: shipping each region's committed writes to the other
//! regions with cursors (so nothing is lost or applied twice), the lag that shipping shows,
//! session tokens (read-your-writes and monotonic reads across regions), and anti-entropy
//! (finding and repairing replicas that diverged in spite of shipping).
//!
//! Sits between consensus (whose committed logs it reads and whose groups commit what it
//! delivers) and the server (which wires it to the transport and the API). Merge rules live in
//! `meridian_crdt`; the destination's state machine applies them.
//!
//! Architecture Invariant: a destination applies a source's writes only in the source's log
//! order and records how far it got (its cursor) in the same commit as the data; a shipper
//! always resumes from the cursor the destination reports.

pub mod antientropy;
pub mod session;
pub mod shipper;

pub use session::SessionToken;
pub use shipper::{ShipAck, ShipRpc, ShipStatus, Shipper, ShipperLimits};
