//! HealingActions: the `kubeskippy.io/v1alpha1` objects planned for allowed
//! recommendations, shaped like the seed document's example, with the model's
//! confidence and reasoning as annotations.

use std::collections::BTreeMap;

use kubeskippy_plugin_sdk::quantity;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::core::change::{PatchRules, parse_patch};
use crate::core::crd::ActionKind;
use crate::core::crd::healing_action::{
    ActionSpec, ActionTarget, DeletePodAction, HealingAction, HealingActionSpec,
    HealingActionStatus, Observed, ObservedAmounts, ObservedContainer, PatchAction, PatchType,
    PolicyRef, RestartAction, RetryPolicy, ScaleAction,
};
use crate::core::crd::policy::Mode;
use crate::core::incidents::OpenIncident;
use crate::core::wit::{Action, Patch, Recommendation, ResourcePatch};

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

pub fn api_version_of(kind: &str) -> &'static str {
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

fn spec_action(recommendation: &Recommendation) -> Option<ActionSpec> {
    let target = &recommendation.target;
    let empty = |kind| ActionSpec {
        kind,
        restart_action: None,
        scale_action: None,
        patch_action: None,
        delete_pod_action: None,
    };
    let strategic = |document: String| PatchAction {
        patch_type: PatchType::Strategic,
        patch: document,
    };
    Some(match &recommendation.action {
        Action::Restart => ActionSpec {
            restart_action: Some(RestartAction {
                strategy: if target.kind == "Pod" {
                    "evict"
                } else {
                    "rollout"
                }
                .into(),
            }),
            ..empty(ActionKind::Restart)
        },
        Action::Scale(replicas) => ActionSpec {
            scale_action: Some(ScaleAction {
                replicas: *replicas,
            }),
            ..empty(ActionKind::Scale)
        },
        Action::Patch(Patch::Resources(patch)) => {
            let document = resource_patch_document(&target.kind, patch);
            ActionSpec {
                patch_action: Some(strategic(
                    serde_yaml_ng::to_string(&document).expect("a JSON value renders as YAML"),
                )),
                ..empty(ActionKind::Patch)
            }
        }
        Action::Patch(Patch::StrategicMerge(document)) => ActionSpec {
            patch_action: Some(strategic(document.clone())),
            ..empty(ActionKind::Patch)
        },
        Action::DeletePod => ActionSpec {
            delete_pod_action: Some(DeletePodAction {
                pod_name: target.name.clone(),
            }),
            ..empty(ActionKind::DeletePod)
        },
        Action::None => return None,
    })
}

/// The triggers that fired for the incident an action answers, once each.
fn fired_triggers(incident: &crate::core::wit::Incident) -> Vec<String> {
    let names: std::collections::BTreeSet<&str> = incident
        .findings
        .iter()
        .map(|finding| finding.trigger.as_str())
        .collect();
    names.into_iter().map(str::to_string).collect()
}

/// What the plan is made against (see [`Observed`]): the replica count for a
/// scale, and the template's CPU and memory of each container a change sets.
fn observed(
    open: &OpenIncident,
    recommendation: &Recommendation,
    rules: &PatchRules,
) -> Option<Observed> {
    let kind = recommendation.target.kind.as_str();
    let containers: Vec<String> = match &recommendation.action {
        Action::Scale(_) => {
            return Some(Observed {
                replicas: open.incident.workload.as_ref()?.desired_replicas,
                containers: Vec::new(),
            });
        }
        Action::Patch(Patch::Resources(patch)) => vec![patch.container.clone()],
        Action::Patch(Patch::StrategicMerge(document)) => parse_patch(document, kind, rules)
            .ok()?
            .containers
            .into_iter()
            .map(|container| container.name)
            .collect(),
        Action::Restart | Action::DeletePod | Action::None => return None,
    };
    let quantities = |amounts: &crate::core::objects::CpuMemory| ObservedAmounts {
        cpu: amounts.cpu.as_ref().map(|q| q.0.clone()),
        memory: amounts.memory.as_ref().map(|q| q.0.clone()),
    };
    let containers = containers
        .into_iter()
        .map(|name| {
            let template = open
                .template
                .iter()
                .find(|container| container.name == name);
            ObservedContainer {
                limits: template.map_or_else(ObservedAmounts::default, |c| {
                    quantities(&c.resources.limits)
                }),
                requests: template.map_or_else(ObservedAmounts::default, |c| {
                    quantities(&c.resources.requests)
                }),
                name,
            }
        })
        .collect();
    Some(Observed {
        replicas: None,
        containers,
    })
}

/// The recommendation's reason, then why approval gates want a person to
/// approve it: `spec.reasoning` is what the on-call engineer reads on the
/// action and in its Planned event. The reasons were cleaned in review; the
/// whole stays well inside the CRD's bound.
fn reasoning(reason: &str, approval_reasons: &[String]) -> String {
    if approval_reasons.is_empty() {
        return reason.to_string();
    }
    crate::core::untrusted::clean(
        &format!(
            "{reason} Approval required: {}",
            approval_reasons.join("; ")
        ),
        crate::core::untrusted::MAX_PROSE,
    )
}

/// Builds the planned HealingAction for an allowed recommendation. Names are
/// derived from the incident and the action, so the same plan gets the same
/// name on every run and a controller can tell it already exists. Approval
/// reasons (from validators' approval gates) can only make the action wait
/// for a person, never spare it a wait the policy asks for.
pub fn plan(
    open: &OpenIncident,
    recommendation: &Recommendation,
    approval_reasons: &[String],
    source: Source,
    rules: &PatchRules,
) -> Option<HealingAction> {
    let action = spec_action(recommendation)?;
    let incident = &open.incident;
    let target = &recommendation.target;
    let action_json = serde_json::to_string(&action).expect("an action serialises");
    let action_type = serde_json::to_value(action.kind).expect("a kind serialises");
    let mut hasher = Sha256::new();
    hasher.update(incident.id.as_bytes());
    hasher.update(action_json.as_bytes());
    hasher.update(format!("{}/{}", target.kind, target.name));
    let digest = hex::encode(&hasher.finalize()[..3]);
    let prefix = match source {
        Source::Llm => "ai",
        Source::Rules => "rule",
    };
    let base = format!(
        "{prefix}-{}-{}",
        action_type.as_str().unwrap_or("action"),
        target.name.to_lowercase()
    );
    let name = format!("{}-{digest}", truncate_name(&base, 63 - 7));
    let uid = if target.kind == incident.target.kind && target.name == incident.target.name {
        open.target_marks
            .as_ref()
            .and_then(|marks| marks.uid.clone())
    } else {
        open.pod_marks
            .iter()
            .find(|(pod, _)| *pod == target.name)
            .and_then(|(_, marks)| marks.uid.clone())
    };
    let mode = open.policy.spec.mode;
    let mut healing_action = HealingAction::new(
        &name,
        HealingActionSpec {
            policy_ref: PolicyRef::of(open.policy),
            incident_id: incident.id.clone(),
            triggers: fired_triggers(incident),
            target: ActionTarget {
                api_version: api_version_of(&target.kind).into(),
                kind: target.kind.clone(),
                namespace: target.namespace.clone(),
                name: target.name.clone(),
                uid,
            },
            action,
            source: source.as_str().into(),
            confidence: recommendation.confidence,
            reasoning: reasoning(&recommendation.reason, approval_reasons),
            risk: recommendation.risk.clone(),
            planned_at: None,
            dry_run: matches!(mode, Mode::Dryrun | Mode::Monitor),
            approval_required: matches!(mode, Mode::Manual)
                || open.policy.spec.safety.require_approval
                || !approval_reasons.is_empty(),
            approval: None,
            retry_policy: RetryPolicy::default(),
            observed: observed(open, recommendation, rules),
        },
    );
    healing_action.metadata.namespace = Some(target.namespace.clone());
    healing_action.metadata.labels = Some(BTreeMap::from([
        (
            "kubeskippy.io/policy".to_string(),
            label_value(open.policy.name()),
        ),
        (
            "kubeskippy.io/source".to_string(),
            source.as_str().to_string(),
        ),
    ]));
    healing_action.metadata.annotations = Some(BTreeMap::from([
        (
            "ai.confidence".to_string(),
            format!("{:.2}", recommendation.confidence),
        ),
        ("ai.reasoning".to_string(), recommendation.reason.clone()),
        ("kubeskippy.io/incident".to_string(), incident.id.clone()),
    ]));
    healing_action.status = Some(HealingActionStatus::default());
    Some(healing_action)
}

/// A name for one HealingAction of the plan `planned`: its readable part and a
/// random suffix, so the daemon's names cannot be predicted (and taken first)
/// and a finished action never stands in the way of the next one.
pub fn unique_name(planned: &str) -> String {
    use ring::rand::SecureRandom;
    let readable = match planned.rsplit_once('-') {
        Some((readable, digest)) if digest.len() == 6 => readable,
        _ => planned,
    };
    let mut suffix = [0u8; 4];
    ring::rand::SystemRandom::new()
        .fill(&mut suffix)
        .expect("the system's random source works");
    format!(
        "{}-{}",
        truncate_name(readable, 63 - 9),
        hex::encode(suffix)
    )
}

/// A label value is at most 63 characters; a longer policy name (names may
/// have 253) is shortened and given a digest of the whole, so two long names
/// still differ.
fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let digest = hex::encode(&Sha256::digest(name.as_bytes())[..4]);
    format!("{}-{digest}", truncate_name(name, 63 - 9))
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
