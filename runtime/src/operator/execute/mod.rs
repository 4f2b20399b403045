//! The execution layer: each typed [`Change`] becomes one small executor that
//! talks to the API server, honours server-side dry-run, and writes only what
//! the change holds. Deciding *whether* a change may run is the lifecycle's
//! and the safety floor's job; the executors keep to the object that was
//! checked (its uid, and the resourceVersion they read before writing) and to
//! the cluster's own guards (HPAs, PodDisruptionBudgets).
//!
//! A change that can be undone (a scale, resources, annotations) is first
//! recorded ([`capture`]): which fields it writes and what they held. A
//! [`rollback`] restores a field only while it still holds what was written,
//! and reports the others as left to whoever changed them since.

pub(crate) mod evict;
pub(crate) mod patch;
pub(crate) mod restart;
pub(crate) mod scale;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, PatchParams};
use serde_json::Value;

use crate::core::change::Change;
use crate::core::crd::healing_action::ActionTarget;
use crate::core::crd::healing_action::{Field, WrittenField};
use crate::core::wit::ObjectRef;

/// Recorded as the field manager of every write, so `managedFields` shows
/// which changes the healer made.
pub const FIELD_MANAGER: &str = "kubeskippy";

/// How often a guarded write is tried again when the object changed between
/// reading and writing it (a controller's status update, usually).
const CONFLICT_RETRIES: usize = 3;

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
    /// The object is not the one that was checked: another uid, or fields the
    /// change writes moved since they were recorded.
    #[error("{target}: {message}")]
    Moved { target: String, message: String },
    /// A write's resourceVersion no longer matched: the object changed
    /// between reading and writing it.
    #[error("{target} changed while it was being written")]
    Conflict { target: String },
    #[error("{target}: cannot roll back: {message}")]
    CannotRollBack { target: String, message: String },
}

impl ExecuteError {
    /// Worth another attempt: the server failed, or the object moved under
    /// the write and a fresh read may find it settled.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ExecuteError::Api { .. } | ExecuteError::Moved { .. } | ExecuteError::Conflict { .. }
        )
    }
}

/// What an executor did (or, in dry-run, would do).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub message: String,
    /// With [`DryRun::Server`], what the API server would have stored.
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

/// The object a change is for: its reference and the uid it was planned for.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub object: ObjectRef,
    pub uid: String,
}

impl Target {
    pub fn of(target: &ActionTarget, uid: &str) -> Target {
        Target {
            object: target.object_ref(),
            uid: uid.to_string(),
        }
    }

    fn describe(&self) -> String {
        describe(&self.object)
    }
}

/// The fields `change` will write to `target` and what they hold now, read
/// before the change so they can be saved first: a crash mid-write still
/// leaves a way back. `None` for a change nothing can undo.
pub async fn capture(
    client: &kube::Client,
    target: &Target,
    change: &Change,
) -> Result<Option<Vec<WrittenField>>, ExecuteError> {
    match change {
        Change::Scale { replicas } => {
            let previous = scale::current(client, target).await?.1;
            Ok(Some(vec![WrittenField {
                field: Field::Replicas,
                previous: Some(previous.to_string()),
                wrote: replicas.to_string(),
            }]))
        }
        Change::Resources(resources) => {
            let (kind, api) = dynamic_api(client, &target.object, "patch")?;
            let current = get_checked(&api, target).await?;
            let fields = resources.record(&current, kind.name()).map_err(|reason| {
                ExecuteError::Refused {
                    target: target.describe(),
                    reason,
                }
            })?;
            Ok(Some(fields))
        }
        Change::RolloutRestart | Change::Evict => Ok(None),
    }
}

/// Makes `change` on `target`. `recorded` is what [`capture`] saved: the
/// write goes ahead only while those fields still hold what was recorded, so
/// the saved record is exactly what the change overwrote.
pub async fn execute(
    client: &kube::Client,
    target: &Target,
    change: &Change,
    recorded: Option<&[WrittenField]>,
    mode: DryRun,
    clock: &dyn Clock,
) -> Result<Outcome, ExecuteError> {
    match change {
        Change::RolloutRestart => restart::restart(client, target, mode, clock.now()).await,
        Change::Evict => evict::evict(client, target, mode).await,
        Change::Scale { replicas } => scale::scale(client, target, *replicas, recorded, mode).await,
        Change::Resources(resources) => {
            patch::apply(client, target, resources, recorded, mode).await
        }
    }
}

/// Restores what `recorded` says a change wrote, field by field, where the
/// field still holds the written value; fields changed since by someone else
/// are left as they are and named in the outcome.
pub async fn rollback(
    client: &kube::Client,
    target: &Target,
    recorded: &[WrittenField],
) -> Result<Outcome, ExecuteError> {
    let (replicas, others): (Vec<&WrittenField>, Vec<&WrittenField>) = recorded
        .iter()
        .partition(|field| field.field == Field::Replicas);
    let mut said = Vec::new();
    if let Some(field) = replicas.first() {
        said.push(scale::restore(client, target, field).await?);
    }
    if !others.is_empty() {
        said.push(patch::restore(client, target, &others).await?);
    }
    Ok(Outcome {
        message: said.join("; "),
        dry_run_result: None,
    })
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
pub(crate) use crate::core::text::one_line;

pub(crate) fn api_error(target: &ObjectRef, error: kube::Error) -> ExecuteError {
    match error {
        kube::Error::Api(status) if status.code == 404 => ExecuteError::NotFound {
            target: describe(target),
        },
        kube::Error::Api(status) if status.code == 409 => ExecuteError::Conflict {
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

/// The kinds the executors know.
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

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Pod => "Pod",
        }
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

/// The target as it is now, if it is still the object the change was
/// planned for.
pub(crate) async fn get_checked(
    api: &Api<DynamicObject>,
    target: &Target,
) -> Result<Value, ExecuteError> {
    let object = get_json(api, &target.object).await?;
    check_uid(target, &object["metadata"])?;
    Ok(object)
}

pub(crate) fn check_uid(target: &Target, metadata: &Value) -> Result<(), ExecuteError> {
    let uid = metadata["uid"].as_str().unwrap_or_default();
    if uid == target.uid {
        Ok(())
    } else {
        Err(ExecuteError::Moved {
            target: target.describe(),
            message: format!(
                "was replaced: its uid is {uid}, the change is for {}",
                target.uid
            ),
        })
    }
}

pub(crate) fn resource_version(object: &Value) -> Option<&str> {
    object["metadata"]["resourceVersion"].as_str()
}

/// Reads, decides and writes, again with a fresh read when the object changed
/// in between (the write carries the resourceVersion that was read).
pub(crate) async fn guarded<T, F>(target: &Target, mut attempt: F) -> Result<T, ExecuteError>
where
    F: AsyncFnMut() -> Result<T, ExecuteError>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(ExecuteError::Conflict { .. }) if tries < CONFLICT_RETRIES => {
                tries += 1;
                tracing::debug!(target = %target.describe(), "conflict; reading again");
            }
            outcome => return outcome,
        }
    }
}

pub(crate) fn to_json(object: &impl serde::Serialize) -> Value {
    serde_json::to_value(object).expect("API objects serialise to JSON")
}
