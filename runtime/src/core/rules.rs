//! Rule-based recommendations, from the policy's configured actions: what runs
//! when no model is configured, reachable or usable. They go through the same
//! validators and safety floor as a model's advice.

use kubeskippy_plugin_sdk::quantity;

use crate::core::crd::ActionKind;
use crate::core::crd::policy::{HealingPolicy, PolicyAction};
use crate::core::wit::{
    Action, Analysis, FindingKind, Incident, Issue, ObjectRef, Patch, Recommendation,
    ResourcePatch, Severity,
};

/// Advice for trouble no automated action can fix.
const ADVICE: [(FindingKind, &str, &str); 3] = [
    (
        FindingKind::ImagePull,
        "Fix the image reference or the registry credentials; restarting, scaling or deleting pods cannot pull an image that does not exist",
        "The image cannot be pulled",
    ),
    (
        FindingKind::ConfigError,
        "Create the missing ConfigMap or Secret, or correct the reference to it; the pods start once it exists",
        "A referenced ConfigMap, Secret or key is missing",
    ),
    (
        FindingKind::Unschedulable,
        "Free capacity or relax the pod's requests, affinity or tolerations; no pod change schedules it",
        "No node can take the pod",
    ),
];

pub fn analyze(incident: &Incident, policy: &HealingPolicy) -> Analysis {
    let has = |kind| incident.findings.iter().any(|f| f.kind == kind);
    let mut recommendations = Vec::new();
    for (kind, advice, _) in ADVICE {
        if has(kind) {
            recommendations.push(Recommendation {
                action: Action::None,
                target: incident.target.clone(),
                reason: advice.to_string(),
                risk: "None: no change is made".into(),
                confidence: 0.9,
            });
        }
    }
    // An image that cannot be pulled is not fixed by touching pods.
    if !has(FindingKind::ImagePull) {
        for action in &policy.spec.actions {
            let answers = action.triggers.is_empty()
                || incident
                    .findings
                    .iter()
                    .any(|f| action.triggers.contains(&f.trigger));
            if answers {
                recommendations.extend(recommend(action, incident));
            }
        }
    }
    recommendations.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));

    let issues = incident
        .findings
        .iter()
        .map(|finding| Issue {
            title: finding.detail.clone(),
            severity: match finding.kind {
                FindingKind::CrashLoop
                | FindingKind::OomKilled
                | FindingKind::ImagePull
                | FindingKind::ConfigError => Severity::High,
                FindingKind::Unschedulable
                | FindingKind::Restarts
                | FindingKind::MemoryPressure => Severity::Medium,
                _ => Severity::Low,
            },
            impact: impact_of(finding.kind).into(),
            root_cause: ADVICE
                .iter()
                .find(|(kind, _, _)| *kind == finding.kind)
                .map(|(_, _, cause)| cause.to_string())
                .unwrap_or_else(|| "Not determined by rules; a model can infer it".into()),
        })
        .collect();
    Analysis {
        summary: format!(
            "Rule-based analysis of {}/{}: {}.",
            incident.target.kind,
            incident.target.name,
            incident
                .findings
                .iter()
                .map(|f| f.detail.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        issues,
        recommendations,
    }
}

fn impact_of(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::CrashLoop | FindingKind::OomKilled | FindingKind::Restarts => {
            "Reduced capacity and repeated crashes"
        }
        FindingKind::ImagePull | FindingKind::ConfigError | FindingKind::Unschedulable => {
            "New pods cannot start"
        }
        FindingKind::CpuPressure => "Throttling and slower responses",
        FindingKind::MemoryPressure => "Risk of OOM kills",
        FindingKind::WarningEvents | FindingKind::Other => "Unknown",
    }
}

fn recommendation(
    action: Action,
    target: ObjectRef,
    rule: &PolicyAction,
    reason: String,
    risk: &str,
) -> Recommendation {
    Recommendation {
        action,
        target,
        reason: format!("{reason} (policy action {})", rule.name),
        risk: risk.into(),
        confidence: rule.confidence,
    }
}

fn recommend(rule: &PolicyAction, incident: &Incident) -> Vec<Recommendation> {
    let target = incident.target.clone();
    match rule.action_type {
        ActionKind::Restart if target.kind != "Pod" => vec![recommendation(
            Action::Restart,
            target,
            rule,
            "Pods keep failing; a rollout restart replaces them".into(),
            "Brief capacity loss while pods are replaced",
        )],
        ActionKind::Restart => vec![],
        ActionKind::Scale => {
            let (Some(bounds), Some(desired)) = (
                &rule.scale,
                incident.workload.as_ref().and_then(|w| w.desired_replicas),
            ) else {
                return vec![];
            };
            let wanted = desired
                .saturating_add(bounds.step)
                .clamp(bounds.min_replicas, bounds.max_replicas);
            if wanted <= desired {
                return vec![];
            }
            vec![recommendation(
                Action::Scale(wanted),
                target,
                rule,
                format!("Spread the load over {wanted} replicas instead of {desired}"),
                "Uses more cluster resources",
            )]
        }
        ActionKind::Patch => memory_patches(rule, incident),
        ActionKind::DeletePod => incident
            .findings
            .iter()
            .filter(|f| rule.triggers.is_empty() || rule.triggers.contains(&f.trigger))
            .filter_map(|f| f.pod.clone())
            .fold(Vec::<String>::new(), |mut pods, pod| {
                if !pods.contains(&pod) {
                    pods.push(pod);
                }
                pods
            })
            .into_iter()
            .map(|pod| {
                recommendation(
                    Action::DeletePod,
                    ObjectRef {
                        kind: "Pod".into(),
                        namespace: target.namespace.clone(),
                        name: pod.clone(),
                    },
                    rule,
                    format!("Evict pod {pod} so its controller replaces it"),
                    "One pod's capacity is lost until the replacement is ready",
                )
            })
            .collect(),
    }
}

/// Raises each limited container's memory limit to the larger of the limit
/// times the factor and the peak usage plus headroom, within the maximum.
fn memory_patches(rule: &PolicyAction, incident: &Incident) -> Vec<Recommendation> {
    let Some(patch_rule) = &rule.patch else {
        return vec![];
    };
    let Ok(maximum) = quantity::memory_bytes(&patch_rule.max_memory_limit) else {
        return vec![];
    };
    let mut names: Vec<&str> = Vec::new();
    for container in incident.pods.iter().flat_map(|pod| &pod.containers) {
        if container.limits.memory_bytes.is_some() && !names.contains(&container.name.as_str()) {
            names.push(&container.name);
        }
    }
    let mut patches = Vec::new();
    for name in names {
        let containers = incident
            .pods
            .iter()
            .flat_map(|pod| &pod.containers)
            .filter(|c| c.name == name);
        let limit = containers
            .clone()
            .filter_map(|c| c.limits.memory_bytes)
            .max()
            .unwrap_or(0);
        let peak = containers
            .clone()
            .filter_map(|c| c.usage.memory_bytes)
            .max()
            .unwrap_or(0);
        let troubled = containers.clone().any(|c| {
            c.last_termination_reason.as_deref() == Some("OOMKilled")
                || c.usage
                    .memory_bytes
                    .is_some_and(|usage| usage * 10 >= limit * 9)
        });
        if !troubled {
            continue;
        }
        let by_factor = (limit as f64 * patch_rule.memory_limit_factor) as u64;
        let by_usage = (peak as f64 * patch_rule.headroom_over_usage) as u64;
        let mebibyte = 1u64 << 20;
        let wanted = by_factor
            .max(by_usage)
            .div_ceil(mebibyte)
            .saturating_mul(mebibyte)
            .min(maximum);
        if wanted <= limit {
            continue;
        }
        patches.push(recommendation(
            Action::Patch(Patch::Resources(ResourcePatch {
                container: name.to_string(),
                cpu_limit_millicores: None,
                cpu_request_millicores: None,
                memory_limit_bytes: Some(wanted),
                memory_request_bytes: None,
            })),
            incident.target.clone(),
            rule,
            format!(
                "Container {name} needs more memory: limit {}, peak usage {}; raise the limit to {}",
                quantity::format_memory_rounded(limit),
                quantity::format_memory_rounded(peak),
                quantity::format_memory(wanted)
            ),
            "May mask a memory leak; uses more node memory",
        ));
    }
    patches
}
