//! Each executor against the in-memory API server, seeded with a small shop:
//! a Deployment `shop/app` (containers `app` and `log-shipper`) with two pods
//! and a PodDisruptionBudget that allows no disruption, a Deployment `shop/web`
//! an HPA controls, a StatefulSet, a DaemonSet, and a bare pod.

#[path = "common/fake_api.rs"]
mod fake_api;

use chrono::{DateTime, Utc};
use fake_api::FakeApi;
use kubeskippy::execute::{
    self, DryRun, ExecuteError, Limits, Outcome, PatchKind, execute_with, rollback,
};
use kubeskippy::wit::{Action, ObjectRef, Patch, ResourcePatch};
use serde_json::{Value, json};

const SHOP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: shop
  labels: {app: app}
spec:
  replicas: 2
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      containers:
      - name: app
        image: registry.example.com/shop/app:1.4.2
        ports:
        - containerPort: 8080
        resources:
          limits: {cpu: 500m, memory: 512Mi}
          requests: {cpu: 250m, memory: 256Mi}
      - name: log-shipper
        image: fluent/fluent-bit:3.1
        resources:
          limits: {memory: 64Mi}
status:
  replicas: 2
  readyReplicas: 2
---
apiVersion: v1
kind: Pod
metadata:
  name: app-6f9c7b8d4-2xkqp
  namespace: shop
  labels: {app: app, pod-template-hash: 6f9c7b8d4}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: app-6f9c7b8d4, uid: rs-1, controller: true}
spec:
  containers:
  - name: app
    image: registry.example.com/shop/app:1.4.2
status:
  phase: Running
---
apiVersion: v1
kind: Pod
metadata:
  name: app-6f9c7b8d4-9mzlt
  namespace: shop
  labels: {app: app, pod-template-hash: 6f9c7b8d4}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: app-6f9c7b8d4, uid: rs-1, controller: true}
spec:
  containers:
  - name: app
    image: registry.example.com/shop/app:1.4.2
status:
  phase: Running
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: app
  namespace: shop
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: app}
status:
  currentHealthy: 2
  desiredHealthy: 2
  disruptionsAllowed: 0
  expectedPods: 2
---
apiVersion: v1
kind: Pod
metadata:
  name: debug
  namespace: shop
  labels: {run: debug}
spec:
  containers:
  - name: shell
    image: busybox:1.36
    command: [sleep, infinity]
status:
  phase: Running
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: shop
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 70}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: shop
spec:
  replicas: 3
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: postgres
        image: postgres:17
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
  namespace: shop
spec:
  selector:
    matchLabels: {app: node-agent}
  template:
    metadata:
      labels: {app: node-agent}
    spec:
      containers:
      - name: agent
        image: registry.example.com/node-agent:2.0
"#;

const APP: &str = "/apis/apps/v1/namespaces/shop/deployments/app";
const WEB: &str = "/apis/apps/v1/namespaces/shop/deployments/web";
const DB: &str = "/apis/apps/v1/namespaces/shop/statefulsets/db";
const AGENT: &str = "/apis/apps/v1/namespaces/shop/daemonsets/node-agent";
const PODS: &str = "/api/v1/namespaces/shop/pods";
const APP_POD: &str = "app-6f9c7b8d4-2xkqp";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const GI: u64 = 1 << 30;
const MI: u64 = 1 << 20;

fn shop() -> (FakeApi, kube::Client) {
    let fake = FakeApi::new();
    fake.seed_yaml(SHOP);
    let client = fake.client();
    (fake, client)
}

fn target(kind: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: kind.into(),
        namespace: "shop".into(),
        name: name.into(),
    }
}

fn now() -> DateTime<Utc> {
    "2026-03-14T09:26:53Z".parse().expect("RFC 3339")
}

async fn run(
    client: &kube::Client,
    target: &ObjectRef,
    action: &Action,
    mode: DryRun,
    limits: Limits,
) -> Result<Outcome, ExecuteError> {
    execute_with(client, target, action, mode, &limits, &now()).await
}

fn memory_patch(container: &str, bytes: u64) -> Action {
    Action::Patch(Patch::Resources(ResourcePatch {
        container: container.into(),
        cpu_limit_millicores: None,
        cpu_request_millicores: None,
        memory_limit_bytes: Some(bytes),
        memory_request_bytes: None,
    }))
}

fn container<'a>(object: &'a Value, name: &str) -> &'a Value {
    object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|container| container["name"] == name)
        .unwrap_or_else(|| panic!("container {name} in {object}"))
}

fn stored(fake: &FakeApi, path: &str) -> Value {
    fake.get(path).unwrap_or_else(|| panic!("{path} is stored"))
}

fn refusal(result: Result<Outcome, ExecuteError>) -> String {
    match result {
        Err(ExecuteError::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ---- restart ----

#[tokio::test]
async fn restart_stamps_the_pod_template_of_a_deployment() {
    let (fake, client) = shop();
    let before = stored(&fake, APP);

    let outcome = run(
        &client,
        &target("Deployment", "app"),
        &Action::Restart,
        DryRun::Off,
        Limits::default(),
    )
    .await
    .unwrap();

    let after = stored(&fake, APP);
    assert_eq!(
        after["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT],
        "2026-03-14T09:26:53Z"
    );
    assert_eq!(
        after["spec"]["template"]["metadata"]["labels"],
        before["spec"]["template"]["metadata"]["labels"]
    );
    assert_eq!(
        after["spec"]["template"]["spec"],
        before["spec"]["template"]["spec"]
    );
    assert_eq!(
        fake.request_lines(),
        [format!("PATCH {APP}?&fieldManager=kubeskippy")]
    );
    let request = &fake.requests()[0];
    assert_eq!(
        request.content_type,
        "application/strategic-merge-patch+json"
    );
    assert_eq!(
        request.body,
        json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2026-03-14T09:26:53Z"}}}}})
    );
    assert_eq!(outcome.original, None);
    assert_eq!(outcome.dry_run_result, None);
    assert!(
        outcome.message.contains("Deployment shop/app"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn restart_stamps_statefulsets_and_daemonsets() {
    let (fake, client) = shop();
    for (kind, name, path) in [
        ("StatefulSet", "db", DB),
        ("DaemonSet", "node-agent", AGENT),
    ] {
        run(
            &client,
            &target(kind, name),
            &Action::Restart,
            DryRun::Off,
            Limits::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            stored(&fake, path)["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT],
            "2026-03-14T09:26:53Z",
            "{kind}"
        );
    }
    assert_eq!(
        fake.request_lines(),
        [
            format!("PATCH {DB}?&fieldManager=kubeskippy"),
            format!("PATCH {AGENT}?&fieldManager=kubeskippy"),
        ]
    );
}

#[tokio::test]
async fn restart_of_a_bare_pod_deletes_it() {
    let (fake, client) = shop();
    let outcome = execute::execute(
        &client,
        &target("Pod", "debug"),
        &Action::Restart,
        DryRun::Off,
    )
    .await
    .unwrap();
    assert!(fake.get(&format!("{PODS}/debug")).is_none());
    assert_eq!(fake.request_lines(), [format!("DELETE {PODS}/debug")]);
    assert!(!fake.requests()[0].dry_run());
    assert_eq!(outcome.original, None);
}

#[tokio::test]
async fn restart_of_a_missing_workload_is_not_found() {
    let (_fake, client) = shop();
    let error = run(
        &client,
        &target("Deployment", "gone"),
        &Action::Restart,
        DryRun::Off,
        Limits::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        error,
        ExecuteError::NotFound {
            target: "Deployment shop/gone".into()
        }
    );
}

// ---- scale ----

#[tokio::test]
async fn scale_goes_through_the_scale_subresource_and_rolls_back() {
    let (fake, client) = shop();
    let app = target("Deployment", "app");
    let action = Action::Scale(5);

    let outcome = run(&client, &app, &action, DryRun::Off, Limits::default())
        .await
        .unwrap();

    assert_eq!(stored(&fake, APP)["spec"]["replicas"], 5);
    assert_eq!(outcome.original, Some(json!({"replicas": 2})));
    assert_eq!(
        outcome.message,
        "scale Deployment shop/app from 2 to 5 replicas"
    );
    assert_eq!(
        fake.request_lines(),
        [
            format!("GET {HPAS}"),
            format!("GET {APP}/scale"),
            format!("PATCH {APP}/scale?&fieldManager=kubeskippy"),
        ]
    );
    let patch = &fake.requests()[2];
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(patch.body, json!({"spec": {"replicas": 5}}));

    fake.clear_requests();
    rollback(&client, &app, &action, outcome.original.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(stored(&fake, APP)["spec"]["replicas"], 2);
    assert_eq!(
        fake.request_lines(),
        [format!("PATCH {APP}/scale?&fieldManager=kubeskippy")]
    );
}

#[tokio::test]
async fn scale_of_a_statefulset_records_and_restores_its_count() {
    let (fake, client) = shop();
    let db = target("StatefulSet", "db");
    let outcome = run(
        &client,
        &db,
        &Action::Scale(0),
        DryRun::Off,
        Limits::default(),
    )
    .await
    .unwrap();
    assert_eq!(stored(&fake, DB)["spec"]["replicas"], 0);
    assert_eq!(outcome.original, Some(json!({"replicas": 3})));

    // Scaled to zero, the Scale omits replicas; rolling back from there
    // and recording zero as the previous count must both work.
    let again = run(
        &client,
        &db,
        &Action::Scale(1),
        DryRun::Off,
        Limits::default(),
    )
    .await
    .unwrap();
    assert_eq!(again.original, Some(json!({"replicas": 0})));
    rollback(&client, &db, &Action::Scale(0), &json!({"replicas": 3}))
        .await
        .unwrap();
    assert_eq!(stored(&fake, DB)["spec"]["replicas"], 3);
}

#[tokio::test]
async fn scale_is_refused_when_an_hpa_controls_the_workload() {
    let (fake, client) = shop();
    let reason = refusal(
        run(
            &client,
            &target("Deployment", "web"),
            &Action::Scale(6),
            DryRun::Off,
            Limits::default(),
        )
        .await,
    );
    assert_eq!(
        reason,
        "HPA web controls Deployment/web; scaling by hand would be undone"
    );
    assert_eq!(stored(&fake, WEB)["spec"]["replicas"], 3);
    assert_eq!(fake.request_lines(), [format!("GET {HPAS}")]);
}

#[tokio::test]
async fn scale_is_refused_outside_the_bounds_before_calling_the_api() {
    let (fake, client) = shop();
    let app = target("Deployment", "app");
    let bounds = Limits {
        replicas: Some((1, 4)),
        ..Limits::default()
    };
    for replicas in [0, 5] {
        let reason =
            refusal(run(&client, &app, &Action::Scale(replicas), DryRun::Off, bounds).await);
        assert_eq!(
            reason,
            format!("{replicas} replicas is outside the allowed range 1..=4")
        );
    }
    assert!(fake.requests().is_empty(), "{:?}", fake.request_lines());
    assert_eq!(stored(&fake, APP)["spec"]["replicas"], 2);

    run(&client, &app, &Action::Scale(4), DryRun::Off, bounds)
        .await
        .unwrap();
    assert_eq!(stored(&fake, APP)["spec"]["replicas"], 4);
}

#[tokio::test]
async fn scale_of_a_daemonset_or_pod_is_unsupported() {
    let (fake, client) = shop();
    for (kind, name) in [
        ("DaemonSet", "node-agent"),
        ("Pod", "debug"),
        ("CronJob", "nightly"),
    ] {
        let error = run(
            &client,
            &target(kind, name),
            &Action::Scale(2),
            DryRun::Off,
            Limits::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            error,
            ExecuteError::Unsupported {
                target: format!("{kind} shop/{name}"),
                action: "scale".into()
            }
        );
    }
    assert!(fake.requests().is_empty());
}

// ---- resource patch ----

#[tokio::test]
async fn resource_patch_changes_only_the_named_container_and_rolls_back() {
    let (fake, client) = shop();
    let app = target("Deployment", "app");
    let before = stored(&fake, APP);
    let action = memory_patch("app", 2 * GI);

    let outcome = run(&client, &app, &action, DryRun::Off, Limits::default())
        .await
        .unwrap();

    let after = stored(&fake, APP);
    assert_eq!(
        container(&after, "app")["resources"],
        json!({"limits": {"cpu": "500m", "memory": "2Gi"}, "requests": {"cpu": "250m", "memory": "256Mi"}})
    );
    assert_eq!(
        container(&after, "app")["image"],
        "registry.example.com/shop/app:1.4.2"
    );
    assert_eq!(
        container(&after, "log-shipper"),
        container(&before, "log-shipper")
    );
    assert_eq!(
        outcome.original,
        Some(json!({"container": "app", "resources": container(&before, "app")["resources"]}))
    );
    assert_eq!(
        outcome.message,
        "set limits.memory=2Gi of container app in Deployment shop/app"
    );
    assert_eq!(
        fake.request_lines(),
        [
            format!("GET {APP}"),
            format!("PATCH {APP}?&fieldManager=kubeskippy")
        ]
    );
    let patch = &fake.requests()[1];
    assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
    assert_eq!(
        patch.body,
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "resources": {"limits": {"memory": "2Gi"}}}
        ]}}}})
    );

    rollback(&client, &app, &action, outcome.original.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(stored(&fake, APP)["spec"], before["spec"]);
}

#[tokio::test]
async fn resource_rollback_removes_limits_and_requests_the_patch_added() {
    let (fake, client) = shop();
    let app = target("Deployment", "app");
    let before = stored(&fake, APP);
    let action = Action::Patch(Patch::Resources(ResourcePatch {
        container: "log-shipper".into(),
        cpu_limit_millicores: Some(200),
        cpu_request_millicores: Some(50),
        memory_limit_bytes: Some(128 * MI),
        memory_request_bytes: Some(32 * MI),
    }));

    let outcome = run(&client, &app, &action, DryRun::Off, Limits::default())
        .await
        .unwrap();
    assert_eq!(
        container(&stored(&fake, APP), "log-shipper")["resources"],
        json!({"limits": {"cpu": "200m", "memory": "128Mi"}, "requests": {"cpu": "50m", "memory": "32Mi"}})
    );

    fake.clear_requests();
    rollback(&client, &app, &action, outcome.original.as_ref().unwrap())
        .await
        .unwrap();
    let after = stored(&fake, APP);
    assert_eq!(
        container(&after, "log-shipper")["resources"],
        json!({"limits": {"memory": "64Mi"}})
    );
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(
        fake.requests()[1].body,
        json!({"spec": {"template": {"spec": {"containers": [{
            "name": "log-shipper",
            "resources": {"limits": {"cpu": null, "memory": "64Mi"}, "requests": null}
        }]}}}})
    );

    // Nothing left to undo: no write.
    fake.clear_requests();
    let again = rollback(&client, &app, &action, outcome.original.as_ref().unwrap())
        .await
        .unwrap();
    assert!(
        again.message.contains("already as before"),
        "{}",
        again.message
    );
    assert_eq!(fake.request_lines(), [format!("GET {APP}")]);
}

#[tokio::test]
async fn resource_patch_enforces_the_memory_maximum() {
    let (fake, client) = shop();
    let app = target("Deployment", "app");
    let limits = Limits {
        max_memory_bytes: Some(GI),
        ..Limits::default()
    };
    let reason = refusal(
        run(
            &client,
            &app,
            &memory_patch("app", 2 * GI),
            DryRun::Off,
            limits,
        )
        .await,
    );
    assert_eq!(
        reason,
        "memory limit 2Gi for container app exceeds the maximum 1Gi"
    );
    assert!(fake.requests().is_empty());
    assert_eq!(
        container(&stored(&fake, APP), "app")["resources"]["limits"]["memory"],
        "512Mi"
    );

    run(&client, &app, &memory_patch("app", GI), DryRun::Off, limits)
        .await
        .unwrap();
    assert_eq!(
        container(&stored(&fake, APP), "app")["resources"]["limits"]["memory"],
        "1Gi"
    );
}

#[tokio::test]
async fn resource_patch_of_a_missing_container_or_a_bare_pod_is_an_error() {
    let (fake, client) = shop();
    let error = run(
        &client,
        &target("Deployment", "app"),
        &memory_patch("sidecar", GI),
        DryRun::Off,
        Limits::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "container sidecar in Deployment shop/app not found"
    );
    let error = run(
        &client,
        &target("Pod", "debug"),
        &memory_patch("shell", GI),
        DryRun::Off,
        Limits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ExecuteError::Unsupported { .. }),
        "{error:?}"
    );
    assert_eq!(fake.request_lines(), [format!("GET {APP}")]);
}

// ---- raw patch documents ----

const ADD_ENV: &str = r#"
spec:
  template:
    metadata:
      labels:
        healed-by: kubeskippy
    spec:
      containers:
      - name: app
        env:
        - name: GOMEMLIMIT
          value: 450MiB
"#;

#[tokio::test]
async fn strategic_patch_applies_and_rolls_back_the_spec() {
    let (fake, client) = shop();
    let app = target("Deployment", "app");
    let before = stored(&fake, APP);
    let action = Action::Patch(Patch::StrategicMerge(ADD_ENV.into()));

    let outcome = run(&client, &app, &action, DryRun::Off, Limits::default())
        .await
        .unwrap();

    let after = stored(&fake, APP);
    assert_eq!(
        container(&after, "app")["env"],
        json!([{"name": "GOMEMLIMIT", "value": "450MiB"}])
    );
    assert_eq!(
        container(&after, "app")["resources"],
        container(&before, "app")["resources"]
    );
    assert_eq!(
        container(&after, "log-shipper"),
        container(&before, "log-shipper")
    );
    assert_eq!(
        after["spec"]["template"]["metadata"]["labels"]["healed-by"],
        "kubeskippy"
    );
    assert_eq!(outcome.original, Some(json!({"spec": before["spec"]})));
    assert_eq!(
        outcome.message,
        "apply strategic-merge patch to Deployment shop/app"
    );
    // Checked with a server-side dry-run first, then applied.
    assert_eq!(
        fake.request_lines(),
        [
            format!("GET {APP}"),
            format!("PATCH {APP}?&dryRun=All&fieldManager=kubeskippy"),
            format!("PATCH {APP}?&fieldManager=kubeskippy"),
        ]
    );
    assert_eq!(
        fake.requests()[2].content_type,
        "application/strategic-merge-patch+json"
    );

    fake.clear_requests();
    rollback(&client, &app, &action, outcome.original.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(stored(&fake, APP)["spec"], before["spec"]);
    let restore = &fake.requests()[1];
    assert_eq!(restore.content_type, "application/merge-patch+json");
}

#[tokio::test]
async fn invalid_patch_documents_are_one_line_errors() {
    let (fake, client) = shop();
    let app = target("Deployment", "app");
    for (document, expected) in [
        (
            "spec: [unclosed\n  replicas: 3",
            "strategic-merge patch does not parse: ",
        ),
        (
            "- op: replace\n  path: /spec/replicas",
            "strategic-merge patch must be a mapping, got a list",
        ),
        ("", "strategic-merge patch must be a mapping, got nothing"),
    ] {
        let action = Action::Patch(Patch::StrategicMerge(document.into()));
        let error = run(&client, &app, &action, DryRun::Off, Limits::default())
            .await
            .unwrap_err();
        assert!(
            matches!(error, ExecuteError::InvalidPatch { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("Deployment shop/app: invalid patch: {expected}")),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message:?}");
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn raw_patches_cannot_bypass_the_memory_maximum_or_the_scale_guards() {
    let (fake, client) = shop();
    let limits = Limits {
        replicas: Some((1, 4)),
        max_memory_bytes: Some(GI),
    };
    let big = Action::Patch(Patch::StrategicMerge(
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","resources":{"limits":{"memory":"8Gi"}}}]}}}}"#.into(),
    ));
    let reason = refusal(
        run(
            &client,
            &target("Deployment", "app"),
            &big,
            DryRun::Off,
            limits,
        )
        .await,
    );
    assert_eq!(
        reason,
        "memory limit 8Gi for container app exceeds the maximum 1Gi"
    );

    let many = Action::Patch(Patch::StrategicMerge("spec: {replicas: 9}".into()));
    let reason = refusal(
        run(
            &client,
            &target("Deployment", "app"),
            &many,
            DryRun::Off,
            limits,
        )
        .await,
    );
    assert_eq!(reason, "9 replicas is outside the allowed range 1..=4");

    let hpa = Action::Patch(Patch::StrategicMerge("spec: {replicas: 4}".into()));
    let reason = refusal(
        run(
            &client,
            &target("Deployment", "web"),
            &hpa,
            DryRun::Off,
            limits,
        )
        .await,
    );
    assert_eq!(
        reason,
        "HPA web controls Deployment/web; scaling by hand would be undone"
    );

    // Only the dry runs reached the server: nothing was written.
    assert!(
        fake.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .all(|r| r.dry_run()),
        "{:?}",
        fake.request_lines()
    );
    assert_eq!(
        container(&stored(&fake, APP), "app")["resources"]["limits"]["memory"],
        "512Mi"
    );
    assert_eq!(stored(&fake, APP)["spec"]["replicas"], 2);
    assert_eq!(stored(&fake, WEB)["spec"]["replicas"], 3);

    // A patch that leaves an over-limit value alone is not blamed for it.
    let label = Action::Patch(Patch::StrategicMerge(
        "spec: {template: {metadata: {labels: {tier: front}}}}".into(),
    ));
    let tight = Limits {
        max_memory_bytes: Some(256 * MI),
        ..limits
    };
    run(
        &client,
        &target("Deployment", "app"),
        &label,
        DryRun::Off,
        tight,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn merge_and_json_patch_documents_apply_with_their_content_types() {
    let (fake, client) = shop();
    let app = target("Deployment", "app");

    execute::patch::document(
        &client,
        &app,
        PatchKind::Merge,
        "spec: {minReadySeconds: 10}",
        &Limits::default(),
        DryRun::Off,
    )
    .await
    .unwrap();
    assert_eq!(stored(&fake, APP)["spec"]["minReadySeconds"], 10);

    let bump = r#"[{"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "app"},
                   {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.example.com/shop/app:1.4.3"}]"#;
    let outcome = execute::patch::document(
        &client,
        &app,
        PatchKind::Json,
        bump,
        &Limits::default(),
        DryRun::Off,
    )
    .await
    .unwrap();
    assert_eq!(
        container(&stored(&fake, APP), "app")["image"],
        "registry.example.com/shop/app:1.4.3"
    );
    assert_eq!(outcome.message, "apply JSON patch to Deployment shop/app");
    let types: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && !r.dry_run())
        .map(|r| r.content_type.clone())
        .collect();
    assert_eq!(
        types,
        [
            "application/merge-patch+json",
            "application/json-patch+json"
        ]
    );

    // A failing `test` operation is the server's 422, reported on one line.
    let stale = r#"[{"op": "test", "path": "/spec/replicas", "value": 7}]"#;
    let error = execute::patch::document(
        &client,
        &app,
        PatchKind::Json,
        stale,
        &Limits::default(),
        DryRun::Off,
    )
    .await
    .unwrap_err();
    assert_eq!(
        error,
        ExecuteError::Api {
            target: "Deployment shop/app".into(),
            message: "422 Invalid: test at /spec/replicas failed".into()
        }
    );

    let error = execute::patch::document(
        &client,
        &app,
        PatchKind::Json,
        "{op: add}",
        &Limits::default(),
        DryRun::Off,
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().starts_with(
            "Deployment shop/app: invalid patch: JSON patch is not a list of operations"
        ),
        "{error}"
    );
}

// ---- eviction ----

#[tokio::test]
async fn delete_pod_goes_through_the_eviction_subresource() {
    let (fake, client) = shop();
    let outcome = run(
        &client,
        &target("Pod", "debug"),
        &Action::DeletePod,
        DryRun::Off,
        Limits::default(),
    )
    .await
    .unwrap();
    assert!(fake.get(&format!("{PODS}/debug")).is_none());
    assert_eq!(
        fake.request_lines(),
        [format!("POST {PODS}/debug/eviction")]
    );
    assert_eq!(fake.requests()[0].body["metadata"]["name"], "debug");
    assert_eq!(outcome.message, "evict Pod shop/debug");
    assert_eq!(outcome.original, None);
}

#[tokio::test]
async fn eviction_blocked_by_a_pod_disruption_budget_is_refused() {
    let (fake, client) = shop();
    let reason = refusal(
        run(
            &client,
            &target("Pod", APP_POD),
            &Action::DeletePod,
            DryRun::Off,
            Limits::default(),
        )
        .await,
    );
    assert_eq!(
        reason,
        "blocked by a PodDisruptionBudget: Cannot evict pod as it would violate the pod's disruption budget. (The disruption budget app needs 2 healthy pods and has 2 currently)"
    );
    assert!(fake.get(&format!("{PODS}/{APP_POD}")).is_some());
    assert_eq!(
        fake.request_lines(),
        [format!("POST {PODS}/{APP_POD}/eviction")]
    );
}

#[tokio::test]
async fn delete_pod_of_a_workload_or_missing_pod_is_an_error() {
    let (_fake, client) = shop();
    let error = run(
        &client,
        &target("Deployment", "app"),
        &Action::DeletePod,
        DryRun::Off,
        Limits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ExecuteError::Unsupported { .. }),
        "{error:?}"
    );
    let error = run(
        &client,
        &target("Pod", "gone"),
        &Action::DeletePod,
        DryRun::Off,
        Limits::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.to_string(), "Pod shop/gone not found");
}

// ---- dry run ----

/// Checks the object a dry run says the server would store.
type WouldBe = Box<dyn Fn(&Value)>;

#[tokio::test]
async fn server_dry_run_sends_dry_run_all_stores_nothing_and_returns_the_would_be_object() {
    let cases: Vec<(ObjectRef, Action, WouldBe)> = vec![
        (
            target("Deployment", "app"),
            Action::Restart,
            Box::new(|would| {
                assert_eq!(
                    would["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT],
                    "2026-03-14T09:26:53Z"
                )
            }),
        ),
        (
            target("Pod", "debug"),
            Action::Restart,
            Box::new(|would| assert_eq!(would["metadata"]["name"], "debug")),
        ),
        (
            target("Deployment", "app"),
            Action::Scale(5),
            Box::new(|would| {
                assert_eq!(would["kind"], "Scale");
                assert_eq!(would["spec"]["replicas"], 5);
            }),
        ),
        (
            target("Deployment", "app"),
            memory_patch("app", 2 * GI),
            Box::new(|would| {
                assert_eq!(
                    container(would, "app")["resources"]["limits"]["memory"],
                    "2Gi"
                );
                assert_eq!(
                    container(would, "log-shipper")["resources"]["limits"]["memory"],
                    "64Mi"
                );
            }),
        ),
        (
            target("Deployment", "app"),
            Action::Patch(Patch::StrategicMerge(ADD_ENV.into())),
            Box::new(|would| assert_eq!(container(would, "app")["env"][0]["name"], "GOMEMLIMIT")),
        ),
        (
            target("Pod", "debug"),
            Action::DeletePod,
            Box::new(|would| {
                assert_eq!(would["status"], "Success");
                assert_eq!(would["code"], 201);
            }),
        ),
    ];
    for (object, action, check) in cases {
        let (fake, client) = shop();
        let before = fake.snapshot();
        let outcome = run(&client, &object, &action, DryRun::Server, Limits::default())
            .await
            .unwrap_or_else(|error| panic!("{action:?}: {error}"));
        let writes: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.is_write())
            .collect();
        assert!(!writes.is_empty(), "{action:?}");
        for write in &writes {
            assert!(
                write.dry_run(),
                "{action:?}: {} without dryRun=All",
                write.line()
            );
        }
        assert_eq!(fake.snapshot(), before, "{action:?} stored something");
        assert!(
            outcome.message.starts_with("dry run: would "),
            "{}",
            outcome.message
        );
        check(
            outcome
                .dry_run_result
                .as_ref()
                .unwrap_or_else(|| panic!("{action:?}: no result")),
        );
    }
}

#[tokio::test]
async fn dry_run_writes_carry_dry_run_all_in_the_query_or_delete_options() {
    let (fake, client) = shop();
    run(
        &client,
        &target("Deployment", "app"),
        &Action::Scale(3),
        DryRun::Server,
        Limits::default(),
    )
    .await
    .unwrap();
    run(
        &client,
        &target("Pod", "debug"),
        &Action::DeletePod,
        DryRun::Server,
        Limits::default(),
    )
    .await
    .unwrap();
    run(
        &client,
        &target("Pod", "debug"),
        &Action::Restart,
        DryRun::Server,
        Limits::default(),
    )
    .await
    .unwrap();
    let lines = fake.request_lines();
    assert!(
        lines.contains(&format!(
            "PATCH {APP}/scale?&dryRun=All&fieldManager=kubeskippy"
        )),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("POST {PODS}/debug/eviction?&dryRun=All")),
        "{lines:?}"
    );
    let delete = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(delete.body["dryRun"], json!(["All"]));
}

// ---- dispatch ----

#[tokio::test]
async fn none_does_nothing_and_restarts_cannot_be_rolled_back() {
    let (fake, client) = shop();
    let app = target("Deployment", "app");
    let outcome = run(&client, &app, &Action::None, DryRun::Off, Limits::default())
        .await
        .unwrap();
    assert_eq!(outcome.message, "nothing to do for Deployment shop/app");
    let error = rollback(&client, &app, &Action::Restart, &json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Deployment shop/app: rollback of restart is not supported"
    );
    let error = rollback(&client, &app, &Action::Scale(3), &json!({"count": 2}))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ExecuteError::InvalidOriginal { .. }),
        "{error:?}"
    );
    assert!(fake.requests().is_empty());
}
