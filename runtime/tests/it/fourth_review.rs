//! The fourth, independent review of the trust boundaries: what it broke after
//! the third review's fixes, as tests of what the daemon should do instead.
//! Against the in-memory API server and a stub model, with the shared harnesses.

use crate::common;
use crate::controller_harness;
use crate::shop_app;

use common::{Stub, example, serve};
use controller_harness::Cluster;
use kubeskippy::analyze::pipeline::{Analyzer, PluginFiles};
use kubeskippy::core::config::Config;
use kubeskippy::core::snapshot::Snapshot;
use kubeskippy::core::wit::Incident;
use serde_json::{Value, json};

/// An analyzer asking a stub model that answers `recommendations`.
async fn hostile_model(recommendations: Value, extra: &str) -> (Stub, Analyzer) {
    let reply =
        json!({"summary": "s", "issues": [], "recommendations": recommendations}).to_string();
    let stub = serve(common::ollama_answering(reply)).await;
    let config = Config::parse(&format!(
        "ai:\n  endpoint: {}\n  model: llama2\n  timeout: 5s\n  maxRetries: 0\n{extra}",
        stub.endpoint()
    ))
    .unwrap();
    let model = kubeskippy::analyze::llm::from_config(&config.ai).unwrap();
    let analyzer = Analyzer::new(&config, &PluginFiles::default(), model).unwrap();
    (stub, analyzer)
}

// ---- A. anonymisation leaves names inside DNS names ----

#[test]
fn an_anonymised_incident_carries_no_real_name_inside_a_service_dns_name() {
    // `ai.anonymize: true` promises the model never sees a real name. Names
    // are replaced whole-name only, and `.` counts as part of a name, so a
    // name followed by `.` and a letter is not a name end: in
    // `app.shop.svc.cluster.local` (every connection error, probe failure or
    // DNS lookup message names a Service this way) neither the workload `app`
    // nor the namespace `shop` is replaced, and both go to the model verbatim.
    // (`core/privacy.rs`, `replace_names`' `ends_name`.)
    let mut incident: Incident =
        kubeskippy::core::wit::from_guest(&kubeskippy_plugin_sdk::sample::oom_crashloop_incident());
    incident.events[0].message =
        "dial tcp: lookup app.shop.svc.cluster.local on 10.96.0.10:53: no such host".into();
    let anonymized = kubeskippy::core::privacy::anonymize(&incident);
    let message = &anonymized.incident.events[0].message;
    for real in ["app.", ".shop."] {
        assert!(
            !message.contains(real),
            "{real:?} reaches the model un-anonymised: {message}"
        );
    }
}

// ---- B. the gates count peers from the pass's start ----

const SHOP_AUTOMATIC: &str = r#"
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {name: shop-healing, namespace: shop, uid: uid-shop-healing}
spec:
  mode: automatic
  triggers: [{name: oom, condition: {states: [OOMKilled]}}]
  actions:
  - {name: restart, type: restart, triggers: [oom]}
  - {name: more, type: scale, triggers: [oom], scale: {minReplicas: 1, maxReplicas: 5, step: 1}}
  - {name: memory, type: patch, triggers: [oom], patch: {maxMemoryLimit: 2Gi}}
  safety: {maxActionsPerHour: 1, maxConcurrent: 1, cooldown: 30m, verificationWindow: 2m}
"#;

fn started(cluster: &Cluster) -> Vec<String> {
    cluster
        .stored("/healingactions/")
        .iter()
        .filter(|action| action["status"]["startedAt"].is_string())
        .map(|action| {
            format!(
                "{} {} at {}",
                action["metadata"]["name"],
                action["status"]["phase"],
                action["status"]["startedAt"]
            )
        })
        .collect()
}

#[tokio::test]
async fn actions_due_in_the_same_tick_still_respect_max_concurrent_and_the_hourly_limit() {
    // `Controller::reconcile_due` computes the peers (what every gate counts:
    // maxConcurrent, maxActionsPerHour, the namespace and cluster budgets)
    // once, from the cache, before its loop, and hands the same list to every
    // action. An action moved to InProgress earlier in the loop is still
    // Approved in that list, so every action due in the same tick passes
    // every gate: here three changes to one workload run at once under a
    // policy allowing one at a time and one an hour. Any set of approvals
    // that land together (several recommendations of one reply, several
    // incidents, an approver approving a batch) does the same to the
    // host's per-namespace and cluster budgets.
    let (_stub, analyzer) = hostile_model(
        json!([
            {"action": "restart", "target": "Deployment/app", "reason": "r", "risk": "low", "confidence": 0.9},
            {"action": "scale", "target": "Deployment/app", "replicas": 3, "reason": "r", "risk": "low", "confidence": 0.9},
            {"action": "patch", "target": "Deployment/app", "container": "app", "memory_limit": "1Gi", "reason": "r", "risk": "low", "confidence": 0.9},
        ]),
        "",
    )
    .await;
    let mut cluster = Cluster::with(&format!("{}\n---\n{SHOP_AUTOMATIC}", shop_app::YAML));
    cluster.analyzer = analyzer;
    let created = cluster.evaluate().await;
    assert_eq!(created.len(), 3, "{created:?}");
    cluster.settle().await;
    let started = started(&cluster);
    assert!(
        started.len() <= 1,
        "maxConcurrent 1 and maxActionsPerHour 1, yet {} actions started: {started:?}",
        started.len()
    );
}

// ---- C. one reply, the same change several times ----

#[tokio::test]
async fn identical_recommendations_become_one_healing_action() {
    // The model repeats one recommendation. Each copy passes review and is
    // planned; the controller creates each under its own random name, so one
    // incident gets three restarts of the same workload. The policy's
    // cooldown, meant to keep a workload quiet after an action, is checked
    // only when planning, so the copies run one after another (or, with B,
    // at once). (`analyze/pipeline.rs` `analyze_incident`, controller
    // `handle_incident`.)
    let one = json!({"action": "restart", "target": "Deployment/app", "reason": "r", "risk": "low", "confidence": 0.9});
    let (_stub, analyzer) = hostile_model(json!([one.clone(), one.clone(), one]), "").await;
    let mut cluster = Cluster::with(&format!("{}\n---\n{SHOP_AUTOMATIC}", shop_app::YAML));
    cluster.analyzer = analyzer;
    let created = cluster.evaluate().await;
    assert_eq!(
        created.len(),
        1,
        "one incident, one restart asked three times: {created:?}"
    );
}

// ---- D. every recommendation of a reply is reviewed, however many ----

#[tokio::test]
async fn a_reply_with_thousands_of_recommendations_is_cut_before_review() {
    // The reply may be 1 MiB, so a model can return some 15,000
    // recommendations. Review runs the floor and every validator plugin
    // (a fresh Wasm instance each) on each of them, and only then does
    // `apply_limits` keep `maxRecommendations` (at most 20 for a policy, 3 by
    // default): 15,000 recommendations took 10 s of the daemon's single
    // evaluation loop for one incident here, on every analysis of it.
    // (`host/review.rs` `review` before `apply_limits`.)
    let one = json!({"action": "restart", "target": "Deployment/app", "confidence": 0.9});
    let many: Vec<Value> = std::iter::repeat_n(one, 1000).collect();
    let (_stub, analyzer) = hostile_model(Value::Array(many), "").await;
    let snapshot = Snapshot::load(&example("oom-crashloop.yaml")).unwrap();
    let report = analyzer.analyze(&snapshot).await.unwrap();
    let incident = &report.incidents[0];
    assert_eq!(
        incident.source.as_str(),
        "llm",
        "{:?}",
        incident.fallback_reason
    );
    assert!(
        incident.reviewed.len() <= 20,
        "{} recommendations were each run through the validators",
        incident.reviewed.len()
    );
}

// ---- E. a change no target can take, refused before it can count as a failure ----

#[tokio::test]
async fn a_scale_of_a_pod_is_refused_by_the_floor_not_failed_at_run_time() {
    // Scaling a Pod (or a DaemonSet) cannot work; let through review, it
    // fails when it runs, and each such failure counts towards the policy's
    // circuit breaker: a model could pause healing by asking for it.
    let (_stub, analyzer) = hostile_model(
        json!([{"action": "scale", "target": "Pod/app-xyz", "replicas": 3, "reason": "r", "risk": "low", "confidence": 0.9}]),
        "",
    )
    .await;
    let snapshot = Snapshot::load(&example("oom-crashloop.yaml")).unwrap();
    let report = analyzer.analyze(&snapshot).await.unwrap();
    let incident = &report.incidents[0];
    assert_eq!(
        incident.source.as_str(),
        "llm",
        "{:?}",
        incident.fallback_reason
    );
    let reviewed = &incident.reviewed[0];
    assert!(
        !reviewed.allowed
            && reviewed
                .rejections
                .iter()
                .any(|why| why.contains("a Pod has no replica count to scale")),
        "{reviewed:?}"
    );
}

// ---- F. a finding per failing pod, however many pods ----

#[tokio::test]
async fn an_incident_carries_a_bounded_number_of_findings() {
    // Pods and events of an incident are capped; findings were not, and a
    // workload with thousands of failing pods made anonymisation quadratic
    // and the prompt impossible to fit.
    let mut yaml = String::from(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop, uid: d1}\nspec: {replicas: 300, selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: nginx}]}}}\n",
    );
    for n in 0..300 {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-6f9c7b8d4-{n:05}, namespace: shop, labels: {{app: web, pod-template-hash: 6f9c7b8d4}}, ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: web-6f9c7b8d4, uid: rs1, controller: true}}]}}\nspec: {{containers: [{{name: web, image: nginx}}]}}\nstatus: {{phase: Running, containerStatuses: [{{name: web, ready: false, restartCount: 9, image: nginx, imageID: '', state: {{waiting: {{reason: CrashLoopBackOff}}}}}}]}}\n"
        ));
    }
    let snapshot = Snapshot::parse(&yaml, "many-pods").unwrap();
    let analyzer = Analyzer::new(&Config::default(), &PluginFiles::default(), None).unwrap();
    let report = analyzer.analyze(&snapshot).await.unwrap();
    let findings = report.incidents[0].incident.findings.len();
    assert!(findings <= 40, "{findings} findings in one incident");
}
