//! HealingAction (`kubeskippy.io/v1alpha1`): one planned change to one object,
//! with the confidence and reasoning behind it, and — once an operator runs it —
//! its lifecycle: `Pending → Approved → InProgress → Verifying → Succeeded |
//! Failed | RolledBack | Cancelled`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
pub struct HealingActionSpec {
    pub policy_ref: PolicyRef,
    pub incident_id: String,
    pub target: ActionTarget,
    pub action: ActionSpec,
    /// `llm` when a model recommended it, `rules` when the policy's rules did.
    pub source: String,
    pub confidence: f64,
    pub reasoning: String,
    pub risk: String,
    /// Run the change with server-side dry-run and record the result instead.
    #[serde(default)]
    pub dry_run: bool,
    /// Wait for `kubeskippy approve` before running.
    #[serde(default)]
    pub approval_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(default)]
    pub retry_policy: RetryPolicy,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRef {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionTarget {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Pins the action to the object that was analysed: a recreated object
    /// with the same name is not the same target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    Restart,
    Scale,
    Patch,
    DeletePod,
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
    /// `rollout` for workloads (the restartedAt annotation), `delete` for a bare pod.
    pub strategy: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleAction {
    pub replicas: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatchType {
    Strategic,
    Merge,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchAction {
    pub patch_type: PatchType,
    /// The patch document, YAML or JSON.
    pub patch: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeletePodAction {
    pub pod_name: String,
    /// Evict through the Eviction API so PodDisruptionBudgets are honoured.
    pub use_eviction: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approval {
    pub decision: ApprovalDecision,
    /// The identity of whoever decided, as the API server knows them.
    pub by: String,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    pub max_attempts: u32,
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

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealingActionStatus {
    pub phase: Phase,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What rollback restores, captured before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub original: Option<serde_json::Value>,
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
    pub retry_after: Option<String>,
    /// What verification compares against, captured before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationBaseline>,
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

/// The CustomResourceDefinitions KubeSkippy owns, as YAML documents.
pub fn crds_yaml() -> String {
    use kube::CustomResourceExt;
    let mut out = String::new();
    for crd in [crate::policy::HealingPolicy::crd(), HealingAction::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd).expect("a CRD renders as YAML"));
    }
    out
}
