//! The live evaluation pass: triggers over the cached cluster, gated by what
//! one snapshot cannot know — how long a condition has held (`duration`),
//! when the policy last acted on a target (`safety.cooldown`), and whether an
//! action on the target is still open. The daemon sends each incident of a
//! [`Pass`] through the analysis pipeline and writes
//! each policy's status from the rest.
//!
//! Cooldowns and open actions are read from HealingAction objects rather than
//! kept in memory, so they survive a restart and hold across replicas; only
//! `duration` needs memory ([`TriggerMemory`]), and losing it on a restart
//! merely restarts the wait.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::core::crd::healing_action::{HealingAction, Phase};
use crate::core::crd::policy::HealingPolicy;
use crate::core::facts::{ClusterFacts, FactsError, ObjectKey, chrono_of, key_of};
use crate::core::incidents::{self, OpenIncident, workload_of_incident_id};
use crate::core::objects::ClusterObjects;
use crate::core::triggers::{self, Context, Fired};
use crate::core::wit::{Finding, ObjectRef};

/// (policy namespace/name, trigger, pod or workload).
type MemoryKey = (String, String, ObjectKey);

/// When each (policy, trigger, target) condition was first seen holding, for
/// triggers with a `duration`. An entry is forgotten at the first pass where
/// its condition no longer holds, so the wait starts over.
#[derive(Debug, Default)]
pub struct TriggerMemory {
    first_seen: HashMap<MemoryKey, DateTime<Utc>>,
}

impl TriggerMemory {
    pub fn new() -> TriggerMemory {
        TriggerMemory::default()
    }

    /// Conditions being timed.
    pub fn len(&self) -> usize {
        self.first_seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first_seen.is_empty()
    }
}

/// Why a trigger that fired opened no incident.
#[derive(Debug, Clone, PartialEq)]
pub enum Suppression {
    /// The condition holds but not yet for the trigger's whole `duration`.
    DurationPending {
        since: DateTime<Utc>,
        fires_at: DateTime<Utc>,
    },
    /// The policy acted on this target for this trigger recently.
    Cooldown {
        action: String,
        until: DateTime<Utc>,
    },
    /// A HealingAction on the target is not finished.
    OpenAction { action: String },
}

impl fmt::Display for Suppression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suppression::DurationPending { since, fires_at } => write!(
                f,
                "holding since {}, fires at {} if it still holds",
                since.to_rfc3339(),
                fires_at.to_rfc3339()
            ),
            Suppression::Cooldown { action, until } => write!(
                f,
                "cooling down after HealingAction {action} until {}",
                until.to_rfc3339()
            ),
            Suppression::OpenAction { action } => {
                write!(f, "HealingAction {action} on this target is still open")
            }
        }
    }
}

/// A trigger firing on a workload (its own condition, or one of its pods').
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveTrigger {
    pub trigger: String,
    pub target: ObjectRef,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Suppressed {
    pub trigger: String,
    /// The workload; `pod` names the pod when the condition is one pod's.
    pub target: ObjectRef,
    pub pod: Option<String>,
    pub reason: Suppression,
}

/// What one policy saw in a pass, for its status.
#[derive(Debug)]
pub struct PolicyOutcome<'p> {
    pub policy: &'p HealingPolicy,
    /// Triggers that fired and went into an incident, one per (trigger, workload).
    pub active: Vec<ActiveTrigger>,
    pub suppressed: Vec<Suppressed>,
    /// Why the policy, or some of its triggers, could not be evaluated.
    pub errors: Vec<String>,
}

#[derive(Debug)]
pub struct Pass<'p> {
    pub incidents: Vec<OpenIncident<'p>>,
    /// Every policy given, in the order given.
    pub policies: Vec<PolicyOutcome<'p>>,
    /// Objects left out of this pass because they could not be read.
    pub skipped: Vec<FactsError>,
    pub pods_seen: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    #[error("{0}")]
    Policy(String),
}

/// One evaluation at `now`. Triggers fire as in `kubeskippy analyze`, with
/// windows ending at `now` and Prometheus results from `objects.queries`;
/// then each finding is held back while its trigger's `duration` has not
/// elapsed, while the policy's cooldown for (trigger, workload) runs, or while
/// the workload has an open HealingAction. Invalid policies are reported in
/// their outcome and do not take part.
pub fn pass<'p, 'a>(
    objects: &ClusterObjects,
    policies: impl IntoIterator<Item = &'p HealingPolicy>,
    memory: &mut TriggerMemory,
    actions: impl IntoIterator<Item = &'a HealingAction>,
    now: DateTime<Utc>,
) -> Result<Pass<'p>, EvaluationError> {
    let (facts, skipped) = ClusterFacts::from_objects(objects);
    let mut outcomes: Vec<PolicyOutcome<'p>> = Vec::new();
    let mut valid: Vec<&'p HealingPolicy> = Vec::new();
    for policy in policies {
        let errors = match policy.validate() {
            Ok(()) => {
                valid.push(policy);
                query_errors(policy, objects.queries)
            }
            Err(why) => vec![format!("invalid policy: {why}")],
        };
        outcomes.push(PolicyOutcome {
            policy,
            active: Vec::new(),
            suppressed: Vec::new(),
            errors,
        });
    }
    let context = Context {
        now: Some(now),
        queries: objects.queries,
    };
    let fired = triggers::evaluate(&facts, valid, &context).map_err(EvaluationError::Policy)?;

    let history = History::of(actions, &facts);
    let mut seen: HashSet<MemoryKey> = HashSet::new();
    let mut kept: Vec<Fired<'p>> = Vec::new();
    for fired in fired {
        let policy = fired.policy;
        let policy_id = policy_id(policy);
        let outcome = outcomes
            .iter_mut()
            .find(|outcome| std::ptr::eq(outcome.policy, policy))
            .expect("every fired policy was given");
        let workload_key = workload_key(&fired.workload);
        let open_action = history.open.get(&workload_key);
        let cooldown = policy.spec.safety.cooldown();
        let mut findings: Vec<Finding> = Vec::new();
        for finding in fired.findings {
            let target = match &finding.pod {
                Some(pod) => (
                    "Pod".to_string(),
                    fired.workload.namespace.clone(),
                    pod.clone(),
                ),
                None => key_of(&fired.workload),
            };
            let pending = duration_of(policy, &finding.trigger).and_then(|duration| {
                let key = (policy_id.clone(), finding.trigger.clone(), target);
                let since = *memory.first_seen.entry(key.clone()).or_insert(now);
                seen.insert(key);
                let fires_at = since + duration;
                (now < fires_at).then_some(Suppression::DurationPending { since, fires_at })
            });
            let cooling = history
                .newest
                .get(&(
                    policy_id.clone(),
                    finding.trigger.clone(),
                    workload_key.clone(),
                ))
                .map(|(created, action)| (*created + cooldown, action))
                .filter(|(until, _)| now < *until)
                .map(|(until, action)| Suppression::Cooldown {
                    action: action.clone(),
                    until,
                });
            let reason = open_action
                .map(|action| Suppression::OpenAction {
                    action: action.clone(),
                })
                .or(cooling)
                .or(pending);
            match reason {
                Some(reason) => outcome.suppressed.push(Suppressed {
                    trigger: finding.trigger,
                    target: fired.workload.clone(),
                    pod: finding.pod,
                    reason,
                }),
                None => {
                    let active = ActiveTrigger {
                        trigger: finding.trigger.clone(),
                        target: fired.workload.clone(),
                    };
                    if !outcome.active.contains(&active) {
                        outcome.active.push(active);
                    }
                    findings.push(finding);
                }
            }
        }
        if !findings.is_empty() {
            kept.push(Fired { findings, ..fired });
        }
    }
    memory.first_seen.retain(|key, _| seen.contains(key));

    Ok(Pass {
        incidents: incidents::open(&facts, kept),
        policies: outcomes,
        skipped,
        pods_seen: facts.pods.len(),
    })
}

fn policy_id(policy: &HealingPolicy) -> String {
    format!(
        "{}/{}",
        policy.metadata.namespace.as_deref().unwrap_or_default(),
        policy.name()
    )
}

fn duration_of(policy: &HealingPolicy, trigger: &str) -> Option<Duration> {
    policy
        .spec
        .triggers
        .iter()
        .find(|t| t.name == trigger)?
        .duration()?
        .get()
}

/// Queries of the policy's `prometheus` triggers that failed or were not run.
fn query_errors(
    policy: &HealingPolicy,
    queries: Option<&crate::core::objects::QueryResults>,
) -> Vec<String> {
    triggers::queries_of([policy])
        .into_iter()
        .filter_map(
            |query| match queries.and_then(|results| results.get(&query)) {
                Some(Ok(_)) => None,
                Some(Err(error)) => Some(error.clone()),
                None => Some(format!(
                    "prometheus query {query:?} has no result (is prometheus.url configured?)"
                )),
            },
        )
        .collect()
}

/// Workloads are compared by (lower-case kind, namespace, name): incident ids
/// carry the kind in lower case.
fn workload_key(workload: &ObjectRef) -> ObjectKey {
    (
        workload.kind.to_ascii_lowercase(),
        workload.namespace.clone(),
        workload.name.clone(),
    )
}

/// What the HealingActions say about each workload. The caller passes only
/// the actions the daemon planned itself, and an action counts only for its
/// own namespace: nothing written elsewhere can hold a workload back.
struct History {
    /// The newest action per (policy, trigger, workload): its creation time
    /// and name.
    newest: HashMap<(String, String, ObjectKey), (DateTime<Utc>, String)>,
    /// An unfinished action per workload.
    open: HashMap<ObjectKey, String>,
}

impl History {
    fn of<'a>(
        actions: impl IntoIterator<Item = &'a HealingAction>,
        facts: &ClusterFacts,
    ) -> History {
        let mut history = History {
            newest: HashMap::new(),
            open: HashMap::new(),
        };
        let mut pod_workloads: Option<HashMap<(&str, &str), &ObjectRef>> = None;
        for action in actions {
            let name = action.metadata.name.clone().unwrap_or_default();
            let target = &action.spec.target;
            if action.metadata.namespace.as_deref() != Some(target.namespace.as_str()) {
                continue;
            }
            let workload =
                match workload_of_incident_id(&action.spec.incident_id, &target.namespace) {
                    Some((kind, workload)) => (
                        kind.to_string(),
                        target.namespace.clone(),
                        workload.to_string(),
                    ),
                    // An action planned by other means: its target, or for a pod
                    // the pod's workload while the pod is still there.
                    None => {
                        let pods = pod_workloads.get_or_insert_with(|| {
                            facts
                                .pods
                                .iter()
                                .map(|pod| {
                                    (
                                        (pod.facts.namespace.as_str(), pod.facts.name.as_str()),
                                        &pod.workload,
                                    )
                                })
                                .collect()
                        });
                        match pods.get(&(target.namespace.as_str(), target.name.as_str())) {
                            Some(workload) if target.kind == "Pod" => workload_key(workload),
                            _ => (
                                target.kind.to_ascii_lowercase(),
                                target.namespace.clone(),
                                target.name.clone(),
                            ),
                        }
                    }
                };
            let phase = action
                .status
                .as_ref()
                .map(|status| status.phase)
                .unwrap_or_default();
            if !matches!(
                phase,
                Phase::Succeeded | Phase::Failed | Phase::RolledBack | Phase::Cancelled
            ) {
                history.open.entry(workload.clone()).or_insert(name.clone());
            }
            let Some(created) = action.metadata.creation_timestamp.as_ref() else {
                continue;
            };
            let created = chrono_of(created.0);
            for trigger in &action.spec.triggers {
                let reference = &action.spec.policy_ref;
                let key = (
                    format!(
                        "{}/{}",
                        reference.namespace.as_deref().unwrap_or_default(),
                        reference.name
                    ),
                    trigger.clone(),
                    workload.clone(),
                );
                let entry = history.newest.entry(key).or_insert((created, name.clone()));
                if created > entry.0 {
                    *entry = (created, name.clone());
                }
            }
        }
        history
    }
}
