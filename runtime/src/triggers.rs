//! Triggers: which policy governs each workload, and which of its triggers fire
//! on the cluster facts. Every finding is tied to the workload (and pod) that
//! fired it.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kubeskippy_plugin_sdk::quantity;

use crate::facts::{ClusterFacts, ObjectKey, PodRecord, key_of};
use crate::policy::{EventTrigger, HealingPolicy, Metric, TriggerCondition};
use crate::wit::{Finding, FindingKind, ObjectRef};

/// The findings of one workload under the policy that governs it.
#[derive(Debug, Clone)]
pub struct Fired<'p> {
    pub workload: ObjectRef,
    pub policy: &'p HealingPolicy,
    pub findings: Vec<Finding>,
}

/// Evaluates every policy over the facts. A workload is governed by the first
/// policy, in name order, whose selector matches it, so two overlapping policies
/// never open two incidents for one workload.
pub fn evaluate<'p>(
    facts: &ClusterFacts,
    policies: &'p [HealingPolicy],
) -> Result<Vec<Fired<'p>>, String> {
    let mut ordered: Vec<&HealingPolicy> = policies.iter().collect();
    ordered.sort_by(|a, b| a.name().cmp(b.name()));
    let compiled: Vec<CompiledPolicy> = ordered
        .iter()
        .map(|p| CompiledPolicy::new(p))
        .collect::<Result<_, _>>()?;

    let mut pods_by_workload: BTreeMap<ObjectKey, Vec<&PodRecord>> = BTreeMap::new();
    for pod in &facts.pods {
        pods_by_workload
            .entry(key_of(&pod.workload))
            .or_default()
            .push(pod);
    }
    let pod_workload: HashMap<(&str, &str), &ObjectRef> = facts
        .pods
        .iter()
        .map(|pod| {
            (
                (pod.facts.namespace.as_str(), pod.facts.name.as_str()),
                &pod.workload,
            )
        })
        .collect();

    let mut fired = Vec::new();
    for (key, pods) in &pods_by_workload {
        let workload = &pods[0].workload;
        let labels = facts
            .workloads
            .get(key)
            .map(|record| &record.marks.labels)
            .unwrap_or(&pods[0].marks.labels);
        let Some(policy) = compiled
            .iter()
            .find(|policy| policy.selects(workload, labels))
        else {
            continue;
        };
        let events_of_workload = facts.events.iter().filter(|event| {
            let involved = &event.involved;
            if involved.kind == "Pod" {
                pod_workload.get(&(involved.namespace.as_str(), involved.name.as_str()))
                    == Some(&workload)
            } else {
                key_of(involved) == *key
            }
        });
        let findings = policy.findings(pods, events_of_workload.collect());
        if !findings.is_empty() {
            fired.push(Fired {
                workload: workload.clone(),
                policy: policy.policy,
                findings,
            });
        }
    }
    Ok(fired)
}

struct CompiledPolicy<'p> {
    policy: &'p HealingPolicy,
    event_patterns: HashMap<String, regex::Regex>,
}

impl<'p> CompiledPolicy<'p> {
    fn new(policy: &'p HealingPolicy) -> Result<Self, String> {
        let mut event_patterns = HashMap::new();
        for trigger in &policy.spec.triggers {
            if let Some(TriggerCondition::Event(event)) = trigger.condition() {
                let pattern =
                    regex::Regex::new(&format!("^(?:{})$", event.reason)).map_err(|error| {
                        format!(
                            "policy {}: trigger {}: {error}",
                            policy.name(),
                            trigger.name
                        )
                    })?;
                event_patterns.insert(trigger.name.clone(), pattern);
            }
        }
        Ok(CompiledPolicy {
            policy,
            event_patterns,
        })
    }

    fn selects(&self, workload: &ObjectRef, labels: &BTreeMap<String, String>) -> bool {
        let selector = &self.policy.spec.selector;
        (selector.namespaces.is_empty() || selector.namespaces.contains(&workload.namespace))
            && (selector.kinds.is_empty()
                || selector
                    .kinds
                    .iter()
                    .any(|kind| kind.eq_ignore_ascii_case(&workload.kind)))
            && !selector.exclude_names.contains(&workload.name)
            && selector
                .label_selector
                .as_ref()
                .is_none_or(|label_selector| label_selector_matches(label_selector, labels))
    }

    fn findings(&self, pods: &[&PodRecord], events: Vec<&crate::wit::EventFacts>) -> Vec<Finding> {
        let mut findings = Vec::new();
        for trigger in &self.policy.spec.triggers {
            let name = &trigger.name;
            match trigger.condition() {
                None => {}
                Some(TriggerCondition::Metric(metric)) => {
                    for pod in pods {
                        findings.extend(metric_finding(name, metric.name, metric.threshold, pod));
                    }
                }
                Some(TriggerCondition::Condition(condition)) => {
                    for pod in pods {
                        if let Some(state) = condition
                            .states
                            .iter()
                            .find(|state| pod.states.contains(state))
                        {
                            findings.push(Finding {
                                trigger: name.clone(),
                                kind: kind_of_state(state),
                                detail: condition_detail(pod, state),
                                pod: Some(pod.facts.name.clone()),
                            });
                        }
                    }
                }
                Some(TriggerCondition::Event(EventTrigger {
                    event_type,
                    min_count,
                    ..
                })) => {
                    let pattern = &self.event_patterns[name];
                    let matching: Vec<_> = events
                        .iter()
                        .filter(|event| {
                            event.event_type == *event_type && pattern.is_match(&event.reason)
                        })
                        .collect();
                    let total: u64 = matching.iter().map(|event| u64::from(event.count)).sum();
                    if !matching.is_empty() && total >= u64::from(*min_count) {
                        let mut reasons: Vec<&str> =
                            matching.iter().map(|event| event.reason.as_str()).collect();
                        reasons.sort();
                        reasons.dedup();
                        findings.push(Finding {
                            trigger: name.clone(),
                            kind: kind_of_event_reason(reasons[0]),
                            detail: format!(
                                "{total} {event_type} events ({}) detected",
                                reasons.join(", ")
                            ),
                            pod: None,
                        });
                    }
                }
            }
        }
        findings
    }
}

fn metric_finding(trigger: &str, metric: Metric, threshold: f64, pod: &PodRecord) -> Vec<Finding> {
    let facts = &pod.facts;
    let finding = |kind, detail| Finding {
        trigger: trigger.to_string(),
        kind,
        detail,
        pod: Some(facts.name.clone()),
    };
    match metric {
        Metric::RestartCount => {
            if f64::from(facts.restart_count) >= threshold {
                vec![finding(
                    FindingKind::Restarts,
                    format!("Pod {} has restarted {} times", facts.name, facts.restart_count),
                )]
            } else {
                vec![]
            }
        }
        Metric::CpuPercentOfLimit | Metric::MemoryPercentOfLimit => facts
            .containers
            .iter()
            .filter_map(|container| {
                let memory = metric == Metric::MemoryPercentOfLimit;
                let (usage, limit) = if memory {
                    (container.usage.memory_bytes?, container.limits.memory_bytes?)
                } else {
                    (container.usage.cpu_millicores?, container.limits.cpu_millicores?)
                };
                if limit == 0 {
                    return None;
                }
                let percent = usage as f64 * 100.0 / limit as f64;
                if percent < threshold {
                    return None;
                }
                let (what, shown_usage, shown_limit, kind) = if memory {
                    ("Memory", quantity::format_memory_rounded(usage), quantity::format_memory_rounded(limit), FindingKind::MemoryPressure)
                } else {
                    ("CPU", quantity::format_cpu(usage), quantity::format_cpu(limit), FindingKind::CpuPressure)
                };
                Some(finding(
                    kind,
                    format!(
                        "{what} usage of container {} in pod {} at {shown_usage} ({percent:.0}% of limit {shown_limit})",
                        container.name, facts.name
                    ),
                ))
            })
            .collect(),
    }
}

fn condition_detail(pod: &PodRecord, state: &str) -> String {
    let explanation = pod
        .facts
        .containers
        .iter()
        .find(|c| {
            c.waiting_reason.as_deref() == Some(state)
                || c.last_termination_reason.as_deref() == Some(state)
        })
        .map(|c| match (&c.waiting_reason, &c.waiting_message) {
            (Some(reason), Some(message)) if reason == state => {
                format!(" (container {}: {message})", c.name)
            }
            _ => format!(" (container {})", c.name),
        })
        .unwrap_or_default();
    match state {
        "OOMKilled" => format!("Pod {} was OOMKilled{explanation}", pod.facts.name),
        _ => format!("Pod {} is in {state}{explanation}", pod.facts.name),
    }
}

pub fn kind_of_state(state: &str) -> FindingKind {
    match state {
        "CrashLoopBackOff" => FindingKind::CrashLoop,
        "OOMKilled" => FindingKind::OomKilled,
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => FindingKind::ImagePull,
        "CreateContainerConfigError" | "CreateContainerError" => FindingKind::ConfigError,
        "Unschedulable" => FindingKind::Unschedulable,
        _ => FindingKind::Other,
    }
}

fn kind_of_event_reason(reason: &str) -> FindingKind {
    match reason {
        r if r.starts_with("OOM") => FindingKind::OomKilled,
        "BackOff" => FindingKind::CrashLoop,
        "FailedMount" | "FailedCreatePodSandBox" => FindingKind::ConfigError,
        "FailedScheduling" => FindingKind::Unschedulable,
        _ => FindingKind::WarningEvents,
    }
}

/// Kubernetes label-selector semantics: every matchLabels pair and every
/// expression must hold.
pub fn label_selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_hold = selector.match_labels.as_ref().is_none_or(|wanted| {
        wanted
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    });
    let expressions_hold = selector
        .match_expressions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .all(|expression| {
            let values = expression.values.as_deref().unwrap_or_default();
            let current = labels.get(&expression.key);
            match expression.operator.as_str() {
                "In" => current.is_some_and(|value| values.contains(value)),
                "NotIn" => current.is_none_or(|value| !values.contains(value)),
                "Exists" => current.is_some(),
                "DoesNotExist" => current.is_none(),
                _ => false,
            }
        });
    labels_hold && expressions_hold
}
