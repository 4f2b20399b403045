//! Triggers: which policy governs each workload, and which of its triggers fire
//! on the cluster facts. Every finding is tied to the workload (and pod) that
//! fired it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kubeskippy_plugin_sdk::quantity;

use crate::core::crd::PolicyDuration;
use crate::core::crd::policy::{HealingPolicy, Metric, MetricTrigger, TriggerCondition};
use crate::core::facts::{ClusterFacts, EventRecord, ObjectKey, PodRecord};
use crate::core::objects::QueryResults;
use crate::core::wit::{Finding, FindingKind, ObjectRef};

/// The findings of one workload under the policy that governs it.
#[derive(Debug, Clone)]
pub struct Fired<'p> {
    pub workload: ObjectRef,
    pub policy: &'p HealingPolicy,
    pub findings: Vec<Finding>,
}

/// What an evaluation sees beside the facts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'c> {
    /// Where event windows end. `None` counts every event, whatever its age.
    pub now: Option<DateTime<Utc>>,
    /// Prometheus results by query; a `prometheus` trigger whose query has no
    /// result here does not fire.
    pub queries: Option<&'c QueryResults>,
}

impl Context<'_> {
    /// `kubeskippy analyze` has one snapshot and no clock of the cluster's:
    /// windows end at the newest event the snapshot holds (so a snapshot taken
    /// last week reads as it did then), `duration` cannot be observed and is
    /// not checked, and nothing is asked of Prometheus.
    pub fn offline(facts: &ClusterFacts) -> Context<'static> {
        Context {
            now: facts.newest_event,
            queries: None,
        }
    }
}

/// Evaluates every policy over the facts. A workload is governed by one
/// policy, so two overlapping policies never open two incidents for it: the
/// first, in name order, of the HealingPolicies in its own namespace whose
/// selector matches it, else the first such ClusterHealingPolicy. A policy in
/// another namespace never governs it.
pub fn evaluate<'p>(
    facts: &ClusterFacts,
    policies: impl IntoIterator<Item = &'p HealingPolicy>,
    context: &Context,
) -> Result<Vec<Fired<'p>>, String> {
    let mut ordered: Vec<&HealingPolicy> = policies.into_iter().collect();
    ordered.sort_by(|a, b| {
        (
            a.is_cluster_wide(),
            a.name(),
            a.metadata.namespace.as_deref(),
        )
            .cmp(&(
                b.is_cluster_wide(),
                b.name(),
                b.metadata.namespace.as_deref(),
            ))
    });
    let compiled: Vec<CompiledPolicy> = ordered
        .iter()
        .map(|p| CompiledPolicy::new(p))
        .collect::<Result<_, _>>()?;

    let mut fired = Vec::new();
    for slot in &facts.slots {
        let key = &slot.key;
        let pods: Vec<&PodRecord> = slot.pods.iter().map(|&i| &facts.pods[i]).collect();
        let workload = &pods[0].workload;
        let labels = facts
            .workloads
            .get(key)
            .map(|record| &record.marks.labels)
            .unwrap_or_else(|| pods[0].labels());
        let Some(policy) = compiled
            .iter()
            .find(|policy| policy.selects(workload, labels))
        else {
            continue;
        };
        let findings = policy.findings(&pods, facts, key, context);
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

/// A trigger with its text already parsed.
enum Compiled<'p> {
    Metric {
        metric: &'p MetricTrigger,
        threshold: f64,
        window: Duration,
    },
    Event {
        pattern: regex::Regex,
        event_type: &'p str,
        min_count: u32,
        window: Option<Duration>,
    },
    Condition {
        states: &'p [String],
    },
}

struct CompiledPolicy<'p> {
    policy: &'p HealingPolicy,
    triggers: Vec<(&'p str, Compiled<'p>)>,
}

impl<'p> CompiledPolicy<'p> {
    fn new(policy: &'p HealingPolicy) -> Result<Self, String> {
        let mut triggers = Vec::new();
        for trigger in &policy.spec.triggers {
            let failed = |error: String| {
                format!(
                    "policy {}: trigger {}: {error}",
                    policy.name(),
                    trigger.name
                )
            };
            let compiled = match trigger.condition() {
                None => continue,
                Some(TriggerCondition::Metric(metric)) => Compiled::Metric {
                    metric,
                    threshold: metric.threshold_value().map_err(failed)?,
                    window: metric.rate_window().map_err(failed)?,
                },
                Some(TriggerCondition::Event(event)) => Compiled::Event {
                    pattern: crate::core::crd::policy::reason_pattern(&event.reason)
                        .map_err(|why| failed(format!("reason {why}")))?,
                    event_type: &event.event_type,
                    min_count: event.min_count,
                    window: event
                        .window
                        .as_ref()
                        .map(PolicyDuration::checked)
                        .transpose()
                        .map_err(failed)?,
                },
                Some(TriggerCondition::Condition(condition)) => Compiled::Condition {
                    states: &condition.states,
                },
            };
            triggers.push((trigger.name.as_str(), compiled));
        }
        Ok(CompiledPolicy { policy, triggers })
    }

    fn selects(&self, workload: &ObjectRef, labels: &BTreeMap<String, String>) -> bool {
        let selector = &self.policy.spec.selector;
        self.policy.covers_namespace(&workload.namespace)
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

    fn findings(
        &self,
        pods: &[&PodRecord],
        facts: &ClusterFacts,
        workload: &ObjectKey,
        context: &Context,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (name, trigger) in &self.triggers {
            match trigger {
                Compiled::Metric {
                    metric,
                    threshold,
                    window,
                } => match metric.name {
                    Metric::ErrorEventRate => findings.extend(error_rate_finding(
                        name,
                        *threshold,
                        *window,
                        facts.events_of(workload),
                        context.now,
                    )),
                    Metric::Prometheus => {
                        let values = metric
                            .query
                            .as_ref()
                            .and_then(|query| context.queries?.get(query)?.as_ref().ok());
                        if let Some(values) = values {
                            for pod in pods {
                                let key = (pod.facts.namespace.clone(), pod.facts.name.clone());
                                if let Some(&value) = values.get(&key)
                                    && value >= *threshold
                                {
                                    findings.push(Finding {
                                        trigger: name.to_string(),
                                        kind: FindingKind::Other,
                                        detail: format!(
                                            "Prometheus query {:?} is {value} for pod {} (threshold {threshold})",
                                            metric.query.as_deref().unwrap_or_default(),
                                            pod.facts.name
                                        ),
                                        pod: Some(pod.facts.name.clone()),
                                    });
                                }
                            }
                        }
                    }
                    _ => {
                        for pod in pods {
                            findings.extend(metric_finding(name, metric.name, *threshold, pod));
                        }
                    }
                },
                Compiled::Condition { states } => {
                    for pod in pods {
                        if let Some(state) = states.iter().find(|state| pod.states.contains(state))
                        {
                            findings.push(Finding {
                                trigger: name.to_string(),
                                kind: kind_of_state(state),
                                detail: condition_detail(pod, state),
                                pod: Some(pod.facts.name.clone()),
                            });
                        }
                    }
                }
                Compiled::Event {
                    pattern,
                    event_type,
                    min_count,
                    window,
                } => {
                    let since = context.now.zip(*window).map(|(now, window)| now - window);
                    let matching: Vec<&EventRecord> = facts
                        .events_of(workload)
                        .filter(|event| {
                            event.event_type() == *event_type
                                && pattern.is_match(event.reason())
                                && within(event, since)
                        })
                        .collect();
                    let total: u64 = matching.iter().map(|event| u64::from(event.count)).sum();
                    if !matching.is_empty() && total >= u64::from(*min_count) {
                        let mut reasons: Vec<&str> =
                            matching.iter().map(|event| event.reason()).collect();
                        reasons.sort();
                        reasons.dedup();
                        let within = window
                            .map(|window| format!(" within {}", format_window(window)))
                            .unwrap_or_default();
                        findings.push(Finding {
                            trigger: name.to_string(),
                            kind: kind_of_event_reason(reasons[0]),
                            detail: format!(
                                "{total} {event_type} events ({}) detected{within}",
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

/// An event counts when it last occurred at or after `since`; an event with no
/// timestamp at all counts, since nothing says it is old.
fn within(event: &EventRecord, since: Option<DateTime<Utc>>) -> bool {
    match (since, event.last_seen) {
        (Some(since), Some(last)) => last >= since,
        _ => true,
    }
}

fn format_window(window: Duration) -> String {
    let seconds = window.as_secs();
    match seconds {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Warning events per minute over the window. An Event object's count covers
/// its whole series; when the series began before the window, only the share
/// of the count proportional to the overlap is taken, as if the occurrences
/// were spread evenly between the first and the last.
fn error_rate_finding<'f>(
    trigger: &str,
    threshold: f64,
    window: Duration,
    events: impl Iterator<Item = &'f EventRecord<'f>>,
    now: Option<DateTime<Utc>>,
) -> Option<Finding> {
    let since = now.map(|now| now - window);
    let mut occurrences = 0.0;
    for event in events.filter(|event| event.event_type() == "Warning") {
        if !within(event, since) {
            continue;
        }
        let count = f64::from(event.count);
        occurrences += match (since, event.first_seen, event.last_seen) {
            (Some(since), Some(first), Some(last)) if first < since && last > first => {
                count * (last - since).as_seconds_f64() / (last - first).as_seconds_f64()
            }
            _ => count,
        };
    }
    let rate = occurrences / (window.as_secs_f64() / 60.0);
    (occurrences > 0.0 && rate >= threshold).then(|| Finding {
        trigger: trigger.to_string(),
        kind: FindingKind::WarningEvents,
        detail: format!(
            "{rate:.1} Warning events per minute over the last {} (threshold {threshold})",
            format_window(window)
        ),
        pod: None,
    })
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
        Metric::CpuMillicores | Metric::MemoryBytes => {
            let (usage, what, kind, show): (_, _, _, fn(u64) -> String) =
                if metric == Metric::MemoryBytes {
                    (
                        facts.usage.memory_bytes,
                        "Memory",
                        FindingKind::MemoryPressure,
                        quantity::format_memory_rounded,
                    )
                } else {
                    (
                        facts.usage.cpu_millicores,
                        "CPU",
                        FindingKind::CpuPressure,
                        quantity::format_cpu,
                    )
                };
            match usage {
                Some(usage) if usage as f64 >= threshold => vec![finding(
                    kind,
                    format!(
                        "{what} usage of pod {} at {} (threshold {})",
                        facts.name,
                        show(usage),
                        show(threshold as u64)
                    ),
                )],
                _ => vec![],
            }
        }
        // Evaluated per workload or from query results, not from a pod's facts.
        Metric::ErrorEventRate | Metric::Prometheus => vec![],
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

/// A finding kind as the WIT spells it, the name plugin authors know it by.
pub fn finding_kind_name(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::Restarts => "restarts",
        FindingKind::OomKilled => "oom-killed",
        FindingKind::CrashLoop => "crash-loop",
        FindingKind::ImagePull => "image-pull",
        FindingKind::ConfigError => "config-error",
        FindingKind::Unschedulable => "unschedulable",
        FindingKind::CpuPressure => "cpu-pressure",
        FindingKind::MemoryPressure => "memory-pressure",
        FindingKind::WarningEvents => "warning-events",
        FindingKind::Other => "other",
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

/// The PromQL queries the policies' `prometheus` triggers ask.
pub fn queries_of<'p>(policies: impl IntoIterator<Item = &'p HealingPolicy>) -> BTreeSet<String> {
    // Only valid policies' queries are sent: a HealingPolicy may not carry
    // one at all (it would run with the daemon's access to Prometheus).
    policies
        .into_iter()
        .filter(|policy| policy.validate().is_ok())
        .flat_map(|policy| &policy.spec.triggers)
        .filter_map(|trigger| match trigger.condition() {
            Some(TriggerCondition::Metric(metric)) if metric.name == Metric::Prometheus => {
                metric.query.clone()
            }
            _ => None,
        })
        .collect()
}
