//! Plugins swapped in while the daemon serves: an analysis runs entirely on
//! one version of a plugin however often it is swapped underneath, no
//! analysis is lost to a swap, and the checks a version passes before it
//! serves refuse what the daemon must not run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kubeskippy::analyze::pipeline::{Analyzer, PluginFiles};
use kubeskippy::core::config::Config;
use kubeskippy::core::snapshot::Snapshot;
use kubeskippy::host::{Limits, PluginHost, PluginKind};
use serde_json::json;

use crate::common::{Reply, serve};

const HOSTILE: &[u8] = include_bytes!(env!("KUBESKIPPY_PLUGIN_HOSTILE_PLUGIN"));

fn snapshot_naming(validator: &str) -> Snapshot {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/snapshots/oom-crashloop.yaml");
    let mut snapshot = Snapshot::load(&path).unwrap();
    let mut policy = kubeskippy::core::crd::policy::HealingPolicy::builtin_default();
    policy.spec.ai.validator_plugins = vec![validator.into()];
    policy.validate().unwrap();
    snapshot.policies.push(policy);
    snapshot
}

/// A model that answers every chat with three recommendations.
async fn model() -> crate::common::Stub {
    serve(|request| match request.path.as_str() {
        "/api/tags" => Reply::Json {
            status: 200,
            body: json!({"models": [{"name": "llama2:latest"}]}).to_string(),
        },
        "/api/show" => Reply::Json {
            status: 200,
            body: json!({"model_info": {"llama.context_length": 8192}}).to_string(),
        },
        _ => Reply::Json {
            status: 200,
            body: json!({
                "model": "llama2",
                "message": {"role": "assistant", "content": kubeskippy_plugin_sdk::sample::realistic_reply()},
                "done": true
            })
            .to_string(),
        },
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_swapped_under_running_analyses_serves_each_from_one_version() {
    let stub = model().await;
    let config = Config::parse(&format!(
        // Deadlines far above a call's cost: the test is about versions, and
        // a debug build on two busy cores is slow.
        "ai:\n  endpoint: {}\n  model: llama2\n  maxRecommendations: 3\n  minConfidence: 0.5\nplugins:\n  timeout: 10s\n",
        stub.endpoint()
    ))
    .unwrap();
    let model = kubeskippy::analyze::llm::from_config(&config.ai).unwrap();
    let analyzer = Arc::new(Analyzer::new(&config, &PluginFiles::default(), model).unwrap());
    // Two versions of validator "team": one allows everything, one denies
    // everything it sees, saying what it saw.
    let limits = Limits {
        deadline: std::time::Duration::from_secs(10),
        ..Limits::default()
    };
    let version = |mode: &str| {
        analyzer
            .host()
            .load(
                "team",
                HOSTILE,
                PluginKind::Validator,
                limits,
                BTreeMap::from([("mode".to_string(), mode.to_string())]),
            )
            .unwrap()
    };
    let (allowing, denying) = (version("allow"), version("read-env"));
    analyzer.catalog().serve(allowing.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (catalog, stop) = (analyzer.catalog().clone(), stop.clone());
        tokio::spawn(async move {
            let mut swaps = 0u32;
            while !stop.load(Ordering::Relaxed) {
                catalog.serve(if swaps.is_multiple_of(2) {
                    denying.clone()
                } else {
                    allowing.clone()
                });
                swaps += 1;
                tokio::time::sleep(std::time::Duration::from_micros(200)).await;
            }
            swaps
        })
    };
    let snapshot = Arc::new(snapshot_naming("team"));
    let mut analyses = Vec::new();
    for _ in 0..4 {
        let (analyzer, snapshot) = (analyzer.clone(), snapshot.clone());
        analyses.push(tokio::spawn(async move {
            let mut reports = Vec::new();
            for _ in 0..25 {
                reports.push(analyzer.analyze(&snapshot).await.unwrap());
            }
            reports
        }));
    }
    let mut versions_seen = [0u32; 2];
    let mut analysed = 0;
    for analysis in analyses {
        for report in analysis.await.unwrap() {
            assert_eq!(report.incidents.len(), 1, "no analysis is dropped");
            let incident = &report.incidents[0];
            assert!(incident.fallback_reason.is_none(), "{incident:?}");
            // Recommendations the safety floor let through reached "team".
            let reached: Vec<bool> = incident
                .reviewed
                .iter()
                .filter(|r| {
                    r.rejections
                        .iter()
                        .all(|why| !why.starts_with("safety floor"))
                })
                .map(|r| r.rejections.iter().any(|why| why.contains("env:")))
                .collect();
            assert!(reached.len() >= 2, "{:?}", incident.reviewed);
            assert!(
                reached.iter().all(|denied| *denied == reached[0]),
                "one analysis saw both versions: {:?}",
                incident.reviewed
            );
            versions_seen[usize::from(reached[0])] += 1;
            analysed += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.await.unwrap();
    assert_eq!(analysed, 100);
    assert!(
        swaps > 100,
        "the plugin was swapped throughout ({swaps} swaps)"
    );
    assert!(
        versions_seen[0] > 0 && versions_seen[1] > 0,
        "analyses ran on both versions: {versions_seen:?}"
    );
}

#[test]
fn a_component_importing_outside_the_contract_is_refused_by_name() {
    let reaching_out = wat::parse_str(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.0" (instance))
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $exported (export "build-prompt" (func $f)))
            (export "kubeskippy:plugin/prompt-builder@0.1.0" (instance $exported)))"#,
    )
    .unwrap();
    let host = PluginHost::new().unwrap();
    let error = host
        .load(
            "reaching-out",
            &reaching_out,
            PluginKind::Prompt,
            Limits::default(),
            BTreeMap::new(),
        )
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("imports wasi:http/outgoing-handler@0.2.0, which a plugin may not import"),
        "{error}"
    );
    assert_eq!(
        host.identify(&reaching_out).unwrap_err(),
        error.trim_start_matches("plugin reaching-out: cannot load: ")
    );
}

#[test]
fn a_version_that_traps_or_overruns_in_its_fixture_run_is_refused() {
    let host = PluginHost::new().unwrap();
    // A small cap, so filling it takes far less than the deadline.
    let limits = Limits {
        deadline: std::time::Duration::from_secs(2),
        memory_bytes: 8 << 20,
    };
    for (mode, expected) in [
        ("loop", "timed out"),
        ("allocate", "memory limit"),
        ("panic", "trapped"),
    ] {
        let plugin = host
            .load(
                "hostile",
                HOSTILE,
                PluginKind::Validator,
                limits,
                BTreeMap::from([("mode".to_string(), mode.to_string())]),
            )
            .unwrap();
        let error = host.try_out(&plugin).unwrap_err().to_string();
        assert!(error.contains(expected), "{mode}: {error}");
    }
    let allowing = host
        .load(
            "hostile",
            HOSTILE,
            PluginKind::Validator,
            Limits::default(),
            BTreeMap::from([("mode".to_string(), "allow".to_string())]),
        )
        .unwrap();
    host.try_out(&allowing).unwrap();
}
