//! HealingAction (`kubeskippy.io/v1alpha1`): one planned change to one object,
//! with the confidence and reasoning behind it, and — once an operator runs it —
//! its lifecycle: `Pending → Approved → InProgress → Verifying → Succeeded |
//! Failed | RolledBack | Cancelled`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ActionKind;

#[derive(CustomResource, Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[kube(
    group = "kubeskippy.io",
    version = "v1alpha1",
    kind = "HealingAction",
    namespaced,
    status = "HealingActionStatus",
    shortname = "ha",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action.type"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.target.name"}"#,
    printcolumn = r#"{"name":"Confidence","type":"number","jsonPath":".spec.confidence"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(oldSelf.approval) || has(self.approval)", "message": "spec.approval cannot be removed once recorded"}
]))]
pub struct HealingActionSpec {
    #[schemars(extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub policy_ref: PolicyRef,
    #[schemars(length(min = 1, max = 512), extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub incident_id: String,
    /// The policy's triggers that fired for the incident: cooldowns per
    /// (policy, trigger, workload) are counted from them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub triggers: Vec<String>,
    #[schemars(extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub target: ActionTarget,
    #[schemars(extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub action: ActionSpec,
    /// `llm` when a model recommended it, `rules` when the policy's rules did.
    #[schemars(regex(pattern = r"^(llm|rules)$"), extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub source: String,
    #[schemars(range(min = 0.0, max = 1.0), extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub confidence: f64,
    #[schemars(length(max = 4096), extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub reasoning: String,
    #[schemars(length(max = 4096), extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub risk: String,
    /// When the daemon created it (RFC 3339); a plan that has not started
    /// within the configured `safety.maxPlanAge` is refused as stale.
    /// `kubeskippy analyze` prints plans without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 20, max = 40), extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub planned_at: Option<String>,
    /// Planned under a dry-run policy. The policy at execution time can only
    /// add to this: a dry-run plan never runs for real.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub dry_run: bool,
    /// Planned under a policy that wanted approval. The policy at execution
    /// time can only add to this.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub approval_required: bool,
    /// Written once, by `kubeskippy approve` or `reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub approval: Option<Approval>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub retry_policy: RetryPolicy,
    /// What the plan was made against: the replica count, and the CPU and
    /// memory of the containers it changes. When the object no longer holds
    /// these values the plan is stale and does not run (the next evaluation
    /// plans again from what is there now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [IMMUTABLE]))]
    pub observed: Option<Observed>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Observed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub containers: Vec<ObservedContainer>,
}

/// A container's CPU and memory as quantities; absent where unset.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObservedContainer {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[serde(default)]
    pub limits: ObservedAmounts,
    #[serde(default)]
    pub requests: ObservedAmounts,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObservedAmounts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub memory: Option<String>,
}

/// A CEL validation rule of a CRD schema (`x-kubernetes-validations`).
#[derive(Serialize)]
pub(crate) struct CelRule {
    rule: &'static str,
    message: &'static str,
}

/// A transition rule: the field keeps the value it was created with, so an
/// approver (who may patch HealingActions to record a decision) can change
/// nothing else.
const IMMUTABLE: CelRule = CelRule {
    rule: "self == oldSelf",
    message: "is immutable once the HealingAction is created",
};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub enum PolicyKind {
    HealingPolicy,
    ClusterHealingPolicy,
}

impl PolicyRef {
    /// The reference to `policy` as it is now; a policy with no namespace is
    /// a ClusterHealingPolicy.
    pub fn of(policy: &crate::core::crd::policy::HealingPolicy) -> PolicyRef {
        PolicyRef {
            kind: match policy.metadata.namespace {
                Some(_) => PolicyKind::HealingPolicy,
                None => PolicyKind::ClusterHealingPolicy,
            },
            namespace: policy.metadata.namespace.clone(),
            name: policy.name().to_string(),
            uid: policy.metadata.uid.clone(),
        }
    }

    /// Whether `policy` is the one referred to: same kind, namespace and name
    /// (the uid is checked apart, to say the policy was replaced).
    pub fn names(&self, policy: &crate::core::crd::policy::HealingPolicy) -> bool {
        let reference = PolicyRef::of(policy);
        self.kind == reference.kind
            && self.namespace == reference.namespace
            && self.name == reference.name
    }

    /// `HealingPolicy shop/restarts` or `ClusterHealingPolicy defaults`.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{:?} {namespace}/{}", self.kind, self.name),
            None => format!("{:?} {}", self.kind, self.name),
        }
    }
}

/// The policy that planned the action, exactly: a policy of the same name in
/// another namespace, or one recreated under the same name, is not it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRef {
    pub kind: PolicyKind,
    /// The HealingPolicy's namespace; absent for a ClusterHealingPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Absent only for the built-in policy `kubeskippy analyze` uses, which
    /// no daemon executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub uid: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionTarget {
    #[schemars(regex(pattern = r"^(v1|apps/v1)$"))]
    pub api_version: String,
    #[schemars(regex(pattern = r"^(Pod|Deployment|StatefulSet|DaemonSet|ReplicaSet)$"))]
    pub kind: String,
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Pins the action to the object that was analysed: a recreated object
    /// with the same name is not the same target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub uid: Option<String>,
}

impl ActionTarget {
    /// The target as the executors and the safety floor address it.
    pub fn object_ref(&self) -> crate::core::wit::ObjectRef {
        crate::core::wit::ObjectRef::new(&self.kind, &self.namespace, &self.name)
    }
}

/// The seed document's action shape: a `type` and the block for that type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionSpec {
    #[serde(rename = "type")]
    pub kind: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_action: Option<RestartAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_action: Option<ScaleAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_action: Option<PatchAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_pod_action: Option<DeletePodAction>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartAction {
    /// `rollout` for workloads (the restartedAt annotation), `evict` for a
    /// bare pod.
    #[schemars(regex(pattern = r"^(rollout|evict)$"))]
    pub strategy: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleAction {
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: u32,
}

/// Strategic merge only: what a patch may touch is checked field by field
/// against the object it merges into (see `change`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatchType {
    Strategic,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchAction {
    pub patch_type: PatchType,
    /// The patch document, YAML or JSON.
    #[schemars(length(min = 1, max = 16384))]
    pub patch: String,
}

/// Pods are only ever evicted, through the Eviction API, so
/// PodDisruptionBudgets hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeletePodAction {
    #[schemars(length(min = 1, max = 253))]
    pub pod_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approval {
    pub decision: ApprovalDecision,
    /// The identity of whoever decided, as the API server knows them.
    #[schemars(length(min = 1, max = 512))]
    pub by: String,
    #[schemars(length(max = 40))]
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
    /// The sha256 of the spec that was decided on (without this approval):
    /// a decision counts for that content only.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub spec_digest: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalDecision {
    Approved,
    Rejected,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: u32,
    #[schemars(range(min = 1, max = 3600))]
    pub backoff_seconds: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Approved,
    InProgress,
    Verifying,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
}

/// A status only moves forward. The seal proves the daemon wrote a status
/// for this action, but every status it ever wrote for it verifies: these
/// rules keep anyone (the daemon included) from writing an earlier one back —
/// a finished action made runnable again, an attempt count or start time
/// wound back to escape the limits, a verified change made to look
/// interrupted so it is rolled back, an attempt's InProgress written back
/// over its outcome or its retry so the change runs twice or is undone.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(oldSelf.phase in ['Succeeded', 'RolledBack', 'Cancelled']) || self.phase == oldSelf.phase",
     "message": "a finished HealingAction's phase is final"},
    {"rule": "oldSelf.phase != 'Failed' || self.phase in ['Failed', 'RolledBack']",
     "message": "a failed HealingAction can only be rolled back"},
    {"rule": "oldSelf.phase != 'Verifying' || !(self.phase in ['Pending', 'Approved', 'InProgress'])",
     "message": "a change being verified cannot be made to run again"},
    {"rule": "!has(oldSelf.attempts) || (has(self.attempts) && self.attempts >= oldSelf.attempts)",
     "message": "status.attempts never decreases"},
    {"rule": "!has(oldSelf.startedAt) || (has(self.startedAt) && self.startedAt >= oldSelf.startedAt)",
     "message": "status.startedAt never moves back"},
    {"rule": "self.phase != 'InProgress' || oldSelf.phase == 'InProgress' || (has(self.attempts) && (!has(oldSelf.attempts) || self.attempts > oldSelf.attempts))",
     "message": "a HealingAction enters InProgress only as a new attempt"}
]))]
pub struct HealingActionStatus {
    pub phase: Phase,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The fields the change writes, with the values they had before, saved
    /// before the change: a rollback restores only these, and only where they
    /// still hold what was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "rollback_record")]
    pub rollback: Option<Vec<WrittenField>>,
    /// The change ran with server-side dry-run (as planned, or because the
    /// policy was in dryrun mode when it ran): it changed nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// What the API server would have stored, for dry-run actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub dry_run_result: Option<serde_json::Value>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Who let the action run: the approver's identity, or the automatic mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// A failed attempt is retried no sooner than this; kept in status so a
    /// restarted daemon honours the backoff too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub retry_after: Option<String>,
    /// What verification compares against, captured before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationBaseline>,
    /// An HMAC the daemon writes with every status: a status anyone else
    /// wrote (phase, attempts, the rollback record) is not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 80))]
    pub seal: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationBaseline {
    /// When the change was made; the verification window starts here and
    /// only OOM kills after it count.
    pub since: String,
    /// The workload whose pods are verified; absent when the change leaves
    /// nothing to watch (a bare pod deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    /// Summed container restart counts per pod at `since`.
    #[serde(default)]
    pub restarts: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    pub kind: String,
    pub name: String,
}

impl HealingActionStatus {
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|condition| condition.type_ == kind)
    }
}

/// Kubernetes prunes fields a structural schema does not declare; snapshots of
/// arbitrary objects must be kept whole.
fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The rollback record's schema, written out: [`Field`] is a tagged enum,
/// which a structural schema cannot express as `oneOf`, so the tag's values
/// and each variant's fields are declared on one object. The API server then
/// refuses a record the daemon could not read.
fn rollback_record(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 64,
        "items": {
            "type": "object",
            "required": ["field", "wrote"],
            "properties": {
                "field": {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {
                        "kind": {"type": "string", "enum": ["replicas", "resource", "templateAnnotation", "annotation"]},
                        "container": {"type": "string", "maxLength": 253},
                        "section": {"type": "string", "enum": ["limits", "requests"]},
                        "resource": {"type": "string", "enum": ["cpu", "memory"]},
                        "key": {"type": "string", "maxLength": 317},
                    },
                    "x-kubernetes-validations": [
                        {"rule": "self.kind != 'resource' || (has(self.container) && has(self.section) && has(self.resource))",
                         "message": "a resource field names its container, section and resource"},
                        {"rule": "!(self.kind in ['templateAnnotation', 'annotation']) || has(self.key)",
                         "message": "an annotation field names its key"},
                    ],
                },
                "previous": {"type": "string", "maxLength": 1024},
                "wrote": {"type": "string", "maxLength": 1024},
            },
        },
    })
}

/// One field a change writes: a rollback restores `previous` only while the
/// field still holds `wrote`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WrittenField {
    pub field: Field,
    /// Unset before the change when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub wrote: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Section {
    Limits,
    Requests,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Resource {
    Cpu,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Field {
    Replicas,
    Resource {
        container: String,
        section: Section,
        resource: Resource,
    },
    TemplateAnnotation {
        key: String,
    },
    Annotation {
        key: String,
    },
}
