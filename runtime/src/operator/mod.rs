//! What needs a Kubernetes client: collecting cluster objects into caches,
//! recording Events, carrying out and verifying HealingActions, approvals,
//! leader election and the daemon that runs it all.

pub mod approval;
pub mod collect;
pub mod daemon;
pub mod events;
pub mod execute;
pub mod leader;
pub mod lifecycle;
pub mod plugins;
pub mod prometheus;
pub mod signing_key;
