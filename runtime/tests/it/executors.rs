//! Each executor against the in-memory API server, seeded with a small shop:
//! a Deployment `shop/app` (containers `app` and `log-shipper`) with two pods
//! and a PodDisruptionBudget that allows no disruption, a Deployment `shop/web`
//! an HPA controls, a StatefulSet, a DaemonSet, and a bare pod. Executors take
//! typed changes (`kubeskippy::core::change`) and write nothing else; what raw patch
//! documents may contain is tested with the change parser itself.

use crate::fake_api;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use fake_api::FakeApi;
use kubeskippy::core::change::{Change, ContainerResources, ResourceChange};
use kubeskippy::core::crd::healing_action::{Field, Resource, Section, WrittenField};
use kubeskippy::core::wit::{ObjectRef, ResourceAmounts};
use kubeskippy::operator::execute::{self, DryRun, ExecuteError, Outcome, Target};
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

fn path_of(kind: &str, name: &str) -> String {
    match kind {
        "Pod" => format!("{PODS}/{name}"),
        "Deployment" => format!("/apis/apps/v1/namespaces/shop/deployments/{name}"),
        "StatefulSet" => format!("/apis/apps/v1/namespaces/shop/statefulsets/{name}"),
        "DaemonSet" => format!("/apis/apps/v1/namespaces/shop/daemonsets/{name}"),
        _ => format!("/unserved/{kind}/{name}"),
    }
}

/// The target as planned: the object's uid as the fake stored it.
fn target(fake: &FakeApi, kind: &str, name: &str) -> Target {
    let uid = fake
        .get(&path_of(kind, name))
        .map(|object| object["metadata"]["uid"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "uid-never-stored".into());
    Target {
        object: ObjectRef {
            kind: kind.into(),
            namespace: "shop".into(),
            name: name.into(),
        },
        uid,
    }
}

fn now() -> DateTime<Utc> {
    "2026-03-14T09:26:53Z".parse().expect("RFC 3339")
}

async fn run(
    client: &kube::Client,
    target: &Target,
    change: &Change,
    mode: DryRun,
) -> Result<Outcome, ExecuteError> {
    execute::execute(client, target, change, None, mode, &now()).await
}

/// Records the fields, then makes the change as the lifecycle does.
async fn recorded_run(
    client: &kube::Client,
    target: &Target,
    change: &Change,
) -> (Vec<WrittenField>, Outcome) {
    let fields = execute::capture(client, target, change)
        .await
        .unwrap()
        .expect("a change that can be undone is recorded");
    let outcome = execute::execute(client, target, change, Some(&fields), DryRun::Off, &now())
        .await
        .unwrap();
    (fields, outcome)
}

fn amounts(cpu: Option<u64>, memory: Option<u64>) -> ResourceAmounts {
    ResourceAmounts {
        cpu_millicores: cpu,
        memory_bytes: memory,
    }
}

fn resources(container: &str, limits: ResourceAmounts, requests: ResourceAmounts) -> Change {
    Change::Resources(ResourceChange {
        containers: vec![ContainerResources {
            name: container.into(),
            limits,
            requests,
        }],
        ..ResourceChange::default()
    })
}

fn memory_limit(container: &str, bytes: u64) -> Change {
    resources(container, amounts(None, Some(bytes)), amounts(None, None))
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

fn version(fake: &FakeApi, path: &str) -> Value {
    stored(fake, path)["metadata"]["resourceVersion"].clone()
}

// ---- restart ----

#[tokio::test]
async fn restart_stamps_the_pod_template_of_the_object_it_read() {
    let (fake, client) = shop();
    let before = stored(&fake, APP);

    let outcome = run(
        &client,
        &target(&fake, "Deployment", "app"),
        &Change::RolloutRestart,
        DryRun::Off,
    )
    .await
    .unwrap();

    let after = stored(&fake, APP);
    assert_eq!(
        after["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT],
        "2026-03-14T09:26:53Z"
    );
    assert_eq!(
        after["spec"]["template"]["spec"],
        before["spec"]["template"]["spec"]
    );
    assert_eq!(
        fake.request_lines(),
        [
            format!("GET {APP}"),
            format!("PATCH {APP}?&fieldManager=kubeskippy")
        ]
    );
    let request = &fake.requests()[1];
    assert_eq!(
        request.content_type,
        "application/strategic-merge-patch+json"
    );
    assert_eq!(
        request.body,
        json!({"metadata": {"resourceVersion": before["metadata"]["resourceVersion"]},
               "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2026-03-14T09:26:53Z"}}}}}),
        "guarded by the resourceVersion it read"
    );
    assert_eq!(outcome.dry_run_result, None);
    assert!(
        outcome.message.contains("Deployment shop/app"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn restart_stamps_statefulsets_and_daemonsets_but_not_replica_sets_or_pods() {
    let (fake, client) = shop();
    for (kind, name, path) in [
        ("StatefulSet", "db", DB),
        ("DaemonSet", "node-agent", AGENT),
    ] {
        run(
            &client,
            &target(&fake, kind, name),
            &Change::RolloutRestart,
            DryRun::Off,
        )
        .await
        .unwrap();
        assert_eq!(
            stored(&fake, path)["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT],
            "2026-03-14T09:26:53Z",
            "{kind}"
        );
    }
    for (kind, name) in [("Pod", "debug"), ("ReplicaSet", "app-6f9c7b8d4")] {
        let error = run(
            &client,
            &target(&fake, kind, name),
            &Change::RolloutRestart,
            DryRun::Off,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, ExecuteError::Unsupported { .. }),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn nothing_is_written_to_an_object_that_was_replaced_or_is_gone() {
    let (fake, client) = shop();
    let mut planned = target(&fake, "Deployment", "app");
    planned.uid = "uid-of-the-app-that-was-analysed".into();
    let before = fake.snapshot();
    for change in [
        Change::RolloutRestart,
        Change::Scale { replicas: 3 },
        memory_limit("app", GI),
    ] {
        let error = run(&client, &planned, &change, DryRun::Off)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ExecuteError::Moved { message, .. } if message.starts_with("was replaced: its uid is")),
            "{change:?}: {error:?}"
        );
        let error = execute::capture(&client, &planned, &change).await;
        assert!(
            change == Change::RolloutRestart || error.is_err(),
            "{change:?}"
        );
    }
    assert_eq!(fake.snapshot(), before);

    let error = run(
        &client,
        &target(&fake, "Deployment", "gone"),
        &Change::RolloutRestart,
        DryRun::Off,
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

#[tokio::test]
async fn a_write_that_conflicts_is_made_again_on_a_fresh_read() {
    let (fake, client) = shop();
    // A controller updates the Deployment's status right after the first
    // read, as the deployment controller does all the time.
    let once = Arc::new(AtomicBool::new(false));
    fake.after("GET", APP, move |fake| {
        if !once.swap(true, Ordering::SeqCst) {
            let mut app = fake.get(APP).unwrap();
            app["status"]["observedGeneration"] = json!(7);
            fake.insert(app);
        }
    });
    run(
        &client,
        &target(&fake, "Deployment", "app"),
        &Change::RolloutRestart,
        DryRun::Off,
    )
    .await
    .unwrap();
    assert_eq!(
        fake.request_lines(),
        [
            format!("GET {APP}"),
            format!("PATCH {APP}?&fieldManager=kubeskippy"),
            format!("GET {APP}"),
            format!("PATCH {APP}?&fieldManager=kubeskippy"),
        ]
    );
    assert!(
        stored(&fake, APP)["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT].is_string()
    );
}

// ---- scale ----

#[tokio::test]
async fn scale_goes_through_the_scale_subresource_and_rolls_back() {
    let (fake, client) = shop();
    let app = target(&fake, "Deployment", "app");
    let change = Change::Scale { replicas: 5 };

    let (fields, outcome) = recorded_run(&client, &app, &change).await;

    assert_eq!(stored(&fake, APP)["spec"]["replicas"], 5);
    assert_eq!(
        fields,
        [WrittenField {
            field: Field::Replicas,
            previous: Some("2".into()),
            wrote: "5".into()
        }]
    );
    assert_eq!(
        outcome.message,
        "scale Deployment shop/app from 2 to 5 replicas"
    );
    let lines = fake.request_lines();
    assert_eq!(
        lines[lines.len() - 3..],
        [
            format!("GET {HPAS}"),
            format!("GET {APP}/scale"),
            format!("PATCH {APP}/scale?&fieldManager=kubeskippy"),
        ]
    );
    let patch = fake.requests().pop().unwrap();
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(patch.body["spec"], json!({"replicas": 5}));
    assert!(patch.body["metadata"]["resourceVersion"].is_string());

    fake.clear_requests();
    let restored = execute::rollback(&client, &app, &fields).await.unwrap();
    assert_eq!(
        restored.message,
        "scaled Deployment shop/app back to 2 replicas"
    );
    assert_eq!(stored(&fake, APP)["spec"]["replicas"], 2);
}

#[tokio::test]
async fn a_scale_rollback_leaves_a_count_someone_else_set_since() {
    let (fake, client) = shop();
    let app = target(&fake, "Deployment", "app");
    let (fields, _) = recorded_run(&client, &app, &Change::Scale { replicas: 3 }).await;
    // Someone scales the Deployment to 5 while the change is verified.
    let mut deployment = stored(&fake, APP);
    deployment["spec"]["replicas"] = json!(5);
    fake.insert(deployment);
    fake.clear_requests();

    let outcome = execute::rollback(&client, &app, &fields).await.unwrap();
    assert_eq!(
        outcome.message,
        "left replicas alone: Deployment shop/app has 5 now, not the 3 written"
    );
    assert_eq!(stored(&fake, APP)["spec"]["replicas"], 5);
    assert!(fake.requests().iter().all(|request| !request.is_write()));
}

#[tokio::test]
async fn a_scale_runs_only_while_the_count_is_the_one_recorded() {
    let (fake, client) = shop();
    let app = target(&fake, "Deployment", "app");
    let change = Change::Scale { replicas: 4 };
    let fields = execute::capture(&client, &app, &change)
        .await
        .unwrap()
        .unwrap();
    let mut deployment = stored(&fake, APP);
    deployment["spec"]["replicas"] = json!(6);
    fake.insert(deployment);
    let error = execute::execute(&client, &app, &change, Some(&fields), DryRun::Off, &now())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Deployment shop/app: has 6 replicas, not the 2 recorded before the change"
    );
    assert!(error.is_transient(), "a new attempt records again");
    assert_eq!(stored(&fake, APP)["spec"]["replicas"], 6);
}

#[tokio::test]
async fn a_statefulset_scaled_from_zero_records_zero() {
    let (fake, client) = shop();
    let mut db = stored(&fake, DB);
    db["spec"]["replicas"] = json!(0);
    fake.insert(db);
    let db = target(&fake, "StatefulSet", "db");
    // The Scale omits `replicas: 0`; absent means zero.
    let (fields, _) = recorded_run(&client, &db, &Change::Scale { replicas: 1 }).await;
    assert_eq!(fields[0].previous.as_deref(), Some("0"));
    assert_eq!(stored(&fake, DB)["spec"]["replicas"], 1);
    execute::rollback(&client, &db, &fields).await.unwrap();
    assert_eq!(stored(&fake, DB)["spec"]["replicas"], 0);
}

#[tokio::test]
async fn scale_is_refused_when_an_hpa_controls_the_workload() {
    let (fake, client) = shop();
    let reason = refusal(
        run(
            &client,
            &target(&fake, "Deployment", "web"),
            &Change::Scale { replicas: 6 },
            DryRun::Off,
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
async fn scale_of_a_daemonset_or_pod_is_unsupported() {
    let (fake, client) = shop();
    for (kind, name) in [
        ("DaemonSet", "node-agent"),
        ("Pod", "debug"),
        ("CronJob", "nightly"),
    ] {
        let error = run(
            &client,
            &target(&fake, kind, name),
            &Change::Scale { replicas: 2 },
            DryRun::Off,
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

// ---- resources ----

#[tokio::test]
async fn a_resource_change_writes_only_its_fields_and_rolls_back() {
    let (fake, client) = shop();
    let app = target(&fake, "Deployment", "app");
    let before = stored(&fake, APP);
    let change = memory_limit("app", 2 * GI);

    let (fields, outcome) = recorded_run(&client, &app, &change).await;

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
        fields,
        [WrittenField {
            field: Field::Resource {
                container: "app".into(),
                section: Section::Limits,
                resource: Resource::Memory
            },
            previous: Some("512Mi".into()),
            wrote: "2Gi".into()
        }]
    );
    assert_eq!(
        outcome.message,
        "set limits.memory of container app to 2Gi in Deployment shop/app"
    );
    let patch = fake.requests().pop().unwrap();
    assert_eq!(
        patch.line(),
        format!("PATCH {APP}?&fieldManager=kubeskippy")
    );
    assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
    assert_eq!(
        patch.body,
        json!({"metadata": {"resourceVersion": before["metadata"]["resourceVersion"]},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "resources": {"limits": {"memory": "2Gi"}}}
        ]}}}}),
        "built by the host from the typed change"
    );

    let outcome = execute::rollback(&client, &app, &fields).await.unwrap();
    assert_eq!(
        outcome.message,
        "restored limits.memory of container app to 512Mi in Deployment shop/app"
    );
    assert_eq!(stored(&fake, APP)["spec"], before["spec"]);
}

#[tokio::test]
async fn a_rollback_restores_only_what_still_holds_what_was_written() {
    // The review's reproduction: a memory patch fails verification after
    // someone rolled out a new image and scaled to 5. The rollback puts the
    // memory back and nothing else.
    let (fake, client) = shop();
    let app = target(&fake, "Deployment", "app");
    let change = resources(
        "app",
        amounts(Some(1000), Some(GI)),
        amounts(None, Some(512 * MI)),
    );
    let (fields, _) = recorded_run(&client, &app, &change).await;
    let mut deployment = stored(&fake, APP);
    deployment["spec"]["replicas"] = json!(5);
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.example.com/shop/app:1.4.3-security-fix");
    // and someone tuned the CPU limit this change had raised.
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
        json!("1500m");
    fake.insert(deployment);

    let outcome = execute::rollback(&client, &app, &fields).await.unwrap();
    let after = stored(&fake, APP);
    assert_eq!(after["spec"]["replicas"], 5);
    assert_eq!(
        container(&after, "app")["image"],
        "registry.example.com/shop/app:1.4.3-security-fix"
    );
    assert_eq!(
        container(&after, "app")["resources"],
        json!({"limits": {"cpu": "1500m", "memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}})
    );
    assert_eq!(
        outcome.message,
        "left limits.cpu of container app alone: it is 1500m now, not the 1 written, \
         restored limits.memory of container app to 512Mi, \
         restored requests.memory of container app to 256Mi in Deployment shop/app"
    );
}

#[tokio::test]
async fn a_rollback_removes_values_the_change_added() {
    let (fake, client) = shop();
    let app = target(&fake, "Deployment", "app");
    let before = stored(&fake, APP);
    let change = resources(
        "log-shipper",
        amounts(Some(200), Some(128 * MI)),
        amounts(Some(50), Some(32 * MI)),
    );
    let (fields, _) = recorded_run(&client, &app, &change).await;
    assert_eq!(
        container(&stored(&fake, APP), "log-shipper")["resources"],
        json!({"limits": {"cpu": "200m", "memory": "128Mi"}, "requests": {"cpu": "50m", "memory": "32Mi"}})
    );

    fake.clear_requests();
    execute::rollback(&client, &app, &fields).await.unwrap();
    assert_eq!(stored(&fake, APP)["spec"], before["spec"]);
    assert_eq!(
        fake.requests()[1].body["spec"],
        json!({"template": {"spec": {"containers": [{
            "name": "log-shipper",
            "resources": {"limits": {"cpu": null, "memory": "64Mi"}, "requests": {"cpu": null, "memory": null}}
        }]}}})
    );

    // Nothing holds what was written any more: no write.
    fake.clear_requests();
    execute::rollback(&client, &app, &fields).await.unwrap();
    assert_eq!(fake.request_lines(), [format!("GET {APP}")]);
}

#[tokio::test]
async fn a_resource_change_runs_only_while_its_fields_are_as_recorded() {
    let (fake, client) = shop();
    let app = target(&fake, "Deployment", "app");
    let change = memory_limit("app", GI);
    let fields = execute::capture(&client, &app, &change)
        .await
        .unwrap()
        .unwrap();
    let mut deployment = stored(&fake, APP);
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] =
        json!("768Mi");
    fake.insert(deployment);
    let error = execute::execute(&client, &app, &change, Some(&fields), DryRun::Off, &now())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Deployment shop/app: limits.memory of container app is 768Mi now, not the 512Mi recorded before the change"
    );
    assert_eq!(
        container(&stored(&fake, APP), "app")["resources"]["limits"]["memory"],
        "768Mi"
    );
}

#[tokio::test]
async fn a_resource_change_cannot_add_a_container_or_patch_a_bare_pod() {
    let (fake, client) = shop();
    let before = fake.snapshot();
    let reason = refusal(
        run(
            &client,
            &target(&fake, "Deployment", "app"),
            &memory_limit("sidecar", GI),
            DryRun::Off,
        )
        .await,
    );
    assert_eq!(
        reason,
        "container sidecar is not one of the Deployment's containers"
    );
    let error = run(
        &client,
        &target(&fake, "Pod", "debug"),
        &memory_limit("shell", GI),
        DryRun::Off,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ExecuteError::Unsupported { .. }),
        "{error:?}"
    );
    assert_eq!(fake.snapshot(), before);
}

// ---- eviction ----

#[tokio::test]
async fn pods_are_evicted_through_the_eviction_api_with_their_uid_as_precondition() {
    let (fake, client) = shop();
    let debug = target(&fake, "Pod", "debug");
    let outcome = run(&client, &debug, &Change::Evict, DryRun::Off)
        .await
        .unwrap();
    assert!(fake.get(&format!("{PODS}/debug")).is_none());
    assert_eq!(
        fake.request_lines(),
        [format!("POST {PODS}/debug/eviction")]
    );
    assert_eq!(
        fake.requests()[0].body,
        json!({"apiVersion": "policy/v1", "kind": "Eviction",
               "metadata": {"name": "debug", "namespace": "shop"},
               "deleteOptions": {"preconditions": {"uid": debug.uid}}})
    );
    assert_eq!(outcome.message, "evict Pod shop/debug");
}

#[tokio::test]
async fn a_pod_recreated_under_the_same_name_is_not_evicted() {
    let (fake, client) = shop();
    let mut planned = target(&fake, "Pod", "debug");
    planned.uid = "uid-of-the-pod-that-was-analysed".into();
    let error = run(&client, &planned, &Change::Evict, DryRun::Off)
        .await
        .unwrap_err();
    assert!(matches!(error, ExecuteError::Moved { .. }), "{error:?}");
    assert!(fake.get(&format!("{PODS}/debug")).is_some());
}

#[tokio::test]
async fn eviction_blocked_by_a_pod_disruption_budget_is_refused() {
    let (fake, client) = shop();
    let reason = refusal(
        run(
            &client,
            &target(&fake, "Pod", APP_POD),
            &Change::Evict,
            DryRun::Off,
        )
        .await,
    );
    assert_eq!(
        reason,
        "blocked by a PodDisruptionBudget: Cannot evict pod as it would violate the pod's disruption budget. (The disruption budget app needs 2 healthy pods and has 2 currently)"
    );
    assert!(fake.get(&format!("{PODS}/{APP_POD}")).is_some());
}

#[tokio::test]
async fn eviction_of_a_workload_or_a_missing_pod_is_an_error() {
    let (fake, client) = shop();
    let error = run(
        &client,
        &target(&fake, "Deployment", "app"),
        &Change::Evict,
        DryRun::Off,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ExecuteError::Unsupported { .. }),
        "{error:?}"
    );
    let error = run(
        &client,
        &target(&fake, "Pod", "gone"),
        &Change::Evict,
        DryRun::Off,
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
    let cases: Vec<(&str, &str, Change, WouldBe)> = vec![
        (
            "Deployment",
            "app",
            Change::RolloutRestart,
            Box::new(|would| {
                assert_eq!(
                    would["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT],
                    "2026-03-14T09:26:53Z"
                )
            }),
        ),
        (
            "Deployment",
            "app",
            Change::Scale { replicas: 5 },
            Box::new(|would| {
                assert_eq!(would["kind"], "Scale");
                assert_eq!(would["spec"]["replicas"], 5);
            }),
        ),
        (
            "Deployment",
            "app",
            memory_limit("app", 2 * GI),
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
            "Pod",
            "debug",
            Change::Evict,
            Box::new(|would| {
                assert_eq!(would["status"], "Success");
                assert_eq!(would["code"], 201);
            }),
        ),
    ];
    for (kind, name, change, check) in cases {
        let (fake, client) = shop();
        let before = fake.snapshot();
        let outcome = run(&client, &target(&fake, kind, name), &change, DryRun::Server)
            .await
            .unwrap_or_else(|error| panic!("{change:?}: {error}"));
        let writes: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.is_write())
            .collect();
        assert!(!writes.is_empty(), "{change:?}");
        for write in &writes {
            assert!(
                write.dry_run(),
                "{change:?}: {} without dryRun=All",
                write.line()
            );
        }
        assert_eq!(fake.snapshot(), before, "{change:?} stored something");
        assert!(
            outcome.message.starts_with("dry run: would "),
            "{}",
            outcome.message
        );
        check(
            outcome
                .dry_run_result
                .as_ref()
                .unwrap_or_else(|| panic!("{change:?}: no result")),
        );
    }
}

#[tokio::test]
async fn an_eviction_dry_run_says_so_in_the_query_and_the_delete_options() {
    let (fake, client) = shop();
    run(
        &client,
        &target(&fake, "Pod", "debug"),
        &Change::Evict,
        DryRun::Server,
    )
    .await
    .unwrap();
    let request = &fake.requests()[0];
    assert_eq!(
        request.line(),
        format!("POST {PODS}/debug/eviction?dryRun=All")
    );
    assert_eq!(request.body["deleteOptions"]["dryRun"], json!(["All"]));
    let _ = version(&fake, APP);
}
