//! What needs no cluster connection: from the objects a snapshot or the live
//! caches hold, through facts, triggers and incidents, to the safety floor and
//! the HealingActions planned (and signed) for what the analysis recommends.

pub mod change;
pub mod config;
pub mod crd;
pub mod evaluation;
pub mod facts;
pub mod gates;
pub mod incidents;
pub mod objects;
pub mod plan;
pub mod privacy;
pub mod provenance;
pub mod rules;
pub mod safety;
pub mod snapshot;
pub mod text;
pub mod triggers;
pub mod untrusted;
pub mod wit;

/// `#[serde(default = "crate::core::yes")]`: a switch that is on unless said off.
pub(crate) fn yes() -> bool {
    true
}
