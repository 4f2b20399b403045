//! Every integration test in one binary: each links the whole crate, and one
//! link is far cheaper than one per file. Tests that change their process
//! (an address-space limit) have binaries of their own beside this one.

mod common;
#[path = "common/controller_harness.rs"]
mod controller_harness;
#[path = "common/fake_api.rs"]
mod fake_api;
#[path = "common/harness.rs"]
mod harness;
#[path = "common/realistic.rs"]
mod realistic;
#[path = "common/shop_app.rs"]
mod shop_app;
#[path = "common/test_clock.rs"]
mod test_clock;
#[path = "common/versions.rs"]
mod versions;

mod analyze;
mod approval;
mod approval_gate;
mod bench_smoke;
mod busy_plugins;
mod chart;
mod collect;
mod crd_rules;
mod e2e;
mod evaluation;
mod executors;
mod fifth_review;
mod fourth_review;
mod languages;
mod layout;
mod lease;
mod lifecycle;
mod ollama;
mod openai;
mod plugin_delivery;
mod plugin_pool;
mod plugin_toolkit;
mod plugin_versions;
mod prometheus;
mod real_model;
mod real_ollama;
mod sandbox;
mod scenario;
mod second_review;
mod secret_key;
mod third_review;
mod trust_boundaries;
mod untrusted;
