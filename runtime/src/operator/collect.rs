//! Collection from the API server: reflector stores for Pods, Events,
//! Deployments, ReplicaSets, StatefulSets, DaemonSets, HealingPolicies and
//! HealingActions, watched over all namespaces or one watcher per listed
//! namespace, and PodMetrics (and the policies' PromQL queries) polled on an
//! interval into a shared map. Objects arrive as the slim, stripped types of
//! [`crate::core::objects`].

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::core::crd::healing_action::HealingAction;
use crate::core::crd::policy::{ClusterHealingPolicy, HealingPolicy};
use crate::core::objects::{
    CachedDaemonSet, CachedDeployment, CachedEvent, CachedPod, CachedReplicaSet, CachedStatefulSet,
    ClusterObjects, Lenient, PodMetrics, QueryResults, Strip, null_as_default,
};
use crate::core::triggers::queries_of;
use crate::operator::prometheus::Prometheus;
use crate::telemetry::metrics::metrics;

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
        self.sync_state().iter().all(|(_, synced)| *synced)
    }

    /// Whether each kind's stores have had their initial list.
    pub fn sync_state(&self) -> Vec<(&'static str, bool)> {
        let mut state = vec![
            ("Pod", self.pods.ready()),
            ("Event", self.events.ready()),
            ("Deployment", self.deployments.ready()),
            ("ReplicaSet", self.replica_sets.ready()),
            ("StatefulSet", self.stateful_sets.ready()),
            ("DaemonSet", self.daemon_sets.ready()),
            ("HealingPolicy", self.policies.ready()),
            ("HealingAction", self.actions.ready()),
        ];
        if let Some(cluster_policies) = &self.cluster_policies {
            state.push(("ClusterHealingPolicy", cluster_policies.ready()));
        }
        state
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
                            metrics().watch_restarted(&kind);
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
                    metrics().watch_restarted("ClusterHealingPolicy");
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
