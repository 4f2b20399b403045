//! The host safety floor: checks compiled into the host that run before and
//! after every validator plugin, and again on the live object before anything
//! runs, and that no plugin, policy or HealingAction can loosen.
//!
//! It judges what a recommendation would *change*, not only where: the change
//! is typed ([`Change`]), raw patches are off unless the cluster administrator
//! turns them on and even then touch only container CPU and memory and allowed
//! annotations, values stay within the host's [`Bounds`], CPU and memory are
//! never lowered below what the containers use (or, with no usage measured,
//! below what they have), and a workload short of capacity is never scaled
//! down.

use std::collections::BTreeSet;
use std::time::Duration;

use kubeskippy_plugin_sdk::quantity;

use crate::core::change::{
    Bounds, Change, ContainerResources, PatchRules, ResourceChange, parse_patch,
};
use crate::core::config::SafetyConfig;
use crate::core::crd::PROTECTED_KEY;
use crate::core::crd::policy::HealingPolicy;
use crate::core::incidents::OpenIncident;
use crate::core::wit::{Action, FindingKind, Incident, ObjectRef, Patch, Recommendation};

const ALWAYS_PROTECTED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, Clone)]
pub struct SafetyFloor {
    protected_namespaces: BTreeSet<String>,
    bounds: Bounds,
    allow_raw_patches: bool,
    patch_rules: PatchRules,
    max_plan_age: Duration,
}

impl Default for SafetyFloor {
    fn default() -> Self {
        SafetyFloor::from_config(&SafetyConfig::default())
    }
}

impl SafetyFloor {
    /// The built-in protected namespaces plus the configured ones (the
    /// built-in ones cannot be removed), and the configured limits.
    pub fn from_config(config: &SafetyConfig) -> SafetyFloor {
        let mut protected_namespaces: BTreeSet<String> = ALWAYS_PROTECTED_NAMESPACES
            .iter()
            .map(|ns| ns.to_string())
            .collect();
        protected_namespaces.extend(config.protected_namespaces.iter().cloned());
        SafetyFloor {
            protected_namespaces,
            bounds: Bounds {
                min_replicas: 1,
                max_replicas: config.max_replicas,
                max_cpu_millicores: config.max_cpu_limit,
                max_memory_bytes: config.max_memory_limit,
            },
            allow_raw_patches: config.allow_raw_patches,
            patch_rules: PatchRules {
                annotation_prefixes: config.annotation_prefixes.clone(),
            },
            max_plan_age: config.max_plan_age,
        }
    }

    pub fn protected_namespaces(&self) -> impl Iterator<Item = &str> {
        self.protected_namespaces.iter().map(String::as_str)
    }

    /// The host's own bounds, before a policy tightens them.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    pub fn patch_rules(&self) -> &PatchRules {
        &self.patch_rules
    }

    pub fn max_plan_age(&self) -> Duration {
        self.max_plan_age
    }

    /// Every reason the floor refuses the recommendation; empty means it passes.
    pub fn objections(&self, recommendation: &Recommendation, open: &OpenIncident) -> Vec<String> {
        let mut objections = Vec::new();
        let incident = &open.incident;
        let target = &recommendation.target;
        if matches!(recommendation.action, Action::None) {
            return objections;
        }
        let confidence = recommendation.confidence;
        if !(0.0..=1.0).contains(&confidence) {
            objections.push(format!("confidence {confidence} is outside 0..1"));
        }
        if self.protected_namespaces.contains(&target.namespace)
            || self
                .protected_namespaces
                .contains(&incident.target.namespace)
        {
            objections.push(format!("namespace {} is protected", target.namespace));
        }
        let is_workload = target.kind == incident.target.kind
            && target.name == incident.target.name
            && target.namespace == incident.target.namespace;
        let pod_marks = open
            .pod_marks
            .iter()
            .find(|(name, _)| {
                target.kind == "Pod"
                    && *name == target.name
                    && target.namespace == incident.target.namespace
            })
            .map(|(_, marks)| marks);
        if !is_workload && pod_marks.is_none() {
            objections.push(format!(
                "{}/{} in namespace {} is neither the incident's workload nor one of its pods",
                target.kind, target.name, target.namespace
            ));
        }
        let marked = |marks: &crate::core::facts::ObjectMarks| {
            marks.labels.get(PROTECTED_KEY).is_some_and(|v| v == "true")
                || marks
                    .annotations
                    .get(PROTECTED_KEY)
                    .is_some_and(|v| v == "true")
        };
        match &open.target_marks {
            Some(marks) if marked(marks) => objections.push(format!(
                "{}/{} is marked {PROTECTED_KEY}=true",
                incident.target.kind, incident.target.name
            )),
            Some(_) => {}
            // The pods name an owner the cache does not hold: its labels,
            // and so its protection, are unknown.
            None if is_workload => objections.push(format!(
                "{}/{} is not in the cache, so whether it is protected cannot be read",
                incident.target.kind, incident.target.name
            )),
            None => {}
        }
        if pod_marks.is_some_and(marked) {
            objections.push(format!(
                "Pod {} is marked {PROTECTED_KEY}=true",
                target.name
            ));
        }
        if let Some(why) = policy_protects(open.policy, &incident.target)
            .or_else(|| policy_protects(open.policy, target))
        {
            objections.push(why);
        }
        let deletes = matches!(recommendation.action, Action::DeletePod)
            || (matches!(recommendation.action, Action::Restart) && target.kind == "Pod");
        // Only pods are ever deleted, so a Namespace, Node, PersistentVolume or
        // CustomResourceDefinition can never be, whatever a plugin says.
        if deletes && target.kind != "Pod" {
            objections.push(format!(
                "only pods are ever deleted, and {}/{} is not a pod",
                target.kind, target.name
            ));
        }
        match self.change_of(recommendation) {
            Ok(Some(change)) => {
                objections.extend(change.out_of_bounds(&self.bounds));
                objections.extend(against_facts(&change, incident));
            }
            Ok(None) => {}
            Err(why) => objections.push(why),
        }
        objections
    }

    /// The change a recommendation asks for, as the host types it.
    fn change_of(&self, recommendation: &Recommendation) -> Result<Option<Change>, String> {
        let kind = recommendation.target.kind.as_str();
        Ok(Some(match &recommendation.action {
            Action::None => return Ok(None),
            Action::Restart if kind == "Pod" => Change::Evict,
            Action::Restart => Change::RolloutRestart,
            Action::DeletePod => Change::Evict,
            // Refused here rather than when it runs, where the failure would
            // count towards the policy's circuit breaker.
            Action::Scale(_) if !matches!(kind, "Deployment" | "StatefulSet" | "ReplicaSet") => {
                return Err(format!("a {kind} has no replica count to scale"));
            }
            Action::Scale(replicas) => Change::Scale {
                replicas: *replicas,
            },
            // A pod's resources change in place only through its `resize`
            // subresource, and a pod with a workload would be replaced.
            Action::Patch(_) if kind == "Pod" => {
                return Err(
                    "a pod's resources cannot be changed in place; its workload's can".into(),
                );
            }
            Action::Patch(Patch::Resources(patch)) => Change::Resources(ResourceChange {
                containers: vec![ContainerResources {
                    name: patch.container.clone(),
                    limits: crate::core::wit::ResourceAmounts {
                        cpu_millicores: patch.cpu_limit_millicores,
                        memory_bytes: patch.memory_limit_bytes,
                    },
                    requests: crate::core::wit::ResourceAmounts {
                        cpu_millicores: patch.cpu_request_millicores,
                        memory_bytes: patch.memory_request_bytes,
                    },
                }],
                ..ResourceChange::default()
            }),
            Action::Patch(Patch::StrategicMerge(_)) if !self.allow_raw_patches => {
                return Err(
                    "raw strategic-merge patches are off (the daemon's safety.allowRawPatches)"
                        .into(),
                );
            }
            Action::Patch(Patch::StrategicMerge(document)) => {
                Change::Resources(parse_patch(document, kind, &self.patch_rules)?)
            }
        }))
    }

    /// Why the floor refuses to change `object`, the target as the API server
    /// returns it right before execution.
    pub fn refuses_live(
        &self,
        target: &ObjectRef,
        object: &serde_json::Value,
        policy: &HealingPolicy,
    ) -> Option<String> {
        if self.protected_namespaces.contains(&target.namespace) {
            return Some(format!("namespace {} is protected", target.namespace));
        }
        let metadata = &object["metadata"];
        if metadata["labels"][PROTECTED_KEY] == "true"
            || metadata["annotations"][PROTECTED_KEY] == "true"
        {
            return Some(format!(
                "{}/{} is marked {PROTECTED_KEY}=true",
                target.kind, target.name
            ));
        }
        policy_protects(policy, target)
    }
}

/// Findings that mean the workload is short of capacity: taking replicas away
/// cannot help it.
fn short_of_capacity(kind: FindingKind) -> bool {
    matches!(
        kind,
        FindingKind::CpuPressure
            | FindingKind::MemoryPressure
            | FindingKind::OomKilled
            | FindingKind::CrashLoop
            | FindingKind::Restarts
    )
}

/// What the incident's facts say against the change: a scale-down of a
/// workload short of capacity, CPU or memory below what a container uses, or
/// below what it has when nothing was measured.
fn against_facts(change: &Change, incident: &Incident) -> Vec<String> {
    let mut objections = Vec::new();
    match change {
        Change::Scale { replicas } => {
            let current = incident
                .workload
                .as_ref()
                .and_then(|workload| workload.desired_replicas);
            let pressing = incident
                .findings
                .iter()
                .find(|finding| short_of_capacity(finding.kind));
            if let (Some(current), Some(finding)) = (current, pressing)
                && *replicas < current
            {
                objections.push(format!(
                    "scaling {}/{} down from {current} to {replicas} takes capacity from a workload that is short of it ({:?}: {})",
                    incident.target.kind, incident.target.name, finding.kind, finding.detail
                ));
            }
        }
        Change::Resources(resources) => {
            for container in &resources.containers {
                objections.extend(container_objections(container, incident));
            }
        }
        Change::RolloutRestart | Change::Evict => {}
    }
    objections
}

/// One CPU or memory value a change sets, beside what the incident's pods
/// say of that container.
struct Amount {
    resource: &'static str,
    section: &'static str,
    wanted: Option<u64>,
    /// The most any of the incident's pods uses of it.
    used: Option<u64>,
    /// The most any of them has of it now.
    now: Option<u64>,
    show: fn(u64) -> String,
}

fn container_objections(change: &ContainerResources, incident: &Incident) -> Vec<String> {
    let facts: Vec<&crate::core::wit::ContainerFacts> = incident
        .pods
        .iter()
        .flat_map(|pod| &pod.containers)
        .filter(|container| container.name == change.name)
        .collect();
    if facts.is_empty() {
        return vec![format!(
            "container {} is in none of the incident's pods",
            change.name
        )];
    }
    let peak = |read: &dyn Fn(&crate::core::wit::ContainerFacts) -> Option<u64>| {
        facts.iter().filter_map(|container| read(container)).max()
    };
    let cpu_used = peak(&|c| c.usage.cpu_millicores);
    let memory_used = peak(&|c| c.usage.memory_bytes);
    let amounts = [
        Amount {
            resource: "CPU",
            section: "limit",
            wanted: change.limits.cpu_millicores,
            used: cpu_used,
            now: peak(&|c| c.limits.cpu_millicores),
            show: quantity::format_cpu,
        },
        Amount {
            resource: "memory",
            section: "limit",
            wanted: change.limits.memory_bytes,
            used: memory_used,
            now: peak(&|c| c.limits.memory_bytes),
            show: quantity::format_memory,
        },
        Amount {
            resource: "CPU",
            section: "request",
            wanted: change.requests.cpu_millicores,
            used: cpu_used,
            now: peak(&|c| c.requests.cpu_millicores),
            show: quantity::format_cpu,
        },
        Amount {
            resource: "memory",
            section: "request",
            wanted: change.requests.memory_bytes,
            used: memory_used,
            now: peak(&|c| c.requests.memory_bytes),
            show: quantity::format_memory,
        },
    ];
    let mut objections = Vec::new();
    for amount in amounts {
        let Amount {
            resource,
            section,
            used,
            now,
            show,
            ..
        } = amount;
        let Some(wanted) = amount.wanted else {
            continue;
        };
        let container = &change.name;
        match (used, now) {
            (Some(used), _) if wanted < used => objections.push(format!(
                "{resource} {section} {} for container {container} is below what it uses ({})",
                show(wanted),
                show(used)
            )),
            (Some(_), _) => {}
            (None, Some(now)) if wanted < now => objections.push(format!(
                "{resource} {section} {} for container {container} is below its current {section} {}, and no usage was measured to show that is enough",
                show(wanted),
                show(now)
            )),
            (None, Some(_)) => {}
            (None, None) if section == "limit" => objections.push(format!(
                "container {container} has no {resource} limit and no usage was measured: a new limit of {} could be below what it uses",
                show(wanted)
            )),
            (None, None) => {}
        }
    }
    objections
}

/// The policy's own `safety.protectedResources`.
fn policy_protects(policy: &HealingPolicy, target: &ObjectRef) -> Option<String> {
    policy
        .spec
        .safety
        .protected_resources
        .iter()
        .any(|protected| {
            protected.kind.eq_ignore_ascii_case(&target.kind) && protected.name == target.name
        })
        .then(|| {
            format!(
                "policy {} protects {}/{}",
                policy.name(),
                target.kind,
                target.name
            )
        })
}
