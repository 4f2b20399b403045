//! The objects KubeSkippy reads, as it holds them: Pods, Events, workloads and
//! PodMetrics read straight from the API server's JSON (or a snapshot) into
//! slim types ([`CachedPod`], [`CachedEvent`], [`PodMetrics`],
//! [`CachedWorkload`]) that hold only what the pipeline reads: names, labels,
//! annotations, uid, owners, container names and CPU and memory, replica
//! counts, container states, event texts and times; container `env`, volumes
//! and probes are never even built, nor are managedFields and annotations
//! other than KubeSkippy's (kubectl's last-applied copy among them:
//! `lean_metadata`). Each object is then stripped as it arrives ([`Strip`]):
//! a pod loses its resourceVersion and every condition but PodScheduled; an
//! event keeps only its name, namespace and creation time of its metadata.
//! [`ClusterObjects`] lends them all to facts.

use std::borrow::Cow;
use std::collections::HashMap;

use std::marker::PhantomData;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::core::crd::healing_action::{HealingAction, HealingActionStatus, Phase};
use crate::core::crd::policy::{ClusterHealingPolicy, HealingPolicy};
use crate::core::text::one_line;
use crate::core::untrusted::{MAX_MESSAGE, MAX_NAME, MAX_REASON, clean_in_place};

/// Drops what the pipeline never reads from an object as it enters a store.
pub trait Strip {
    fn strip(&mut self);
}

/// Annotations the pipeline reads (the safety floor's `kubeskippy.io/protected`,
/// HealingActions' own) share this prefix; others, such as kubectl's
/// last-applied copy of the whole object, are dropped.
const KEPT_ANNOTATIONS: &str = "kubeskippy.io/";

fn strip_metadata(metadata: &mut ObjectMeta) {
    metadata.managed_fields = None;
    if let Some(annotations) = &mut metadata.annotations {
        annotations.retain(|key, _| key.starts_with(KEPT_ANNOTATIONS));
        if annotations.is_empty() {
            metadata.annotations = None;
        }
    }
}

/// Implements kube's `Resource` for a cached type standing in for the
/// k8s-openapi type `$full`: same kind, group, version and plural, so the
/// watchers' URLs and the stores' keys are the API's own.
macro_rules! resource_as {
    ([$($generic:ident)?] $cached:ty => $full:ty; $($bounds:tt)*) => {
        impl<$($generic)?> Resource for $cached
        where
            $($bounds)*
        {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                <$full as k8s_openapi::Resource>::KIND.into()
            }
            fn group(_: &()) -> Cow<'_, str> {
                <$full as k8s_openapi::Resource>::GROUP.into()
            }
            fn version(_: &()) -> Cow<'_, str> {
                <$full as k8s_openapi::Resource>::VERSION.into()
            }
            fn plural(_: &()) -> Cow<'_, str> {
                <$full as k8s_openapi::Resource>::URL_PATH_SEGMENT.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// Reads `null` as the type's default, as k8s-openapi does: Go writes a nil
/// slice or struct pointer as `null`, and hand-written snapshots leave
/// fields out.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Metadata as the cached kinds keep it, read field by field: name,
/// namespace, uid, resourceVersion, labels, owners, creation time and
/// KubeSkippy's own annotations. Everything else — managedFields above all,
/// often larger than the rest of a pod, and other tools' annotations — is
/// skipped by the parser, never built and then dropped: across ten thousand
/// pods that garbage, freed, was tens of MiB the allocator kept.
pub(crate) fn lean_metadata<'de, D>(deserializer: D) -> Result<ObjectMeta, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Lean {
        name: Option<String>,
        namespace: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
        labels: Option<std::collections::BTreeMap<String, String>>,
        #[serde(default, deserialize_with = "kubeskippy_annotations")]
        annotations: Option<std::collections::BTreeMap<String, String>>,
        owner_references: Option<Vec<OwnerReference>>,
        creation_timestamp: Option<Time>,
    }
    let lean = Option::<Lean>::deserialize(deserializer)?.unwrap_or_default();
    Ok(ObjectMeta {
        name: lean.name,
        namespace: lean.namespace,
        uid: lean.uid,
        resource_version: lean.resource_version,
        labels: lean.labels,
        annotations: lean.annotations,
        owner_references: lean.owner_references,
        creation_timestamp: lean.creation_timestamp,
        ..ObjectMeta::default()
    })
}

/// The annotations under [`KEPT_ANNOTATIONS`]; the values of the rest are
/// skipped unread.
fn kubeskippy_annotations<'de, D>(
    deserializer: D,
) -> Result<Option<std::collections::BTreeMap<String, String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Kept;
    impl<'de> serde::de::Visitor<'de> for Kept {
        type Value = Option<std::collections::BTreeMap<String, String>>;
        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a map of annotations")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_map(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut kept = std::collections::BTreeMap::new();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key.starts_with(KEPT_ANNOTATIONS) {
                    kept.insert(key.into_owned(), map.next_value()?);
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok((!kept.is_empty()).then_some(kept))
        }
    }
    deserializer.deserialize_option(Kept)
}

/// A pod as the cache keeps it: what facts read, deserialized straight from
/// the API server's JSON, so the full object (env, volumes, probes, a
/// `Container` of over 2 KB before any of its strings) is never built.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CachedPod {
    #[serde(default, deserialize_with = "lean_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: CachedPodSpec,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: CachedPodStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedPodSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<CachedContainer>,
    pub node_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CachedContainer {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: CachedResources,
}

/// The CPU and memory of a container's limits and requests: four optional
/// strings where `ResourceRequirements` holds two maps (over 1 KB a pod).
/// Other resources (ephemeral storage, GPUs) are never read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CachedResources {
    #[serde(default, deserialize_with = "null_as_default")]
    pub limits: CpuMemory,
    #[serde(default, deserialize_with = "null_as_default")]
    pub requests: CpuMemory,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuMemory {
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedPodStatus {
    pub phase: Option<String>,
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub conditions: Vec<CachedCondition>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_statuses: Vec<CachedContainerStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CachedCondition {
    #[serde(default, deserialize_with = "null_as_default", rename = "type")]
    pub type_: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedContainerStatus {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ready: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub restart_count: i32,
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: CachedContainerState,
    #[serde(default, deserialize_with = "null_as_default")]
    pub last_state: CachedContainerState,
}

/// Why a container waits or why it last ended; when it started or finished
/// is never read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CachedContainerState {
    pub waiting: Option<CachedWaiting>,
    pub terminated: Option<CachedTerminated>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CachedWaiting {
    pub reason: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedTerminated {
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub exit_code: i32,
}

resource_as!([] CachedPod => Pod;);

/// The one pod condition facts read (an unschedulable pod).
const KEPT_CONDITION: &str = "PodScheduled";

/// Pods are the thousands: their resourceVersion (which the reflector keeps
/// in each key too) is never read.
impl Strip for CachedPod {
    fn strip(&mut self) {
        strip_metadata(&mut self.metadata);
        self.metadata.resource_version = None;
        self.status
            .conditions
            .retain(|condition| condition.type_ == KEPT_CONDITION);
        self.clean_text();
    }
}

impl CachedPod {
    /// Status texts are written by the kubelet, and by anyone allowed to
    /// write pod status: cleaned (one line, bounded, redacted) before
    /// anything reads them.
    pub fn clean_text(&mut self) {
        let status = &mut self.status;
        clean_in_place(&mut status.reason, MAX_REASON);
        for condition in &mut status.conditions {
            clean_in_place(&mut condition.reason, MAX_REASON);
        }
        for container in &mut status.container_statuses {
            for state in [&mut container.state, &mut container.last_state] {
                if let Some(waiting) = &mut state.waiting {
                    clean_in_place(&mut waiting.reason, MAX_REASON);
                    clean_in_place(&mut waiting.message, MAX_MESSAGE);
                }
                if let Some(terminated) = &mut state.terminated {
                    clean_in_place(&mut terminated.reason, MAX_REASON);
                }
            }
        }
    }
}

/// An event as the cache keeps it: its texts, the object it is about and
/// when it happened, deserialized straight from the API server's JSON. A
/// full `Event` is 1 000 bytes before any of its strings; thirty thousand of
/// them are the bulk of a large cluster's cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedEvent {
    #[serde(default, deserialize_with = "lean_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub involved_object: InvolvedObject,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub count: Option<i32>,
    pub first_timestamp: Option<Time>,
    pub last_timestamp: Option<Time>,
    pub event_time: Option<MicroTime>,
    pub series: Option<CachedSeries>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvolvedObject {
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedSeries {
    pub last_observed_time: Option<MicroTime>,
}

resource_as!([] CachedEvent => Event;);

/// Only the name and namespace (the store's key) and the creation time (when
/// an event carries no timestamps of its own) are read.
impl Strip for CachedEvent {
    fn strip(&mut self) {
        let metadata = std::mem::take(&mut self.metadata);
        self.metadata = ObjectMeta {
            name: metadata.name,
            namespace: metadata.namespace,
            creation_timestamp: metadata.creation_timestamp,
            ..ObjectMeta::default()
        };
        self.clean_text();
    }
}

impl CachedEvent {
    /// Anyone allowed to create Events writes every field of one, the object
    /// it claims to be about included: cleaned (one line, bounded, redacted)
    /// before anything reads them, which also bounds what thirty thousand
    /// cached events can cost.
    pub fn clean_text(&mut self) {
        clean_in_place(&mut self.type_, MAX_REASON);
        clean_in_place(&mut self.reason, MAX_REASON);
        clean_in_place(&mut self.message, MAX_MESSAGE);
        let involved = &mut self.involved_object;
        clean_in_place(&mut involved.kind, MAX_REASON);
        clean_in_place(&mut involved.namespace, MAX_NAME);
        clean_in_place(&mut involved.name, MAX_NAME);
    }
}

/// A Deployment, ReplicaSet, StatefulSet or DaemonSet (`K`) as the cache
/// keeps it: metadata, replica counts and its template's container names and
/// CPU and memory (what a plan is made against), deserialized
/// straight from the API server's JSON. A stripped k8s-openapi Deployment is
/// still about 7 KB with its pod template, and a cluster keeps up to ten old
/// ReplicaSets per Deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct CachedWorkload<K> {
    #[serde(default, deserialize_with = "lean_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: WorkloadSpec,
    pub status: Option<WorkloadStatus>,
    #[serde(skip)]
    kind: PhantomData<fn() -> K>,
}

pub type CachedDeployment = CachedWorkload<Deployment>;
pub type CachedReplicaSet = CachedWorkload<ReplicaSet>;
pub type CachedStatefulSet = CachedWorkload<StatefulSet>;
pub type CachedDaemonSet = CachedWorkload<DaemonSet>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Absent on a DaemonSet, which has no replica count.
    pub replicas: Option<i32>,
    pub template: Option<CachedTemplate>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CachedTemplate {
    pub spec: Option<TemplateSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<CachedContainer>,
}

/// Ready replicas, and a DaemonSet's desired and ready counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    pub ready_replicas: Option<i32>,
    pub desired_number_scheduled: Option<i32>,
    pub number_ready: Option<i32>,
}

resource_as!([K] CachedWorkload<K> => K; K: k8s_openapi::Resource<Scope = NamespaceResourceScope>);

impl<K> Strip for CachedWorkload<K> {
    fn strip(&mut self) {
        strip_metadata(&mut self.metadata);
    }
}

/// An object of KubeSkippy's own kinds as someone wrote it: read whole if it
/// parses, else kept as its identity and why it does not. Policies and
/// HealingActions are written by tenants; one that the CRD's schema admits but
/// the daemon cannot read must not fail the watch of every other one.
#[derive(Debug, Clone, PartialEq)]
pub struct Lenient<K> {
    metadata: ObjectMeta,
    pub read: Result<K, String>,
}

impl<K> From<K> for Lenient<K>
where
    K: Resource,
{
    fn from(object: K) -> Self {
        Lenient {
            metadata: object.meta().clone(),
            read: Ok(object),
        }
    }
}

impl<K> Lenient<K> {
    pub fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
}

impl<'de, K: DeserializeOwned + Salvage> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let metadata = value
            .get("metadata")
            .and_then(|metadata| ObjectMeta::deserialize(metadata).ok())
            .unwrap_or_default();
        let read = match serde_path_to_error::deserialize(value.clone()) {
            Ok(object) => Ok(object),
            Err(error) => {
                let why = one_line(&format!("field `{}`: {}", error.path(), error.inner()));
                K::salvage(value, &why).ok_or(why)
            }
        };
        Ok(Lenient { metadata, read })
    }
}

/// What can still be read of an object that does not parse whole.
pub trait Salvage: Sized {
    /// `object` read without the parts others may write and that need not
    /// parse; `None` when nothing can be relied on.
    fn salvage(_object: serde_json::Value, _why: &str) -> Option<Self> {
        None
    }
}

impl Salvage for HealingPolicy {}
impl Salvage for ClusterHealingPolicy {}

/// A HealingAction whose spec parses but whose status does not is still
/// one of the daemon's plans, and must keep counting towards its limits:
/// dropped as unreadable, one write of an unreadable status would free its
/// cooldown, budget and concurrency for good. It is read with an unsealed
/// status in progress since it was planned, which the gates count and the
/// lifecycle refuses, replacing the unreadable status with its own.
impl Salvage for HealingAction {
    fn salvage(mut object: serde_json::Value, why: &str) -> Option<Self> {
        object.as_object_mut()?.remove("status");
        let mut action: HealingAction = serde_json::from_value(object).ok()?;
        action.status = Some(HealingActionStatus {
            phase: Phase::InProgress,
            started_at: action.spec.planned_at.clone(),
            message: Some(format!("status unreadable: {why}")),
            ..HealingActionStatus::default()
        });
        Some(action)
    }
}

impl<K> Resource for Lenient<K>
where
    K: Resource<DynamicType = ()>,
{
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dynamic: &()) -> Cow<'_, str> {
        K::kind(dynamic)
    }
    fn group(dynamic: &()) -> Cow<'_, str> {
        K::group(dynamic)
    }
    fn version(dynamic: &()) -> Cow<'_, str> {
        K::version(dynamic)
    }
    fn plural(dynamic: &()) -> Cow<'_, str> {
        K::plural(dynamic)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<K: Strip> Strip for Lenient<K> {
    fn strip(&mut self) {
        strip_own_metadata(&mut self.metadata);
        if let Ok(object) = &mut self.read {
            object.strip();
        }
    }
}

/// KubeSkippy's own objects are few and their annotations are read (the
/// model's confidence and reasoning): only the field-manager bookkeeping and
/// kubectl's copy go.
fn strip_own_metadata(metadata: &mut ObjectMeta) {
    metadata.managed_fields = None;
    if let Some(annotations) = &mut metadata.annotations {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

impl Strip for HealingPolicy {
    fn strip(&mut self) {
        strip_own_metadata(&mut self.metadata);
    }
}

impl Strip for ClusterHealingPolicy {
    fn strip(&mut self) {
        strip_own_metadata(&mut self.metadata);
    }
}

/// A HealingAction keeps its status whole: the captured original is what a
/// rollback restores, and there are few of them.
impl Strip for HealingAction {
    fn strip(&mut self) {
        strip_own_metadata(&mut self.metadata);
    }
}

/// metrics.k8s.io/v1beta1 PodMetrics (k8s-openapi has no type for it), read
/// down to which pod it is and each container's CPU and memory: the daemon
/// holds one per pod.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PodMetrics {
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: MetricsIdentity,
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<ContainerMetrics>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct MetricsIdentity {
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ContainerMetrics {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub usage: CpuMemory,
}

/// A query's value per pod, by (namespace, pod).
pub type PodValues = HashMap<(String, String), f64>;

/// Every query's outcome, by query text. A failed query is kept as its error
/// so the trigger can say why it did not fire.
pub type QueryResults = HashMap<String, Result<PodValues, String>>;

/// The objects facts are built from, borrowed: a parsed snapshot and the live
/// cache's stores both lend them, so nothing is cloned to build facts.
#[derive(Debug, Clone, Default)]
pub struct ClusterObjects<'a> {
    pub pods: Vec<&'a CachedPod>,
    pub events: Vec<&'a CachedEvent>,
    pub deployments: Vec<&'a CachedDeployment>,
    pub replica_sets: Vec<&'a CachedReplicaSet>,
    pub stateful_sets: Vec<&'a CachedStatefulSet>,
    pub daemon_sets: Vec<&'a CachedDaemonSet>,
    pub pod_metrics: Vec<&'a PodMetrics>,
    /// Prometheus results by query text; absent when nothing was queried.
    pub queries: Option<&'a QueryResults>,
    /// A pod's missing ReplicaSet is traced to its Deployment through the
    /// `pod-template-hash` naming convention: for snapshots, which often lack
    /// ReplicaSets. The live cache holds every ReplicaSet, so there a missing
    /// one is a claim nothing backs.
    pub infer_missing_replica_sets: bool,
}
