//! Cluster facts: what the snapshot says about each pod and workload, reduced to
//! the plugin interface's typed facts. Ownership is resolved here (pod →
//! ReplicaSet → Deployment, StatefulSet, DaemonSet), metrics are joined to pods,
//! and nothing but names, states, numbers and event texts is carried forward —
//! container env values, Secrets and ConfigMap data never enter these records.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubeskippy_plugin_sdk::quantity;

use crate::core::objects::ClusterObjects;
use crate::core::objects::PodMetrics;
use crate::core::objects::{CachedContainer, CachedEvent, CachedPod, CachedWorkload, CpuMemory};
use crate::core::snapshot::Snapshot;
use crate::core::wit::{
    ContainerFacts, EventFacts, ObjectRef, PodFacts, ResourceAmounts, WorkloadFacts,
};

/// Labels and annotations the safety floor consults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectMarks {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub uid: Option<String>,
}

impl ObjectMarks {
    fn of(metadata: &ObjectMeta) -> ObjectMarks {
        ObjectMarks {
            labels: metadata.labels.clone().unwrap_or_default(),
            annotations: metadata.annotations.clone().unwrap_or_default(),
            uid: metadata.uid.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PodRecord<'a> {
    pub facts: PodFacts,
    /// The pod's owning workload, or the pod itself when nothing owns it.
    pub workload: ObjectRef,
    /// The pod's metadata, for its labels and annotations.
    pub metadata: &'a ObjectMeta,
    /// The condition states this pod is in, for condition triggers.
    pub states: Vec<String>,
}

impl PodRecord<'_> {
    pub fn marks(&self) -> ObjectMarks {
        ObjectMarks::of(self.metadata)
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.metadata.labels.as_ref().unwrap_or(&NONE)
    }
}

#[derive(Debug, Clone)]
pub struct WorkloadRecord {
    pub facts: WorkloadFacts,
    pub marks: ObjectMarks,
    /// The pod template's containers with their CPU and memory as written
    /// (quantities): what a plan to change them was made against.
    pub template: Vec<CachedContainer>,
}

/// An event, borrowed, with when it happened, for windowed triggers.
#[derive(Debug, Clone, Copy)]
pub struct EventRecord<'a> {
    pub event: &'a CachedEvent,
    /// At least 1.
    pub count: u32,
    /// firstTimestamp, else eventTime, else the object's creation.
    pub first_seen: Option<DateTime<Utc>>,
    /// The latest of lastTimestamp, eventTime and series.lastObservedTime, else
    /// the object's creation.
    pub last_seen: Option<DateTime<Utc>>,
}

impl<'a> EventRecord<'a> {
    pub fn event_type(&self) -> &'a str {
        self.event.type_.as_deref().unwrap_or("Normal")
    }

    pub fn reason(&self) -> &'a str {
        self.event.reason.as_deref().unwrap_or_default()
    }

    /// (kind, namespace, name) of the object the event is about.
    pub fn involved(&self) -> (&'a str, &'a str, &'a str) {
        let involved = &self.event.involved_object;
        (
            involved.kind.as_deref().unwrap_or_default(),
            involved
                .namespace
                .as_deref()
                .or(self.event.metadata.namespace.as_deref())
                .unwrap_or_default(),
            involved.name.as_deref().unwrap_or_default(),
        )
    }

    /// Whether the object the event is about is in the namespace the event was
    /// written in. The API server lets an Event with an `eventTime` name an
    /// object of any namespace, so whoever may write Events in one namespace
    /// could otherwise supply evidence about another's workloads.
    pub fn names_its_own_namespace(&self) -> bool {
        match (
            self.event.metadata.namespace.as_deref(),
            self.event.involved_object.namespace.as_deref(),
        ) {
            (Some(own), Some(named)) if !own.is_empty() && !named.is_empty() => own == named,
            _ => true,
        }
    }

    /// The event as the plugin interface carries it.
    pub fn facts(&self) -> EventFacts {
        let (kind, namespace, name) = self.involved();
        EventFacts {
            event_type: self.event_type().to_string(),
            reason: self.reason().to_string(),
            message: self.event.message.clone().unwrap_or_default(),
            count: self.count,
            involved: ObjectRef::new(kind, namespace, name),
        }
    }
}

/// The pods and events of one workload, as indices into the facts' lists.
#[derive(Debug, Default)]
pub struct WorkloadSlot {
    pub key: ObjectKey,
    pub pods: Vec<usize>,
    pub events: Vec<usize>,
}

#[derive(Debug, Default)]
pub struct ClusterFacts<'a> {
    pub pods: Vec<PodRecord<'a>>,
    pub workloads: HashMap<ObjectKey, WorkloadRecord>,
    pub events: Vec<EventRecord<'a>>,
    /// Every workload that has pods (a bare pod is its own), in key order.
    pub slots: Vec<WorkloadSlot>,
    slot_of: HashMap<ObjectKey, usize>,
    /// The last occurrence of the newest event.
    pub newest_event: Option<DateTime<Utc>>,
}

/// (kind, namespace, name): how records are looked up.
pub type ObjectKey = (String, String, String);

pub fn key_of(object: &ObjectRef) -> ObjectKey {
    (
        object.kind.clone(),
        object.namespace.clone(),
        object.name.clone(),
    )
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{object}: {message}")]
pub struct FactsError {
    pub object: String,
    pub message: String,
}

impl ClusterFacts<'_> {
    /// Facts of a snapshot; the first unreadable object fails the whole
    /// snapshot, so a half-read cluster is never analysed as if it were whole.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<ClusterFacts<'_>, FactsError> {
        let (facts, mut problems) = ClusterFacts::from_objects(&snapshot.objects());
        match problems.is_empty() {
            true => Ok(facts),
            false => Err(problems.swap_remove(0)),
        }
    }
}

impl<'a> ClusterFacts<'a> {
    /// Facts of whatever objects are at hand, and the objects that could not
    /// be read (a pod with an unparsable quantity), which are left out: in a
    /// live cluster one odd pod must not stop every other from being watched.
    /// Pods and events are borrowed, not copied: a pass over ten thousand pods
    /// allocates little beyond each pod's facts.
    pub fn from_objects(objects: &ClusterObjects<'a>) -> (ClusterFacts<'a>, Vec<FactsError>) {
        let mut facts = ClusterFacts {
            pods: Vec::with_capacity(objects.pods.len()),
            events: Vec::with_capacity(objects.events.len()),
            ..ClusterFacts::default()
        };
        let mut problems = Vec::new();
        collect_workloads(objects, &mut facts.workloads);

        let replica_sets: HashMap<(&str, &str), ReplicaSetOwner> = objects
            .replica_sets
            .iter()
            .map(|rs| {
                (
                    (namespace_str(&rs.metadata), name_str(&rs.metadata)),
                    ReplicaSetOwner {
                        uid: rs.metadata.uid.as_deref(),
                        controller: controller_of(&rs.metadata),
                    },
                )
            })
            .collect();
        let metrics: HashMap<(&str, &str), &PodMetrics> = objects
            .pod_metrics
            .iter()
            .map(|m| {
                let identity = &m.metadata;
                let namespace = identity.namespace.as_deref().unwrap_or("default");
                (
                    (namespace, identity.name.as_deref().unwrap_or_default()),
                    *m,
                )
            })
            .collect();

        // (namespace, name) → (pod index, workload slot), for events.
        let mut pod_index: HashMap<(&str, &str), usize> =
            HashMap::with_capacity(objects.pods.len());
        let mut slots: Vec<WorkloadSlot> = Vec::new();
        let mut scratch = ObjectKey::default();
        for pod in &objects.pods {
            let namespace = namespace_str(&pod.metadata);
            let name = name_str(&pod.metadata);
            let workload = resolve_owner(
                pod,
                &replica_sets,
                &facts.workloads,
                objects.infer_missing_replica_sets,
            );
            let usage = metrics.get(&(namespace, name)).copied();
            match pod_record(pod, workload, usage) {
                Ok(record) => {
                    // Most pods share a workload already seen: look it up
                    // through one reused key rather than a fresh one per pod.
                    let workload = &record.workload;
                    for (part, value) in [
                        (&mut scratch.0, &workload.kind),
                        (&mut scratch.1, &workload.namespace),
                        (&mut scratch.2, &workload.name),
                    ] {
                        part.clear();
                        part.push_str(value);
                    }
                    let slot = match facts.slot_of.get(&scratch) {
                        Some(&slot) => slot,
                        None => {
                            let key = scratch.clone();
                            facts.slot_of.insert(key.clone(), slots.len());
                            slots.push(WorkloadSlot {
                                key,
                                ..WorkloadSlot::default()
                            });
                            slots.len() - 1
                        }
                    };
                    slots[slot].pods.push(facts.pods.len());
                    pod_index.insert((namespace, name), slot);
                    facts.pods.push(record);
                }
                Err(message) => problems.push(FactsError {
                    object: format!("Pod {namespace}/{name}"),
                    message,
                }),
            }
        }

        for event in &objects.events {
            let record = event_record(event);
            if !record.names_its_own_namespace() {
                continue;
            }
            let (kind, namespace, name) = record.involved();
            let slot = if kind == "Pod" {
                pod_index.get(&(namespace, name)).copied()
            } else {
                facts
                    .slot_of
                    .get(&(kind.to_string(), namespace.to_string(), name.to_string()))
                    .copied()
            };
            if let Some(slot) = slot {
                slots[slot].events.push(facts.events.len());
            }
            facts.newest_event = facts.newest_event.max(record.last_seen);
            facts.events.push(record);
        }

        // Workloads in key order, so output is the same from run to run.
        let mut order: Vec<usize> = (0..slots.len()).collect();
        order.sort_by(|&a, &b| slots[a].key.cmp(&slots[b].key));
        let mut slots: Vec<Option<WorkloadSlot>> = slots.into_iter().map(Some).collect();
        facts.slots = order
            .into_iter()
            .map(|index| slots[index].take().expect("each slot is taken once"))
            .collect();
        for (index, slot) in facts.slots.iter().enumerate() {
            facts.slot_of.insert(slot.key.clone(), index);
        }
        (facts, problems)
    }

    fn slot(&self, workload: &ObjectKey) -> Option<&WorkloadSlot> {
        self.slot_of.get(workload).map(|&index| &self.slots[index])
    }

    /// The pods of a workload.
    pub fn pods_of(&self, workload: &ObjectKey) -> impl Iterator<Item = &PodRecord<'a>> {
        self.slot(workload)
            .into_iter()
            .flat_map(|slot| &slot.pods)
            .map(|&index| &self.pods[index])
    }

    /// The events about a workload or one of its pods.
    pub fn events_of(&self, workload: &ObjectKey) -> impl Iterator<Item = &EventRecord<'a>> {
        self.slot(workload)
            .into_iter()
            .flat_map(|slot| &slot.events)
            .map(|&index| &self.events[index])
    }
}

fn event_record(event: &CachedEvent) -> EventRecord<'_> {
    let last_seen = [
        event.last_timestamp.as_ref().map(|t| t.0),
        event.event_time.as_ref().map(|t| t.0),
        event
            .series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref())
            .map(|t| t.0),
    ]
    .into_iter()
    .flatten()
    .max()
    .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let first_seen = event
        .first_timestamp
        .as_ref()
        .map(|t| t.0)
        .or(event.event_time.as_ref().map(|t| t.0))
        .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0));
    EventRecord {
        event,
        count: event
            .count
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(1)
            .max(1),
        first_seen: first_seen.map(chrono_of),
        last_seen: last_seen.map(chrono_of),
    }
}

/// k8s-openapi's timestamps are jiff's; the rest of KubeSkippy uses chrono.
pub fn chrono_of(timestamp: k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(timestamp.as_second(), timestamp.subsec_nanosecond() as u32)
        .unwrap_or_default()
}

fn namespace_str(metadata: &ObjectMeta) -> &str {
    metadata.namespace.as_deref().unwrap_or("default")
}

fn name_str(metadata: &ObjectMeta) -> &str {
    metadata.name.as_deref().unwrap_or_default()
}

fn controller_of(metadata: &ObjectMeta) -> Option<&OwnerReference> {
    metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|owner| owner.controller == Some(true))
}

fn collect_workloads(objects: &ClusterObjects, workloads: &mut HashMap<ObjectKey, WorkloadRecord>) {
    let mut add = |kind: &str,
                   metadata: &ObjectMeta,
                   (desired, ready): (Option<i32>, Option<i32>),
                   template: Vec<CachedContainer>| {
        let target = ObjectRef::new(kind, namespace_str(metadata), name_str(metadata));
        workloads.insert(
            key_of(&target),
            WorkloadRecord {
                facts: WorkloadFacts {
                    target,
                    desired_replicas: desired.and_then(|n| u32::try_from(n).ok()),
                    ready_replicas: ready.and_then(|n| u32::try_from(n).ok()),
                    containers: template.iter().map(|c| c.name.clone()).collect(),
                },
                marks: ObjectMarks::of(metadata),
                template,
            },
        );
    };
    for deployment in &objects.deployments {
        let counts = replica_counts(deployment);
        add(
            "Deployment",
            &deployment.metadata,
            counts,
            template_containers(deployment),
        );
    }
    for set in &objects.stateful_sets {
        add(
            "StatefulSet",
            &set.metadata,
            replica_counts(set),
            template_containers(set),
        );
    }
    for set in &objects.daemon_sets {
        // A DaemonSet wants one pod per eligible node, not a replica count.
        let status = set.status.as_ref();
        let counts = (
            status.and_then(|s| s.desired_number_scheduled),
            status.and_then(|s| s.number_ready),
        );
        add("DaemonSet", &set.metadata, counts, template_containers(set));
    }
    for set in &objects.replica_sets {
        // A ReplicaSet under a Deployment is not a workload of its own.
        if controller_of(&set.metadata).is_some_and(|owner| owner.kind == "Deployment") {
            continue;
        }
        add(
            "ReplicaSet",
            &set.metadata,
            replica_counts(set),
            template_containers(set),
        );
    }
}

/// (desired, ready) replicas; the API server defaults an unset count to 1.
fn replica_counts<K>(workload: &CachedWorkload<K>) -> (Option<i32>, Option<i32>) {
    let ready = workload.status.as_ref().and_then(|s| s.ready_replicas);
    (
        Some(workload.spec.replicas.unwrap_or(1)),
        Some(ready.unwrap_or(0)),
    )
}

fn template_containers<K>(workload: &CachedWorkload<K>) -> Vec<CachedContainer> {
    workload
        .spec
        .template
        .iter()
        .flat_map(|template| &template.spec)
        .flat_map(|spec| spec.containers.iter().cloned())
        .collect()
}

/// A ReplicaSet's uid and its controller, for tracing a pod to its workload.
struct ReplicaSetOwner<'a> {
    uid: Option<&'a str>,
    controller: Option<&'a OwnerReference>,
}

/// The workload a pod belongs to, by ownerReferences that check out: each
/// owner named must be the object the facts hold under that name, with the
/// uid the reference carries, and a Deployment owns its pods only through a
/// ReplicaSet. A reference that does not check out (anyone who may create a
/// pod may write one) leaves the pod its own workload, so nothing it claims
/// reaches the object it names. Owners of other kinds (a Job) are kept as
/// named; the facts hold no record of them, so nothing may act on them.
fn resolve_owner(
    pod: &CachedPod,
    replica_sets: &HashMap<(&str, &str), ReplicaSetOwner>,
    workloads: &HashMap<ObjectKey, WorkloadRecord>,
    infer_missing: bool,
) -> ObjectRef {
    let metadata = &pod.metadata;
    let namespace = namespace_str(metadata);
    let bare = || ObjectRef::new("Pod", namespace, name_str(metadata));
    let Some(owner) = controller_of(metadata) else {
        return bare();
    };
    // A hand-written snapshot may leave uids out; the API server never does.
    let holds = |kind: &str, name: &str, uid: &str| {
        workloads
            .get(&(kind.to_string(), namespace.to_string(), name.to_string()))
            .is_some_and(|record| record.marks.uid.as_deref().is_none_or(|held| held == uid))
    };
    match owner.kind.as_str() {
        "Deployment" => bare(),
        "StatefulSet" | "DaemonSet" => {
            let known = workloads.contains_key(&(
                owner.kind.clone(),
                namespace.to_string(),
                owner.name.clone(),
            ));
            if !known || holds(&owner.kind, &owner.name, &owner.uid) {
                ObjectRef::new(&owner.kind, namespace, &owner.name)
            } else {
                bare()
            }
        }
        "ReplicaSet" => match replica_sets.get(&(namespace, owner.name.as_str())) {
            Some(set) if set.uid.is_some_and(|uid| uid != owner.uid) => bare(),
            Some(ReplicaSetOwner {
                controller: Some(grand),
                ..
            }) if grand.kind == "Deployment" => {
                if holds("Deployment", &grand.name, &grand.uid) {
                    ObjectRef::new("Deployment", namespace, &grand.name)
                } else {
                    // Claimed by a Deployment the facts do not hold: the
                    // ReplicaSet, which is no workload of its own, is named.
                    ObjectRef::new("ReplicaSet", namespace, &owner.name)
                }
            }
            Some(ReplicaSetOwner {
                controller: Some(grand),
                ..
            }) => ObjectRef::new(&grand.kind, namespace, &grand.name),
            Some(_) => ObjectRef::new("ReplicaSet", namespace, &owner.name),
            None if infer_missing => infer_deployment(pod, &owner.name, workloads),
            None => ObjectRef::new("ReplicaSet", namespace, &owner.name),
        },
        _ => ObjectRef::new(&owner.kind, namespace, &owner.name),
    }
}

/// A snapshot without ReplicaSets: the pod's Deployment by the
/// `pod-template-hash` naming convention, when the snapshot holds it.
fn infer_deployment(
    pod: &CachedPod,
    replica_set: &str,
    workloads: &HashMap<ObjectKey, WorkloadRecord>,
) -> ObjectRef {
    let metadata = &pod.metadata;
    let namespace = namespace_str(metadata);
    let hash = metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get("pod-template-hash"));
    let deployment = hash.and_then(|hash| {
        replica_set
            .strip_suffix(hash.as_str())
            .and_then(|rest| rest.strip_suffix('-'))
    });
    match deployment {
        Some(name)
            if workloads.contains_key(&("Deployment".into(), namespace.into(), name.into())) =>
        {
            ObjectRef::new("Deployment", namespace, name)
        }
        _ => ObjectRef::new("ReplicaSet", namespace, replica_set),
    }
}

fn amounts(quantities: &CpuMemory) -> Result<ResourceAmounts, String> {
    Ok(ResourceAmounts {
        cpu_millicores: quantities
            .cpu
            .as_ref()
            .map(|q| quantity::cpu_millicores(&q.0))
            .transpose()?,
        memory_bytes: quantities
            .memory
            .as_ref()
            .map(|q| quantity::memory_bytes(&q.0))
            .transpose()?,
    })
}

fn usage_of(metrics: Option<&PodMetrics>, container: &str) -> Result<ResourceAmounts, String> {
    match metrics.and_then(|m| m.containers.iter().find(|c| c.name == container)) {
        Some(usage) => {
            amounts(&usage.usage).map_err(|why| format!("metrics of container {container}: {why}"))
        }
        None => Ok(ResourceAmounts {
            cpu_millicores: None,
            memory_bytes: None,
        }),
    }
}

/// Sums an amount over containers; absent if any container lacks it, because a
/// partial sum would understate the pod's limit.
fn sum_all(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    let mut total: u64 = 0;
    let mut any = false;
    for value in values {
        total = total.saturating_add(value?);
        any = true;
    }
    any.then_some(total)
}

/// The order of precedence when a pod shows several problems: the state that
/// most explains the others first.
const REASON_PRECEDENCE: [&str; 9] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "OOMKilled",
    "Unschedulable",
    "Evicted",
];

fn pod_record<'a>(
    pod: &'a CachedPod,
    workload: ObjectRef,
    metrics: Option<&PodMetrics>,
) -> Result<PodRecord<'a>, String> {
    let mut containers = Vec::new();
    let mut states: Vec<String> = Vec::new();
    for container in &pod.spec.containers {
        let name = container.name.as_str();
        let status = pod
            .status
            .container_statuses
            .iter()
            .find(|s| s.name == name);
        let waiting = status.and_then(|s| s.state.waiting.as_ref());
        let last_terminated = status.and_then(|s| {
            s.last_state
                .terminated
                .as_ref()
                .or(s.state.terminated.as_ref())
        });
        let facts = ContainerFacts {
            name: name.to_string(),
            usage: usage_of(metrics, name)?,
            limits: amounts(&container.resources.limits)?,
            requests: amounts(&container.resources.requests)?,
            restart_count: status
                .map(|s| u32::try_from(s.restart_count).unwrap_or(0))
                .unwrap_or(0),
            ready: status.is_some_and(|s| s.ready),
            waiting_reason: waiting.and_then(|w| w.reason.clone()),
            waiting_message: waiting.and_then(|w| w.message.clone()),
            last_termination_reason: last_terminated.and_then(|t| t.reason.clone()),
            last_exit_code: last_terminated.map(|t| t.exit_code),
        };
        states.extend(facts.waiting_reason.iter().cloned());
        states.extend(facts.last_termination_reason.iter().cloned());
        containers.push(facts);
    }
    let unschedulable = pod.status.conditions.iter().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if unschedulable {
        states.push("Unschedulable".into());
    }
    let (phase, reason) = (pod.status.phase.as_deref(), pod.status.reason.as_deref());
    if let Some(reason) = reason {
        states.push(reason.to_string());
    }
    states.sort();
    states.dedup();
    let status_reason = REASON_PRECEDENCE
        .iter()
        .find(|reason| states.iter().any(|state| state == *reason))
        .map(|reason| reason.to_string())
        .or_else(|| states.first().cloned());

    let has_metrics = metrics.is_some();
    let facts = PodFacts {
        name: name_str(&pod.metadata).to_string(),
        namespace: namespace_str(&pod.metadata).to_string(),
        phase: phase.unwrap_or("Unknown").to_string(),
        status_reason,
        restart_count: containers.iter().map(|c| c.restart_count).sum(),
        usage: ResourceAmounts {
            cpu_millicores: if has_metrics {
                sum_all(containers.iter().map(|c| c.usage.cpu_millicores))
            } else {
                None
            },
            memory_bytes: if has_metrics {
                sum_all(containers.iter().map(|c| c.usage.memory_bytes))
            } else {
                None
            },
        },
        limits: ResourceAmounts {
            cpu_millicores: sum_all(containers.iter().map(|c| c.limits.cpu_millicores)),
            memory_bytes: sum_all(containers.iter().map(|c| c.limits.memory_bytes)),
        },
        owner: (workload.kind != "Pod").then(|| workload.clone()),
        node: pod.spec.node_name.clone(),
        containers,
    };
    Ok(PodRecord {
        facts,
        workload,
        metadata: &pod.metadata,
        states,
    })
}
