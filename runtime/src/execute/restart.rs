//! Rollout restart, as `kubectl rollout restart` does it: a new pod-template
//! annotation makes the controller roll every pod. A bare pod has no
//! controller to roll it, so restarting it means deleting it.

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch};
use serde_json::json;

use super::{DryRun, ExecuteError, Kind, Outcome, api_error, describe, dynamic_api, to_json};
use crate::wit::ObjectRef;

pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Restarts a Deployment, StatefulSet or DaemonSet by stamping its pod
/// template with `at`; deletes a bare Pod.
pub async fn restart(
    client: &kube::Client,
    target: &ObjectRef,
    mode: DryRun,
    at: DateTime<Utc>,
) -> Result<Outcome, ExecuteError> {
    let (kind, api) = dynamic_api(client, target, "restart")?;
    match kind {
        Kind::Pod => delete_pod(client, target, mode).await,
        Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => {
            let stamp = at.to_rfc3339_opts(SecondsFormat::Secs, true);
            let patch = json!({
                "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: stamp } } } }
            });
            let stored = api
                .patch(
                    &target.name,
                    &mode.patch_params(),
                    &Patch::Strategic(&patch),
                )
                .await
                .map_err(|error| api_error(target, error))?;
            Ok(Outcome {
                message: format!(
                    "{}restart {} (restartedAt {stamp})",
                    mode.prefix(),
                    describe(target)
                ),
                original: None,
                dry_run_result: mode.is_on().then(|| to_json(&stored)),
            })
        }
        // A ReplicaSet's pods are replaced only by its Deployment; restarting
        // it alone has no meaning `kubectl rollout` supports.
        Kind::ReplicaSet => Err(super::unsupported(target, "restart")),
    }
}

/// Deletes a pod outright, bypassing PodDisruptionBudgets.
pub(crate) async fn delete_pod(
    client: &kube::Client,
    target: &ObjectRef,
    mode: DryRun,
) -> Result<Outcome, ExecuteError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
    let params = DeleteParams {
        dry_run: mode.is_on(),
        ..DeleteParams::default()
    };
    let deleted = pods
        .delete(&target.name, &params)
        .await
        .map_err(|error| api_error(target, error))?;
    let result = deleted.either(|pod| to_json(&pod), |status| to_json(&status));
    Ok(Outcome {
        message: format!("{}delete {} to restart it", mode.prefix(), describe(target)),
        original: None,
        dry_run_result: mode.is_on().then_some(result),
    })
}
