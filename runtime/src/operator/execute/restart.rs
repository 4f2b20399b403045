//! Rollout restart, as `kubectl rollout restart` does it: a new pod-template
//! annotation makes the controller roll every pod. A bare pod has no
//! controller to roll it; restarting one is an eviction (see `evict`).

use chrono::{DateTime, SecondsFormat, Utc};
use kube::api::Patch;
use serde_json::json;

use super::{
    DryRun, ExecuteError, Kind, Outcome, Target, api_error, dynamic_api, get_checked, guarded,
    resource_version, to_json, unsupported,
};

pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Restarts a Deployment, StatefulSet or DaemonSet by stamping its pod
/// template with `at`.
pub async fn restart(
    client: &kube::Client,
    target: &Target,
    mode: DryRun,
    at: DateTime<Utc>,
) -> Result<Outcome, ExecuteError> {
    let (kind, api) = dynamic_api(client, &target.object, "restart")?;
    // A ReplicaSet's pods are replaced only by its Deployment; restarting it
    // alone has no meaning `kubectl rollout` supports.
    if !matches!(kind, Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet) {
        return Err(unsupported(&target.object, "rollout restart"));
    }
    let stamp = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let stored = guarded(target, async || {
        let current = get_checked(&api, target).await?;
        let patch = json!({
            "metadata": { "resourceVersion": resource_version(&current) },
            "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: stamp } } } }
        });
        api.patch(
            &target.object.name,
            &mode.patch_params(),
            &Patch::Strategic(&patch),
        )
        .await
        .map_err(|error| api_error(&target.object, error))
    })
    .await?;
    Ok(Outcome {
        message: format!(
            "{}restart {} (restartedAt {stamp})",
            mode.prefix(),
            target.describe()
        ),
        dry_run_result: mode.is_on().then(|| to_json(&stored)),
    })
}
