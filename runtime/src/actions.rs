//! HealingActions: the `kubeskippy.io/v1alpha1` objects planned for allowed
//! recommendations, shaped like the seed document's example, with the model's
//! confidence and reasoning as annotations.

use kubeskippy_plugin_sdk::quantity;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::incidents::OpenIncident;
use crate::policy::Mode;
use crate::wit::{Action, Patch, Recommendation, ResourcePatch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Llm,
    Rules,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Llm => "llm",
            Source::Rules => "rules",
        }
    }
}

/// The action in the report's stable JSON shape: `{type, ...params}`.
pub fn action_json(action: &Action) -> Value {
    match action {
        Action::Restart => json!({ "type": "restart" }),
        Action::Scale(replicas) => json!({ "type": "scale", "replicas": replicas }),
        Action::Patch(Patch::Resources(patch)) => {
            let mut value = json!({ "type": "patch", "container": patch.container });
            for (key, amount) in resource_fields(patch) {
                value[key] = json!(amount);
            }
            value
        }
        Action::Patch(Patch::StrategicMerge(document)) => {
            json!({ "type": "patch", "strategicMerge": document })
        }
        Action::DeletePod => json!({ "type": "delete-pod" }),
        Action::None => json!({ "type": "none" }),
    }
}

fn resource_fields(patch: &ResourcePatch) -> Vec<(&'static str, String)> {
    let mut fields = Vec::new();
    if let Some(cpu) = patch.cpu_limit_millicores {
        fields.push(("cpuLimit", quantity::format_cpu(cpu)));
    }
    if let Some(cpu) = patch.cpu_request_millicores {
        fields.push(("cpuRequest", quantity::format_cpu(cpu)));
    }
    if let Some(memory) = patch.memory_limit_bytes {
        fields.push(("memoryLimit", quantity::format_memory(memory)));
    }
    if let Some(memory) = patch.memory_request_bytes {
        fields.push(("memoryRequest", quantity::format_memory(memory)));
    }
    fields
}

fn api_version_of(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        _ => "v1",
    }
}

/// The strategic-merge patch that applies a resource change: under the pod
/// template for a workload, directly under the spec for a bare pod.
fn resource_patch_document(kind: &str, patch: &ResourcePatch) -> Value {
    let mut limits = serde_json::Map::new();
    let mut requests = serde_json::Map::new();
    for (key, amount) in resource_fields(patch) {
        match key {
            "cpuLimit" => limits.insert("cpu".into(), json!(amount)),
            "memoryLimit" => limits.insert("memory".into(), json!(amount)),
            "cpuRequest" => requests.insert("cpu".into(), json!(amount)),
            _ => requests.insert("memory".into(), json!(amount)),
        };
    }
    let mut resources = serde_json::Map::new();
    if !limits.is_empty() {
        resources.insert("limits".into(), Value::Object(limits));
    }
    if !requests.is_empty() {
        resources.insert("requests".into(), Value::Object(requests));
    }
    let containers = json!({ "containers": [{ "name": patch.container, "resources": resources }] });
    if kind == "Pod" {
        json!({ "spec": containers })
    } else {
        json!({ "spec": { "template": { "spec": containers } } })
    }
}

fn spec_action(recommendation: &Recommendation) -> Value {
    let target = &recommendation.target;
    match &recommendation.action {
        Action::Restart => json!({ "type": "restart", "restartAction": { "strategy": "rollout" } }),
        Action::Scale(replicas) => {
            json!({ "type": "scale", "scaleAction": { "replicas": replicas } })
        }
        Action::Patch(Patch::Resources(patch)) => {
            let document = resource_patch_document(&target.kind, patch);
            json!({
                "type": "patch",
                "patchAction": {
                    "patchType": "strategic",
                    "patch": serde_yaml_ng::to_string(&document).expect("a JSON value renders as YAML"),
                }
            })
        }
        Action::Patch(Patch::StrategicMerge(document)) => {
            json!({ "type": "patch", "patchAction": { "patchType": "strategic", "patch": document } })
        }
        Action::DeletePod => {
            json!({ "type": "delete-pod", "deletePodAction": { "podName": target.name, "useEviction": true } })
        }
        Action::None => json!({ "type": "none" }),
    }
}

/// Builds the planned HealingAction for an allowed recommendation. Names are
/// derived from the incident and the action, so the same plan gets the same
/// name on every run and a controller can tell it already exists.
pub fn plan(open: &OpenIncident, recommendation: &Recommendation, source: Source) -> Option<Value> {
    if matches!(recommendation.action, Action::None) {
        return None;
    }
    let incident = &open.incident;
    let target = &recommendation.target;
    let action = spec_action(recommendation);
    let action_type = action["type"].as_str().unwrap_or("action").to_string();
    let mut hasher = Sha256::new();
    hasher.update(incident.id.as_bytes());
    hasher.update(action.to_string().as_bytes());
    hasher.update(format!("{}/{}", target.kind, target.name));
    let digest = hex::encode(&hasher.finalize()[..3]);
    let prefix = match source {
        Source::Llm => "ai",
        Source::Rules => "rule",
    };
    let base = format!("{prefix}-{action_type}-{}", target.name.to_lowercase());
    let name = format!("{}-{digest}", truncate_name(&base, 63 - 7));
    let uid = if target.kind == incident.target.kind && target.name == incident.target.name {
        open.target_marks.uid.clone()
    } else {
        open.pod_marks
            .iter()
            .find(|(pod, _)| *pod == target.name)
            .and_then(|(_, marks)| marks.uid.clone())
    };
    let mode = open.policy.spec.mode;
    Some(json!({
        "apiVersion": "kubeskippy.io/v1alpha1",
        "kind": "HealingAction",
        "metadata": {
            "name": name,
            "namespace": target.namespace,
            "labels": {
                "kubeskippy.io/policy": open.policy.name(),
                "kubeskippy.io/source": source.as_str(),
            },
            "annotations": {
                "ai.confidence": format!("{:.2}", recommendation.confidence),
                "ai.reasoning": recommendation.reason,
                "kubeskippy.io/incident": incident.id,
            },
        },
        "spec": {
            "policyRef": { "name": open.policy.name() },
            "incidentId": incident.id,
            "target": {
                "apiVersion": api_version_of(&target.kind),
                "kind": target.kind,
                "namespace": target.namespace,
                "name": target.name,
                "uid": uid,
            },
            "action": action,
            "source": source.as_str(),
            "confidence": recommendation.confidence,
            "reasoning": recommendation.reason,
            "risk": recommendation.risk,
            "dryRun": matches!(mode, Mode::Dryrun | Mode::Monitor),
            "approvalRequired": matches!(mode, Mode::Manual),
        },
        "status": { "phase": "Pending" },
    }))
}

/// Kubernetes names are DNS labels: lowercase alphanumerics and dashes.
fn truncate_name(base: &str, max: usize) -> String {
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    cleaned.trim_matches('-').to_string()
}
