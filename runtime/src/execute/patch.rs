//! Patches: typed resource changes for one container of a workload's pod
//! template, and raw patch documents (strategic-merge, merge or JSON patch).

use kube::api::{Api, DynamicObject, Patch};
use kubeskippy_plugin_sdk::quantity;
use serde_json::{Map, Value, json};

use super::{
    DryRun, ExecuteError, Kind, Limits, Outcome, api_error, describe, dynamic_api, get_json,
    merge_diff, one_line, to_json, unsupported,
};
use crate::wit::{ObjectRef, ResourcePatch};

/// How a patch document is applied; the HealingAction CRD lets users choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Strategic,
    Merge,
    Json,
}

impl PatchKind {
    fn name(self) -> &'static str {
        match self {
            PatchKind::Strategic => "strategic-merge",
            PatchKind::Merge => "merge",
            PatchKind::Json => "JSON",
        }
    }
}

/// Changes the resources of one container in a workload's pod template.
/// `original` is `{"container": NAME, "resources": <its resources before>}`.
pub async fn resources(
    client: &kube::Client,
    target: &ObjectRef,
    patch: &ResourcePatch,
    max_memory_bytes: Option<u64>,
    mode: DryRun,
) -> Result<Outcome, ExecuteError> {
    let (kind, api) = dynamic_api(client, target, "resource patch")?;
    // A pod's resources can only change in place through its `resize`
    // subresource, and a pod with a workload would be replaced anyway.
    if kind == Kind::Pod {
        return Err(unsupported(target, "resource patch of a bare pod"));
    }
    let fields = resource_fields(patch);
    if fields.is_empty() {
        return Err(ExecuteError::InvalidPatch {
            target: describe(target),
            message: format!(
                "resource patch for container {} sets nothing",
                patch.container
            ),
        });
    }
    if let Some(max) = max_memory_bytes {
        for (section, bytes) in [
            ("limit", patch.memory_limit_bytes),
            ("request", patch.memory_request_bytes),
        ] {
            if let Some(bytes) = bytes.filter(|bytes| *bytes > max) {
                return Err(memory_refusal(
                    target,
                    &patch.container,
                    section,
                    bytes,
                    max,
                ));
            }
        }
    }
    let current = get_json(&api, target).await?;
    let container = find_regular_container(&current, kind, &patch.container)
        .ok_or_else(|| missing_container(target, &patch.container))?;
    let before = container
        .get("resources")
        .cloned()
        .unwrap_or_else(|| json!({}));

    let mut resources = Map::new();
    for (section, resource, amount) in &fields {
        let entry = resources
            .entry(section.to_string())
            .or_insert_with(|| json!({}));
        entry[*resource] = json!(amount);
    }
    let document = container_patch(&patch.container, Value::Object(resources));
    let stored = api
        .patch(
            &target.name,
            &mode.patch_params(),
            &Patch::Strategic(&document),
        )
        .await
        .map_err(|error| api_error(target, error))?;
    let summary: Vec<String> = fields
        .iter()
        .map(|(section, resource, amount)| format!("{section}.{resource}={amount}"))
        .collect();
    Ok(Outcome {
        message: format!(
            "{}set {} of container {} in {}",
            mode.prefix(),
            summary.join(", "),
            patch.container,
            describe(target)
        ),
        original: Some(json!({ "container": patch.container, "resources": before })),
        dry_run_result: mode.is_on().then(|| to_json(&stored)),
    })
}

/// Restores exactly the resources [`resources`] recorded: values it changed go
/// back, limits and requests it added are removed.
pub async fn rollback_resources(
    client: &kube::Client,
    target: &ObjectRef,
    container: &str,
    original: &Value,
) -> Result<Outcome, ExecuteError> {
    let (kind, api) = dynamic_api(client, target, "resource patch")?;
    let invalid = |message: String| ExecuteError::InvalidOriginal {
        target: describe(target),
        message,
    };
    if original["container"].as_str() != Some(container) {
        return Err(invalid(format!(
            "recorded container {} is not {container}",
            original["container"]
        )));
    }
    let wanted = &original["resources"];
    if !wanted.is_object() {
        return Err(invalid(format!(
            "expected the container's resources as an object, got {wanted}"
        )));
    }
    let current = get_json(&api, target).await?;
    let now = find_regular_container(&current, kind, container)
        .ok_or_else(|| missing_container(target, container))?
        .get("resources")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let diff = merge_diff(&now, wanted);
    if diff.as_object().is_some_and(Map::is_empty) {
        return Ok(Outcome {
            message: format!(
                "resources of container {container} in {} already as before",
                describe(target)
            ),
            original: None,
            dry_run_result: None,
        });
    }
    // Strategic merge deletes map keys set to null, which is how added
    // limits and requests disappear again.
    let document = container_patch(container, diff);
    api.patch(
        &target.name,
        &DryRun::Off.patch_params(),
        &Patch::Strategic(&document),
    )
    .await
    .map_err(|error| api_error(target, error))?;
    Ok(Outcome {
        message: format!(
            "restored resources of container {container} in {}",
            describe(target)
        ),
        original: None,
        dry_run_result: None,
    })
}

/// Applies a patch document (YAML or JSON) of the given kind. The patch is
/// first applied with server-side dry-run so the limits are checked against
/// what the server would store, whatever kind of patch produced it.
/// `original` is `{"spec": <spec before>}`.
pub async fn document(
    client: &kube::Client,
    target: &ObjectRef,
    patch_kind: PatchKind,
    document: &str,
    limits: &Limits,
    mode: DryRun,
) -> Result<Outcome, ExecuteError> {
    let (kind, api) = dynamic_api(client, target, "patch")?;
    let patch = parse(target, patch_kind, document)?;
    let current = get_json(&api, target).await?;
    let would = send(&api, target, &patch, DryRun::Server).await?;
    check_limits(client, target, kind, &current, &would, limits).await?;
    let stored = match mode {
        DryRun::Server => would,
        DryRun::Off => send(&api, target, &patch, DryRun::Off).await?,
    };
    Ok(Outcome {
        message: format!(
            "{}apply {} patch to {}",
            mode.prefix(),
            patch_kind.name(),
            describe(target)
        ),
        original: Some(original(&current)),
        dry_run_result: mode.is_on().then_some(stored),
    })
}

/// What [`rollback_document`] restores: the object's spec.
pub(crate) fn original(current: &Value) -> Value {
    json!({ "spec": current.get("spec").cloned().unwrap_or_else(|| json!({})) })
}

/// Restores the spec [`document`] recorded with a merge patch, which replaces
/// lists whole and so undoes list merges exactly.
pub async fn rollback_document(
    client: &kube::Client,
    target: &ObjectRef,
    original: &Value,
) -> Result<Outcome, ExecuteError> {
    let (_, api) = dynamic_api(client, target, "patch")?;
    let wanted = &original["spec"];
    if !wanted.is_object() {
        return Err(ExecuteError::InvalidOriginal {
            target: describe(target),
            message: format!("expected {{\"spec\": {{...}}}}, got {original}"),
        });
    }
    let current = get_json(&api, target).await?;
    let diff = merge_diff(current.get("spec").unwrap_or(&json!({})), wanted);
    if diff.as_object().is_some_and(Map::is_empty) {
        return Ok(Outcome {
            message: format!("spec of {} already as before", describe(target)),
            original: None,
            dry_run_result: None,
        });
    }
    let document = json!({ "spec": diff });
    api.patch(
        &target.name,
        &DryRun::Off.patch_params(),
        &Patch::Merge(&document),
    )
    .await
    .map_err(|error| api_error(target, error))?;
    Ok(Outcome {
        message: format!("restored spec of {}", describe(target)),
        original: None,
        dry_run_result: None,
    })
}

fn parse(
    target: &ObjectRef,
    kind: PatchKind,
    document: &str,
) -> Result<Patch<Value>, ExecuteError> {
    let invalid = |message: String| ExecuteError::InvalidPatch {
        target: describe(target),
        message: one_line(&message),
    };
    let value: Value = serde_yaml_ng::from_str(document)
        .map_err(|error| invalid(format!("{} patch does not parse: {error}", kind.name())))?;
    match kind {
        PatchKind::Strategic | PatchKind::Merge if !value.is_object() => Err(invalid(format!(
            "{} patch must be a mapping, got {}",
            kind.name(),
            json_type(&value)
        ))),
        PatchKind::Strategic => Ok(Patch::Strategic(value)),
        PatchKind::Merge => Ok(Patch::Merge(value)),
        PatchKind::Json => serde_json::from_value(value)
            .map(Patch::Json)
            .map_err(|error| invalid(format!("JSON patch is not a list of operations: {error}"))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

async fn send(
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    patch: &Patch<Value>,
    mode: DryRun,
) -> Result<Value, ExecuteError> {
    let stored = api
        .patch(&target.name, &mode.patch_params(), patch)
        .await
        .map_err(|error| api_error(target, error))?;
    Ok(to_json(&stored))
}

/// A raw patch must not do what the typed actions would be refused: change
/// the replica count past the scale guards, or raise memory past the maximum.
async fn check_limits(
    client: &kube::Client,
    target: &ObjectRef,
    kind: Kind,
    current: &Value,
    would: &Value,
    limits: &Limits,
) -> Result<(), ExecuteError> {
    if let Some(max) = limits.max_memory_bytes {
        for container in pod_containers(would, kind) {
            let name = container["name"].as_str().unwrap_or_default();
            let before = find_container(current, kind, name);
            for (section, key) in [("limit", "limits"), ("request", "requests")] {
                let Some(amount) = container["resources"][key]["memory"].as_str() else {
                    continue;
                };
                let unchanged = before.is_some_and(|before| {
                    before["resources"][key]["memory"].as_str() == Some(amount)
                });
                if unchanged {
                    continue;
                }
                let bytes = quantity::memory_bytes(amount).map_err(|message| {
                    ExecuteError::InvalidPatch {
                        target: describe(target),
                        message,
                    }
                })?;
                if bytes > max {
                    return Err(memory_refusal(target, name, section, bytes, max));
                }
            }
        }
    }
    let replicas = |object: &Value| object.pointer("/spec/replicas").and_then(Value::as_u64);
    if kind.scalable()
        && let Some(wanted) = replicas(would)
        && replicas(current) != Some(wanted)
    {
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        super::scale::guard(client, target, wanted, limits.replicas).await?;
    }
    Ok(())
}

/// Regular and init containers of the object's pod spec.
fn pod_containers(object: &Value, kind: Kind) -> impl Iterator<Item = &Value> {
    containers_in(object, kind, &["containers", "initContainers"])
}

fn containers_in<'a>(
    object: &'a Value,
    kind: Kind,
    lists: &'static [&'static str],
) -> impl Iterator<Item = &'a Value> {
    lists.iter().flat_map(move |list| {
        object
            .pointer(&format!("{}/{list}", kind.pod_spec_pointer()))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    })
}

fn find_container<'a>(object: &'a Value, kind: Kind, name: &str) -> Option<&'a Value> {
    pod_containers(object, kind).find(|container| container["name"].as_str() == Some(name))
}

/// Resource patches address `containers` only: the patch they send merges
/// into that list, and would add a half-empty container if the name were an
/// init container's.
fn find_regular_container<'a>(object: &'a Value, kind: Kind, name: &str) -> Option<&'a Value> {
    containers_in(object, kind, &["containers"])
        .find(|container| container["name"].as_str() == Some(name))
}

fn missing_container(target: &ObjectRef, container: &str) -> ExecuteError {
    ExecuteError::NotFound {
        target: format!("container {container} in {}", describe(target)),
    }
}

fn memory_refusal(
    target: &ObjectRef,
    container: &str,
    section: &str,
    bytes: u64,
    max: u64,
) -> ExecuteError {
    ExecuteError::Refused {
        target: describe(target),
        reason: format!(
            "memory {section} {} for container {container} exceeds the maximum {}",
            quantity::format_memory(bytes),
            quantity::format_memory(max)
        ),
    }
}

/// `(section, resource, quantity)` for each field the patch sets.
fn resource_fields(patch: &ResourcePatch) -> Vec<(&'static str, &'static str, String)> {
    let mut fields = Vec::new();
    if let Some(cpu) = patch.cpu_limit_millicores {
        fields.push(("limits", "cpu", quantity::format_cpu(cpu)));
    }
    if let Some(memory) = patch.memory_limit_bytes {
        fields.push(("limits", "memory", quantity::format_memory(memory)));
    }
    if let Some(cpu) = patch.cpu_request_millicores {
        fields.push(("requests", "cpu", quantity::format_cpu(cpu)));
    }
    if let Some(memory) = patch.memory_request_bytes {
        fields.push(("requests", "memory", quantity::format_memory(memory)));
    }
    fields
}

/// A strategic-merge patch touching one container of the pod template; the
/// API server merges `containers` by name, so the others stay untouched.
fn container_patch(container: &str, resources: Value) -> Value {
    json!({
        "spec": { "template": { "spec": {
            "containers": [{ "name": container, "resources": resources }]
        } } }
    })
}
