//! The execution layer: each allowed action becomes one small executor that
//! talks to the API server, honours server-side dry-run, and hands back what a
//! rollback would need. Deciding *whether* an action may run is the safety
//! layer's job; the executors only enforce the hard limits they are given and
//! the cluster's own guards (HPAs, PodDisruptionBudgets).

pub mod evict;
pub mod patch;
pub mod restart;
pub mod scale;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, PatchParams};
use serde_json::{Map, Value};

use crate::healing_action::{ActionKind, ActionSpec, ActionTarget, PatchType};
use crate::wit::{Action, ObjectRef, Patch};

pub use patch::PatchKind;

/// Recorded as the field manager of every write, so `managedFields` shows
/// which changes the healer made.
pub const FIELD_MANAGER: &str = "kubeskippy";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecuteError {
    #[error("{target}: API error: {message}")]
    Api { target: String, message: String },
    #[error("{target}: refused: {reason}")]
    Refused { target: String, reason: String },
    #[error("{target} not found")]
    NotFound { target: String },
    #[error("{target}: {action} is not supported")]
    Unsupported { target: String, action: String },
    #[error("{target}: invalid patch: {message}")]
    InvalidPatch { target: String, message: String },
    #[error("{target}: cannot roll back: {message}")]
    InvalidOriginal { target: String, message: String },
    #[error("{target}: invalid action: {message}")]
    InvalidAction { target: String, message: String },
}

/// What an executor did (or, in dry-run, would do).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub message: String,
    /// What [`rollback`] needs to undo the change; `None` when the action cannot
    /// be undone (restarts, deletions, evictions) or nothing was written.
    pub original: Option<Value>,
    /// With [`DryRun::Server`], the object the API server would have stored.
    pub dry_run_result: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DryRun {
    #[default]
    Off,
    /// Every write carries `dryRun=All`: the server validates and admits it,
    /// answers with the result, and stores nothing.
    Server,
}

impl DryRun {
    fn is_on(self) -> bool {
        matches!(self, DryRun::Server)
    }

    fn patch_params(self) -> PatchParams {
        PatchParams {
            dry_run: self.is_on(),
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        }
    }

    fn prefix(self) -> &'static str {
        if self.is_on() { "dry run: would " } else { "" }
    }
}

/// Hard limits the caller (policy) imposes on what the executors may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Inclusive `(min, max)` replica count a scale may set.
    pub replicas: Option<(u32, u32)>,
    /// The largest memory limit or request, in bytes, a patch may set.
    pub max_memory_bytes: Option<u64>,
}

/// The time a rollout restart is stamped with; a trait so tests can pin it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A fixed instant is a clock that never moves.
impl Clock for DateTime<Utc> {
    fn now(&self) -> DateTime<Utc> {
        *self
    }
}

/// Runs `action` against `target` with no extra limits and the system clock.
pub async fn execute(
    client: &kube::Client,
    target: &ObjectRef,
    action: &Action,
    mode: DryRun,
) -> Result<Outcome, ExecuteError> {
    execute_with(
        client,
        target,
        action,
        mode,
        &Limits::default(),
        &SystemClock,
    )
    .await
}

/// Runs `action` against `target`, enforcing `limits`.
pub async fn execute_with(
    client: &kube::Client,
    target: &ObjectRef,
    action: &Action,
    mode: DryRun,
    limits: &Limits,
    clock: &dyn Clock,
) -> Result<Outcome, ExecuteError> {
    match action {
        Action::Restart => restart::restart(client, target, mode, clock.now()).await,
        Action::Scale(replicas) => {
            scale::scale(client, target, *replicas, limits.replicas, mode).await
        }
        Action::Patch(Patch::Resources(patch)) => {
            patch::resources(client, target, patch, limits.max_memory_bytes, mode).await
        }
        Action::Patch(Patch::StrategicMerge(document)) => {
            patch::document(client, target, PatchKind::Strategic, document, limits, mode).await
        }
        Action::DeletePod => evict::evict(client, target, mode).await,
        Action::None => Ok(Outcome {
            message: format!("nothing to do for {}", describe(target)),
            original: None,
            dry_run_result: None,
        }),
    }
}

/// Undoes a scale or patch, given the `original` its [`Outcome`] recorded.
pub async fn rollback(
    client: &kube::Client,
    target: &ObjectRef,
    action: &Action,
    original: &Value,
) -> Result<Outcome, ExecuteError> {
    match action {
        Action::Scale(_) => scale::rollback(client, target, original).await,
        Action::Patch(Patch::Resources(patch)) => {
            patch::rollback_resources(client, target, &patch.container, original).await
        }
        Action::Patch(Patch::StrategicMerge(_)) => {
            patch::rollback_document(client, target, original).await
        }
        Action::Restart | Action::DeletePod | Action::None => Err(unsupported(
            target,
            &format!("rollback of {}", action_name(action)),
        )),
    }
}

/// A HealingAction's target as the executors address it.
pub fn object_ref(target: &ActionTarget) -> ObjectRef {
    ObjectRef {
        kind: target.kind.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    }
}

/// The block of a HealingAction's action that its `type` requires.
fn block<'a, T>(
    target: &ObjectRef,
    block: &'a Option<T>,
    name: &str,
) -> Result<&'a T, ExecuteError> {
    block.as_ref().ok_or_else(|| ExecuteError::InvalidAction {
        target: describe(target),
        message: format!("{name} is required for this action type"),
    })
}

fn patch_kind(patch_type: PatchType) -> PatchKind {
    match patch_type {
        PatchType::Strategic => PatchKind::Strategic,
        PatchType::Merge => PatchKind::Merge,
        PatchType::Json => PatchKind::Json,
    }
}

/// Runs a HealingAction's action against `target`, enforcing `limits`.
pub async fn execute_spec(
    client: &kube::Client,
    target: &ObjectRef,
    action: &ActionSpec,
    mode: DryRun,
    limits: &Limits,
    clock: &dyn Clock,
) -> Result<Outcome, ExecuteError> {
    match action.kind {
        ActionKind::Restart => restart::restart(client, target, mode, clock.now()).await,
        ActionKind::Scale => {
            let scale = block(target, &action.scale_action, "scaleAction")?;
            scale::scale(client, target, scale.replicas, limits.replicas, mode).await
        }
        ActionKind::Patch => {
            let patch = block(target, &action.patch_action, "patchAction")?;
            let kind = patch_kind(patch.patch_type);
            patch::document(client, target, kind, &patch.patch, limits, mode).await
        }
        ActionKind::DeletePod => {
            let delete = block(target, &action.delete_pod_action, "deletePodAction")?;
            if delete.pod_name != target.name {
                return Err(ExecuteError::InvalidAction {
                    target: describe(target),
                    message: format!(
                        "deletePodAction.podName {} is not the target",
                        delete.pod_name
                    ),
                });
            }
            if delete.use_eviction {
                evict::evict(client, target, mode).await
            } else {
                restart::delete_pod(client, target, mode).await
            }
        }
    }
}

/// Whether [`rollback_spec`] can undo the action.
pub fn reversible(action: &ActionSpec) -> bool {
    matches!(action.kind, ActionKind::Scale | ActionKind::Patch)
}

/// What [`rollback_spec`] will need, read before [`execute_spec`] writes, so
/// it can be saved first and a crash mid-write still leaves a way back.
/// The same shapes the executors' [`Outcome::original`] has.
pub async fn capture_original(
    client: &kube::Client,
    target: &ObjectRef,
    action: &ActionSpec,
) -> Result<Option<Value>, ExecuteError> {
    match action.kind {
        ActionKind::Scale => {
            let (_, api) = dynamic_api(client, target, "scale")?;
            let replicas = scale::current_replicas(&api, target).await?;
            Ok(Some(scale::original(replicas)))
        }
        ActionKind::Patch => {
            let (_, api) = dynamic_api(client, target, "patch")?;
            Ok(Some(patch::original(&get_json(&api, target).await?)))
        }
        ActionKind::Restart | ActionKind::DeletePod => Ok(None),
    }
}

/// Undoes a HealingAction's scale or patch from what [`capture_original`]
/// recorded.
pub async fn rollback_spec(
    client: &kube::Client,
    target: &ObjectRef,
    action: &ActionSpec,
    original: &Value,
) -> Result<Outcome, ExecuteError> {
    match action.kind {
        ActionKind::Scale => scale::rollback(client, target, original).await,
        ActionKind::Patch => patch::rollback_document(client, target, original).await,
        ActionKind::Restart | ActionKind::DeletePod => {
            let name = serde_json::to_value(action.kind).expect("a kind serialises");
            Err(unsupported(
                target,
                &format!("rollback of {}", name.as_str().unwrap_or_default()),
            ))
        }
    }
}

pub(crate) fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Restart => "restart",
        Action::Scale(_) => "scale",
        Action::Patch(_) => "patch",
        Action::DeletePod => "delete-pod",
        Action::None => "none",
    }
}

/// `Deployment shop/app`: how every message and error names its target.
pub(crate) fn describe(target: &ObjectRef) -> String {
    format!("{} {}/{}", target.kind, target.namespace, target.name)
}

pub(crate) fn unsupported(target: &ObjectRef, action: &str) -> ExecuteError {
    ExecuteError::Unsupported {
        target: describe(target),
        action: action.to_string(),
    }
}

/// Errors end up in one-line status messages and events; server messages and
/// parser errors may span lines.
pub(crate) use crate::snapshot::one_line;

pub(crate) fn api_error(target: &ObjectRef, error: kube::Error) -> ExecuteError {
    match error {
        kube::Error::Api(status) if status.code == 404 => ExecuteError::NotFound {
            target: describe(target),
        },
        kube::Error::Api(status) => ExecuteError::Api {
            target: describe(target),
            message: one_line(&format!(
                "{} {}: {}",
                status.code, status.reason, status.message
            )),
        },
        other => ExecuteError::Api {
            target: describe(target),
            message: one_line(&other.to_string()),
        },
    }
}

/// The kinds the executors know, and whether each has a pod template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Pod,
}

impl Kind {
    pub(crate) fn of(target: &ObjectRef) -> Option<Kind> {
        Some(match target.kind.as_str() {
            "Deployment" => Kind::Deployment,
            "StatefulSet" => Kind::StatefulSet,
            "DaemonSet" => Kind::DaemonSet,
            "ReplicaSet" => Kind::ReplicaSet,
            "Pod" => Kind::Pod,
            _ => return None,
        })
    }

    pub(crate) fn api_resource(self) -> ApiResource {
        match self {
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Kind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
            Kind::ReplicaSet => ApiResource::erase::<ReplicaSet>(&()),
            Kind::Pod => ApiResource::erase::<Pod>(&()),
        }
    }

    /// JSON pointer of the pod spec inside an object of this kind.
    pub(crate) fn pod_spec_pointer(self) -> &'static str {
        match self {
            Kind::Pod => "/spec",
            _ => "/spec/template/spec",
        }
    }

    pub(crate) fn scalable(self) -> bool {
        matches!(
            self,
            Kind::Deployment | Kind::StatefulSet | Kind::ReplicaSet
        )
    }
}

/// An untyped API for the target's kind, so one code path serves every
/// workload kind and results come back as plain JSON.
pub(crate) fn dynamic_api(
    client: &kube::Client,
    target: &ObjectRef,
    action: &str,
) -> Result<(Kind, Api<DynamicObject>), ExecuteError> {
    let kind = Kind::of(target).ok_or_else(|| unsupported(target, action))?;
    let api = Api::namespaced_with(client.clone(), &target.namespace, &kind.api_resource());
    Ok((kind, api))
}

pub(crate) async fn get_json(
    api: &Api<DynamicObject>,
    target: &ObjectRef,
) -> Result<Value, ExecuteError> {
    let object = api
        .get(&target.name)
        .await
        .map_err(|error| api_error(target, error))?;
    Ok(to_json(&object))
}

pub(crate) fn to_json(object: &impl serde::Serialize) -> Value {
    serde_json::to_value(object).expect("API objects serialise to JSON")
}

/// The JSON merge patch (RFC 7386) that turns `current` into `wanted`: changed
/// keys get their wanted value, keys only in `current` become `null`. Arrays
/// are replaced whole. Also valid as a strategic-merge patch for maps.
pub(crate) fn merge_diff(current: &Value, wanted: &Value) -> Value {
    match (current, wanted) {
        (Value::Object(current), Value::Object(wanted)) => {
            let mut patch = Map::new();
            for (key, was) in current {
                if !wanted.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                } else if was != &wanted[key] {
                    patch.insert(key.clone(), merge_diff(was, &wanted[key]));
                }
            }
            for (key, value) in wanted {
                if !current.contains_key(key) {
                    patch.insert(key.clone(), value.clone());
                }
            }
            Value::Object(patch)
        }
        _ => wanted.clone(),
    }
}
