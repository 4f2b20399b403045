//! Resource changes: container CPU and memory and allowed annotations, written
//! as one strategic-merge patch the host builds from the typed change (never
//! the patch text a HealingAction carries), guarded by the resourceVersion it
//! was checked against.

use kube::api::Patch;

use super::{
    DryRun, ExecuteError, Outcome, Target, api_error, dynamic_api, get_checked, guarded,
    resource_version, to_json,
};
use crate::core::change::{ResourceChange, restore_document};
use crate::core::crd::healing_action::{Field, WrittenField};

/// Applies `change`. With `recorded`, every field it writes must still hold
/// the value recorded before the change, or nothing is written.
pub async fn apply(
    client: &kube::Client,
    target: &Target,
    change: &ResourceChange,
    recorded: Option<&[WrittenField]>,
    mode: DryRun,
) -> Result<Outcome, ExecuteError> {
    let (kind, api) = dynamic_api(client, &target.object, "patch")?;
    // A pod's resources change in place only through its `resize`
    // subresource, and a pod with a workload would be replaced anyway.
    if kind == super::Kind::Pod && !change.containers.is_empty() {
        return Err(super::unsupported(
            &target.object,
            "resource change of a bare pod",
        ));
    }
    let kind = kind.name();
    let (fields, stored) = guarded(target, async || {
        let current = get_checked(&api, target).await?;
        let fields = change
            .record(&current, kind)
            .map_err(|reason| ExecuteError::Refused {
                target: target.describe(),
                reason,
            })?;
        for field in recorded.into_iter().flatten() {
            let now = field.field.read(&current, kind);
            if !field.field.same(now.as_deref(), field.previous.as_deref()) {
                return Err(ExecuteError::Moved {
                    target: target.describe(),
                    message: format!(
                        "{} is {} now, not the {} recorded before the change",
                        field.field.describe(),
                        shown(now.as_deref()),
                        shown(field.previous.as_deref())
                    ),
                });
            }
        }
        let document = change.patch_document(kind, resource_version(&current));
        let stored = api
            .patch(
                &target.object.name,
                &mode.patch_params(),
                &Patch::Strategic(&document),
            )
            .await
            .map_err(|error| api_error(&target.object, error))?;
        Ok((fields, stored))
    })
    .await?;
    let summary: Vec<String> = fields
        .iter()
        .map(|field| format!("{} to {}", field.field.describe(), field.wrote))
        .collect();
    Ok(Outcome {
        message: format!(
            "{}set {} in {}",
            mode.prefix(),
            summary.join(", "),
            target.describe()
        ),
        dry_run_result: mode.is_on().then(|| to_json(&stored)),
    })
}

/// Restores each of `fields` that still holds what was written; the rest were
/// changed by someone else since and are left alone.
pub async fn restore(
    client: &kube::Client,
    target: &Target,
    fields: &[&WrittenField],
) -> Result<String, ExecuteError> {
    let (kind, api) = dynamic_api(client, &target.object, "patch")?;
    let kind = kind.name();
    guarded(target, async || {
        let current = get_checked(&api, target).await?;
        let mut restored: Vec<(&Field, Option<&str>)> = Vec::new();
        let mut said = Vec::new();
        for written in fields {
            let now = written.field.read(&current, kind);
            if written.field.same(now.as_deref(), Some(&written.wrote)) {
                restored.push((&written.field, written.previous.as_deref()));
                said.push(format!(
                    "restored {} to {}",
                    written.field.describe(),
                    shown(written.previous.as_deref())
                ));
            } else {
                said.push(format!(
                    "left {} alone: it is {} now, not the {} written",
                    written.field.describe(),
                    shown(now.as_deref()),
                    written.wrote
                ));
            }
        }
        if !restored.is_empty() {
            let document = restore_document(&restored, kind, resource_version(&current));
            api.patch(
                &target.object.name,
                &DryRun::Off.patch_params(),
                &Patch::Strategic(&document),
            )
            .await
            .map_err(|error| api_error(&target.object, error))?;
        }
        Ok(format!("{} in {}", said.join(", "), target.describe()))
    })
    .await
}

fn shown(value: Option<&str>) -> &str {
    value.unwrap_or("unset")
}
