//! KubeSkippy: cluster facts → triggers → incidents → prompt plugin → model →
//! parser plugin → validators → host safety floor → HealingActions →
//! execution → verification.
//!
//! The crate is layered; each layer uses only those above it in this list:
//! - [`telemetry`]: the metrics every stage records into, and the log format;
//! - [`core`]: everything that needs no cluster connection — the plugin
//!   interface's types, the object model, the CRDs, snapshots and facts,
//!   triggers, incidents, rules, the safety floor, planning and signing;
//! - [`host`]: the Wasm plugin host and the review of what plugins return;
//! - [`analyze`]: the analysis pipeline, its report and the model providers;
//! - [`operator`]: what needs a Kubernetes client — collection, execution,
//!   the lifecycle of HealingActions, leader election, the daemon;
//! - `bench` (with the `bench` feature): the benchmarks behind `kubeskippy bench`;
//! - [`toolkit`]: `kubeskippy plugin …`, for plugin authors: check, test,
//!   bench, pack into ConfigMaps, scaffold, list what a daemon serves.
//!
//! The binary and the integration tests are the only users of this API; it
//! makes no promise of stability to anyone else.

pub mod analyze;
#[cfg(feature = "bench")]
pub mod bench;
pub mod core;
pub mod host;
pub mod operator;
pub mod telemetry;
pub mod toolkit;
