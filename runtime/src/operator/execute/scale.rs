//! Scaling through the `/scale` subresource, which every scalable kind serves
//! with the same shape and which RBAC can grant apart from the full object.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, DynamicObject, ListParams, Patch};
use serde_json::{Value, json};

use super::{
    DryRun, ExecuteError, Outcome, Target, api_error, check_uid, dynamic_api, guarded,
    resource_version, to_json, unsupported,
};
use crate::core::crd::healing_action::WrittenField;

/// Sets the replica count of a Deployment, StatefulSet or ReplicaSet,
/// refusing workloads an HPA controls. With `recorded`, the count must still
/// be the one recorded before the change.
pub async fn scale(
    client: &kube::Client,
    target: &Target,
    replicas: u32,
    recorded: Option<&[WrittenField]>,
    mode: DryRun,
) -> Result<Outcome, ExecuteError> {
    let api = scale_api(client, target)?;
    if let Some(hpa) = controlling_autoscaler(client, target).await? {
        return Err(ExecuteError::Refused {
            target: target.describe(),
            reason: format!(
                "HPA {hpa} controls {}/{}; scaling by hand would be undone",
                target.object.kind, target.object.name
            ),
        });
    }
    let expected = recorded
        .and_then(|fields| fields.first())
        .and_then(|field| field.previous.as_deref())
        .and_then(|previous| previous.parse::<u32>().ok());
    let (previous, stored) = guarded(target, async || {
        let (scale, now) = read(&api, target).await?;
        if let Some(expected) = expected
            && now != expected
        {
            return Err(ExecuteError::Moved {
                target: target.describe(),
                message: format!(
                    "has {now} replicas, not the {expected} recorded before the change"
                ),
            });
        }
        let stored = write(&api, target, resource_version(&scale), replicas, mode).await?;
        Ok((now, stored))
    })
    .await?;
    Ok(Outcome {
        message: format!(
            "{}scale {} from {previous} to {replicas} replicas",
            mode.prefix(),
            target.describe()
        ),
        dry_run_result: mode.is_on().then_some(stored),
    })
}

/// The Scale as it is now and its replica count.
pub(crate) async fn current(
    client: &kube::Client,
    target: &Target,
) -> Result<(Value, u32), ExecuteError> {
    read(&scale_api(client, target)?, target).await
}

/// Puts back the count a scale replaced, if the workload still has the count
/// that was written and no HPA has taken it over since.
pub async fn restore(
    client: &kube::Client,
    target: &Target,
    field: &WrittenField,
) -> Result<String, ExecuteError> {
    let api = scale_api(client, target)?;
    let count = |text: Option<&str>| text.and_then(|text| text.parse::<u32>().ok());
    let (Some(previous), Some(wrote)) =
        (count(field.previous.as_deref()), count(Some(&field.wrote)))
    else {
        return Err(ExecuteError::CannotRollBack {
            target: target.describe(),
            message: format!(
                "the recorded replicas {:?} → {} are not counts",
                field.previous, field.wrote
            ),
        });
    };
    if let Some(hpa) = controlling_autoscaler(client, target).await? {
        return Ok(format!(
            "left replicas alone: HPA {hpa} controls {} now",
            target.describe()
        ));
    }
    guarded(target, async || {
        let (scale, now) = read(&api, target).await?;
        if now != wrote {
            return Ok(format!(
                "left replicas alone: {} has {now} now, not the {wrote} written",
                target.describe()
            ));
        }
        write(
            &api,
            target,
            resource_version(&scale),
            previous,
            DryRun::Off,
        )
        .await?;
        Ok(format!(
            "scaled {} back to {previous} replicas",
            target.describe()
        ))
    })
    .await
}

fn scale_api(client: &kube::Client, target: &Target) -> Result<Api<DynamicObject>, ExecuteError> {
    let (kind, api) = dynamic_api(client, &target.object, "scale")?;
    if !kind.scalable() {
        return Err(unsupported(&target.object, "scale"));
    }
    Ok(api)
}

async fn read(api: &Api<DynamicObject>, target: &Target) -> Result<(Value, u32), ExecuteError> {
    let scale = api
        .get_scale(&target.object.name)
        .await
        .map_err(|error| api_error(&target.object, error))?;
    let scale = to_json(&scale);
    check_uid(target, &scale["metadata"])?;
    // The API server omits `replicas: 0` from a Scale (`omitempty`), so absent
    // means zero.
    let replicas = scale["spec"]["replicas"]
        .as_u64()
        .and_then(|count| u32::try_from(count).ok())
        .unwrap_or(0);
    Ok((scale, replicas))
}

/// The HPA that scales the workload, if one does: a count set by hand would
/// be undone, and fighting it flaps the workload.
async fn controlling_autoscaler(
    client: &kube::Client,
    target: &Target,
) -> Result<Option<String>, ExecuteError> {
    let autoscalers: Api<HorizontalPodAutoscaler> =
        Api::namespaced(client.clone(), &target.object.namespace);
    let list = autoscalers
        .list(&ListParams::default())
        .await
        .map_err(|error| api_error(&target.object, error))?;
    Ok(list
        .items
        .iter()
        .find(|hpa| {
            let reference = &hpa.spec.scale_target_ref;
            reference.kind == target.object.kind && reference.name == target.object.name
        })
        .map(|hpa| {
            hpa.metadata
                .name
                .clone()
                .unwrap_or_else(|| "<unnamed>".into())
        }))
}

async fn write(
    api: &Api<DynamicObject>,
    target: &Target,
    resource_version: Option<&str>,
    replicas: u32,
    mode: DryRun,
) -> Result<Value, ExecuteError> {
    let patch = json!({
        "metadata": { "resourceVersion": resource_version },
        "spec": { "replicas": replicas },
    });
    let stored = api
        .patch_scale(
            &target.object.name,
            &mode.patch_params(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|error| api_error(&target.object, error))?;
    Ok(to_json(&stored))
}
