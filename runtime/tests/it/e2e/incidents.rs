//! Whole incidents through real controllers: kwok puts a labelled pod into a
//! fault (tests/cluster/stages.yaml), the daemon (a separate process, the
//! chart's ServiceAccount) plans and carries out a HealingAction, the
//! Deployment and ReplicaSet controllers roll it out, and the verdict follows
//! from what the pods do afterwards.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};
use kubeskippy::core::crd::healing_action::{HealingAction, Phase};

use super::{RealCluster, actions, app, eventually, restarted, settled};

/// A policy answering OOM kills (and crash loops) with `action`.
fn policy(namespace: &str, mode: &str, action: &str) -> String {
    format!(
        r#"
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {{name: shop-healing, namespace: {namespace}}}
spec:
  mode: {mode}
  selector: {{namespaces: [{namespace}]}}
  triggers:
  - name: oom
    condition: {{states: [OOMKilled, CrashLoopBackOff]}}
  actions:
  - {action}
  safety:
    minHealthyPercent: 0
    verificationWindow: 15s
"#
    )
}

const MORE_MEMORY: &str =
    "{name: more-memory, type: patch, triggers: [oom], patch: {maxMemoryLimit: 1Gi}}";
const RESTART: &str = "{name: restart, type: restart, triggers: [oom]}";

async fn memory_limit(client: &Client, namespace: &str) -> String {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get("shop")
        .await
        .unwrap();
    let container = &deployment.spec.template.spec.unwrap().containers[0];
    container
        .resources
        .as_ref()
        .unwrap()
        .limits
        .as_ref()
        .unwrap()["memory"]
        .0
        .clone()
}

/// An incident carried through to its HealingAction's final phase.
struct Settled {
    namespace: String,
    action: HealingAction,
    /// The daemon's `/metrics` samples once the action had finished.
    metrics: BTreeMap<String, f64>,
}

impl Settled {
    /// The value of the sample `name{labels}` (0 when it is not exported:
    /// a counter nothing has touched yet).
    fn sample(&self, name: &str, labels: &str) -> f64 {
        self.metrics
            .get(&format!("{name}{{{labels}}}"))
            .copied()
            .unwrap_or_default()
    }
}

/// Sets up the app and the policy in a fresh namespace and runs a daemon on
/// it until the HealingAction has finished.
async fn incident(cluster: &RealCluster, fault: &str, mode: &str, action: &str) -> Settled {
    let namespace = cluster.namespace(&format!("e2e-{fault}")).await;
    cluster
        .apply("admin", &app(&namespace, fault, "64Mi"))
        .await
        .unwrap();
    cluster
        .apply("admin", &policy(&namespace, mode, action))
        .await
        .unwrap();
    let mut daemon = cluster.daemon(&namespace, &[&namespace], &[]);
    daemon.ready().await;
    let admin = cluster.client("admin").await;
    let action = settled(&admin, &namespace, Duration::from_secs(180)).await;
    // The final phase is counted a moment after it is written.
    let metrics = eventually(
        Duration::from_secs(10),
        "the final phase counted",
        async || {
            let metrics = daemon.metrics().await;
            metrics
                .keys()
                .any(|sample| sample.starts_with("kubeskippy_healing_actions_total{"))
                .then_some(metrics)
        },
    )
    .await;
    daemon.stop_and_check_rbac();
    Settled {
        namespace,
        action,
        metrics,
    }
}

fn phase(action: &HealingAction) -> Phase {
    action.status.as_ref().unwrap().phase
}

fn message(action: &HealingAction) -> String {
    format!("{:?}", action.status.as_ref().unwrap().message)
}

async fn replica_sets(client: &Client, namespace: &str) -> Vec<ReplicaSet> {
    Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn an_oom_crash_loop_is_healed_by_more_memory_through_a_real_rollout() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let settled = incident(cluster, "oom-crashloop", "automatic", MORE_MEMORY).await;
    let (namespace, action) = (&settled.namespace, &settled.action);
    assert_eq!(phase(action), Phase::Succeeded, "{}", message(action));
    let admin = cluster.client("admin").await;
    assert_eq!(memory_limit(&admin, namespace).await, "128Mi");
    let policy = format!("policy=\"{namespace}/shop-healing\"");
    assert!(
        settled.sample(
            "kubeskippy_incidents_total",
            &format!("trigger=\"oom-killed\",{policy}")
        ) + settled.sample(
            "kubeskippy_incidents_total",
            &format!("trigger=\"crash-loop\",{policy}")
        ) >= 1.0,
        "{:#?}",
        settled.metrics
    );
    assert_eq!(
        settled.sample(
            "kubeskippy_healing_actions_total",
            "action=\"patch\",phase=\"Succeeded\""
        ),
        1.0
    );
    assert_eq!(
        settled.sample("kubeskippy_verifications_total", "result=\"passed\""),
        1.0
    );
    assert_eq!(
        settled.sample("kubeskippy_rollbacks_total", "action=\"patch\""),
        0.0
    );
    // The Deployment controller rolled the change out as a new ReplicaSet,
    // and the old one was scaled to nothing.
    let sets = replica_sets(&admin, namespace).await;
    assert_eq!(sets.len(), 2, "{sets:#?}");
    let replicas: Vec<i32> = sets
        .iter()
        .map(|set| set.status.as_ref().unwrap().ready_replicas.unwrap_or(0))
        .collect();
    assert!(
        replicas.contains(&1) && replicas.contains(&0),
        "{replicas:?}"
    );
}

#[tokio::test]
async fn a_change_that_does_not_help_is_rolled_back_on_the_real_deployment() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let settled = incident(cluster, "oom-always", "automatic", MORE_MEMORY).await;
    let action = &settled.action;
    assert_eq!(phase(action), Phase::RolledBack, "{}", message(action));
    let admin = cluster.client("admin").await;
    assert_eq!(memory_limit(&admin, &settled.namespace).await, "64Mi");
    // Counted once, as rolled back, not also as the failure before it.
    assert_eq!(
        settled.sample(
            "kubeskippy_healing_actions_total",
            "action=\"patch\",phase=\"RolledBack\""
        ),
        1.0
    );
    assert_eq!(
        settled.sample(
            "kubeskippy_healing_actions_total",
            "action=\"patch\",phase=\"Failed\""
        ),
        0.0
    );
    assert_eq!(
        settled.sample("kubeskippy_rollbacks_total", "action=\"patch\""),
        1.0
    );
    assert_eq!(
        settled.sample("kubeskippy_verifications_total", "result=\"failed\""),
        1.0
    );
}

#[tokio::test]
async fn a_rollout_restart_reaches_the_deployment_and_is_judged_failed_when_the_crashes_go_on() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let settled = incident(cluster, "oom-always", "automatic", RESTART).await;
    let action = &settled.action;
    assert_eq!(phase(action), Phase::Failed, "{}", message(action));
    assert_eq!(
        settled.sample(
            "kubeskippy_healing_actions_total",
            "action=\"restart\",phase=\"Failed\""
        ),
        1.0
    );
    assert_eq!(
        settled.sample("kubeskippy_verifications_total", "result=\"failed\""),
        1.0
    );
    let admin = cluster.client("admin").await;
    assert!(
        restarted(&admin, &settled.namespace).await,
        "the rollout restart reached the Deployment"
    );
}

#[tokio::test]
async fn dry_run_records_the_servers_dry_run_and_changes_nothing() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let settled = incident(cluster, "oom-crashloop", "dryrun", MORE_MEMORY).await;
    let (namespace, action) = (&settled.namespace, &settled.action);
    assert_eq!(phase(action), Phase::Succeeded, "{}", message(action));
    assert_eq!(
        settled.sample(
            "kubeskippy_healing_actions_total",
            "action=\"patch\",phase=\"Succeeded\""
        ),
        1.0
    );
    // Nothing ran, so nothing was verified.
    assert_eq!(
        settled.sample("kubeskippy_verifications_total", "result=\"passed\""),
        0.0
    );
    let result = action
        .status
        .clone()
        .unwrap()
        .dry_run_result
        .expect("a dry-run result");
    // What the API server answered to dryRun=All: the Deployment as it would be.
    assert_eq!(
        result.pointer("/spec/template/spec/containers/0/resources/limits/memory"),
        Some(&serde_json::json!("128Mi")),
        "{result:#}"
    );
    let admin = cluster.client("admin").await;
    assert_eq!(memory_limit(&admin, namespace).await, "64Mi");
    assert_eq!(replica_sets(&admin, namespace).await.len(), 1);
}

#[tokio::test]
async fn monitor_mode_records_an_event_and_no_healing_action() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let namespace = cluster.namespace("e2e-monitor").await;
    cluster
        .apply("admin", &app(&namespace, "oom-crashloop", "64Mi"))
        .await
        .unwrap();
    cluster
        .apply("admin", &policy(&namespace, "monitor", MORE_MEMORY))
        .await
        .unwrap();
    let mut daemon = cluster.daemon(&namespace, &[&namespace], &[]);
    daemon.ready().await;
    let admin = cluster.client("admin").await;
    let events: Api<Event> = Api::namespaced(admin.clone(), &namespace);
    eventually(
        Duration::from_secs(120),
        "an IncidentDetected Event",
        async || {
            let list = events.list(&ListParams::default()).await.unwrap();
            list.items
                .iter()
                .any(|event| event.reason.as_deref() == Some("IncidentDetected"))
                .then_some(())
        },
    )
    .await;
    // A few more passes: still nothing planned.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(actions(&admin, &namespace).await.is_empty());
    assert_eq!(memory_limit(&admin, &namespace).await, "64Mi");
    daemon.stop_and_check_rbac();
}

#[tokio::test]
async fn memory_near_its_limit_in_the_metrics_api_is_healed_by_more_memory() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let namespace = cluster.namespace("e2e-metrics").await;
    // kwok reports the pod's working set from this annotation to
    // metrics-server, as a kubelet would: 60Mi of a 64Mi limit.
    let manifest = app(&namespace, "none", "64Mi").replace(
        "    metadata: {labels: {app: shop, kubeskippy.test/fault: none}}",
        "    metadata:\n      labels: {app: shop, kubeskippy.test/fault: none}\n      annotations: {kwok.x-k8s.io/usage-memory: 60Mi, kwok.x-k8s.io/usage-cpu: 20m}",
    );
    assert!(manifest.contains("usage-memory"), "{manifest}");
    cluster.apply("admin", &manifest).await.unwrap();
    cluster
        .apply(
            "admin",
            &format!(
                r#"
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {{name: shop-healing, namespace: {namespace}}}
spec:
  mode: automatic
  selector: {{namespaces: [{namespace}]}}
  triggers:
  - name: memory
    metric: {{name: memoryPercentOfLimit, threshold: 90}}
  actions:
  - {{name: more-memory, type: patch, triggers: [memory], patch: {{maxMemoryLimit: 1Gi}}}}
  safety:
    minHealthyPercent: 0
    verificationWindow: 15s
"#
            ),
        )
        .await
        .unwrap();
    let mut daemon = cluster.daemon(&namespace, &[&namespace], &["--metrics-interval=5s"]);
    daemon.ready().await;
    let admin = cluster.client("admin").await;
    let action = settled(&admin, &namespace, Duration::from_secs(180)).await;
    daemon.stop_and_check_rbac();
    assert_eq!(phase(&action), Phase::Succeeded, "{}", message(&action));
    assert_eq!(action.spec.triggers, ["memory"], "{action:#?}");
    assert_eq!(memory_limit(&admin, &namespace).await, "128Mi");
}

/// `--log-format json`: one `jq` filter on the incident id follows the
/// incident from the finding to the HealingAction's final phase, and every
/// line on that path names the policy and the target.
#[tokio::test]
async fn json_logs_follow_one_incident_from_trigger_to_outcome() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let namespace = cluster.namespace("e2e-json-logs").await;
    cluster
        .apply("admin", &app(&namespace, "oom-crashloop", "64Mi"))
        .await
        .unwrap();
    cluster
        .apply("admin", &policy(&namespace, "automatic", MORE_MEMORY))
        .await
        .unwrap();
    let mut daemon = cluster.daemon(&namespace, &[&namespace], &["--log-format=json"]);
    daemon.ready().await;
    let admin = cluster.client("admin").await;
    let action = settled(&admin, &namespace, Duration::from_secs(180)).await;
    assert_eq!(phase(&action), Phase::Succeeded, "{}", message(&action));
    // The final phase is logged a moment after it is written.
    eventually(
        Duration::from_secs(10),
        "the final phase counted",
        async || {
            let metrics = daemon.metrics().await;
            metrics
                .keys()
                .any(|sample| sample.starts_with("kubeskippy_healing_actions_total{"))
                .then_some(())
        },
    )
    .await;
    let log = daemon.stop_and_check_rbac();

    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("a log line that is not JSON ({error}): {line}"))
        })
        .collect();
    let id = &action.spec.incident_id;
    let name = action.metadata.name.as_deref().unwrap();
    // jq 'select(.span.incident == ID or .incident == ID)'
    let path: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["span"]["incident"] == *id || line["incident"] == *id)
        .collect();
    let messages: Vec<&str> = path
        .iter()
        .filter_map(|line| line["message"].as_str())
        .collect();
    let position = |wanted: &str| {
        messages
            .iter()
            .position(|message| message.contains(wanted))
            .unwrap_or_else(|| panic!("no {wanted:?} on the incident's path: {messages:#?}"))
    };
    let raised = position("incident raised");
    let created = position("HealingAction created");
    assert!(raised < created, "{messages:#?}");
    let outcome = path
        .iter()
        .position(|line| {
            line["message"] == "HealingAction phase changed" && line["to"] == "Succeeded"
        })
        .unwrap_or_else(|| panic!("no final phase on the incident's path: {messages:#?}"));
    assert!(created < outcome, "{messages:#?}");

    let spec_target = &action.spec.target;
    let target = format!(
        "{} {}/{}",
        spec_target.kind, spec_target.namespace, spec_target.name
    );
    for line in &path {
        let span = &line["span"];
        assert_eq!(span["policy"], "shop-healing", "{line}");
        let in_namespace = format!(" {namespace}/");
        assert!(
            span["target"]
                .as_str()
                .is_some_and(|t| t.contains(&in_namespace)),
            "{line}"
        );
        if span["name"] == "action" {
            assert_eq!(span["target"], target.as_str(), "{line}");
            assert_eq!(span["action"], name, "{line}");
            assert_eq!(span["namespace"], namespace.as_str(), "{line}");
        }
    }
    assert!(
        path.iter().any(|line| line["span"]["name"] == "action"),
        "the action's reconciles carry the incident id: {messages:#?}"
    );
}
