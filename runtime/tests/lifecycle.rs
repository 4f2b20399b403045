//! The HealingAction lifecycle against the in-memory API server, seeded with
//! what production sees: a Deployment `shop/app` with its ReplicaSet and two
//! Ready pods, a Deployment `shop/web` an HPA controls, a bare pod, and a
//! HealingPolicy allowing restart, scale, patch and delete-pod. Time is a
//! test clock; nothing sleeps.

#[path = "common/fake_api.rs"]
mod fake_api;
#[path = "common/shop_app.rs"]
mod shop_app;
#[path = "common/test_clock.rs"]
mod test_clock;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fake_api::FakeApi;
use kubeskippy::events::EventRecorder;
use kubeskippy::execute::Clock;
use kubeskippy::healing_action::{HealingAction, Phase};
use kubeskippy::lifecycle::gates::{self, Disruption};
use kubeskippy::lifecycle::{self, Context, LifecycleError, Step};
use kubeskippy::policy::HealingPolicy;
use serde_json::{Value, json};
use shop_app::{APP, POD_1};
use test_clock::TestClock;

/// The rest of namespace `shop`, beside `shop_app::YAML`.
const AROUND_APP: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: other-pod, namespace: shop, labels: {app: app}}
spec:
  containers: [{name: app, image: registry.example.com/shop/app:1.4.2}]
status:
  phase: Running
  conditions: [{type: Ready, status: "False"}]
---
apiVersion: v1
kind: Pod
metadata: {name: debug, namespace: shop, uid: uid-debug, labels: {run: debug}}
spec:
  containers: [{name: shell, image: "busybox:1.36"}]
status:
  phase: Running
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, uid: uid-web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
status: {replicas: 3, availableReplicas: 3}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
---
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {name: shop-healing, namespace: shop}
spec:
  mode: automatic
  triggers:
  - name: oom
    condition: {states: [OOMKilled]}
  actions:
  - {name: restart, type: restart}
  - name: scale-out
    type: scale
    scale: {minReplicas: 1, maxReplicas: 5}
  - name: more-memory
    type: patch
    patch: {maxMemoryLimit: 2Gi}
  - {name: evict, type: delete-pod}
  safety:
    maxActionsPerHour: 2
    maxConcurrent: 1
    minHealthyPercent: 50
    verificationWindow: 2m
    breakerThreshold: 3
    breakerCoolOff: 30m
"#;

const POLICY: &str = "/apis/kubeskippy.io/v1alpha1/namespaces/shop/healingpolicies/shop-healing";
const ACTIONS: &str = "/apis/kubeskippy.io/v1alpha1/namespaces/shop/healingactions/";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events/";

fn start() -> DateTime<Utc> {
    "2026-03-14T09:00:00Z".parse().unwrap()
}

struct Shop {
    fake: FakeApi,
    ctx: Context,
    clock: TestClock,
}

fn shop() -> Shop {
    shop_with_budget(100)
}

fn shop_with_budget(cluster_actions_per_hour: u32) -> Shop {
    let fake = FakeApi::new();
    fake.seed_yaml(shop_app::YAML);
    fake.seed_yaml(AROUND_APP);
    let client = fake.client();
    let clock = TestClock::at(start());
    let ctx = Context {
        events: EventRecorder::new(client.clone(), "kubeskippy-0"),
        client,
        clock: Arc::new(clock.clone()),
        identity: "kubeskippy-0".into(),
        cluster_actions_per_hour,
        floor: kubeskippy::safety::SafetyFloor::default(),
    };
    Shop { fake, ctx, clock }
}

/// A HealingAction of the policy as `actions::plan` shapes it; `action` is
/// the spec's action block, `extra` is merged into the spec.
fn healing_action(name: &str, kind: &str, target: &str, action: Value, extra: Value) -> Value {
    let uid = match target {
        "app" => "uid-app",
        "web" => "uid-web",
        "app-6f9c7b8d4-2xkqp" => "uid-pod-1",
        "debug" => "uid-debug",
        _ => "uid-unknown",
    };
    let mut spec = json!({
        "policyRef": {"name": "shop-healing"},
        "incidentId": "shop/app",
        "target": {"apiVersion": if kind == "Pod" {"v1"} else {"apps/v1"}, "kind": kind,
                   "namespace": "shop", "name": target, "uid": uid},
        "action": action,
        "source": "rules",
        "confidence": 0.9,
        "reasoning": "OOMKilled three times in ten minutes",
        "risk": "low",
    });
    fake_api::merge(&mut spec, &extra);
    json!({
        "apiVersion": "kubeskippy.io/v1alpha1",
        "kind": "HealingAction",
        "metadata": {"name": name, "namespace": "shop", "labels": {"kubeskippy.io/policy": "shop-healing"}},
        "spec": spec,
    })
}

fn restart() -> Value {
    json!({"type": "restart", "restartAction": {"strategy": "rollout"}})
}

fn scale_to(replicas: u32) -> Value {
    json!({"type": "scale", "scaleAction": {"replicas": replicas}})
}

fn memory_patch(limit: &str) -> Value {
    let document = format!(
        "spec:\n  template:\n    spec:\n      containers:\n      - name: app\n        resources:\n          limits: {{memory: {limit}}}\n"
    );
    json!({"type": "patch", "patchAction": {"patchType": "strategic", "patch": document}})
}

fn evict(pod: &str) -> Value {
    json!({"type": "delete-pod", "deletePodAction": {"podName": pod, "useEviction": true}})
}

impl Shop {
    fn add(&self, action: Value) {
        self.fake.insert(action);
    }

    /// Adds a HealingAction with the defaults `actions::plan` gives.
    fn plan(&self, name: &str, kind: &str, target: &str, action: Value) {
        self.add(healing_action(name, kind, target, action, json!({})));
    }

    /// Two reconciles take a refused action from Pending to Failed, with no
    /// retry and nothing to roll back.
    async fn assert_refused(&self, name: &str, message: &str) {
        self.step(name).await;
        assert_eq!(self.step(name).await, Step::wait(Phase::Failed));
        let status = self.status(name);
        assert_eq!(status["message"], message);
        assert_eq!(status["attempts"], 1);
        assert!(status.get("retryAfter").is_none(), "{status}");
        assert!(
            status["conditions"]
                .as_array()
                .is_none_or(|conditions| conditions.iter().all(|c| c["type"] != "RollbackPending")),
            "{status}"
        );
    }

    fn action(&self, name: &str) -> HealingAction {
        let stored = self
            .fake
            .get(&format!("{ACTIONS}{name}"))
            .unwrap_or_else(|| panic!("action {name} is stored"));
        serde_json::from_value(stored).expect("a stored HealingAction parses")
    }

    fn status(&self, name: &str) -> Value {
        self.fake.get(&format!("{ACTIONS}{name}")).unwrap()["status"].clone()
    }

    fn policy(&self) -> Option<HealingPolicy> {
        self.fake
            .get(POLICY)
            .map(|policy| serde_json::from_value(policy).expect("the policy parses"))
    }

    fn peers(&self) -> Vec<Arc<HealingAction>> {
        self.fake
            .snapshot()
            .into_iter()
            .filter(|(path, _)| path.starts_with(ACTIONS))
            .map(|(_, object)| Arc::new(serde_json::from_value(object).unwrap()))
            .collect()
    }

    /// One reconcile of the stored action, as the daemon would call it.
    async fn step(&self, name: &str) -> Step {
        self.try_step(name).await.expect("reconcile succeeds")
    }

    async fn try_step(&self, name: &str) -> Result<Step, LifecycleError> {
        let policy = self.policy();
        lifecycle::reconcile(
            &self.ctx,
            &self.action(name),
            policy.as_ref(),
            &self.peers(),
        )
        .await
    }

    /// Reconciles until the action is in `phase`, at most `limit` times.
    async fn until(&self, name: &str, phase: Phase) -> Step {
        for _ in 0..6 {
            let step = self.step(name).await;
            if step.phase == phase {
                return step;
            }
        }
        panic!("{name} never reached {phase:?}: {}", self.status(name));
    }

    /// `(regarding kind, reason, note)` of every event, oldest first.
    fn events(&self) -> Vec<(String, String, String)> {
        let mut events: Vec<Value> = self
            .fake
            .snapshot()
            .into_iter()
            .filter(|(path, _)| path.starts_with(EVENTS))
            .map(|(_, event)| event)
            .collect();
        events.sort_by_key(|event| {
            event["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        });
        events
            .iter()
            .map(|event| {
                (
                    event["regarding"]["kind"].as_str().unwrap().to_string(),
                    event["reason"].as_str().unwrap().to_string(),
                    event["note"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Event reasons recorded on the HealingAction, and whether the same
    /// reasons were recorded on the target too.
    fn action_event_reasons(&self) -> Vec<String> {
        let events = self.events();
        let on_action: Vec<String> = events
            .iter()
            .filter(|(kind, ..)| kind == "HealingAction")
            .map(|(_, reason, _)| reason.clone())
            .collect();
        let on_target: Vec<String> = events
            .iter()
            .filter(|(kind, ..)| kind != "HealingAction")
            .map(|(_, reason, _)| reason.clone())
            .collect();
        assert_eq!(
            on_action, on_target,
            "every event is on the action and on the target"
        );
        on_action
    }

    fn set_pod_restarts(&self, path: &str, restarts: u32) {
        let mut pod = self.fake.get(path).unwrap();
        pod["status"]["containerStatuses"][0]["restartCount"] = json!(restarts);
        self.fake.insert(pod);
    }

    fn deployment(&self) -> Value {
        self.fake.get(APP).unwrap()
    }

    fn edit_policy(&self, safety: Value) {
        let mut policy = self.fake.get(POLICY).unwrap();
        fake_api::merge(&mut policy["spec"]["safety"], &safety);
        self.fake.insert(policy);
    }
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("condition {kind} in {status}"))
}

// ---- the main path ----

#[tokio::test]
async fn automatic_restart_is_approved_run_verified_and_succeeds_with_events() {
    let shop = shop();
    shop.plan("heal", "Deployment", "app", restart());

    let step = shop.step("heal").await;
    assert_eq!(step.phase, Phase::Approved);
    assert_eq!(
        shop.status("heal")["approvedBy"],
        "kubeskippy (automatic mode)"
    );

    let step = shop.step("heal").await;
    assert_eq!(step.phase, Phase::Verifying);
    assert_eq!(step.requeue_after, Some(Duration::from_secs(15)));
    let status = shop.status("heal");
    assert_eq!(status["attempts"], 1);
    assert_eq!(status["startedAt"], "2026-03-14T09:00:00Z");
    assert_eq!(
        status["verification"],
        json!({"since": "2026-03-14T09:00:00Z", "workload": {"kind": "Deployment", "name": "app"},
               "restarts": {"app-6f9c7b8d4-2xkqp": 3, "app-6f9c7b8d4-9mzlt": 0}}),
        "the pods are found through their ReplicaSet; other-pod matches the labels but is not owned"
    );
    assert_eq!(
        shop.deployment()["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        "2026-03-14T09:00:00Z"
    );

    shop.clock.advance(60);
    let step = shop.step("heal").await;
    assert_eq!(step.phase, Phase::Verifying, "the window is still open");
    assert_eq!(step.requeue_after, Some(Duration::from_secs(15)));

    shop.clock.advance(60);
    let step = shop.step("heal").await;
    assert_eq!(step, Step::wait(Phase::Succeeded));
    let status = shop.status("heal");
    assert_eq!(status["completedAt"], "2026-03-14T09:02:00Z");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("verified: 2 pod(s) Ready"),
        "{status}"
    );
    assert_eq!(
        shop.action_event_reasons(),
        ["Approved", "Started", "Verifying", "Succeeded"]
    );
    let events = shop.events();
    assert!(
        events
            .iter()
            .any(|(kind, reason, note)| kind == "Deployment"
                && reason == "Approved"
                && note == "approved by kubeskippy (automatic mode)")
    );

    assert_eq!(shop.step("heal").await, Step::wait(Phase::Succeeded));
    assert_eq!(
        shop.events().len(),
        8,
        "a finished action makes no more events"
    );
}

#[tokio::test]
async fn a_reconcile_from_a_stale_copy_conflicts_instead_of_repeating_a_transition() {
    let shop = shop();
    shop.plan("heal", "Deployment", "app", restart());
    let stale = shop.action("heal");
    shop.step("heal").await;
    let policy = shop.policy();
    let error = lifecycle::reconcile(&shop.ctx, &stale, policy.as_ref(), &shop.peers())
        .await
        .unwrap_err();
    assert!(matches!(error, LifecycleError::Conflict { .. }), "{error}");
}

#[tokio::test]
async fn an_edit_during_execution_does_not_lose_the_outcome() {
    let shop = shop();
    shop.plan("scale", "Deployment", "app", scale_to(3));
    shop.step("scale").await;
    // Someone labels the action while its scale is being written, after
    // the guarded InProgress write and before the outcome's.
    shop.fake.after("PATCH", &format!("{APP}/scale"), |fake| {
        let path = format!("{ACTIONS}scale");
        let mut action = fake.get(&path).unwrap();
        action["metadata"]["labels"]["team"] = json!("shop");
        fake.insert(action);
    });
    assert_eq!(shop.step("scale").await.phase, Phase::Verifying);
    let stored = shop.fake.get(&format!("{ACTIONS}scale")).unwrap();
    assert_eq!(stored["metadata"]["labels"]["team"], "shop");
    assert_eq!(stored["status"]["phase"], "Verifying");
}

#[tokio::test]
async fn a_refused_event_is_logged_and_the_transition_still_happens() {
    let shop = shop();
    shop.fake
        .fail_next("POST", EVENTS.trim_end_matches('/'), 403, 100);
    shop.plan("heal", "Deployment", "app", restart());
    assert_eq!(shop.step("heal").await.phase, Phase::Approved);
    assert_eq!(shop.step("heal").await.phase, Phase::Verifying);
    assert!(shop.events().is_empty());
}

// ---- approval ----

#[tokio::test]
async fn an_action_requiring_approval_waits_once_then_runs_when_approved() {
    let shop = shop();
    shop.fake.set_user("alice@example.com");
    shop.add(healing_action(
        "heal",
        "Deployment",
        "app",
        restart(),
        json!({"approvalRequired": true}),
    ));

    assert_eq!(shop.step("heal").await, Step::wait(Phase::Pending));
    let waiting = shop.status("heal");
    assert_eq!(condition(&waiting, "AwaitingApproval")["status"], "True");
    assert_eq!(
        waiting["message"],
        "waiting for `kubeskippy approve heal -n shop` (or reject)"
    );
    assert_eq!(shop.step("heal").await.phase, Phase::Pending);
    assert_eq!(
        shop.action_event_reasons(),
        ["AwaitingApproval"],
        "waiting is announced once"
    );

    kubeskippy::approval::decide(
        &shop.ctx.client,
        "shop",
        "heal",
        kubeskippy::healing_action::ApprovalDecision::Approved,
        Some("checked the dashboards"),
        start(),
    )
    .await
    .unwrap();
    assert_eq!(shop.step("heal").await.phase, Phase::Approved);
    let status = shop.status("heal");
    assert_eq!(status["approvedBy"], "alice@example.com");
    assert_eq!(condition(&status, "AwaitingApproval")["status"], "False");
    assert_eq!(shop.step("heal").await.phase, Phase::Verifying);
}

#[tokio::test]
async fn a_rejected_action_is_cancelled_and_changes_nothing() {
    let shop = shop();
    shop.fake.set_user("bob");
    shop.add(healing_action(
        "heal",
        "Deployment",
        "app",
        scale_to(4),
        json!({"approvalRequired": true}),
    ));
    shop.step("heal").await;
    kubeskippy::approval::decide(
        &shop.ctx.client,
        "shop",
        "heal",
        kubeskippy::healing_action::ApprovalDecision::Rejected,
        Some("peak traffic"),
        start(),
    )
    .await
    .unwrap();
    assert_eq!(shop.step("heal").await, Step::wait(Phase::Cancelled));
    assert_eq!(
        shop.status("heal")["message"],
        "rejected by bob: peak traffic"
    );
    assert_eq!(shop.deployment()["spec"]["replicas"], 2);
    assert_eq!(
        shop.action_event_reasons(),
        ["AwaitingApproval", "Cancelled"]
    );
}

// ---- cancellation and refusal before running ----

#[tokio::test]
async fn a_replaced_or_missing_target_or_policy_cancels_and_a_disallowed_type_fails() {
    let shop = shop();
    let mut replaced = healing_action("replaced", "Deployment", "app", restart(), json!({}));
    replaced["spec"]["target"]["uid"] = json!("uid-of-an-older-app");
    shop.add(replaced);
    shop.plan("gone", "Deployment", "api", restart());
    let mut orphan = healing_action("orphan", "Deployment", "app", restart(), json!({}));
    orphan["spec"]["policyRef"]["name"] = json!("deleted-policy");
    shop.add(orphan);

    assert_eq!(shop.step("replaced").await.phase, Phase::Cancelled);
    assert_eq!(
        shop.status("replaced")["message"],
        "target Deployment shop/app was replaced: its uid is uid-app, the action was planned for uid-of-an-older-app"
    );
    assert_eq!(shop.step("gone").await.phase, Phase::Cancelled);
    assert_eq!(
        shop.status("gone")["message"],
        "target Deployment shop/api no longer exists"
    );

    let action = shop.action("orphan");
    let step = lifecycle::reconcile(&shop.ctx, &action, None, &shop.peers())
        .await
        .unwrap();
    assert_eq!(step.phase, Phase::Cancelled);
    assert_eq!(
        shop.status("orphan")["message"],
        "policy deleted-policy no longer exists"
    );

    let mut policy = shop.fake.get(POLICY).unwrap();
    policy["spec"]["actions"] = json!([{"name": "restart", "type": "restart"}]);
    shop.fake.insert(policy);
    shop.plan("scale", "Deployment", "app", scale_to(3));
    assert_eq!(shop.step("scale").await, Step::wait(Phase::Failed));
    assert_eq!(
        shop.status("scale")["message"],
        "policy shop-healing does not allow scale actions"
    );
    assert_eq!(shop.deployment()["spec"]["replicas"], 2);
}

#[tokio::test]
async fn the_safety_floor_is_checked_again_on_the_live_target() {
    // A HealingAction anyone with create rights wrote by hand, for objects
    // the planner would never have chosen.
    let shop = shop();
    let mut app = shop.fake.get(APP).unwrap();
    app["metadata"]["labels"]["kubeskippy.io/protected"] = json!("true");
    shop.fake.insert(app);
    shop.plan("marked", "Deployment", "app", restart());
    assert_eq!(shop.step("marked").await.phase, Phase::Cancelled);
    assert_eq!(
        shop.status("marked")["message"],
        "safety floor: Deployment/app is marked kubeskippy.io/protected=true"
    );

    let shop = shop_with_budget(100);
    let mut policy = shop.fake.get(POLICY).unwrap();
    policy["spec"]["safety"]["protectedResources"] = json!([{"kind": "Deployment", "name": "app"}]);
    shop.fake.insert(policy);
    shop.plan("listed", "Deployment", "app", scale_to(3));
    assert_eq!(shop.step("listed").await.phase, Phase::Cancelled);
    assert_eq!(
        shop.status("listed")["message"],
        "safety floor: policy shop-healing protects Deployment/app"
    );
    assert_eq!(shop.deployment()["spec"]["replicas"], 2);
}

// ---- gates ----

/// An action of the policy that started `minutes_ago` and finished in `phase`.
fn past_action(name: &str, policy: &str, minutes_ago: i64, phase: &str) -> Value {
    let mut action = healing_action(name, "Deployment", "app", restart(), json!({}));
    action["spec"]["policyRef"]["name"] = json!(policy);
    let started = start() - chrono::Duration::minutes(minutes_ago);
    action["status"] = json!({
        "phase": phase,
        "attempts": 1,
        "startedAt": started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "completedAt": (started + chrono::Duration::minutes(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    action
}

#[tokio::test]
async fn the_policy_rate_limit_blocks_with_one_event_until_an_hour_has_passed() {
    let shop = shop();
    shop.add(past_action("earlier-1", "shop-healing", 50, "Succeeded"));
    shop.add(past_action("earlier-2", "shop-healing", 20, "Succeeded"));
    let mut dry = past_action("dry", "shop-healing", 5, "Succeeded");
    dry["spec"]["dryRun"] = json!(true);
    shop.add(dry);
    shop.add(past_action("last-hour", "shop-healing", 61, "Succeeded"));
    shop.plan("heal", "Deployment", "app", restart());

    shop.step("heal").await;
    let step = shop.step("heal").await;
    assert_eq!(step.phase, Phase::Approved);
    assert_eq!(
        step.requeue_after,
        Some(Duration::from_secs(10 * 60)),
        "the oldest counted action leaves the hour in 10 minutes"
    );
    let status = shop.status("heal");
    let blocked = condition(&status, "Blocked");
    assert_eq!(blocked["status"], "True");
    assert_eq!(
        blocked["message"],
        "rate limit of policy shop/shop-healing: 2 actions started in the last hour, the limit is 2"
    );
    shop.step("heal").await;
    assert_eq!(
        shop.action_event_reasons(),
        ["Approved", "Blocked"],
        "an unchanged reason is announced once"
    );
    assert!(shop.deployment()["spec"]["template"]["metadata"]["annotations"].is_null());

    shop.clock.advance(10 * 60);
    assert_eq!(shop.step("heal").await.phase, Phase::Verifying);
    assert_eq!(
        condition(&shop.status("heal"), "Blocked")["status"],
        "False"
    );
}

#[tokio::test]
async fn the_cluster_budget_counts_every_policy() {
    let shop = shop_with_budget(1);
    shop.add(past_action("elsewhere", "another-policy", 30, "Succeeded"));
    shop.plan("heal", "Deployment", "app", restart());
    shop.step("heal").await;
    assert_eq!(shop.step("heal").await.phase, Phase::Approved);
    assert_eq!(
        condition(&shop.status("heal"), "Blocked")["message"],
        "cluster-wide budget: 1 actions started in the last hour, the limit is 1"
    );
    shop.clock.advance(30 * 60);
    assert_eq!(shop.step("heal").await.phase, Phase::Verifying);
}

#[tokio::test]
async fn max_concurrent_blocks_while_another_action_of_the_policy_is_verifying() {
    let shop = shop();
    shop.plan("first", "Deployment", "app", restart());
    shop.plan("second", "Deployment", "app", scale_to(3));
    shop.until("first", Phase::Verifying).await;
    shop.step("second").await;
    assert_eq!(shop.step("second").await.phase, Phase::Approved);
    assert_eq!(
        condition(&shop.status("second"), "Blocked")["message"],
        "policy shop/shop-healing allows 1 action(s) at once and 1 running: first"
    );
    shop.clock.advance(120);
    shop.until("first", Phase::Succeeded).await;
    assert_eq!(shop.step("second").await.phase, Phase::Verifying);
    assert_eq!(shop.deployment()["spec"]["replicas"], 3);
}

#[tokio::test]
async fn min_healthy_blocks_an_eviction_that_would_leave_too_few_pods() {
    let shop = shop();
    let mut deployment = shop.deployment();
    deployment["status"]["availableReplicas"] = json!(1);
    shop.fake.insert(deployment);
    shop.plan(
        "evict",
        "Pod",
        "app-6f9c7b8d4-2xkqp",
        evict("app-6f9c7b8d4-2xkqp"),
    );
    shop.step("evict").await;
    assert_eq!(shop.step("evict").await.phase, Phase::Approved);
    assert_eq!(
        condition(&shop.status("evict"), "Blocked")["message"],
        "minHealthyPercent 50: Deployment shop/app would have 0 of 2 replicas available (1 taken down at once), below the 1 required"
    );
    assert!(shop.fake.get(POD_1).is_some());

    let mut deployment = shop.deployment();
    deployment["status"]["availableReplicas"] = json!(2);
    shop.fake.insert(deployment);
    assert_eq!(shop.step("evict").await.phase, Phase::Verifying);
    assert!(shop.fake.get(POD_1).is_none(), "evicted");
}

fn deployment(replicas: u32, available: u32, strategy: Value) -> Value {
    json!({"kind": "Deployment", "metadata": {"name": "app", "namespace": "shop"},
           "spec": {"replicas": replicas, "strategy": strategy},
           "status": {"availableReplicas": available}})
}

fn spec_of(action: Value) -> kubeskippy::healing_action::ActionSpec {
    serde_json::from_value(action).unwrap()
}

#[test]
fn min_healthy_counts_what_each_action_takes_down_at_once() {
    let policy: HealingPolicy =
        serde_yaml_ng::from_str(AROUND_APP.split("---").last().unwrap()).unwrap();
    let ready_pod =
        json!({"kind": "Pod", "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let crashing_pod =
        json!({"kind": "Pod", "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    let four = deployment(4, 2, json!({}));

    // Rollout restart: 25% of 4 rounded down takes 1; 2 − 1 < ceil(4 × 50%).
    let restart_four = gates::disruption(&spec_of(restart()), &four, None);
    assert_eq!(restart_four.takes_down, 1);
    assert!(gates::min_healthy(&policy, &restart_four).is_some());
    // 25% of 2 rounds down to 0 and surge rounds up to 1: a surge-only rollout.
    let two = deployment(2, 1, json!({}));
    assert_eq!(
        gates::disruption(&spec_of(restart()), &two, None).takes_down,
        0
    );
    assert_eq!(
        gates::min_healthy(&policy, &gates::disruption(&spec_of(restart()), &two, None)),
        None
    );
    // Recreate takes everything down.
    let recreate = deployment(4, 4, json!({"type": "Recreate"}));
    assert_eq!(
        gates::disruption(&spec_of(restart()), &recreate, None).takes_down,
        4
    );
    let explicit = deployment(
        10,
        10,
        json!({"rollingUpdate": {"maxUnavailable": "30%", "maxSurge": 0}}),
    );
    assert_eq!(
        gates::disruption(&spec_of(memory_patch("1Gi")), &explicit, None).takes_down,
        3
    );

    // Deleting a pod takes it down only if it is Ready.
    let evict_ready = gates::disruption(&spec_of(evict("p")), &two, Some(&ready_pod));
    assert_eq!(evict_ready.takes_down, 1);
    assert!(gates::min_healthy(&policy, &evict_ready).is_some());
    let evict_crashing = gates::disruption(&spec_of(evict("p")), &two, Some(&crashing_pod));
    assert_eq!(evict_crashing.takes_down, 0);
    assert_eq!(gates::min_healthy(&policy, &evict_crashing), None);

    // Scaling down to N leaves min(available, N).
    let full = deployment(4, 4, json!({}));
    let to_one = gates::disruption(&spec_of(scale_to(1)), &full, None);
    assert_eq!(
        to_one,
        Disruption {
            workload: "Deployment shop/app".into(),
            desired: 4,
            available: 4,
            takes_down: 3
        }
    );
    assert!(gates::min_healthy(&policy, &to_one).is_some());
    assert_eq!(
        gates::min_healthy(
            &policy,
            &gates::disruption(&spec_of(scale_to(2)), &full, None)
        ),
        None
    );
    assert_eq!(
        gates::disruption(&spec_of(scale_to(6)), &full, None).takes_down,
        0
    );

    // StatefulSets roll one pod at a time; DaemonSets by maxUnavailable, default 1.
    let stateful = json!({"kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop"},
                          "spec": {"replicas": 3}, "status": {"availableReplicas": 3}});
    assert_eq!(
        gates::disruption(&spec_of(restart()), &stateful, None).takes_down,
        1
    );
    let daemons = json!({"kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "shop"}, "spec": {},
                         "status": {"desiredNumberScheduled": 10, "numberAvailable": 10}});
    assert_eq!(
        gates::disruption(&spec_of(restart()), &daemons, None).takes_down,
        1
    );
    let mut wide = daemons.clone();
    wide["spec"]["updateStrategy"] = json!({"rollingUpdate": {"maxUnavailable": "25%"}});
    assert_eq!(
        gates::disruption(&spec_of(restart()), &wide, None).takes_down,
        3,
        "rounded up"
    );
}

#[tokio::test]
async fn the_breaker_opens_after_three_failures_then_cools_off_or_is_resumed() {
    let shop = shop();
    shop.add(past_action("fail-1", "shop-healing", 40, "Failed"));
    shop.add(past_action("fail-2", "shop-healing", 30, "RolledBack"));
    shop.add(past_action("fail-3", "shop-healing", 12, "Failed"));
    shop.add(past_action("ok-before", "shop-healing", 50, "Succeeded"));
    shop.edit_policy(json!({"maxActionsPerHour": 100}));
    shop.add(healing_action(
        "dry",
        "Deployment",
        "app",
        scale_to(3),
        json!({"dryRun": true}),
    ));
    shop.plan("heal", "Deployment", "app", restart());

    let policy = shop.policy().unwrap();
    let paused = gates::breaker(&policy, &shop.peers(), start()).expect("open");
    // fail-3 completed 10 minutes ago: paused for 20 more.
    assert_eq!(
        paused.until,
        "2026-03-14T09:20:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(
        paused.reason,
        "circuit breaker open: the last 3 actions of policy shop/shop-healing failed (fail-3, fail-2, fail-1); paused until 2026-03-14T09:20:00Z or `kubeskippy resume shop-healing -n shop`"
    );

    shop.step("heal").await;
    let step = shop.step("heal").await;
    assert_eq!(
        step,
        Step::after(Phase::Approved, Duration::from_secs(20 * 60))
    );
    assert_eq!(
        condition(&shop.status("heal"), "Blocked")["message"],
        json!(paused.reason)
    );
    shop.step("dry").await;
    assert_eq!(
        shop.step("dry").await.phase,
        Phase::Approved,
        "the breaker holds dry runs too"
    );

    shop.clock.advance(20 * 60);
    assert_eq!(
        gates::breaker(&policy, &shop.peers(), shop.clock.now()),
        None,
        "cooled off"
    );
    assert_eq!(shop.step("heal").await.phase, Phase::Verifying);

    // The one action let through after the cool-off fails: open again.
    shop.set_pod_restarts(POD_1, 4);
    shop.until("heal", Phase::Failed).await;
    let paused = gates::breaker(&policy, &shop.peers(), shop.clock.now()).expect("open again");
    assert_eq!(
        paused.until,
        shop.clock.now() + chrono::Duration::minutes(30)
    );

    kubeskippy::approval::resume(&shop.ctx.client, "shop", "shop-healing", shop.clock.now())
        .await
        .unwrap();
    let resumed = shop.policy().unwrap();
    assert_eq!(
        resumed.metadata.annotations.unwrap()[gates::RESUMED_AT],
        "2026-03-14T09:20:00Z"
    );
    assert_eq!(
        gates::breaker(&shop.policy().unwrap(), &shop.peers(), shop.clock.now()),
        None,
        "resumed"
    );
}

// ---- dry run ----

#[tokio::test]
async fn a_dry_run_records_what_the_server_would_store_and_changes_nothing() {
    let shop = shop();
    shop.add(healing_action(
        "dry",
        "Deployment",
        "app",
        scale_to(4),
        json!({"dryRun": true}),
    ));
    // Dry runs skip the rate limit and minHealthy.
    shop.add(past_action("earlier-1", "shop-healing", 10, "Succeeded"));
    shop.add(past_action("earlier-2", "shop-healing", 5, "Succeeded"));
    let before: Vec<(String, Value)> = shop
        .fake
        .snapshot()
        .into_iter()
        .filter(|(path, _)| !path.starts_with(ACTIONS))
        .collect();

    shop.step("dry").await;
    assert_eq!(shop.step("dry").await, Step::wait(Phase::Succeeded));

    let status = shop.status("dry");
    assert_eq!(
        status["message"],
        "dry run: would scale Deployment shop/app from 2 to 4 replicas"
    );
    assert_eq!(status["dryRunResult"]["spec"]["replicas"], 4);
    let after: Vec<(String, Value)> = shop
        .fake
        .snapshot()
        .into_iter()
        .filter(|(path, _)| !path.starts_with(ACTIONS) && !path.starts_with(EVENTS))
        .collect();
    assert_eq!(
        before, after,
        "nothing but the action's status and events was written"
    );
    assert!(
        shop.fake
            .requests()
            .iter()
            .filter(|request| request.path.starts_with(APP))
            .filter(|request| request.is_write())
            .all(|request| request.dry_run())
    );
    assert_eq!(
        shop.action_event_reasons(),
        ["Approved", "Started", "DryRunCompleted"]
    );
}

// ---- verification and rollback ----

#[tokio::test]
async fn a_scale_that_fails_verification_is_rolled_back() {
    let shop = shop();
    shop.plan("scale", "Deployment", "app", scale_to(3));
    shop.until("scale", Phase::Verifying).await;
    assert_eq!(shop.deployment()["spec"]["replicas"], 3);
    assert_eq!(shop.status("scale")["original"], json!({"replicas": 2}));

    shop.clock.advance(30);
    shop.set_pod_restarts(POD_1, 5);
    let step = shop.step("scale").await;
    assert_eq!(
        step,
        Step {
            phase: Phase::Failed,
            requeue_after: Some(Duration::ZERO)
        }
    );
    let failed = shop.status("scale");
    assert_eq!(
        failed["message"],
        "verification failed: pod app-6f9c7b8d4-2xkqp restarted during verification (3 → 5 restarts)"
    );
    assert_eq!(condition(&failed, "RollbackPending")["status"], "True");
    assert_eq!(
        shop.deployment()["spec"]["replicas"],
        3,
        "the rollback is the next step"
    );

    assert_eq!(shop.step("scale").await, Step::wait(Phase::RolledBack));
    assert_eq!(shop.deployment()["spec"]["replicas"], 2);
    let rolled_back = shop.status("scale");
    assert_eq!(
        rolled_back["message"],
        "verification failed: pod app-6f9c7b8d4-2xkqp restarted during verification (3 → 5 restarts); rolled back: scaled Deployment shop/app back to 2 replicas"
    );
    assert_eq!(
        condition(&rolled_back, "RollbackPending")["status"],
        "False"
    );
    assert_eq!(
        shop.action_event_reasons(),
        ["Approved", "Started", "Verifying", "Failed", "RolledBack"]
    );
}

#[tokio::test]
async fn a_new_oom_kill_fails_verification_but_an_old_one_does_not() {
    let shop = shop();
    shop.plan("patch", "Deployment", "app", memory_patch("1Gi"));
    shop.until("patch", Phase::Verifying).await;
    shop.clock.advance(30);
    assert_eq!(
        shop.step("patch").await.phase,
        Phase::Verifying,
        "the OOM kill at 08:00 is old"
    );

    let mut pod = shop.fake.get(POD_1).unwrap();
    pod["status"]["containerStatuses"][0]["state"] = json!({"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": "2026-03-14T09:00:20Z"}});
    shop.fake.insert(pod);
    assert_eq!(shop.step("patch").await.phase, Phase::Failed);
    assert_eq!(
        shop.status("patch")["message"],
        "verification failed: container app of pod app-6f9c7b8d4-2xkqp was OOMKilled at 2026-03-14T09:00:20Z"
    );
    assert_eq!(shop.step("patch").await.phase, Phase::RolledBack);
    let limits =
        &shop.deployment()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(limits["memory"], "512Mi");
}

#[tokio::test]
async fn a_patch_that_passes_verification_succeeds_and_stays() {
    let shop = shop();
    shop.plan("patch", "Deployment", "app", memory_patch("1Gi"));
    shop.until("patch", Phase::Verifying).await;
    shop.clock.advance(120);
    assert_eq!(shop.step("patch").await.phase, Phase::Succeeded);
    let limits =
        &shop.deployment()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(limits["memory"], "1Gi");
}

#[tokio::test]
async fn pods_not_ready_at_the_end_of_the_window_fail_verification() {
    let shop = shop();
    shop.plan("restart", "Deployment", "app", restart());
    shop.until("restart", Phase::Verifying).await;
    let mut pod = shop.fake.get(POD_1).unwrap();
    pod["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    shop.fake.insert(pod);
    shop.clock.advance(120);
    assert_eq!(shop.step("restart").await, Step::wait(Phase::Failed));
    assert_eq!(
        shop.status("restart")["message"],
        "verification failed: pods not Ready after the 2m verification window: app-6f9c7b8d4-2xkqp"
    );
}

#[tokio::test]
async fn a_patch_over_the_policy_maximum_is_refused_and_not_retried() {
    let shop = shop();
    shop.plan("patch", "Deployment", "app", memory_patch("4Gi"));
    shop.assert_refused(
        "patch",
        "Deployment shop/app: refused: memory limit 4Gi for container app exceeds the maximum 2Gi",
    )
    .await;
}

// ---- interruption ----

fn interrupted(action: Value, original: Option<Value>) -> Value {
    let mut action = action;
    action["status"] =
        json!({"phase": "InProgress", "attempts": 1, "startedAt": "2026-03-14T08:59:00Z"});
    if let Some(original) = original {
        action["status"]["original"] = original;
    }
    action
}

#[tokio::test]
async fn an_interrupted_scale_is_rolled_back_and_an_interrupted_restart_fails() {
    let shop = shop();
    let mut deployment = shop.deployment();
    deployment["spec"]["replicas"] = json!(4);
    shop.fake.insert(deployment);
    shop.add(interrupted(
        healing_action("scale", "Deployment", "app", scale_to(4), json!({})),
        Some(json!({"replicas": 2})),
    ));
    shop.add(interrupted(
        healing_action("restart", "Deployment", "app", restart(), json!({})),
        None,
    ));

    assert_eq!(shop.step("scale").await.phase, Phase::Failed);
    let status = shop.status("scale");
    assert_eq!(condition(&status, "Interrupted")["status"], "True");
    assert_eq!(condition(&status, "RollbackPending")["status"], "True");
    assert_eq!(shop.step("scale").await.phase, Phase::RolledBack);
    assert_eq!(shop.deployment()["spec"]["replicas"], 2);

    assert_eq!(shop.step("restart").await, Step::wait(Phase::Failed));
    let status = shop.status("restart");
    assert_eq!(
        status["message"],
        "interrupted; the change may or may not have been applied"
    );
    assert_eq!(
        condition(&status, "Interrupted")["reason"],
        "DaemonRestarted"
    );
}

// ---- retries ----

#[tokio::test]
async fn api_errors_are_retried_with_exponential_backoff_until_attempts_run_out() {
    let shop = shop();
    let scale_path = format!("{APP}/scale");
    shop.fake.fail_next("PATCH", &scale_path, 503, 3);
    shop.add(healing_action(
        "scale",
        "Deployment",
        "app",
        scale_to(3),
        json!({"retryPolicy": {"maxAttempts": 3, "backoffSeconds": 30}}),
    ));
    shop.step("scale").await;

    let step = shop.step("scale").await;
    assert_eq!(step, Step::after(Phase::Approved, Duration::from_secs(30)));
    let status = shop.status("scale");
    assert_eq!(status["attempts"], 1);
    assert_eq!(status["retryAfter"], "2026-03-14T09:00:30Z");
    assert!(status.get("original").is_none(), "nothing was changed");

    shop.clock.advance(10);
    let early = shop.step("scale").await;
    assert_eq!(early, Step::after(Phase::Approved, Duration::from_secs(20)));
    assert_eq!(
        shop.status("scale")["attempts"],
        1,
        "no attempt before the backoff ends"
    );

    shop.clock.advance(20);
    let step = shop.step("scale").await;
    assert_eq!(step.requeue_after, Some(Duration::from_secs(60)), "doubled");
    shop.clock.advance(60);
    assert_eq!(shop.step("scale").await, Step::wait(Phase::Failed));
    let status = shop.status("scale");
    assert_eq!(status["attempts"], 3);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 3 attempt(s): Deployment shop/app: API error: 503"),
        "{status}"
    );
    assert_eq!(shop.deployment()["spec"]["replicas"], 2);
    assert_eq!(
        shop.action_event_reasons(),
        [
            "Approved", "Started", "Retrying", "Started", "Retrying", "Started", "Failed"
        ]
    );
}

#[tokio::test]
async fn a_retry_succeeds_once_the_server_recovers() {
    let shop = shop();
    shop.fake
        .fail_next("PATCH", &format!("{APP}/scale"), 500, 1);
    shop.plan("scale", "Deployment", "app", scale_to(3));
    shop.step("scale").await;
    shop.step("scale").await;
    shop.clock.advance(30);
    assert_eq!(shop.step("scale").await.phase, Phase::Verifying);
    assert_eq!(shop.status("scale")["attempts"], 2);
    assert_eq!(shop.deployment()["spec"]["replicas"], 3);
}

#[tokio::test]
async fn a_scale_refused_because_of_an_hpa_fails_at_once() {
    let shop = shop();
    shop.plan("scale", "Deployment", "web", scale_to(4));
    shop.assert_refused(
        "scale",
        "Deployment shop/web: refused: HPA web controls Deployment/web; scaling by hand would be undone",
    )
    .await;
}

#[tokio::test]
async fn a_bare_pod_restart_has_nothing_to_verify() {
    let shop = shop();
    shop.edit_policy(json!({"minHealthyPercent": 0}));
    let mut action = healing_action("debug", "Pod", "debug", restart(), json!({}));
    action["spec"]["action"]["restartAction"]["strategy"] = json!("delete");
    shop.add(action);
    shop.until("debug", Phase::Verifying).await;
    assert!(
        shop.fake
            .get("/api/v1/namespaces/shop/pods/debug")
            .is_none()
    );
    assert_eq!(shop.step("debug").await.phase, Phase::Succeeded);
    assert_eq!(
        shop.status("debug")["message"],
        "delete Pod shop/debug to restart it; verifying for 2m; nothing recreates a bare pod, so there is nothing to verify"
    );
}
