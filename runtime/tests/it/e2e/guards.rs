//! The cluster's own guards, as the real API server enforces them: scaling
//! through the `/scale` subresource and its refusal when an HPA owns the
//! replica count; evictions through the Eviction API, refused with the real
//! 429 by a PodDisruptionBudget and allowed without one.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kubeskippy::core::crd::healing_action::{HealingAction, Phase};

use super::{RealCluster, app, eventually, settled};

fn policy(namespace: &str, action: &str) -> String {
    format!(
        r#"
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {{name: guarded, namespace: {namespace}}}
spec:
  mode: automatic
  selector: {{namespaces: [{namespace}]}}
  triggers:
  - name: crash
    condition: {{states: [CrashLoopBackOff]}}
  actions:
  - {action}
  safety:
    minHealthyPercent: 0
    verificationWindow: 10s
"#
    )
}

/// Runs a daemon on a fresh namespace holding the crash-looping app and
/// `extra` objects until its HealingAction has finished.
async fn guarded(
    cluster: &RealCluster,
    prefix: &str,
    action: &str,
    extra: impl Fn(&str) -> String,
) -> (String, Vec<Pod>, HealingAction) {
    let namespace = cluster.namespace(prefix).await;
    let admin = cluster.client("admin").await;
    cluster
        .apply("admin", &app(&namespace, "oom-always", "64Mi"))
        .await
        .unwrap();
    let extra = extra(&namespace);
    if !extra.is_empty() {
        cluster.apply("admin", &extra).await.unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    let before = eventually(Duration::from_secs(60), "the app's pod", async || {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        (!list.is_empty()).then_some(list)
    })
    .await;
    cluster
        .apply("admin", &policy(&namespace, action))
        .await
        .unwrap();
    let mut daemon = cluster.daemon(&namespace, &[&namespace], &[]);
    daemon.ready().await;
    let action = settled(&admin, &namespace, Duration::from_secs(150)).await;
    daemon.stop_and_check_rbac();
    (namespace, before, action)
}

fn message(action: &HealingAction) -> String {
    action
        .status
        .as_ref()
        .and_then(|status| status.message.clone())
        .unwrap_or_default()
}

/// The action failed, saying `why`.
fn assert_failed(action: &HealingAction, why: &str) {
    let message = message(action);
    assert_eq!(
        action.status.as_ref().unwrap().phase,
        Phase::Failed,
        "{message}"
    );
    assert!(message.contains(why), "{message}");
}

async fn replicas(cluster: &RealCluster, namespace: &str) -> i32 {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client("admin").await, namespace);
    deployments
        .get("shop")
        .await
        .unwrap()
        .spec
        .replicas
        .unwrap()
}

const SCALE: &str = "{name: more, type: scale, triggers: [crash], scale: {maxReplicas: 3}}";
const EVICT: &str = "{name: evict, type: delete-pod, triggers: [crash]}";

#[tokio::test]
async fn scaling_goes_through_the_scale_subresource_and_is_undone_when_it_does_not_help() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let (namespace, _, action) = guarded(cluster, "e2e-scale", SCALE, |_| String::new()).await;
    let status = action.status.clone().unwrap();
    assert_eq!(status.phase, Phase::RolledBack, "{}", message(&action));
    let written = serde_json::to_value(&status.rollback).unwrap();
    assert_eq!(written[0]["previous"], "1", "{written}");
    assert_eq!(written[0]["wrote"], "2", "{written}");
    assert_eq!(replicas(cluster, &namespace).await, 1);
}

#[tokio::test]
async fn scaling_is_refused_when_an_hpa_owns_the_replica_count() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let hpa = |namespace: &str| {
        format!(
            r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: shop, namespace: {namespace}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: shop}}
  minReplicas: 1
  maxReplicas: 4
  metrics: [{{type: Resource, resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 80}}}}}}]
"#
        )
    };
    let (namespace, _, action) = guarded(cluster, "e2e-hpa", SCALE, hpa).await;
    assert_failed(&action, "HPA shop controls");
    assert_eq!(replicas(cluster, &namespace).await, 1);
}

#[tokio::test]
async fn an_eviction_a_pod_disruption_budget_forbids_is_refused_by_the_real_429() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let budget = |namespace: &str| {
        format!(
            r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: shop, namespace: {namespace}}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: shop}}}}
"#
        )
    };
    let (namespace, before, action) = guarded(cluster, "e2e-pdb", EVICT, budget).await;
    assert_failed(&action, "PodDisruptionBudget");
    let pods: Api<Pod> = Api::namespaced(cluster.client("admin").await, &namespace);
    let still = pods
        .get(before[0].metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(still.metadata.uid, before[0].metadata.uid);
    assert!(still.metadata.deletion_timestamp.is_none());
}

#[tokio::test]
async fn an_eviction_without_a_budget_replaces_the_pod() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let (namespace, before, action) = guarded(cluster, "e2e-evict", EVICT, |_| String::new()).await;
    assert_eq!(
        action.spec.target.name,
        before[0].metadata.name.clone().unwrap()
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client("admin").await, &namespace);
    let gone = pods
        .get_opt(before[0].metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert!(
        gone.is_none_or(|pod| pod.metadata.deletion_timestamp.is_some()),
        "the evicted pod is gone or going"
    );
    // The ReplicaSet replaced it; the replacement crashes as well, so the
    // verdict is Failed.
    assert_eq!(
        action.status.as_ref().unwrap().phase,
        Phase::Failed,
        "{}",
        message(&action)
    );
}
