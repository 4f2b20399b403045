//! KubeSkippy: cluster facts → triggers → incidents → prompt plugin → model →
//! parser plugin → validators → host safety floor → HealingActions.

pub mod actions;
pub mod approval;
pub mod bench;
pub mod budget;
pub mod change;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod evaluation;
pub mod events;
pub mod execute;
pub mod facts;
pub mod healing_action;
pub mod incidents;
pub mod lease;
pub mod lifecycle;
pub mod model;
pub mod pipeline;
pub mod plugin_host;
pub mod policy;
pub mod privacy;
pub mod prometheus;
pub mod provenance;
pub mod report;
pub mod review;
pub mod rules;
pub mod safety;
pub mod snapshot;
pub mod synthetic;
pub mod triggers;
pub mod untrusted;
pub mod wit;
