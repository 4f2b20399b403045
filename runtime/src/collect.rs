//! Collection from the API server: reflector stores for Pods, Events,
//! Deployments, ReplicaSets, StatefulSets, DaemonSets, HealingPolicies and
//! HealingActions, watched over all namespaces or one watcher per listed
//! namespace, and PodMetrics (and the policies' PromQL queries) polled on an
//! interval into a shared map.
//!
//! Pods, Events, PodMetrics and workloads are read straight from the API
//! server's JSON into slim types ([`CachedPod`], [`CachedEvent`],
//! [`PodMetrics`], [`CachedWorkload`]) that hold only what the pipeline reads:
//! names, labels, annotations, uid, owners, container names and CPU and memory,
//! replica counts,
//! CPU and memory quantities, container states, event texts and times;
//! container `env`, volumes and probes are never even built. Each watched
//! object is then stripped as it arrives ([`Strip`]): managedFields and
//! annotations other than KubeSkippy's (kubectl's last-applied copy among
//! them) go from every kind; a pod also loses its resourceVersion and every
//! condition but PodScheduled; an event keeps only its name, namespace and
//! creation time of its metadata.

use std::borrow::Cow;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::facts::ClusterObjects;
use crate::healing_action::HealingAction;
use crate::policy::{ClusterHealingPolicy, HealingPolicy};
use crate::prometheus::{Prometheus, QueryResults, queries_of};
use crate::snapshot::PodMetrics;
use crate::untrusted::{MAX_MESSAGE, MAX_NAME, MAX_REASON, clean_in_place};

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

/// A pod as the cache keeps it: what facts read, deserialized straight from
/// the API server's JSON, so the full object (env, volumes, probes, a
/// `Container` of over 2 KB before any of its strings) is never built.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CachedPod {
    #[serde(default, deserialize_with = "null_as_default")]
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
    #[serde(default, deserialize_with = "null_as_default")]
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
    #[serde(default, deserialize_with = "null_as_default")]
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

impl<K> CachedWorkload<K> {
    pub fn container_names(&self) -> impl Iterator<Item = &str> {
        self.spec
            .template
            .iter()
            .flat_map(|template| &template.spec)
            .flat_map(|spec| &spec.containers)
            .map(|container| container.name.as_str())
    }
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

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let metadata = value
            .get("metadata")
            .and_then(|metadata| ObjectMeta::deserialize(metadata).ok())
            .unwrap_or_default();
        let read = serde_path_to_error::deserialize(value).map_err(|error| {
            crate::snapshot::one_line(&format!("field `{}`: {}", error.path(), error.inner()))
        });
        Ok(Lenient { metadata, read })
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

/// Fills a store as a watcher's initial list would: every object stripped,
/// then the store marked ready. For tests and benchmarks, which feed stores
/// without an API server.
pub fn fill<K>(writer: &mut Writer<K>, objects: impl IntoIterator<Item = K>)
where
    K: Resource + Strip + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    apply_listed(writer, objects);
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

/// Adds objects to a store as items of a watcher's initial list, each
/// stripped; the caller sends `Init` before and `InitDone` after.
pub fn apply_listed<K>(writer: &mut Writer<K>, objects: impl IntoIterator<Item = K>)
where
    K: Resource + Strip + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    for mut object in objects {
        object.strip();
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
}

/// The stores of one kind: one per watched namespace, or one for all.
#[derive(Clone)]
struct Stores<K: Resource + 'static>(Vec<Store<K>>)
where
    K::DynamicType: Eq + Hash;

impl<K> Stores<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    fn all(&self) -> Vec<Arc<K>> {
        let mut all = Vec::with_capacity(self.0.iter().map(Store::len).sum());
        for store in &self.0 {
            all.extend(store.state());
        }
        all
    }

    fn ready(&self) -> bool {
        self.0
            .iter()
            .all(|store| matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))))
    }

    async fn wait(&self) -> Result<(), reflector::store::WriterDropped> {
        for store in &self.0 {
            store.wait_until_ready().await?;
        }
        Ok(())
    }
}

/// How the last poll of metrics.k8s.io went.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MetricsState {
    #[default]
    NotPolled,
    Available,
    /// The reason; metric triggers do not fire meanwhile.
    Unavailable(String),
}

#[derive(Default)]
struct Polled {
    pod_metrics: Arc<Vec<PodMetrics>>,
    queries: Arc<QueryResults>,
    state: MetricsState,
}

/// Everything KubeSkippy watches in the cluster, kept current by the future
/// [`ClusterCache::start`] returns. Cloning shares the stores.
#[derive(Clone)]
pub struct ClusterCache {
    pods: Stores<CachedPod>,
    events: Stores<CachedEvent>,
    deployments: Stores<CachedDeployment>,
    replica_sets: Stores<CachedReplicaSet>,
    stateful_sets: Stores<CachedStatefulSet>,
    daemon_sets: Stores<CachedDaemonSet>,
    policies: Stores<Lenient<HealingPolicy>>,
    /// Watched only when the daemon watches every namespace: a daemon
    /// restricted to some namespaces has no cluster-wide rights to read them.
    cluster_policies: Option<Stores<Lenient<ClusterHealingPolicy>>>,
    actions: Stores<Lenient<HealingAction>>,
    polled: Arc<RwLock<Polled>>,
}

/// The writing side of a cache that no watcher feeds: tests and benchmarks
/// fill it with [`fill`] or `apply_watcher_event`.
pub struct CacheWriters {
    pub pods: Writer<CachedPod>,
    pub events: Writer<CachedEvent>,
    pub deployments: Writer<CachedDeployment>,
    pub replica_sets: Writer<CachedReplicaSet>,
    pub stateful_sets: Writer<CachedStatefulSet>,
    pub daemon_sets: Writer<CachedDaemonSet>,
    pub policies: Writer<Lenient<HealingPolicy>>,
    pub cluster_policies: Writer<Lenient<ClusterHealingPolicy>>,
    pub actions: Writer<Lenient<HealingAction>>,
    polled: Arc<RwLock<Polled>>,
}

impl CacheWriters {
    /// Replaces the polled PodMetrics, as a successful poll would.
    pub fn set_pod_metrics(&self, metrics: Vec<PodMetrics>) {
        let mut polled = self
            .polled
            .write()
            .expect("the metrics lock is never poisoned");
        polled.pod_metrics = Arc::new(metrics);
        polled.state = MetricsState::Available;
    }
}

/// The cache's content at one moment: shared references to the stored
/// objects (no object is copied), lent to facts as [`ClusterObjects`].
pub struct CacheView {
    pub pods: Vec<Arc<CachedPod>>,
    pub events: Vec<Arc<CachedEvent>>,
    pub deployments: Vec<Arc<CachedDeployment>>,
    pub replica_sets: Vec<Arc<CachedReplicaSet>>,
    pub stateful_sets: Vec<Arc<CachedStatefulSet>>,
    pub daemon_sets: Vec<Arc<CachedDaemonSet>>,
    pub policies: Vec<Arc<HealingPolicy>>,
    pub actions: Vec<Arc<HealingAction>>,
    pub pod_metrics: Arc<Vec<PodMetrics>>,
    pub queries: Arc<QueryResults>,
}

impl CacheView {
    pub fn objects(&self) -> ClusterObjects<'_> {
        ClusterObjects {
            pods: self.pods.iter().map(Arc::as_ref).collect(),
            events: self.events.iter().map(Arc::as_ref).collect(),
            deployments: self.deployments.iter().map(Arc::as_ref).collect(),
            replica_sets: self.replica_sets.iter().map(Arc::as_ref).collect(),
            stateful_sets: self.stateful_sets.iter().map(Arc::as_ref).collect(),
            daemon_sets: self.daemon_sets.iter().map(Arc::as_ref).collect(),
            pod_metrics: self.pod_metrics.iter().collect(),
            queries: Some(&self.queries),
            infer_missing_replica_sets: false,
        }
    }

    pub fn policies(&self) -> impl Iterator<Item = &HealingPolicy> {
        self.policies.iter().map(Arc::as_ref)
    }

    pub fn actions(&self) -> impl Iterator<Item = &HealingAction> {
        self.actions.iter().map(Arc::as_ref)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a cache writer was dropped before its store was filled")]
pub struct CacheClosed;

impl ClusterCache {
    /// A cache with one store per kind and the writers that fill them.
    pub fn detached() -> (ClusterCache, CacheWriters) {
        let polled = Arc::new(RwLock::new(Polled::default()));
        let (pods, pods_writer) = reflector::store();
        let (events, events_writer) = reflector::store();
        let (deployments, deployments_writer) = reflector::store();
        let (replica_sets, replica_sets_writer) = reflector::store();
        let (stateful_sets, stateful_sets_writer) = reflector::store();
        let (daemon_sets, daemon_sets_writer) = reflector::store();
        let (policies, policies_writer) = reflector::store();
        let (cluster_policies, cluster_policies_writer) = reflector::store();
        let (actions, actions_writer) = reflector::store();
        (
            ClusterCache {
                pods: Stores(vec![pods]),
                events: Stores(vec![events]),
                deployments: Stores(vec![deployments]),
                replica_sets: Stores(vec![replica_sets]),
                stateful_sets: Stores(vec![stateful_sets]),
                daemon_sets: Stores(vec![daemon_sets]),
                policies: Stores(vec![policies]),
                cluster_policies: Some(Stores(vec![cluster_policies])),
                actions: Stores(vec![actions]),
                polled: polled.clone(),
            },
            CacheWriters {
                pods: pods_writer,
                events: events_writer,
                deployments: deployments_writer,
                replica_sets: replica_sets_writer,
                stateful_sets: stateful_sets_writer,
                daemon_sets: daemon_sets_writer,
                policies: policies_writer,
                cluster_policies: cluster_policies_writer,
                actions: actions_writer,
                polled,
            },
        )
    }

    /// Watches every kind over `namespaces` (empty: all namespaces, one
    /// cluster-wide watcher per kind; otherwise one watcher per namespace) and
    /// polls PodMetrics — and, with `prometheus`, the policies' queries —
    /// every `metrics_interval`. The cache fills while the returned future
    /// runs; it runs until dropped. Watch errors are logged and retried with
    /// backoff. HealingPolicies and HealingActions are read from the same
    /// namespaces (actions live in their target's namespace): with a list,
    /// include the namespace that holds the policies.
    pub fn start(
        client: Client,
        namespaces: &[String],
        metrics_interval: Duration,
        prometheus: Option<Prometheus>,
    ) -> (ClusterCache, impl Future<Output = ()> + Send + 'static) {
        let scopes: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        let mut streams: Vec<BoxStream<'static, ()>> = Vec::new();
        let cache = ClusterCache {
            pods: watch_all(&client, &scopes, &mut streams),
            events: watch_all(&client, &scopes, &mut streams),
            deployments: watch_all(&client, &scopes, &mut streams),
            replica_sets: watch_all(&client, &scopes, &mut streams),
            stateful_sets: watch_all(&client, &scopes, &mut streams),
            daemon_sets: watch_all(&client, &scopes, &mut streams),
            policies: watch_all(&client, &scopes, &mut streams),
            cluster_policies: namespaces
                .is_empty()
                .then(|| watch_cluster(&client, &mut streams)),
            actions: watch_all(&client, &scopes, &mut streams),
            polled: Arc::new(RwLock::new(Polled::default())),
        };
        let watchers = futures::stream::select_all(streams).for_each(|()| async {});
        let poller = poll_metrics(
            client,
            scopes,
            metrics_interval,
            cache.polled.clone(),
            prometheus,
            cache.clone(),
        );
        let run = async move {
            futures::future::join(watchers, poller).await;
        };
        (cache, run)
    }

    /// Every store has had its initial list.
    pub fn is_ready(&self) -> bool {
        self.pods.ready()
            && self.events.ready()
            && self.deployments.ready()
            && self.replica_sets.ready()
            && self.stateful_sets.ready()
            && self.daemon_sets.ready()
            && self.policies.ready()
            && self.cluster_policies.as_ref().is_none_or(Stores::ready)
            && self.actions.ready()
    }

    /// Waits until [`is_ready`](Self::is_ready).
    pub async fn wait_ready(&self) -> Result<(), CacheClosed> {
        let closed = |_| CacheClosed;
        self.pods.wait().await.map_err(closed)?;
        self.events.wait().await.map_err(closed)?;
        self.deployments.wait().await.map_err(closed)?;
        self.replica_sets.wait().await.map_err(closed)?;
        self.stateful_sets.wait().await.map_err(closed)?;
        self.daemon_sets.wait().await.map_err(closed)?;
        self.policies.wait().await.map_err(closed)?;
        if let Some(cluster_policies) = &self.cluster_policies {
            cluster_policies.wait().await.map_err(closed)?;
        }
        self.actions.wait().await.map_err(closed)
    }

    /// HealingPolicies and ClusterHealingPolicies that could be read, the
    /// latter as policies without a namespace; there are few, so they are
    /// copied.
    fn all_policies(&self) -> Vec<Arc<HealingPolicy>> {
        let mut policies: Vec<Arc<HealingPolicy>> = self
            .policies
            .all()
            .iter()
            .filter_map(|policy| policy.read.as_ref().ok())
            .map(|policy| Arc::new(policy.clone()))
            .collect();
        if let Some(cluster_policies) = &self.cluster_policies {
            policies.extend(
                cluster_policies
                    .all()
                    .iter()
                    .filter_map(|policy| policy.read.as_ref().ok())
                    .map(|policy| Arc::new(HealingPolicy::from(policy.clone()))),
            );
        }
        policies
    }

    fn all_actions(&self) -> Vec<Arc<HealingAction>> {
        self.actions
            .all()
            .iter()
            .filter_map(|action| action.read.as_ref().ok())
            .map(|action| Arc::new(action.clone()))
            .collect()
    }

    /// Policies and HealingActions the daemon cannot read, as (kind,
    /// namespace, name, why): reported on their status and in the log.
    pub fn unreadable(&self) -> Vec<Unreadable> {
        let mut broken = Vec::new();
        let mut add = |kind: &'static str, metadata: &ObjectMeta, why: &str| {
            broken.push(Unreadable {
                kind,
                namespace: metadata.namespace.clone(),
                name: metadata.name.clone().unwrap_or_default(),
                resource_version: metadata.resource_version.clone(),
                why: why.to_string(),
            });
        };
        for policy in self.policies.all() {
            if let Err(why) = &policy.read {
                add("HealingPolicy", policy.metadata(), why);
            }
        }
        for policy in self.cluster_policies.iter().flat_map(Stores::all) {
            if let Err(why) = &policy.read {
                add("ClusterHealingPolicy", policy.metadata(), why);
            }
        }
        for action in self.actions.all() {
            if let Err(why) = &action.read {
                add("HealingAction", action.metadata(), why);
            }
        }
        broken
    }

    pub fn metrics_state(&self) -> MetricsState {
        self.polled
            .read()
            .expect("the metrics lock is never poisoned")
            .state
            .clone()
    }

    /// The cache's content now.
    /// Just the HealingPolicies and HealingActions: what reconciling needs
    /// every tick, without copying out the pods and events a view holds.
    pub fn policies_and_actions(&self) -> (Vec<Arc<HealingPolicy>>, Vec<Arc<HealingAction>>) {
        (self.all_policies(), self.all_actions())
    }

    pub fn view(&self) -> CacheView {
        let polled = self
            .polled
            .read()
            .expect("the metrics lock is never poisoned");
        CacheView {
            pods: self.pods.all(),
            events: self.events.all(),
            deployments: self.deployments.all(),
            replica_sets: self.replica_sets.all(),
            stateful_sets: self.stateful_sets.all(),
            daemon_sets: self.daemon_sets.all(),
            policies: self.all_policies(),
            actions: self.all_actions(),
            pod_metrics: polled.pod_metrics.clone(),
            queries: polled.queries.clone(),
        }
    }
}

/// One reflector per scope for kind `K`, its streams added to `streams`.
fn watch_all<K>(
    client: &Client,
    scopes: &[Option<String>],
    streams: &mut Vec<BoxStream<'static, ()>>,
) -> Stores<K>
where
    K: Resource<Scope = NamespaceResourceScope>
        + Strip
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let stores = scopes
        .iter()
        .map(|scope| {
            let api: Api<K> = match scope {
                Some(namespace) => Api::namespaced(client.clone(), namespace),
                None => Api::all(client.clone()),
            };
            let (store, writer) = reflector::store();
            let events = watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(K::strip);
            let kind = kind.clone();
            let scope = scope.clone().unwrap_or_else(|| "all namespaces".into());
            streams.push(
                reflector::reflector(writer, events)
                    .filter_map(move |event| {
                        if let Err(error) = event {
                            tracing::warn!("watching {kind} in {scope}: {error}; retrying");
                        }
                        futures::future::ready(None)
                    })
                    .boxed(),
            );
            store
        })
        .collect();
    Stores(stores)
}

/// A policy or HealingAction the daemon cannot read.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub resource_version: Option<String>,
    pub why: String,
}

/// One cluster-wide reflector for ClusterHealingPolicies, its stream added to
/// `streams`.
fn watch_cluster(
    client: &Client,
    streams: &mut Vec<BoxStream<'static, ()>>,
) -> Stores<Lenient<ClusterHealingPolicy>> {
    let api: Api<Lenient<ClusterHealingPolicy>> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(Lenient::<ClusterHealingPolicy>::strip);
    streams.push(
        reflector::reflector(writer, events)
            .filter_map(|event| {
                if let Err(error) = event {
                    tracing::warn!("watching ClusterHealingPolicy: {error}; retrying");
                }
                futures::future::ready(None)
            })
            .boxed(),
    );
    Stores(vec![store])
}

/// A PodMetricsList read straight into [`PodMetrics`], so the poll never
/// holds ten thousand pods' metrics as JSON trees.
#[derive(Deserialize)]
struct PodMetricsList {
    #[serde(default, deserialize_with = "null_as_default")]
    items: Vec<PodMetrics>,
}

/// Lists PodMetrics over the scopes. A missing metrics API (404, or 503 while
/// metrics-server starts) is reported as such, not as a failure of the cache.
async fn list_pod_metrics(
    client: &Client,
    scopes: &[Option<String>],
) -> Result<Vec<PodMetrics>, String> {
    let mut all = Vec::new();
    for scope in scopes {
        let path = match scope {
            Some(namespace) => format!("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"),
            None => "/apis/metrics.k8s.io/v1beta1/pods".to_string(),
        };
        let request = kube::core::Request::new(&path)
            .list(&ListParams::default())
            .map_err(|error| format!("listing PodMetrics failed: {error}"))?;
        // Read as text and parsed here: kube's own decoding would log the
        // whole (multi-megabyte) reply on every poll of a malformed list.
        let text = client
            .request_text(request)
            .await
            .map_err(|error| match &error {
                kube::Error::Api(status) if status.code == 404 || status.code == 503 => format!(
                    "metrics.k8s.io/v1beta1 is not served (HTTP {}): is metrics-server installed?",
                    status.code
                ),
                _ => format!("listing PodMetrics failed: {error}"),
            })?;
        let list: PodMetricsList =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
                .map_err(|error| {
                    format!(
                        "the PodMetrics list from {path} is malformed at `{}`: {}",
                        error.path(),
                        error.inner()
                    )
                })?;
        all.extend(list.items);
    }
    Ok(all)
}

async fn poll_metrics(
    client: Client,
    scopes: Vec<Option<String>>,
    interval: Duration,
    polled: Arc<RwLock<Polled>>,
    prometheus: Option<Prometheus>,
    cache: ClusterCache,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let listed = list_pod_metrics(&client, &scopes).await;
        let queries = match &prometheus {
            Some(prometheus) => {
                let policies = cache.all_policies();
                prometheus
                    .query_all(queries_of(policies.iter().map(Arc::as_ref)))
                    .await
            }
            None => QueryResults::new(),
        };
        let (metrics, state) = match listed {
            Ok(metrics) => (metrics, MetricsState::Available),
            // Stale usage would keep firing triggers on numbers no longer true.
            Err(reason) => (Vec::new(), MetricsState::Unavailable(reason)),
        };
        let mut polled = polled.write().expect("the metrics lock is never poisoned");
        if polled.state != state {
            match &state {
                MetricsState::Unavailable(reason) => {
                    tracing::warn!(
                        "pod metrics unavailable: {reason}; metric triggers will not fire until they are back"
                    );
                }
                _ => tracing::info!("pod metrics available"),
            }
        }
        polled.pod_metrics = Arc::new(metrics);
        polled.queries = Arc::new(queries);
        polled.state = state;
    }
}
