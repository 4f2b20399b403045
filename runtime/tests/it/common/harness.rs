//! A HealingAction lifecycle harness over the in-memory API server, seeded
//! with what production sees: a Deployment `shop/app` with its ReplicaSet and
//! two Ready pods, a Deployment `shop/web` an HPA controls, a bare pod, and a
//! HealingPolicy allowing restart, scale, patch and delete-pod. Time is a test
//! clock; nothing sleeps. HealingActions are signed with the harness's key,
//! as the daemon signs the ones it plans, unless a test adds one unsigned.
//!
//! Include it with `#[path = "common/harness.rs"] mod harness;` next to
//! `fake_api`, `shop_app` and `test_clock`.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kubeskippy::core::crd::healing_action::{HealingAction, Phase};
use kubeskippy::core::crd::policy::HealingPolicy;
use kubeskippy::core::provenance::SigningKey;
use kubeskippy::operator::events::EventRecorder;
use kubeskippy::operator::leader::Fence;
use kubeskippy::operator::lifecycle::{self, Context, LifecycleError, Step};
use serde_json::{Value, json};

use crate::fake_api::FakeApi;
use crate::shop_app::{self, APP};
use crate::test_clock::TestClock;

/// The rest of namespace `shop`, beside `shop_app::YAML`.
pub const AROUND_APP: &str = r#"
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
metadata: {name: shop-healing, namespace: shop, uid: uid-policy}
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

pub const POLICY: &str =
    "/apis/kubeskippy.io/v1alpha1/namespaces/shop/healingpolicies/shop-healing";
pub const ACTIONS: &str = "/apis/kubeskippy.io/v1alpha1/namespaces/shop/healingactions/";
pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events/";

pub fn start() -> DateTime<Utc> {
    "2026-03-14T09:00:00Z".parse().unwrap()
}

pub struct Shop {
    pub fake: FakeApi,
    pub ctx: Context,
    pub clock: TestClock,
}

pub fn shop() -> Shop {
    shop_with_budget(100)
}

pub fn shop_with_budget(cluster_actions_per_hour: u32) -> Shop {
    let fake = FakeApi::new();
    fake.seed_yaml(shop_app::YAML);
    fake.seed_yaml(AROUND_APP);
    let client = fake.client();
    let clock = TestClock::at(start());
    let ctx = Context {
        events: EventRecorder::new(client.clone(), "kubeskippy-0"),
        evictions: client.clone(),
        client,
        clock: Arc::new(clock.clone()),
        identity: "kubeskippy-0".into(),
        cluster_actions_per_hour,
        namespace_actions_per_hour: 100,
        floor: kubeskippy::core::safety::SafetyFloor::default(),
        key: SigningKey::generate(),
        fence: Fence::unfenced(),
    };
    Shop { fake, ctx, clock }
}

/// A HealingAction of the policy as the daemon creates it; `action` is the
/// spec's action block, `extra` is merged into the spec.
pub fn healing_action(name: &str, kind: &str, target: &str, action: Value, extra: Value) -> Value {
    let uid = match target {
        "app" => "uid-app",
        "web" => "uid-web",
        "app-6f9c7b8d4-2xkqp" => "uid-pod-1",
        "debug" => "uid-debug",
        _ => "uid-unknown",
    };
    let mut spec = json!({
        "policyRef": {"kind": "HealingPolicy", "namespace": "shop", "name": "shop-healing", "uid": "uid-policy"},
        "incidentId": "shop/app",
        "target": {"apiVersion": if kind == "Pod" {"v1"} else {"apps/v1"}, "kind": kind,
                   "namespace": "shop", "name": target, "uid": uid},
        "action": action,
        "source": "rules",
        "confidence": 0.9,
        "reasoning": "OOMKilled three times in ten minutes",
        "risk": "low",
        "plannedAt": "2026-03-14T09:00:00Z",
    });
    json_patch::merge(&mut spec, &extra);
    json!({
        "apiVersion": "kubeskippy.io/v1alpha1",
        "kind": "HealingAction",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-action-{name}"),
                     "labels": {"kubeskippy.io/policy": "shop-healing"}},
        "spec": spec,
    })
}

pub fn restart() -> Value {
    json!({"type": "restart", "restartAction": {"strategy": "rollout"}})
}

pub fn scale_to(replicas: u32) -> Value {
    json!({"type": "scale", "scaleAction": {"replicas": replicas}})
}

pub fn memory_patch(limit: &str) -> Value {
    let document = format!(
        "spec:\n  template:\n    spec:\n      containers:\n      - name: app\n        resources:\n          limits: {{memory: {limit}}}\n"
    );
    json!({"type": "patch", "patchAction": {"patchType": "strategic", "patch": document}})
}

pub fn evict(pod: &str) -> Value {
    json!({"type": "delete-pod", "deletePodAction": {"podName": pod}})
}

/// `action` as the daemon would store it: signed with `key`, and its status
/// (if it has one) sealed.
pub fn signed(key: &SigningKey, action: Value) -> Value {
    let mut typed: HealingAction = serde_json::from_value(action).expect("a valid HealingAction");
    key.sign(&mut typed);
    if let Some(mut status) = typed.status.take() {
        key.seal_status(&typed, &mut status);
        typed.status = Some(status);
    }
    serde_json::to_value(typed).expect("a HealingAction serialises")
}

impl Shop {
    /// Stores a HealingAction as the daemon would: signed.
    pub fn add(&self, action: Value) {
        self.fake.insert(signed(&self.ctx.key, action));
    }

    /// Stores a HealingAction as anyone allowed to create one could.
    pub fn add_unsigned(&self, action: Value) {
        self.fake.insert(action);
    }

    /// Adds a HealingAction with the defaults `plan::plan` gives.
    pub fn plan(&self, name: &str, kind: &str, target: &str, action: Value) {
        self.add(healing_action(name, kind, target, action, json!({})));
    }

    /// Reconciles take a refused action from Pending to Failed, with no retry
    /// and nothing to roll back; `attempts` is 0 when the host refused the
    /// change before running it, 1 when the API server or an executor did.
    pub async fn assert_refused(&self, name: &str, message: &str, attempts: u32) {
        self.until(name, Phase::Failed).await;
        let status = self.status(name);
        assert_eq!(status["message"], message);
        assert_eq!(
            status["attempts"].as_u64().unwrap_or(0),
            u64::from(attempts)
        );
        assert!(status.get("retryAfter").is_none(), "{status}");
        assert!(
            status["conditions"]
                .as_array()
                .is_none_or(|conditions| conditions.iter().all(|c| c["type"] != "RollbackPending")),
            "{status}"
        );
    }

    pub fn action(&self, name: &str) -> HealingAction {
        let stored = self
            .fake
            .get(&format!("{ACTIONS}{name}"))
            .unwrap_or_else(|| panic!("action {name} is stored"));
        serde_json::from_value(stored).expect("a stored HealingAction parses")
    }

    pub fn status(&self, name: &str) -> Value {
        self.fake.get(&format!("{ACTIONS}{name}")).unwrap()["status"].clone()
    }

    pub fn policy(&self) -> Option<HealingPolicy> {
        self.fake
            .get(POLICY)
            .map(|policy| serde_json::from_value(policy).expect("the policy parses"))
    }

    /// The stored HealingActions the gates count, as the controller hands
    /// them to the lifecycle.
    pub fn peers(&self) -> Vec<Arc<HealingAction>> {
        let stored: Vec<Arc<HealingAction>> = self
            .fake
            .snapshot()
            .into_iter()
            .filter(|(path, _)| path.starts_with(ACTIONS))
            .map(|(_, object)| Arc::new(serde_json::from_value::<HealingAction>(object).unwrap()))
            .collect();
        kubeskippy::core::provenance::countable(&self.ctx.key, &stored)
    }

    /// `action` with `status.rollback` holding `fields`, as the daemon saves
    /// it before a change (`add` seals the status).
    pub fn with_rollback(&self, mut action: Value, fields: Value) -> Value {
        action["status"]["rollback"] = fields;
        action
    }

    /// One reconcile of the stored action, as the daemon would call it.
    pub async fn step(&self, name: &str) -> Step {
        self.try_step(name).await.expect("reconcile succeeds")
    }

    pub async fn try_step(&self, name: &str) -> Result<Step, LifecycleError> {
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
    pub async fn until(&self, name: &str, phase: Phase) -> Step {
        for _ in 0..6 {
            let step = self.step(name).await;
            if step.phase == phase {
                return step;
            }
        }
        panic!("{name} never reached {phase:?}: {}", self.status(name));
    }

    /// `(regarding kind, reason, note)` of every event, oldest first.
    pub fn events(&self) -> Vec<(String, String, String)> {
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
    pub fn action_event_reasons(&self) -> Vec<String> {
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

    pub fn set_pod_restarts(&self, path: &str, restarts: u32) {
        let mut pod = self.fake.get(path).unwrap();
        pod["status"]["containerStatuses"][0]["restartCount"] = json!(restarts);
        self.fake.insert(pod);
    }

    pub fn deployment(&self) -> Value {
        self.fake.get(APP).unwrap()
    }

    pub fn edit_policy(&self, safety: Value) {
        let mut policy = self.fake.get(POLICY).unwrap();
        json_patch::merge(&mut policy["spec"]["safety"], &safety);
        self.fake.insert(policy);
    }
}

/// An action of `policy` (in shop) that started `minutes_ago` and finished
/// in `phase`.
pub fn past_action(name: &str, policy: &str, minutes_ago: i64, phase: &str) -> Value {
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

pub fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("condition {kind} in {status}"))
}
