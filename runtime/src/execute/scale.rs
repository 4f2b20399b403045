//! Scaling through the `/scale` subresource, which every scalable kind serves
//! with the same shape and which RBAC can grant apart from the full object.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ListParams, Patch};
use serde_json::{Value, json};

use super::{
    DryRun, ExecuteError, Outcome, api_error, describe, dynamic_api, to_json, unsupported,
};
use crate::wit::ObjectRef;

/// Sets the replica count of a Deployment, StatefulSet or ReplicaSet to
/// `replicas`, refusing counts outside `bounds` (inclusive `(min, max)`) and
/// workloads an HPA controls. `original` records the previous count.
pub async fn scale(
    client: &kube::Client,
    target: &ObjectRef,
    replicas: u32,
    bounds: Option<(u32, u32)>,
    mode: DryRun,
) -> Result<Outcome, ExecuteError> {
    let (kind, api) = dynamic_api(client, target, "scale")?;
    if !kind.scalable() {
        return Err(unsupported(target, "scale"));
    }
    guard(client, target, replicas, bounds).await?;
    let previous = current_replicas(&api, target).await?;
    let stored = write(&api, target, replicas, mode).await?;
    Ok(Outcome {
        message: format!(
            "{}scale {} from {previous} to {replicas} replicas",
            mode.prefix(),
            describe(target)
        ),
        original: Some(original(previous)),
        dry_run_result: mode.is_on().then_some(stored),
    })
}

pub(crate) async fn current_replicas(
    api: &Api<kube::api::DynamicObject>,
    target: &ObjectRef,
) -> Result<u32, ExecuteError> {
    let scale = api
        .get_scale(&target.name)
        .await
        .map_err(|error| api_error(target, error))?;
    Ok(replicas_of(scale.spec.and_then(|spec| spec.replicas)))
}

/// What [`rollback`] restores.
pub(crate) fn original(replicas: u32) -> Value {
    json!({ "replicas": replicas })
}

/// Restores the replica count recorded by [`scale`].
pub async fn rollback(
    client: &kube::Client,
    target: &ObjectRef,
    original: &Value,
) -> Result<Outcome, ExecuteError> {
    let (kind, api) = dynamic_api(client, target, "scale")?;
    if !kind.scalable() {
        return Err(unsupported(target, "scale"));
    }
    let replicas = original["replicas"]
        .as_u64()
        .and_then(|replicas| u32::try_from(replicas).ok())
        .ok_or_else(|| ExecuteError::InvalidOriginal {
            target: describe(target),
            message: format!("expected {{\"replicas\": <count>}}, got {original}"),
        })?;
    write(&api, target, replicas, DryRun::Off).await?;
    Ok(Outcome {
        message: format!("scaled {} back to {replicas} replicas", describe(target)),
        original: None,
        dry_run_result: None,
    })
}

/// The checks any change of a workload's replica count must pass, whichever
/// executor makes it.
pub(crate) async fn guard(
    client: &kube::Client,
    target: &ObjectRef,
    replicas: u32,
    bounds: Option<(u32, u32)>,
) -> Result<(), ExecuteError> {
    if let Some((min, max)) = bounds
        && !(min..=max).contains(&replicas)
    {
        return Err(ExecuteError::Refused {
            target: describe(target),
            reason: format!("{replicas} replicas is outside the allowed range {min}..={max}"),
        });
    }
    let autoscalers: Api<HorizontalPodAutoscaler> =
        Api::namespaced(client.clone(), &target.namespace);
    let list = autoscalers
        .list(&ListParams::default())
        .await
        .map_err(|error| api_error(target, error))?;
    let controlling = list.items.iter().find(|hpa| {
        let reference = &hpa.spec.scale_target_ref;
        reference.kind == target.kind && reference.name == target.name
    });
    if let Some(hpa) = controlling {
        return Err(ExecuteError::Refused {
            target: describe(target),
            reason: format!(
                "HPA {} controls {}/{}; scaling by hand would be undone",
                hpa.metadata.name.as_deref().unwrap_or("<unnamed>"),
                target.kind,
                target.name
            ),
        });
    }
    Ok(())
}

async fn write(
    api: &Api<kube::api::DynamicObject>,
    target: &ObjectRef,
    replicas: u32,
    mode: DryRun,
) -> Result<Value, ExecuteError> {
    let patch = json!({ "spec": { "replicas": replicas } });
    let stored = api
        .patch_scale(&target.name, &mode.patch_params(), &Patch::Merge(&patch))
        .await
        .map_err(|error| api_error(target, error))?;
    Ok(to_json(&stored))
}

/// The API server omits `replicas: 0` from a Scale (`omitempty`), so absent
/// means zero.
fn replicas_of(replicas: Option<i32>) -> u32 {
    replicas
        .and_then(|count| u32::try_from(count).ok())
        .unwrap_or(0)
}
