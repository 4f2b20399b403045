//! The second, independent review of the trust boundaries: what it broke
//! after the first fixes, as tests of what the daemon does instead. Against
//! the in-memory API server, with the shared harnesses.

use crate::common;
use crate::controller_harness;
use crate::harness;
use crate::shop_app;

use common::{Reply, serve};
use controller_harness::Cluster;
use harness::*;
use kubeskippy::core::config::PrometheusConfig;
use kubeskippy::core::crd::healing_action::Phase;
use kubeskippy::core::crd::policy::HealingPolicy;
use kubeskippy::core::evaluation::{self, TriggerMemory};
use kubeskippy::core::objects::ClusterObjects;
use kubeskippy::core::provenance::SigningKey;
use kubeskippy::core::snapshot::Snapshot;
use kubeskippy::core::triggers::queries_of;
use kubeskippy::operator::leader::Fence;
use kubeskippy::operator::prometheus::Prometheus;
use serde_json::{Value, json};

const SHOP_ACTIONS: &str = "/apis/kubeskippy.io/v1alpha1/namespaces/shop/healingactions/";

/// The chart's default policy, reduced: a cluster-wide rollout restart on OOM.
const RESTART_ON_OOM: &str = r#"
apiVersion: kubeskippy.io/v1alpha1
kind: ClusterHealingPolicy
metadata: {name: kubeskippy-default, uid: uid-cluster-default}
spec:
  mode: automatic
  triggers: [{name: oom, condition: {states: [OOMKilled]}}]
  actions: [{name: restart, type: restart, triggers: [oom]}]
  safety: {verificationWindow: 2m, cooldown: 10m}
"#;

fn action_in(cluster: &Cluster, name: &str) -> Value {
    cluster.fake.get(&format!("{SHOP_ACTIONS}{name}")).unwrap()
}

/// The API server stamps creationTimestamp on create; the fake does not.
fn stamp_created(cluster: &mut Cluster, name: &str, at: &str) {
    let mut action = action_in(cluster, name);
    action["metadata"]["creationTimestamp"] = json!(at);
    cluster.fake.insert(action);
    cluster.sync();
}

// ---- A. deterministic names: a finished action blocks every later one ----

#[tokio::test]
async fn a_recurring_incident_gets_a_new_action_after_the_cooldown() {
    let mut cluster = Cluster::with(&format!("{}\n---\n{RESTART_ON_OOM}", shop_app::YAML));
    let first = cluster.evaluate().await;
    assert_eq!(first.len(), 1, "{first:?}");
    stamp_created(&mut cluster, &first[0], "2026-03-14T09:00:00Z");
    cluster.settle().await;
    cluster.clock.advance(121);
    cluster.settle().await;
    assert_eq!(
        action_in(&cluster, &first[0])["status"]["phase"],
        "Succeeded"
    );

    // Well past the 10m cooldown the pods OOM again.
    cluster.clock.advance(3600);
    let second = cluster.evaluate().await;
    assert_eq!(
        second.len(),
        1,
        "the same plan maps to the same name {}; the create gets 409, which the controller \
         takes for 'already recorded', so this workload is never healed again (and the \
         incident is re-analysed every pass)",
        first[0]
    );
}

#[tokio::test]
async fn a_hand_made_action_squatting_a_plans_name_does_not_block_healing() {
    // The names the daemon creates carry a random suffix: whatever name
    // someone takes first, the daemon's own is another.
    let name = {
        let mut probe = Cluster::with(&format!("{}\n---\n{RESTART_ON_OOM}", shop_app::YAML));
        probe.evaluate().await.remove(0)
    };
    let mut cluster = Cluster::with(&format!("{}\n---\n{RESTART_ON_OOM}", shop_app::YAML));
    cluster.fake.insert(healing_action(
        &name,
        "Deployment",
        "app",
        restart(),
        json!({}),
    ));
    cluster.sync();
    let created = cluster.evaluate().await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_ne!(created[0], name);
    assert!(
        created[0].starts_with("rule-restart-app-"),
        "{}",
        created[0]
    );
    cluster.settle().await;
    let restarted =
        cluster.fake.get(shop_app::APP).unwrap()["spec"]["template"]["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/restartedAt")
            .is_some();
    assert!(restarted);
    assert_eq!(action_in(&cluster, &name)["status"]["phase"], "Cancelled");
}

// ---- B. status is unsigned: a finished action can be run again ----

#[tokio::test]
async fn a_finished_action_reset_in_status_is_not_run_again() {
    let shop = shop();
    shop.plan("grow", "Deployment", "app", scale_to(3));
    shop.until("grow", Phase::Verifying).await;
    shop.clock.advance(121);
    shop.until("grow", Phase::Succeeded).await;
    assert_eq!(shop.deployment()["spec"]["replicas"], 3);

    // Later the owner scales app to 4 for load.
    let mut app = shop.deployment();
    app["spec"]["replicas"] = json!(4);
    app["status"]["availableReplicas"] = json!(4);
    app["status"]["readyReplicas"] = json!(4);
    shop.fake.insert(app);

    // A day later (past safety.maxPlanAge, 24h) someone with
    // healingactions/status writes phase and attempts.
    shop.clock.advance(25 * 3600);
    let mut stored = shop.fake.get(&format!("{ACTIONS}grow")).unwrap();
    stored["status"] = json!({"phase": "Approved", "attempts": 1});
    shop.fake.insert(stored);
    let step = shop.step("grow").await;

    assert_eq!(
        step,
        kubeskippy::operator::lifecycle::Step::wait(Phase::Cancelled)
    );
    assert_eq!(
        shop.deployment()["spec"]["replicas"],
        4,
        "{}",
        shop.status("grow")
    );
}

// ---- C. a ClusterHealingPolicy's gates are one pool for every namespace ----

/// A HealingAction the daemon planned under the cluster policy in tenant-a,
/// finished in `phase` (legitimately, or as a status edit left it).
fn tenant_action(key: &SigningKey, name: &str, minutes_ago: i64, phase: &str) -> Value {
    let at = |minutes: i64| {
        (start() - chrono::Duration::minutes(minutes))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    signed(
        key,
        json!({
            "apiVersion": "kubeskippy.io/v1alpha1",
            "kind": "HealingAction",
            "metadata": {"name": name, "namespace": "tenant-a", "uid": format!("uid-{name}")},
            "spec": {
                "policyRef": {"kind": "ClusterHealingPolicy", "name": "kubeskippy-default", "uid": "uid-cluster-default"},
                "incidentId": "tenant-a-deployment-flaky-0011aabb",
                "target": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "tenant-a", "name": "flaky", "uid": "uid-flaky"},
                "action": restart(),
                "source": "rules", "confidence": 0.8, "reasoning": "r", "risk": "r",
                "plannedAt": at(minutes_ago + 1),
            },
            "status": {"phase": phase, "attempts": 1, "startedAt": at(minutes_ago),
                       "completedAt": at(minutes_ago - 2), "message": "verification failed"},
        }),
    )
}

async fn shop_action_after_tenant_history(policy: &str, history: &[(&str, i64, &str)]) -> Value {
    let mut cluster = Cluster::with(&format!("{}\n---\n{policy}", shop_app::YAML));
    for (name, minutes_ago, phase) in history {
        let action = tenant_action(&cluster.key, name, *minutes_ago, phase);
        cluster.fake.insert(action);
    }
    cluster.sync();
    let created = cluster.evaluate().await;
    assert_eq!(created.len(), 1, "{created:?}");
    cluster.settle().await;
    action_in(&cluster, &created[0])
}

#[tokio::test]
async fn failures_in_one_namespace_do_not_pause_the_cluster_policy_in_another() {
    // tenant-a runs an app that keeps failing verification (or, with
    // healingactions/status, just writes phase: Failed on three old actions).
    let shop_action = shop_action_after_tenant_history(
        RESTART_ON_OOM,
        &[
            ("t1", 6, "Failed"),
            ("t2", 5, "Failed"),
            ("t3", 4, "Failed"),
        ],
    )
    .await;
    assert_eq!(
        shop_action["status"]["phase"], "Verifying",
        "shop is not healed because of tenant-a: {}",
        shop_action["status"]["message"]
    );
}

#[tokio::test]
async fn volume_in_one_namespace_does_not_spend_the_cluster_policys_hourly_limit_elsewhere() {
    let policy = RESTART_ON_OOM.replace("cooldown: 10m}", "cooldown: 10m, maxActionsPerHour: 2}");
    let shop_action = shop_action_after_tenant_history(
        &policy,
        &[("t1", 20, "Succeeded"), ("t2", 10, "Succeeded")],
    )
    .await;
    assert_eq!(
        shop_action["status"]["phase"], "Verifying",
        "shop is blocked by tenant-a's use of the shared limit: {}",
        shop_action["status"]["message"]
    );
}

// ---- D. annotations are unsigned: an approver removes actions from the count ----

#[tokio::test]
async fn editing_annotations_of_finished_actions_does_not_lift_the_rate_limit() {
    let shop = shop(); // shop-healing: maxActionsPerHour 2
    shop.add(past_action("p1", "shop-healing", 10, "Succeeded"));
    shop.add(past_action("p2", "shop-healing", 20, "Succeeded"));
    shop.plan("heal", "Deployment", "app", restart());
    shop.step("heal").await;
    assert_eq!(shop.step("heal").await.phase, Phase::Approved);
    assert!(
        shop.status("heal")["message"]
            .as_str()
            .unwrap()
            .contains("rate limit"),
        "{}",
        shop.status("heal")
    );

    // The approver role may patch HealingActions (metadata included).
    for name in ["p1", "p2"] {
        let mut action = shop.fake.get(&format!("{ACTIONS}{name}")).unwrap();
        action["metadata"]["annotations"]["kubeskippy.io/signature"] = json!("v1.00");
        shop.fake.insert(action);
    }
    let step = shop.step("heal").await;
    assert_eq!(
        step.phase,
        Phase::Approved,
        "the limit vanished once the two actions no longer verify: {}",
        shop.status("heal")
    );
}

// ---- E. a pod's ownerReference is taken on its word ----

const SPOOFED_OWNER: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: payments-api, namespace: shop, uid: uid-payments-api, labels: {app: payments-api}}
spec:
  replicas: 2
  selector: {matchLabels: {app: payments-api}}
  template:
    metadata: {labels: {app: payments-api}}
    spec:
      containers:
      - name: api
        image: registry.example.com/payments/api:3.2.0
        resources: {limits: {memory: 256Mi}}
status: {replicas: 2, readyReplicas: 2, availableReplicas: 2}
---
apiVersion: v1
kind: Pod
metadata:
  name: tenant-job
  namespace: shop
  uid: uid-tenant-job
  labels: {run: tenant-job}
  ownerReferences:
  - {apiVersion: apps/v1, kind: Deployment, name: payments-api, uid: uid-payments-api, controller: true}
spec:
  containers:
  - name: api
    image: registry.example.com/tenant/hungry:1
    resources: {limits: {memory: 1Gi}}
status:
  phase: Running
  conditions: [{type: Ready, status: "True"}]
  containerStatuses:
  - name: api
    ready: true
    restartCount: 1
    image: registry.example.com/tenant/hungry:1
    imageID: ""
    lastState:
      terminated: {reason: OOMKilled, exitCode: 137, finishedAt: "2026-03-14T08:30:00Z"}
---
apiVersion: kubeskippy.io/v1alpha1
kind: ClusterHealingPolicy
metadata: {name: kubeskippy-default, uid: uid-cluster-default}
spec:
  mode: automatic
  triggers: [{name: oom, condition: {states: [OOMKilled]}}]
  actions: [{name: more-memory, type: patch, triggers: [oom], patch: {maxMemoryLimit: 2Gi}}]
"#;

#[tokio::test]
async fn a_pod_naming_a_deployment_as_its_owner_does_not_get_that_deployment_changed() {
    // Anyone who may create pods in shop (and read the Deployment's uid) sets
    // a controller ownerReference: no controller releases a pod from a
    // Deployment, and the garbage collector keeps it while the uid exists.
    let mut cluster = Cluster::with(SPOOFED_OWNER);
    let created = cluster.evaluate().await;
    cluster.settle().await;
    let limit = cluster
        .fake
        .get("/apis/apps/v1/namespaces/shop/deployments/payments-api")
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .clone();
    assert!(
        created.is_empty() && limit == "256Mi",
        "a tenant pod made the daemon patch payments-api ({created:?}): its memory limit is \
         now {limit}, sized from the tenant's own pod"
    );
}

// ---- F. a namespaced policy's PromQL runs with the daemon's reach ----

#[tokio::test]
async fn a_tenant_policy_cannot_read_another_namespaces_metrics_through_prometheus() {
    let query = r#"label_replace(label_replace(sum(payments_revenue_total{namespace="payments"}), "namespace", "tenant-a", "", ""), "pod", "probe", "", "")"#;
    let policy = tenant_monitor_policy(
        "spy",
        &format!(
            "  - name: spy\n    metric: {{name: prometheus, threshold: 0, query: '{query}'}}\n"
        ),
    );
    // A namespace's policy may not carry a PromQL query at all: it would run
    // with the daemon's access to Prometheus.
    let error = policy.validate().unwrap_err();
    assert!(
        error.contains("prometheus triggers belong in a ClusterHealingPolicy"),
        "{error}"
    );
    let stub = serve(|_| Reply::Json {
        status: 200,
        body: r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into(),
    })
    .await;
    let policies = [policy];
    let prometheus = Prometheus::new(&PrometheusConfig {
        url: stub.endpoint(),
        timeout: std::time::Duration::from_secs(2),
    })
    .unwrap();
    let results = prometheus.query_all(queries_of(&policies)).await;
    assert!(results.is_empty());
    assert!(stub.requests().is_empty(), "the query was never sent");
    let snapshot = one_running_pod("probe");
    let objects = ClusterObjects {
        queries: Some(&results),
        ..snapshot.objects()
    };
    let pass =
        evaluation::pass(&objects, &policies, &mut TriggerMemory::new(), [], start()).unwrap();
    assert!(pass.incidents.is_empty());
    assert!(pass.policies[0].errors[0].starts_with("invalid policy:"));
}

// ---- G. the leader fence covers the lifecycle only ----

#[tokio::test]
async fn a_replica_whose_fence_closed_mid_pass_creates_and_writes_nothing() {
    // The loop checks leadership before a pass; the pass itself (model calls
    // with retries) can outlive the lease.
    let mut cluster = Cluster::fenced(
        &format!("{}\n---\n{RESTART_ON_OOM}", shop_app::YAML),
        Fence::closed(),
    );
    cluster.fake.clear_requests();
    let created = cluster.evaluate().await;
    let writes: Vec<String> = cluster
        .fake
        .requests()
        .iter()
        .filter(|request| request.is_write())
        .map(|request| request.line())
        .collect();
    assert!(
        created.is_empty() && writes.is_empty(),
        "a replica that may no longer write created {created:?} and sent {writes:#?}"
    );
}

// ---- H. a tenant's event-reason regexes are bounded ----

#[test]
fn a_reason_pattern_too_costly_to_compile_is_refused_when_the_policy_is_read() {
    // 64 triggers (the CRD's maximum), each a pattern just under the regex
    // crate's default size limit: compiled on every pass, they cost the
    // daemon hundreds of MiB. Each is now held to 16 KiB.
    let triggers: String = (0..64)
        .map(|i| format!("  - name: t{i}\n    event: {{reason: '(?:\\w{{1,40}}){{1,5}}'}}\n"))
        .collect();
    let policy = tenant_monitor_policy("heavy", &triggers);
    let error = policy.validate().unwrap_err();
    assert!(
        error.starts_with("spec.triggers[0].event.reason is not a valid regex within 16 KiB"),
        "{error}"
    );
    let snapshot = one_running_pod("p");
    let pass = evaluation::pass(
        &snapshot.objects(),
        [&policy],
        &mut TriggerMemory::new(),
        [],
        start(),
    )
    .unwrap();
    assert!(
        pass.policies[0].errors[0].starts_with("invalid policy: spec.triggers[0].event.reason")
    );
    // Ordinary patterns are far below it.
    assert!(
        kubeskippy::core::crd::policy::reason_pattern("BackOff|OOM.*|Failed(Mount|Scheduling)")
            .is_ok()
    );
    assert!(
        kubeskippy::core::crd::policy::reason_pattern(&"a".repeat(300))
            .unwrap_err()
            .contains("at most 256")
    );
}

// ---- I. a plan made against another state does not run ----

#[tokio::test]
async fn a_scale_planned_from_two_replicas_does_not_run_on_four() {
    let mut cluster = Cluster::with(&format!(
        "{}\n---\n{}",
        shop_app::YAML,
        RESTART_ON_OOM.replace(
            "actions: [{name: restart, type: restart, triggers: [oom]}]",
            "actions: [{name: out, type: scale, triggers: [oom], scale: {minReplicas: 1, maxReplicas: 5}}]\n  mode: manual"
        ).replacen("  mode: automatic\n", "", 1)
    ));
    let created = cluster.evaluate().await;
    assert_eq!(created.len(), 1, "{created:?}");
    let planned = action_in(&cluster, &created[0]);
    assert_eq!(planned["spec"]["action"]["scaleAction"]["replicas"], 3);
    assert_eq!(planned["spec"]["observed"]["replicas"], 2);
    // While it waits for approval the owner scales to 4.
    let mut app = cluster.fake.get(shop_app::APP).unwrap();
    app["spec"]["replicas"] = json!(4);
    cluster.fake.insert(app);
    cluster.fake.set_user("alice");
    kubeskippy::operator::approval::decide(
        &cluster.fake.client(),
        "shop",
        &created[0],
        kubeskippy::core::crd::healing_action::ApprovalDecision::Approved,
        None,
        start(),
    )
    .await
    .unwrap();
    cluster.sync();
    cluster.settle().await;
    let action = action_in(&cluster, &created[0]);
    assert_eq!(action["status"]["phase"], "Cancelled", "{action:#}");
    assert_eq!(
        action["status"]["message"],
        "stale: the plan was made for 2 replicas and Deployment has 4 now; the next evaluation plans again from what is there now"
    );
    assert_eq!(
        cluster.fake.get(shop_app::APP).unwrap()["spec"]["replicas"],
        4
    );
}

/// A snapshot of one running pod `name` in tenant-a.
fn one_running_pod(name: &str) -> Snapshot {
    Snapshot::parse(
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: tenant-a}}\nspec: {{containers: [{{name: c, image: busybox}}]}}\nstatus: {{phase: Running}}\n"
        ),
        "t",
    )
    .unwrap()
}

/// A `monitor` HealingPolicy `name` in tenant-a with `triggers` (YAML list items).
fn tenant_monitor_policy(name: &str, triggers: &str) -> HealingPolicy {
    serde_yaml_ng::from_str(&format!(
        "apiVersion: kubeskippy.io/v1alpha1\nkind: HealingPolicy\nmetadata: {{name: {name}, namespace: tenant-a}}\nspec:\n  mode: monitor\n  triggers:\n{triggers}"
    ))
    .unwrap()
}
