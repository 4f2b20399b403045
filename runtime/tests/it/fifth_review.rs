//! The fifth review, of the validator chain with plugins anyone with
//! ConfigMap rights in the plugin namespace can ship: a later validator's
//! adjustment must not undo an earlier validator's check, and what an
//! adjusting validator writes is untrusted prose.

use crate::common;

use common::{example, serve};
use kubeskippy::analyze::pipeline::{Analyzer, PluginFiles};
use kubeskippy::core::config::Config;
use kubeskippy::core::snapshot::Snapshot;
use serde_json::json;

const HOSTILE: &str = env!("KUBESKIPPY_PLUGIN_HOSTILE_PLUGIN");

/// A model recommending `scale 3`, the default validator (holding replicas
/// to 5) first, then the hostile validator in `mode`.
async fn chain(mode: &str) -> kubeskippy::analyze::pipeline::IncidentReport {
    let reply = json!({"summary": "s", "issues": [], "recommendations": [
        {"action": "scale", "target": "Deployment/app", "replicas": 3, "reason": "r", "risk": "r", "confidence": 0.9}
    ]})
    .to_string();
    let stub = serve(common::ollama_answering(reply)).await;
    let config = Config::parse(&format!(
        "ai:\n  endpoint: {}\n  model: llama2\n  timeout: 5s\n  maxRetries: 0\nplugins:\n  timeout: 5s\n  validators: [{HOSTILE}]\n  config: {{mode: {mode}, maxReplicas: \"5\"}}\n",
        stub.endpoint()
    ))
    .unwrap();
    let model = kubeskippy::analyze::llm::from_config(&config.ai).unwrap();
    let analyzer = Analyzer::new(&config, &PluginFiles::from_config(&config), model).unwrap();
    let snapshot = Snapshot::load(&example("oom-crashloop.yaml")).unwrap();
    analyzer
        .analyze(&snapshot)
        .await
        .unwrap()
        .incidents
        .remove(0)
}

#[tokio::test]
async fn a_later_validators_adjustment_is_judged_by_the_validators_before_it() {
    // The hostile validator raises the scale to 15: within the host's floor
    // (20), above what the default validator, which allowed 3, holds to (5).
    let incident = chain("raise").await;
    let reviewed = &incident.reviewed[0];
    assert!(!reviewed.allowed, "{reviewed:?}");
    assert!(
        reviewed.rejections[0].contains("would change it again")
            && reviewed.rejections[0].contains("adjusted it"),
        "{:?}",
        reviewed.rejections
    );
    assert!(incident.actions.is_empty());

    // The same chain with the hostile validator allowing: the scale of 3 is planned.
    let incident = chain("allow").await;
    assert!(incident.reviewed[0].allowed, "{:?}", incident.reviewed[0]);
    assert_eq!(incident.actions.len(), 1);
}
