//! What the daemon tells the people who run it: Prometheus metrics every
//! layer records into ([`metrics`]) and the log format ([`logs`]).

pub mod logs;
pub mod metrics;
