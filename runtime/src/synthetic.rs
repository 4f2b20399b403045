//! Synthetic clusters for benchmarks: many Deployments with a few troubled
//! pods, as YAML text, so measurements include parsing like a real snapshot.

use std::fmt::Write;

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
                for (reason, count) in [("BackOff", 40), ("OOMKilling", 7)] {
                    let _ = write!(
                        out,
                        "---\napiVersion: v1\nkind: Event\nmetadata: {{name: {pod}.{reason}, namespace: {namespace}}}\ninvolvedObject: {{kind: Pod, namespace: {namespace}, name: {pod}, apiVersion: v1}}\nreason: {reason}\nmessage: Back-off restarting failed container main\ntype: Warning\ncount: {count}\n"
                    );
                }
            }
        }
    }
    out
}
