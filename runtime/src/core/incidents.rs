//! Incidents: one per workload whose triggers fired, carrying the evidence a
//! plugin needs — the workload, its pods (troubled ones first), its events
//! (warnings first) and the findings.

use std::collections::{BTreeSet, HashSet};

use sha2::{Digest, Sha256};

use crate::core::crd::policy::HealingPolicy;
use crate::core::facts::{ClusterFacts, ObjectMarks, key_of};
use crate::core::triggers::Fired;
use crate::core::wit::{EventFacts, Incident};

/// Evidence caps keep a prompt readable when a workload has hundreds of pods;
/// the pods and events kept are the ones the findings are about.
const MAX_PODS: usize = 20;
const MAX_EVENTS: usize = 30;
/// A workload with thousands of failing pods has a finding per pod; those
/// about the pods kept, and the workload's own, are enough to reason about.
const MAX_FINDINGS: usize = 40;

/// An incident and what the host needs beside it: the policy that opened it and
/// the labels/annotations of the objects it may act on.
#[derive(Debug, Clone)]
pub struct OpenIncident<'p> {
    pub incident: Incident,
    pub policy: &'p HealingPolicy,
    /// The workload's own marks; `None` when its pods name an owner the facts
    /// do not hold, whose labels (and protection) are then unknown.
    pub target_marks: Option<ObjectMarks>,
    pub pod_marks: Vec<(String, ObjectMarks)>,
    /// The workload's pod template containers (empty for a bare pod, or an
    /// owner the facts do not hold): what a plan is made against.
    pub template: Vec<crate::core::objects::CachedContainer>,
}

/// An [`OpenIncident`] that owns its policy, to send where a borrow cannot go
/// (a blocking thread).
pub struct DetachedIncident {
    policy: HealingPolicy,
    incident: Incident,
    target_marks: Option<ObjectMarks>,
    pod_marks: Vec<(String, ObjectMarks)>,
    template: Vec<crate::core::objects::CachedContainer>,
}

impl OpenIncident<'_> {
    pub fn detach(&self) -> DetachedIncident {
        DetachedIncident {
            policy: self.policy.clone(),
            incident: self.incident.clone(),
            target_marks: self.target_marks.clone(),
            pod_marks: self.pod_marks.clone(),
            template: self.template.clone(),
        }
    }
}

impl DetachedIncident {
    pub fn open(&self) -> OpenIncident<'_> {
        OpenIncident {
            incident: self.incident.clone(),
            policy: &self.policy,
            target_marks: self.target_marks.clone(),
            pod_marks: self.pod_marks.clone(),
            template: self.template.clone(),
        }
    }
}

pub fn open<'p>(facts: &ClusterFacts, fired: Vec<Fired<'p>>) -> Vec<OpenIncident<'p>> {
    fired
        .into_iter()
        .map(|fired| open_one(facts, fired))
        .collect()
}

fn open_one<'p>(facts: &ClusterFacts, fired: Fired<'p>) -> OpenIncident<'p> {
    let Fired {
        workload,
        policy,
        findings,
    } = fired;
    let key = key_of(&workload);
    let troubled: HashSet<&str> = findings.iter().filter_map(|f| f.pod.as_deref()).collect();
    let mut pods: Vec<_> = facts.pods_of(&key).collect();
    pods.sort_by_key(|pod| {
        (
            !troubled.contains(pod.facts.name.as_str()),
            pod.facts.name.clone(),
        )
    });
    pods.truncate(MAX_PODS);

    let pod_names: HashSet<&str> = pods.iter().map(|pod| pod.facts.name.as_str()).collect();
    let mut events: Vec<EventFacts> = facts
        .events_of(&key)
        .filter(|event| {
            let (kind, _, name) = event.involved();
            (kind == "Pod" && pod_names.contains(name))
                || (kind == workload.kind && name == workload.name)
        })
        .map(|event| event.facts())
        .collect();
    events.sort_by_key(|event| {
        (
            event.event_type != "Warning",
            std::cmp::Reverse(event.count),
        )
    });
    events.truncate(MAX_EVENTS);

    let workload_record = facts.workloads.get(&key);
    let target_marks = match workload_record {
        Some(record) => Some(record.marks.clone()),
        // A bare pod is its own workload.
        None if workload.kind == "Pod" => pods.first().map(|pod| pod.marks()),
        None => None,
    };
    // The id is made from every kind of trouble found, before any is left out.
    let kinds: BTreeSet<String> = findings.iter().map(|f| format!("{:?}", f.kind)).collect();
    let mut findings = findings;
    findings.retain(|finding| {
        finding
            .pod
            .as_deref()
            .is_none_or(|pod| pod_names.contains(pod))
    });
    findings.truncate(MAX_FINDINGS);
    let pod_marks = pods
        .iter()
        .map(|pod| (pod.facts.name.clone(), pod.marks()))
        .collect();
    let incident = Incident {
        id: incident_id(&workload, &kinds),
        target: workload,
        workload: workload_record.map(|record| record.facts.clone()),
        pods: pods.into_iter().map(|pod| pod.facts.clone()).collect(),
        events,
        findings,
    };
    OpenIncident {
        incident,
        policy,
        target_marks,
        pod_marks,
        template: workload_record
            .map(|record| record.template.clone())
            .unwrap_or_default(),
    }
}

/// Stable across runs for the same workload and the same kinds of trouble, so
/// HealingActions and caches can be keyed by it.
fn incident_id(workload: &crate::core::wit::ObjectRef, kinds: &BTreeSet<String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "{}/{}/{}",
        workload.kind, workload.namespace, workload.name
    ));
    for kind in kinds {
        hasher.update([0]);
        hasher.update(kind);
    }
    let digest = hex::encode(&hasher.finalize()[..4]);
    format!(
        "{}-{}-{}-{digest}",
        workload.namespace,
        workload.kind.to_lowercase(),
        workload.name
    )
}

/// The workload an incident id names, as (kind in lower case, name), given
/// the namespace it is in. The id is `{namespace}-{kind}-{name}-{8 hex}` and a
/// kind has no dashes, so with the namespace known the parse is unambiguous.
pub fn workload_of_incident_id<'i>(id: &'i str, namespace: &str) -> Option<(&'i str, &'i str)> {
    let rest = id.strip_prefix(namespace)?.strip_prefix('-')?;
    let (kind, rest) = rest.split_once('-')?;
    let (name, digest) = rest.rsplit_once('-')?;
    (digest.len() == 8 && digest.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty())
        .then_some((kind, name))
}
