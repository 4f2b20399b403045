//! `shop/app`: a Deployment with its ReplicaSet and two Ready pods, one of
//! them OOMKilled three times. The last kill is at 08:00, before the tests'
//! clocks start, so verification counts only the kills a test adds. The pods
//! carry the template's 512Mi memory limit because the rules size a memory
//! patch from the limits the pods run with, not from the template.

pub const YAML: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: shop, uid: uid-app, labels: {app: app}}
spec:
  replicas: 2
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
      - name: app
        image: registry.example.com/shop/app:1.4.2
        resources:
          limits: {memory: 512Mi}
status: {replicas: 2, readyReplicas: 2, availableReplicas: 2}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: app-6f9c7b8d4
  namespace: shop
  uid: uid-rs
  labels: {app: app, pod-template-hash: 6f9c7b8d4}
  ownerReferences:
  - {apiVersion: apps/v1, kind: Deployment, name: app, uid: uid-app, controller: true}
spec:
  replicas: 2
  selector: {matchLabels: {app: app, pod-template-hash: 6f9c7b8d4}}
  template:
    metadata: {labels: {app: app, pod-template-hash: 6f9c7b8d4}}
    spec:
      containers: [{name: app, image: registry.example.com/shop/app:1.4.2}]
---
apiVersion: v1
kind: Pod
metadata:
  name: app-6f9c7b8d4-2xkqp
  namespace: shop
  uid: uid-pod-1
  labels: {app: app, pod-template-hash: 6f9c7b8d4}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: app-6f9c7b8d4, uid: uid-rs, controller: true}
spec:
  containers:
  - name: app
    image: registry.example.com/shop/app:1.4.2
    resources:
      limits: {memory: 512Mi}
status:
  phase: Running
  conditions: [{type: Ready, status: "True"}]
  containerStatuses:
  - name: app
    ready: true
    restartCount: 3
    image: registry.example.com/shop/app:1.4.2
    imageID: ""
    lastState:
      terminated: {reason: OOMKilled, exitCode: 137, finishedAt: "2026-03-14T08:00:00Z"}
---
apiVersion: v1
kind: Pod
metadata:
  name: app-6f9c7b8d4-9mzlt
  namespace: shop
  uid: uid-pod-2
  labels: {app: app, pod-template-hash: 6f9c7b8d4}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: app-6f9c7b8d4, uid: uid-rs, controller: true}
spec:
  containers:
  - name: app
    image: registry.example.com/shop/app:1.4.2
    resources:
      limits: {memory: 512Mi}
status:
  phase: Running
  conditions: [{type: Ready, status: "True"}]
  containerStatuses:
  - {name: app, ready: true, restartCount: 0, image: "registry.example.com/shop/app:1.4.2", imageID: ""}
"#;

pub const APP: &str = "/apis/apps/v1/namespaces/shop/deployments/app";
pub const POD_1: &str = "/api/v1/namespaces/shop/pods/app-6f9c7b8d4-2xkqp";
