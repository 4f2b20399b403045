//! KubeSkippy's custom resources: HealingPolicy and ClusterHealingPolicy (what
//! to watch for and what may be done), HealingAction (one planned change and
//! its lifecycle).

/// A label or annotation `true` on a workload or pod: KubeSkippy never acts on
/// it, and no patch may set it (it is what keeps an object out of reach).
pub const PROTECTED_KEY: &str = "kubeskippy.io/protected";

pub mod healing_action;
pub mod policy;
