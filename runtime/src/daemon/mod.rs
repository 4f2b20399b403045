//! `kubeskippy run`: the live operator. Collects cluster facts into reflector
//! caches, evaluates policies on a fixed interval, sends each incident through
//! the same analysis pipeline as `analyze`, records HealingActions, and walks
//! each one through its lifecycle — only while this replica holds the leader
//! lease.

pub mod health;
pub mod leader;
pub mod reload;
