//! Synthetic clusters for benchmarks: many Deployments with a few troubled
//! pods, as YAML text (so measurements include parsing like a real snapshot)
//! or as typed objects (to feed reflector stores like the daemon's).

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};

use crate::core::crd::policy::{HealingPolicy, Trigger};
use crate::core::objects::PodMetrics;
use crate::core::objects::{CachedDeployment, CachedEvent, CachedPod, CachedReplicaSet};

/// A snapshot of `pods` pods in Deployments of ten; every twentieth Deployment
/// has one OOM-killed pod in a crash loop with events and metrics.
pub fn snapshot_yaml(pods: usize) -> String {
    let mut out = String::with_capacity(pods * 1600);
    let deployments = pods.div_ceil(10);
    for d in 0..deployments {
        let namespace = format!("team-{}", d % 25);
        let app = format!("svc-{d}");
        let troubled = d % 20 == 0;
        let _ = write!(
            out,
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\n  namespace: {namespace}\n  uid: d-{d}\n  labels: {{app: {app}}}\nspec:\n  replicas: 10\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec:\n      containers:\n      - name: main\n        image: example/{app}:1.0\n        resources: {{limits: {{cpu: 500m, memory: 256Mi}}, requests: {{cpu: 100m, memory: 128Mi}}}}\nstatus: {{replicas: 10, readyReplicas: {}}}\n---\napiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {app}-5d8f7\n  namespace: {namespace}\n  uid: rs-{d}\n  ownerReferences: [{{apiVersion: apps/v1, kind: Deployment, name: {app}, uid: d-{d}, controller: true}}]\nspec:\n  replicas: 10\n  selector: {{matchLabels: {{app: {app}}}}}\n",
            if troubled { 9 } else { 10 }
        );
        for p in 0..10.min(pods - d * 10) {
            let pod = format!("{app}-5d8f7-p{p}");
            let crashing = troubled && p == 0;
            let (state, last, restarts) = if crashing {
                (
                    "waiting: {reason: CrashLoopBackOff, message: back-off 5m0s restarting failed container}",
                    "\n    lastState: {terminated: {reason: OOMKilled, exitCode: 137}}",
                    7,
                )
            } else {
                ("running: {startedAt: '2026-11-26T08:00:00Z'}", "", 0)
            };
            let _ = write!(
                out,
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {namespace}\n  uid: p-{d}-{p}\n  labels: {{app: {app}, pod-template-hash: 5d8f7}}\n  ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: {app}-5d8f7, uid: rs-{d}, controller: true}}]\nspec:\n  nodeName: node-{}\n  containers:\n  - name: main\n    image: example/{app}:1.0\n    env: [{{name: API_TOKEN, value: synthetic-secret}}]\n    resources: {{limits: {{cpu: 500m, memory: 256Mi}}, requests: {{cpu: 100m, memory: 128Mi}}}}\nstatus:\n  phase: Running\n  containerStatuses:\n  - name: main\n    image: example/{app}:1.0\n    imageID: ''\n    ready: {}\n    restartCount: {restarts}\n    state: {{{state}}}{last}\n",
                d % 50,
                !crashing
            );
            let memory = if crashing { "250Mi" } else { "120Mi" };
            let _ = write!(
                out,
                "---\napiVersion: metrics.k8s.io/v1beta1\nkind: PodMetrics\nmetadata: {{name: {pod}, namespace: {namespace}}}\ntimestamp: '2026-11-26T09:00:00Z'\nwindow: 30s\ncontainers:\n- name: main\n  usage: {{cpu: 123456789n, memory: {memory}}}\n"
            );
            if crashing {
                // Event names are the object's name and a hex suffix, as the
                // API server's recorders write them.
                for (reason, count, event_id) in
                    [("BackOff", 40, "17a3c1"), ("OOMKilling", 7, "17a3c2")]
                {
                    let _ = write!(
                        out,
                        "---\napiVersion: v1\nkind: Event\nmetadata: {{name: {pod}.{event_id}, namespace: {namespace}}}\ninvolvedObject: {{kind: Pod, namespace: {namespace}, name: {pod}, apiVersion: v1}}\nreason: {reason}\nmessage: Back-off restarting failed container main\ntype: Warning\ncount: {count}\n"
                    );
                }
            }
        }
    }
    out
}

/// A synthetic cluster as typed objects, read from what the API server
/// serves (managedFields, the last-applied annotation, env, probes, volumes)
/// the way the cache's watchers read it, for benchmarks that feed reflector
/// stores directly.
pub struct Cluster {
    pub pods: Vec<CachedPod>,
    pub events: Vec<CachedEvent>,
    pub deployments: Vec<CachedDeployment>,
    pub replica_sets: Vec<CachedReplicaSet>,
    pub pod_metrics: Vec<PodMetrics>,
}

/// `pods` pods in Deployments of ten over 25 namespaces, three events per
/// pod (Scheduled, Pulled, Started) in the hour before `now`; every twentieth
/// Deployment has one OOM-killed pod in a crash loop whose events are
/// BackOff and OOMKilling warnings instead.
pub fn cluster(pods: usize, now: DateTime<Utc>) -> Cluster {
    let mut cluster = Cluster {
        pods: Vec::with_capacity(pods),
        events: Vec::with_capacity(pods * 3),
        deployments: Vec::new(),
        replica_sets: Vec::new(),
        pod_metrics: Vec::with_capacity(pods),
    };
    for part in cluster_parts(pods, now) {
        cluster.pods.extend(part.pods);
        cluster.events.extend(part.events);
        cluster.deployments.extend(part.deployments);
        cluster.replica_sets.extend(part.replica_sets);
        cluster.pod_metrics.extend(part.pod_metrics);
    }
    cluster
}

/// [`cluster`] one Deployment at a time, so a consumer that keeps only a
/// stripped copy never holds the whole cluster at full size.
pub fn cluster_parts(pods: usize, now: DateTime<Utc>) -> impl Iterator<Item = Cluster> {
    (0..pods.div_ceil(10)).map(move |d| deployment_part(d, 10.min(pods - d * 10), now))
}

fn deployment_part(d: usize, pods: usize, now: DateTime<Utc>) -> Cluster {
    let mut cluster = Cluster {
        pods: Vec::new(),
        events: Vec::new(),
        deployments: Vec::new(),
        replica_sets: Vec::new(),
        pod_metrics: Vec::new(),
    };
    let at = |minutes_ago: i64| (now - chrono::Duration::minutes(minutes_ago)).to_rfc3339();
    let namespace = format!("team-{}", d % 25);
    let app = format!("svc-{d}");
    let troubled = d.is_multiple_of(20);
    let template = json!({
        "metadata": {"labels": {"app": app, "tier": if d.is_multiple_of(2) { "web" } else { "worker" }}},
        "spec": {"containers": [full_container(&app)], "volumes": volumes()},
    });
    cluster.deployments.push(typed(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": full_metadata(&app, &namespace, &format!("d-{d}"), json!({"app": app}), None),
        "spec": {"replicas": 10, "selector": {"matchLabels": {"app": app}}, "template": template},
        "status": {"replicas": 10, "readyReplicas": if troubled { 9 } else { 10 }},
    })));
    // The current ReplicaSet and two earlier revisions scaled to zero, as a
    // Deployment keeps them for rollbacks.
    for (hash, replicas) in [("5d8f7", 10), ("4c7e6", 0), ("3b6d5", 0)] {
        let name = format!("{app}-{hash}");
        cluster.replica_sets.push(typed(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": full_metadata(&name, &namespace, &format!("rs-{d}-{hash}"), json!({"app": app, "pod-template-hash": hash}),
                Some(json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": app, "uid": format!("d-{d}"), "controller": true}))),
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}}, "template": template},
            "status": {"replicas": replicas},
        })));
    }
    let replica_set = format!("{app}-5d8f7");
    for p in 0..pods {
        let pod = format!("{replica_set}-p{p}");
        let crashing = troubled && p == 0;
        let (state, last_state, restarts) = if crashing {
            (
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}}),
                json!({"terminated": {"reason": "OOMKilled", "exitCode": 137}}),
                7,
            )
        } else {
            (json!({"running": {"startedAt": at(60)}}), json!({}), 0)
        };
        let conditions: Vec<Value> = ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
            .iter()
            .map(|c| {
                let holds = !crashing || *c == "PodScheduled" || *c == "Initialized";
                json!({"type": c, "status": if holds { "True" } else { "False" }, "lastTransitionTime": at(60)})
            })
            .collect();
        cluster.pods.push(typed(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": full_metadata(&pod, &namespace, &format!("p-{d}-{p}"), json!({"app": app, "pod-template-hash": "5d8f7"}),
                Some(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set, "uid": format!("rs-{d}-5d8f7"), "controller": true}))),
            "spec": {
                "nodeName": format!("node-{}", d % 50),
                "containers": [full_container(&app)],
                "volumes": volumes(),
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                ],
                "serviceAccountName": "default",
            },
            "status": {
                "phase": "Running",
                "hostIP": "10.0.0.1", "podIP": "10.1.2.3", "podIPs": [{"ip": "10.1.2.3"}],
                "qosClass": "Burstable", "startTime": at(60),
                "conditions": conditions,
                "containerStatuses": [{
                    "name": "main", "image": format!("registry.example.com/{app}:1.0"),
                    "imageID": format!("registry.example.com/{app}@sha256:4b6f1c3e2d8a9f7e5c1b0a3d6e8f2c4a7b9d1e3f5a6c8b0d2e4f6a8c0b2d4e6f"),
                    "containerID": "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                    "ready": !crashing, "started": !crashing, "restartCount": restarts,
                    "state": state, "lastState": last_state,
                }],
            },
        })));
        cluster.pod_metrics.push(typed(json!({
            "metadata": {"name": pod, "namespace": namespace, "creationTimestamp": at(0)},
            "timestamp": at(0), "window": "30s",
            "containers": [{
                "name": "main",
                "usage": {"cpu": "123456789n", "memory": if crashing { "250Mi" } else { "120Mi" }},
            }],
        })));
        let events: [(&str, &str, i32, i64, &str); 3] = if crashing {
            [
                (
                    "Warning",
                    "BackOff",
                    40,
                    55,
                    "Back-off restarting failed container main",
                ),
                (
                    "Warning",
                    "OOMKilling",
                    7,
                    50,
                    "Memory cgroup out of memory: Killed process 4242 (main)",
                ),
                ("Normal", "Started", 8, 60, "Started container main"),
            ]
        } else {
            [
                (
                    "Normal",
                    "Scheduled",
                    1,
                    60,
                    "Successfully assigned the pod to a node",
                ),
                (
                    "Normal",
                    "Pulled",
                    1,
                    60,
                    "Container image already present on machine",
                ),
                ("Normal", "Started", 1, 60, "Started container main"),
            ]
        };
        for (event_type, reason, count, first, message) in events {
            let name = format!("{pod}.{}", reason.to_lowercase());
            cluster.events.push(typed(json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace, "uid": format!("e-{name}"), "resourceVersion": "1", "creationTimestamp": at(first),
                    "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": at(first), "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:count": {}, "f:firstTimestamp": {}, "f:involvedObject": {}, "f:lastTimestamp": {}, "f:message": {}, "f:reason": {}, "f:source": {"f:component": {}, "f:host": {}}, "f:type": {}}}]},
                "involvedObject": {"kind": "Pod", "namespace": namespace, "name": pod, "uid": format!("p-{d}-{p}"), "apiVersion": "v1", "resourceVersion": "1234", "fieldPath": "spec.containers{main}"},
                "reason": reason, "message": message, "type": event_type, "count": count,
                "firstTimestamp": at(first), "lastTimestamp": at(if count > 1 { 1 } else { first }),
                "source": {"component": "kubelet", "host": format!("node-{}", d % 50)},
                "reportingComponent": "kubelet", "reportingInstance": format!("node-{}", d % 50),
            })));
        }
    }
    cluster
}

/// Read from JSON bytes, as a watcher reads the API server's reply: fields
/// the type does not keep are skipped without being built.
fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    let bytes = serde_json::to_vec(&value).expect("a JSON value serialises");
    drop(value);
    serde_json::from_slice(&bytes).expect("synthetic objects are well-formed")
}

/// Metadata as the API server returns it after `kubectl apply`.
fn full_metadata(
    name: &str,
    namespace: &str,
    uid: &str,
    labels: Value,
    owner: Option<Value>,
) -> Value {
    let applied = json!({"apiVersion": "v1", "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": {"note": "the whole object as last applied, kept by kubectl"}}).to_string();
    let mut metadata = json!({
        "name": name, "namespace": namespace, "uid": uid, "resourceVersion": "123456",
        "creationTimestamp": "2026-11-26T08:00:00Z", "labels": labels,
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": applied.repeat(4),
            "team.example.com/owner": "platform",
        },
        "managedFields": [
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1", "time": "2026-11-26T08:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}, "f:labels": {".": {}, "f:app": {}}},
                          "f:spec": {"f:containers": {"k:{\"name\":\"main\"}": {".": {}, "f:env": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {}, "f:resources": {}}}}}},
            {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-26T08:00:05Z", "fieldsType": "FieldsV1", "subresource": "status",
             "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}}
        ],
    });
    if let Some(owner) = owner {
        metadata["ownerReferences"] = json!([owner]);
    }
    metadata
}

fn full_container(app: &str) -> Value {
    json!({
        "name": "main",
        "image": format!("registry.example.com/{app}:1.0"),
        "imagePullPolicy": "IfNotPresent",
        "command": ["/app/server"], "args": ["--port=8080", "--log-level=info"],
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}, {"containerPort": 9090, "name": "metrics", "protocol": "TCP"}],
        "env": (0..6).map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}-synthetic-secret")})).collect::<Vec<_>>(),
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app"},
            {"name": "data", "mountPath": "/var/lib/app"},
            {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
        ],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    })
}

fn volumes() -> Value {
    json!([
        {"name": "config", "configMap": {"name": "app-config", "defaultMode": 420}},
        {"name": "data", "emptyDir": {}},
        {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]}}
    ])
}

/// `count` policies that overlap: each of the first ones covers a few
/// namespaces and a tier, the last ones the whole cluster; all carry the
/// default policy's triggers plus an event window, an error-event rate and a
/// duration on the crash loop, so every kind of trigger is evaluated.
pub fn policies(count: usize) -> Vec<HealingPolicy> {
    (0..count)
        .map(|i| {
            let mut policy = HealingPolicy::builtin_default();
            policy.metadata.name = Some(format!("policy-{i:02}"));
            policy.metadata.namespace = Some("kubeskippy-system".into());
            let selector = &mut policy.spec.selector;
            if i + 2 < count {
                selector.namespaces = (0..3).map(|n| format!("team-{}", (i * 3 + n) % 25)).collect();
                selector.label_selector = Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "tier".to_string(),
                        if i.is_multiple_of(2) { "web" } else { "worker" }.to_string(),
                    )])),
                    ..LabelSelector::default()
                });
            }
            let extra: Vec<Trigger> = serde_json::from_value(json!([
                {"name": "warnings", "event": {"reason": "BackOff|OOM.*|Failed.*", "minCount": 5, "window": "30m"}},
                {"name": "error-rate", "metric": {"name": "errorEventRate", "threshold": 0.5, "window": "10m"}},
                {"name": "memory-absolute", "metric": {"name": "memoryBytes", "threshold": "240Mi", "duration": "2m"}},
            ]))
            .expect("the extra triggers are well-formed");
            policy.spec.triggers.extend(extra);
            for trigger in &mut policy.spec.triggers {
                if let Some(condition) = &mut trigger.condition
                    && trigger.name == "crash-loop"
                {
                    condition.duration = Some("3m".into());
                }
            }
            policy
        })
        .collect()
}
