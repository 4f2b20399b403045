//! The cluster cache: fed through its store writers as a watcher would, joined
//! with polled metrics, stripped without losing what triggers read, and
//! started against a stub API server to show the per-namespace watchers and a
//! missing metrics API handled as a state, not an error loop.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Recorded, Reply, serve};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kubeskippy::core::config::PrometheusConfig;
use kubeskippy::core::crd::policy::HealingPolicy;
use kubeskippy::core::evaluation::{self, TriggerMemory};
use kubeskippy::core::facts::ClusterFacts;
use kubeskippy::core::objects::{self, ClusterObjects};
use kubeskippy::core::objects::{
    CachedDaemonSet, CachedDeployment, CachedEvent, CachedPod, CachedReplicaSet, CachedStatefulSet,
    CpuMemory, Strip,
};
use kubeskippy::core::objects::{ContainerMetrics, MetricsIdentity, PodMetrics};
use kubeskippy::operator::collect::{self, ClusterCache, MetricsState};
use kubeskippy::operator::prometheus::Prometheus;
use serde_json::{Value, json};

fn now() -> DateTime<Utc> {
    at("2026-11-26T09:00:00Z")
}

fn deployment(namespace: &str, name: &str) -> CachedDeployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("d-{name}"), "labels": {"app": name}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}},
        "status": {"replicas": 2, "readyReplicas": 1},
    }))
    .unwrap()
}

fn replica_set(namespace: &str, deployment: &str) -> CachedReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{deployment}-5d8f7"), "namespace": namespace,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "uid": format!("d-{deployment}"), "controller": true}]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": deployment}}},
    }))
    .unwrap()
}

/// A pod of `deployment` as the API server serves it: managedFields, the
/// last-applied annotation, env, mounts, probes and volumes included.
fn full_pod(namespace: &str, deployment: &str, name: &str, crashing: bool) -> Value {
    let (state, last_state, restarts) = if crashing {
        (
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}}),
            json!({"terminated": {"reason": "OOMKilled", "exitCode": 137}}),
            6,
        )
    } else {
        (
            json!({"running": {"startedAt": "2026-11-26T08:00:00Z"}}),
            json!({}),
            0,
        )
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace, "uid": format!("uid-{name}"),
            "labels": {"app": deployment, "pod-template-hash": "5d8f7"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"spec\":{\"containers\":[{\"env\":[{\"name\":\"API_TOKEN\",\"value\":\"s3cret\"}]}]}}",
                "kubeskippy.io/protected": "true",
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deployment}-5d8f7"), "uid": "rs-1", "controller": true}],
            "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}}}],
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [{
                "name": "app", "image": "app:1",
                "env": [{"name": "API_TOKEN", "value": "s3cret"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "250m", "memory": "512Mi"}},
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
        "status": {
            "phase": "Running", "podIP": "10.1.2.3",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "app", "image": "app:1", "imageID": "app@sha256:0123", "containerID": "containerd://abc",
                                   "ready": !crashing, "restartCount": restarts, "state": state, "lastState": last_state}],
        },
    })
}

/// The pod as the cache's watcher reads it.
fn pod(namespace: &str, deployment: &str, name: &str, crashing: bool) -> CachedPod {
    serde_json::from_value(full_pod(namespace, deployment, name, crashing)).unwrap()
}

fn event(namespace: &str, pod: &str, reason: &str) -> CachedEvent {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{pod}.{reason}"), "namespace": namespace},
        "involvedObject": {"kind": "Pod", "namespace": namespace, "name": pod},
        "reason": reason, "message": "Back-off restarting failed container", "type": "Warning", "count": 9,
        "lastTimestamp": "2026-11-26T08:59:00Z",
    }))
    .unwrap()
}

fn pod_metrics(namespace: &str, pod: &str, cpu: &str, memory: &str) -> PodMetrics {
    serde_json::from_value(json!({
        "metadata": {"name": pod, "namespace": namespace},
        "containers": [{"name": "app", "usage": {"cpu": cpu, "memory": memory}}],
    }))
    .unwrap()
}

/// A detached cache holding the `shop` Deployment with two pods, the first
/// crash-looping, and its events; `policies` in the policy store.
fn shop_cache(policies: Vec<HealingPolicy>) -> (ClusterCache, collect::CacheWriters) {
    let (cache, mut writers) = ClusterCache::detached();
    collect::fill(&mut writers.deployments, [deployment("shop", "app")]);
    collect::fill(&mut writers.replica_sets, [replica_set("shop", "app")]);
    collect::fill(
        &mut writers.pods,
        [
            pod("shop", "app", "app-5d8f7-a", true),
            pod("shop", "app", "app-5d8f7-b", false),
        ],
    );
    collect::fill(
        &mut writers.events,
        [
            event("shop", "app-5d8f7-a", "BackOff"),
            event("shop", "gone-pod", "BackOff"),
        ],
    );
    collect::fill(&mut writers.stateful_sets, []);
    collect::fill(&mut writers.daemon_sets, []);
    collect::fill(
        &mut writers.policies,
        policies.into_iter().map(objects::Lenient::from),
    );
    collect::fill(&mut writers.cluster_policies, []);
    (cache, writers)
}

/// A pass over the view with nothing remembered.
fn first_pass(view: &collect::CacheView) -> evaluation::Pass<'_> {
    evaluation::pass(
        &view.objects(),
        view.policies(),
        &mut TriggerMemory::new(),
        view.actions(),
        now(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_cache_fed_through_its_writers_gives_facts_and_is_ready_once_every_store_is() {
    let (cache, mut writers) = shop_cache(vec![HealingPolicy::builtin_default()]);
    assert!(!cache.is_ready(), "the HealingAction store has had no list");
    collect::fill(&mut writers.actions, []);
    assert!(cache.is_ready());
    tokio::time::timeout(Duration::from_secs(1), cache.wait_ready())
        .await
        .unwrap()
        .unwrap();

    let view = cache.view();
    assert_eq!(
        (view.pods.len(), view.events.len(), view.policies.len()),
        (2, 2, 1)
    );
    let (facts, skipped) = ClusterFacts::from_objects(&view.objects());
    assert!(skipped.is_empty());
    for record in &facts.pods {
        assert_eq!(
            (record.workload.kind.as_str(), record.workload.name.as_str()),
            ("Deployment", "app")
        );
    }
    let workload = (
        "Deployment".to_string(),
        "shop".to_string(),
        "app".to_string(),
    );
    assert_eq!(facts.pods_of(&workload).count(), 2);
    let events: Vec<_> = facts.events_of(&workload).map(|e| e.involved().2).collect();
    assert_eq!(
        events,
        ["app-5d8f7-a"],
        "an event about a pod not cached belongs to no workload"
    );
    assert_eq!(facts.workloads[&workload].facts.ready_replicas, Some(1));
}

#[test]
fn polled_metrics_join_their_pods_and_drive_absolute_usage_triggers() {
    let policy: HealingPolicy = serde_yaml_ng::from_str(
        "apiVersion: kubeskippy.io/v1alpha1\nkind: HealingPolicy\nmetadata: {name: usage}\nspec:\n  triggers:\n  - name: big\n    metric: {name: memoryBytes, threshold: 1.5Gi}\n  - name: busy\n    metric: {name: cpuMillicores, threshold: 400}\n",
    )
    .unwrap();
    policy.validate().unwrap();
    let (cache, mut writers) = shop_cache(vec![policy]);
    collect::fill(&mut writers.actions, []);

    let pass = |cache: &ClusterCache| {
        let view = cache.view();
        let pass = first_pass(&view);
        pass.incidents
            .iter()
            .flat_map(|open| open.incident.findings.iter().map(|f| f.detail.clone()))
            .collect::<Vec<_>>()
    };
    assert!(pass(&cache).is_empty(), "no metrics, no usage triggers");

    writers.set_pod_metrics(vec![
        pod_metrics("shop", "app-5d8f7-a", "450m", "1600Mi"),
        pod_metrics("shop", "app-5d8f7-b", "120000000n", "1Gi"),
        pod_metrics("shop", "not-cached", "4", "64Gi"),
    ]);
    assert_eq!(cache.metrics_state(), MetricsState::Available);
    let view = cache.view();
    let (facts, _) = ClusterFacts::from_objects(&view.objects());
    let mut usage: Vec<_> = facts
        .pods
        .iter()
        .map(|p| {
            let usage = &p.facts.usage;
            (
                p.facts.name.as_str(),
                usage.cpu_millicores,
                usage.memory_bytes,
            )
        })
        .collect();
    usage.sort();
    assert_eq!(
        usage,
        [
            ("app-5d8f7-a", Some(450), Some(1600 << 20)),
            ("app-5d8f7-b", Some(120), Some(1 << 30))
        ]
    );
    assert_eq!(
        pass(&cache),
        [
            "Memory usage of pod app-5d8f7-a at 1600Mi (threshold 1536Mi)",
            "CPU usage of pod app-5d8f7-a at 450m (threshold 400m)",
        ]
    );
}

#[test]
fn the_cached_pod_keeps_what_triggers_need_and_nothing_else() {
    let json = full_pod("shop", "app", "app-5d8f7-a", true);
    let full: Pod = serde_json::from_value(json.clone()).unwrap();
    let mut cached: CachedPod = serde_json::from_value(json.clone()).unwrap();
    // The parser already skips managedFields and other tools' annotations:
    // they are never built, so never left behind as freed memory.
    assert_eq!(cached.metadata.managed_fields, None);
    assert_eq!(
        cached.metadata.annotations.as_ref().map(|a| a.len()),
        Some(1)
    );
    cached.strip();

    assert_eq!(cached.metadata.resource_version, None);
    let annotations = cached.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        ["kubeskippy.io/protected"],
        "kubectl's last-applied copy is gone, the floor's mark stays"
    );
    assert_eq!(cached.metadata.labels, full.metadata.labels);
    assert_eq!(cached.metadata.uid, full.metadata.uid);
    assert_eq!(
        cached.metadata.owner_references,
        full.metadata.owner_references
    );
    assert_kept_none_of(
        &cached,
        &[
            "s3cret",
            "volumeMounts",
            "livenessProbe",
            "emptyDir",
            "podIP",
            "containerd://",
        ],
    );

    // Stripping loses no fact the pipeline reads: a crash-looping pod, and one
    // the scheduler could not place.
    let facts_of = |pod: &CachedPod| {
        let objects = ClusterObjects {
            pods: vec![pod],
            ..Default::default()
        };
        let (facts, _) = ClusterFacts::from_objects(&objects);
        let record = facts.pods.into_iter().next().unwrap();
        let marks = record.marks();
        (
            record.facts,
            record.workload,
            marks.labels,
            marks.uid,
            record.states,
        )
    };
    let unstripped: CachedPod = serde_json::from_value(json).unwrap();
    assert_eq!(facts_of(&cached), facts_of(&unstripped));
    let (facts, workload, ..) = facts_of(&cached);
    let container = &facts.containers[0];
    assert_eq!(
        (
            facts.status_reason.as_deref(),
            facts.restart_count,
            container.waiting_message.as_deref(),
            container.last_termination_reason.as_deref(),
            container.last_exit_code,
            container.limits.memory_bytes,
            container.requests.cpu_millicores,
            facts.node.as_deref(),
            workload.name.as_str(),
        ),
        (
            Some("CrashLoopBackOff"),
            6,
            Some("back-off 5m0s restarting failed container"),
            Some("OOMKilled"),
            Some(137),
            Some(1 << 30),
            Some(250),
            Some("node-1"),
            "app-5d8f7",
        )
    );

    let mut pending = full_pod("shop", "app", "app-5d8f7-c", false);
    pending["status"] = json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient memory."}],
    });
    let unstripped: CachedPod = serde_json::from_value(pending.clone()).unwrap();
    let mut cached: CachedPod = serde_json::from_value(pending).unwrap();
    cached.strip();
    let (facts, ..) = facts_of(&cached);
    assert_eq!(facts.status_reason.as_deref(), Some("Unschedulable"));
    assert_eq!(facts.phase, "Pending");
    assert_eq!(facts_of(&cached), facts_of(&unstripped));
}

#[test]
fn stripping_an_event_keeps_every_fact_it_gives() {
    let json = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "app-5d8f7-a.oom", "namespace": "shop", "uid": "e-1", "resourceVersion": "77",
                     "creationTimestamp": "2026-11-26T08:00:00Z",
                     "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:count": {}}}]},
        "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "app-5d8f7-a", "uid": "uid-a", "apiVersion": "v1", "fieldPath": "spec.containers{app}"},
        "reason": "OOMKilling", "message": "Memory cgroup out of memory", "type": "Warning", "count": 4,
        "firstTimestamp": "2026-11-26T08:10:00Z", "lastTimestamp": "2026-11-26T08:40:00Z",
        "eventTime": "2026-11-26T08:10:00.000000Z",
        "series": {"count": 4, "lastObservedTime": "2026-11-26T08:50:00.000000Z"},
        "source": {"component": "kubelet", "host": "node-1"}, "reportingComponent": "kubelet",
    });
    let whole: CachedEvent = serde_json::from_value(json.clone()).unwrap();
    let mut cached: CachedEvent = serde_json::from_value(json).unwrap();
    cached.strip();
    assert_eq!(cached.metadata.managed_fields, None);
    assert_eq!(cached.metadata.uid, None);
    assert_eq!(cached.metadata.resource_version, None);
    assert_kept_none_of(&cached, &["kubelet", "node-1", "spec.containers"]);

    let read = |event: &CachedEvent| {
        let objects = ClusterObjects {
            events: vec![event],
            ..Default::default()
        };
        let (facts, _) = ClusterFacts::from_objects(&objects);
        let record = facts.events[0];
        (record.facts(), record.first_seen, record.last_seen)
    };
    let (facts, first_seen, last_seen) = read(&cached);
    assert_eq!(read(&whole), (facts.clone(), first_seen, last_seen));
    assert_eq!(
        (
            facts.reason.as_str(),
            facts.count,
            facts.involved.name.as_str()
        ),
        ("OOMKilling", 4, "app-5d8f7-a")
    );
    assert_eq!(
        (first_seen, last_seen),
        (
            Some(at("2026-11-26T08:10:00Z")),
            Some(at("2026-11-26T08:50:00Z"))
        ),
        "the series' last observation is the latest"
    );
}

/// None of `dropped` is left anywhere in what the cache keeps of `object`.
fn assert_kept_none_of(object: &impl serde::Serialize, dropped: &[&str]) {
    let text = serde_json::to_string(object).unwrap();
    for dropped in dropped {
        assert!(!text.contains(dropped), "{dropped} in {text}");
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn workloads_of_every_kind_give_their_replica_counts_and_containers() {
    let template = json!({"metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "main", "image": "x:1", "env": [{"name": "TOKEN", "value": "s3cret"}]},
                                {"name": "sidecar", "image": "proxy:1"}]}});
    let metadata = |name: &str| {
        json!({"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "kubeskippy.io/protected": "true"},
        "managedFields": [{"manager": "kubectl", "operation": "Apply"}]})
    };
    let mut stateful: CachedStatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata("db"),
        "spec": {"replicas": 3, "serviceName": "db", "selector": {}, "template": template,
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}}]},
        "status": {"replicas": 3, "readyReplicas": 2},
    }))
    .unwrap();
    let mut daemon: CachedDaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": metadata("agent"),
        "spec": {"selector": {}, "template": template},
        "status": {"desiredNumberScheduled": 5, "numberReady": 4, "currentNumberScheduled": 5, "numberMisscheduled": 0},
    }))
    .unwrap();
    let mut bare: CachedReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": metadata("batch"),
        "spec": {"selector": {}, "template": template},
    }))
    .unwrap();
    stateful.strip();
    daemon.strip();
    bare.strip();
    assert_eq!(stateful.metadata.managed_fields, None);
    assert_eq!(
        daemon
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["kubeskippy.io/protected"]
    );
    assert_kept_none_of(
        &stateful,
        &["s3cret", "proxy:1", "volumeClaimTemplates", "serviceName"],
    );

    let objects = ClusterObjects {
        stateful_sets: vec![&stateful],
        daemon_sets: vec![&daemon],
        replica_sets: vec![&bare],
        ..Default::default()
    };
    let (facts, _) = ClusterFacts::from_objects(&objects);
    let mut workloads: Vec<_> = facts
        .workloads
        .values()
        .map(|w| {
            (
                w.facts.target.kind.as_str(),
                w.facts.desired_replicas,
                w.facts.ready_replicas,
                w.facts.containers.clone(),
                w.marks.uid.clone(),
            )
        })
        .collect();
    workloads.sort();
    let containers = vec!["main".to_string(), "sidecar".to_string()];
    assert_eq!(
        workloads,
        [
            (
                "DaemonSet",
                Some(5),
                Some(4),
                containers.clone(),
                Some("uid-agent".into())
            ),
            (
                "ReplicaSet",
                Some(1),
                Some(0),
                containers.clone(),
                Some("uid-batch".into())
            ),
            (
                "StatefulSet",
                Some(3),
                Some(2),
                containers,
                Some("uid-db".into())
            ),
        ],
        "an unset replica count is the API's default of 1; a DaemonSet counts nodes"
    );
}

#[test]
fn nulls_and_left_out_fields_read_as_empty_as_the_api_types_read_them() {
    let pod: CachedPod = serde_json::from_value(json!({
        "metadata": {"name": "hand-written", "namespace": "shop", "labels": null},
        "spec": {"nodeName": null, "containers": [{"name": "app", "resources": null}, {"name": "sidecar", "resources": {"limits": null}}]},
        "status": {"phase": "Running", "conditions": null, "containerStatuses": [
            {"name": "app", "restartCount": 2, "state": null, "lastState": {"terminated": {"reason": "OOMKilled"}}},
            {"name": "sidecar", "ready": null, "restartCount": null, "state": {"waiting": null, "terminated": null}},
        ]},
    }))
    .unwrap();
    let objects = ClusterObjects {
        pods: vec![&pod],
        ..Default::default()
    };
    let (facts, problems) = ClusterFacts::from_objects(&objects);
    assert!(problems.is_empty(), "{problems:?}");
    let facts = &facts.pods[0].facts;
    assert_eq!(facts.restart_count, 2);
    assert_eq!(facts.status_reason.as_deref(), Some("OOMKilled"));
    assert_eq!(
        facts.containers[0].last_exit_code,
        Some(0),
        "k8s-openapi's default too"
    );
    assert_eq!(facts.containers[1].limits.memory_bytes, None);

    let event: CachedEvent = serde_json::from_value(json!({
        "metadata": {"name": "e", "namespace": "shop", "creationTimestamp": "2026-11-26T08:00:00Z"},
        "involvedObject": {"kind": "Pod", "name": "hand-written"},
        "reason": "BackOff", "count": null, "firstTimestamp": null, "lastTimestamp": null, "eventTime": null, "series": null,
    }))
    .unwrap();
    let workload: CachedDeployment = serde_json::from_value(json!({
        "metadata": {"name": "app", "namespace": "shop"},
        "spec": {"replicas": null, "template": {"metadata": {"creationTimestamp": null}, "spec": {"containers": null}}},
        "status": null,
    }))
    .unwrap();
    let objects = ClusterObjects {
        events: vec![&event],
        deployments: vec![&workload],
        ..Default::default()
    };
    let (facts, _) = ClusterFacts::from_objects(&objects);
    let record = facts.events[0];
    assert_eq!(
        (record.count, record.first_seen, record.last_seen),
        (
            1,
            Some(at("2026-11-26T08:00:00Z")),
            Some(at("2026-11-26T08:00:00Z"))
        ),
        "an event with no times of its own happened when it was created"
    );
    let deployment = facts.workloads.values().next().unwrap();
    assert_eq!(
        (
            deployment.facts.desired_replicas,
            deployment.facts.ready_replicas,
            deployment.facts.containers.len()
        ),
        (Some(1), Some(0), 0)
    );
}

#[test]
fn the_default_policy_still_fires_on_stripped_pods() {
    let (cache, mut writers) = shop_cache(vec![HealingPolicy::builtin_default()]);
    collect::fill(&mut writers.actions, []);
    writers.set_pod_metrics(vec![pod_metrics("shop", "app-5d8f7-a", "100m", "1000Mi")]);
    let view = cache.view();
    assert_eq!(
        view.pods[0].metadata.managed_fields, None,
        "filled stores are stripped"
    );
    let pass = first_pass(&view);
    assert_eq!(pass.incidents.len(), 1);
    let open = &pass.incidents[0];
    let mut triggers: Vec<&str> = open
        .incident
        .findings
        .iter()
        .map(|f| f.trigger.as_str())
        .collect();
    triggers.sort();
    assert_eq!(
        triggers,
        ["crash-loop", "memory-limit", "oom-killed", "restart-count"]
    );
    assert_eq!(open.incident.events.len(), 1);
    let (_, marks) = &open.pod_marks[0];
    assert_eq!(
        marks.annotations["kubeskippy.io/protected"], "true",
        "the floor still sees it"
    );
}

/// A stub API server: lists per path from `objects`, a watch that stays
/// open, and metrics.k8s.io answering 404 until `metrics` is set.
fn api_server(metrics: Arc<AtomicBool>) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |request: &Recorded| {
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        if query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
        {
            return Reply::Slow {
                delay: Duration::from_secs(60),
                body: String::new(),
            };
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let namespace = segments
            .iter()
            .position(|s| *s == "namespaces")
            .map(|i| segments[i + 1]);
        let list = |items: Vec<Value>| {
            Reply::Json {
            status: 200,
            body: json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "7"}, "items": items}).to_string(),
        }
        };
        if path.starts_with("/apis/metrics.k8s.io/") {
            if !metrics.load(Ordering::SeqCst) {
                return Reply::Json {
                    status: 404,
                    body: "404 page not found".into(),
                };
            }
            // Go writes an empty list's nil slice as `null`.
            if namespace == Some("b") {
                return Reply::Json {
                    status: 200,
                    body: json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetricsList", "metadata": {}, "items": null}).to_string(),
                };
            }
            let namespace = namespace.unwrap_or("a");
            return list(vec![json!({
                "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
                "metadata": {"name": format!("app-5d8f7-{namespace}"), "namespace": namespace},
                "timestamp": "2026-11-26T09:00:00Z", "window": "30s",
                "containers": [{"name": "app", "usage": {"cpu": "250m", "memory": "300Mi"}}],
            })]);
        }
        match (segments.last().copied(), namespace) {
            (Some("pods"), Some(namespace)) => list(vec![full_pod(
                namespace,
                "app",
                &format!("app-5d8f7-{namespace}"),
                false,
            )]),
            (Some("pods"), None) => list(
                ["a", "b", "c"]
                    .iter()
                    .map(|ns| full_pod(ns, "app", &format!("app-5d8f7-{ns}"), false))
                    .collect(),
            ),
            _ => list(Vec::new()),
        }
    }
}

async fn client_for(stub: &common::Stub) -> kube::Client {
    let config = kube::Config::new(stub.endpoint().parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn listed_namespaces_get_one_watcher_each_and_a_missing_metrics_api_is_a_state() {
    let metrics = Arc::new(AtomicBool::new(false));
    let stub = serve(api_server(metrics.clone())).await;
    let namespaces = ["a".to_string(), "b".to_string()];
    let (cache, run) = ClusterCache::start(
        client_for(&stub).await,
        &namespaces,
        Duration::from_millis(200),
        None,
    );
    let running = tokio::spawn(run);
    tokio::time::timeout(Duration::from_secs(10), cache.wait_ready())
        .await
        .expect("the stores fill from the initial lists")
        .unwrap();
    let mut pods: Vec<String> = cache
        .view()
        .pods
        .iter()
        .map(|p| p.metadata.namespace.clone().unwrap())
        .collect();
    pods.sort();
    assert_eq!(pods, ["a", "b"]);

    let metric_polls = || {
        stub.requests()
            .iter()
            .filter(|r| r.path.contains("metrics.k8s.io"))
            .count()
    };
    let before = metric_polls();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let polls = metric_polls() - before;
    // Two namespaces every 200 ms: about 11 requests in 1.1 s, not a tight loop.
    assert!((2..=14).contains(&polls), "{polls} requests in 1.1 s");
    let state = cache.metrics_state();
    assert!(
        matches!(&state, MetricsState::Unavailable(reason) if reason.contains("HTTP 404") && reason.contains("metrics-server")),
        "{state:?}"
    );
    let paths: Vec<String> = stub.requests().iter().map(|r| r.path.clone()).collect();
    for path in &paths {
        assert!(
            path.contains("/namespaces/a/") || path.contains("/namespaces/b/"),
            "only the listed namespaces are read: {path}"
        );
    }
    for resource in [
        "/api/v1/namespaces/a/pods",
        "/api/v1/namespaces/b/events",
        "/apis/apps/v1/namespaces/a/deployments",
        "/apis/apps/v1/namespaces/b/replicasets",
        "/apis/apps/v1/namespaces/a/statefulsets",
        "/apis/apps/v1/namespaces/b/daemonsets",
        "/apis/kubeskippy.io/v1alpha1/namespaces/a/healingpolicies",
        "/apis/kubeskippy.io/v1alpha1/namespaces/b/healingactions",
    ] {
        assert!(
            paths.iter().any(|p| p.starts_with(&format!("{resource}?"))),
            "{resource} was not listed"
        );
    }

    metrics.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(cache.metrics_state(), MetricsState::Available);
    let view = cache.view();
    let (facts, _) = ClusterFacts::from_objects(&view.objects());
    let mut usage: Vec<_> = facts
        .pods
        .iter()
        .map(|p| (p.facts.namespace.as_str(), p.facts.usage.memory_bytes))
        .collect();
    usage.sort();
    assert_eq!(usage, [("a", Some(300 << 20)), ("b", None)]);
    running.abort();
}

#[tokio::test]
async fn without_a_namespace_list_each_kind_is_watched_cluster_wide() {
    let stub = serve(api_server(Arc::new(AtomicBool::new(true)))).await;
    let (cache, run) =
        ClusterCache::start(client_for(&stub).await, &[], Duration::from_secs(60), None);
    let running = tokio::spawn(run);
    tokio::time::timeout(Duration::from_secs(10), cache.wait_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cache.view().pods.len(), 3);
    tokio::time::timeout(Duration::from_secs(10), async {
        while cache.metrics_state() == MetricsState::NotPolled {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(cache.metrics_state(), MetricsState::Available);
    let paths: Vec<String> = stub.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.iter().any(|p| p.starts_with("/api/v1/pods?")));
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/apis/metrics.k8s.io/v1beta1/pods"))
    );
    assert!(
        paths.iter().all(|p| !p.contains("/namespaces/")),
        "{paths:?}"
    );
    running.abort();
}

#[tokio::test]
async fn the_policies_prometheus_queries_are_polled_into_the_cache_and_fire() {
    const QUERY: &str = r#"sum by (namespace, pod) (rate(http_requests_total{code=~"5.."}[5m]))"#;
    let policy = json!({
        "apiVersion": "kubeskippy.io/v1alpha1", "kind": "ClusterHealingPolicy",
        "metadata": {"name": "errors", "resourceVersion": "1"},
        "spec": {"triggers": [{"name": "http-errors", "metric": {"name": "prometheus", "threshold": 0.5, "query": QUERY}}]},
    });
    let api = api_server(Arc::new(AtomicBool::new(true)));
    let api = serve(move |request: &Recorded| {
        let watching = request.path.contains("watch=");
        if request.path.contains("/clusterhealingpolicies") && !watching {
            return Reply::Json {
                status: 200,
                body: json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": [policy]}).to_string(),
            };
        }
        api(request)
    })
    .await;
    let prometheus = serve(|request: &Recorded| {
        assert!(
            request.path.starts_with("/api/v1/query?"),
            "{}",
            request.path
        );
        Reply::Json {
            status: 200,
            body: r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"namespace":"a","pod":"app-5d8f7-a"},"value":[1764147600.0,"0.75"]}]}}"#
                .into(),
        }
    })
    .await;
    let prometheus = Prometheus::new(&PrometheusConfig {
        url: prometheus.endpoint() + "/",
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    let (cache, run) = ClusterCache::start(
        client_for(&api).await,
        &[],
        Duration::from_millis(100),
        Some(prometheus),
    );
    let running = tokio::spawn(run);
    tokio::time::timeout(Duration::from_secs(10), async {
        while cache.view().queries.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the policy's query is polled once the policy is cached");

    let view = cache.view();
    let pass = evaluation::pass(
        &view.objects(),
        view.policies(),
        &mut TriggerMemory::new(),
        view.actions(),
        now(),
    )
    .unwrap();
    assert!(
        pass.policies[0].errors.is_empty(),
        "{:?}",
        pass.policies[0].errors
    );
    let findings: Vec<&str> = pass
        .incidents
        .iter()
        .flat_map(|open| &open.incident.findings)
        .map(|finding| finding.detail.as_str())
        .collect();
    assert_eq!(
        findings,
        [
            format!("Prometheus query {QUERY:?} is 0.75 for pod app-5d8f7-a (threshold 0.5)")
                .as_str()
        ]
    );
    running.abort();
}

#[tokio::test]
async fn a_malformed_metrics_list_is_a_state_that_names_the_field() {
    let healthy = api_server(Arc::new(AtomicBool::new(true)));
    let stub = serve(move |request: &Recorded| {
        if request.path.starts_with("/apis/metrics.k8s.io/") {
            return Reply::Json {
                status: 200,
                body: json!({"kind": "PodMetricsList", "items": [
                    {"metadata": {"name": "app", "namespace": "a"}, "containers": [{"name": "app", "usage": {"cpu": ["250m"]}}]},
                ]})
                .to_string(),
            };
        }
        healthy(request)
    })
    .await;
    let (cache, run) =
        ClusterCache::start(client_for(&stub).await, &[], Duration::from_secs(60), None);
    let running = tokio::spawn(run);
    tokio::time::timeout(Duration::from_secs(10), async {
        while cache.metrics_state() == MetricsState::NotPolled {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let state = cache.metrics_state();
    assert!(
        matches!(&state, MetricsState::Unavailable(reason)
            if reason.contains("/apis/metrics.k8s.io/v1beta1/pods is malformed at `items[0].containers[0].usage.cpu`")
            && !reason.contains('\n')),
        "{state:?}"
    );
    running.abort();
}

#[test]
fn metrics_are_read_down_to_their_identity_and_usage() {
    let metrics: PodMetrics = serde_json::from_value(json!({
        "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": "app", "namespace": "shop", "labels": {"a": "b"}, "creationTimestamp": "2026-11-26T09:00:00Z"},
        "timestamp": "2026-11-26T09:00:00Z", "window": "30s",
        "containers": [{"name": "app", "usage": {"cpu": "1", "memory": "1Gi", "swap": "0"}}],
    }))
    .unwrap();
    assert_eq!(
        metrics,
        PodMetrics {
            metadata: MetricsIdentity {
                name: Some("app".into()),
                namespace: Some("shop".into()),
            },
            containers: vec![ContainerMetrics {
                name: "app".into(),
                usage: CpuMemory {
                    cpu: Some(Quantity("1".into())),
                    memory: Some(Quantity("1Gi".into())),
                },
            }],
        }
    );
}
