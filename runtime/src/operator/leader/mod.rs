//! Leader election: the Lease lock, and the rounds that keep it and publish
//! whether this replica may act.

mod elect;
mod lease;

pub use elect::{Timing, elect};
pub use lease::{Fence, LeaseLock, Role};
