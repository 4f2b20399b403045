//! Whole incidents through the controller `kubeskippy run` drives: pod status
//! in the caches → evaluation → analysis (rules, no model) → a HealingAction
//! created through the API → lifecycle → Succeeded, or RolledBack when the
//! change does not help. The API server is the in-memory one; the caches are
//! fed from it directly, as the watchers would; time is a test clock.

#[path = "common/fake_api.rs"]
mod fake_api;
#[path = "common/shop_app.rs"]
mod shop_app;
#[path = "common/test_clock.rs"]
mod test_clock;

use std::sync::Arc;

use fake_api::FakeApi;
use kubeskippy::collect::{self, CacheWriters, ClusterCache};
use kubeskippy::config::Config;
use kubeskippy::daemon::controller::Controller;
use kubeskippy::events::EventRecorder;
use kubeskippy::execute::Clock;
use kubeskippy::healing_action::HealingAction;
use kubeskippy::lifecycle::Context;
use kubeskippy::pipeline::{Analyzer, PluginFiles};
use kubeskippy::policy::HealingPolicy;
use serde_json::{Value, json};
use shop_app::{APP, POD_1};
use test_clock::TestClock;

/// A policy for `shop/app` that answers OOM kills by raising the memory
/// limit, in `mode`.
fn policy(mode: &str) -> String {
    format!(
        r#"
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {{name: shop-healing, namespace: shop}}
spec:
  mode: {mode}
  selector: {{namespaces: [shop]}}
  triggers:
  - name: oom
    condition: {{states: [OOMKilled]}}
  actions:
  - name: more-memory
    type: patch
    triggers: [oom]
    patch: {{maxMemoryLimit: 2Gi}}
  safety:
    verificationWindow: 2m
"#
    )
}

const ACTIONS: &str = "/apis/kubeskippy.io/v1alpha1/namespaces/shop/healingactions/";

struct Cluster {
    fake: FakeApi,
    writers: CacheWriters,
    controller: Controller,
    analyzer: Analyzer,
    clock: TestClock,
}

fn of_kind<K: serde::de::DeserializeOwned>(fake: &FakeApi, segment: &str) -> Vec<K> {
    fake.snapshot()
        .into_iter()
        .filter(|(path, _)| path.contains(segment))
        .map(|(_, object)| serde_json::from_value(object).unwrap())
        .collect()
}

impl Cluster {
    fn new(mode: &str) -> Cluster {
        let fake = FakeApi::new();
        fake.seed_yaml(shop_app::YAML);
        fake.seed_yaml(&policy(mode));
        let (cache, writers) = ClusterCache::detached();
        let client = fake.client();
        let clock = TestClock::at("2026-03-14T09:00:00Z".parse().unwrap());
        let context = Context {
            events: EventRecorder::new(client.clone(), "kubeskippy-0"),
            client: client.clone(),
            clock: Arc::new(clock.clone()),
            identity: "kubeskippy-0".into(),
            cluster_actions_per_hour: 30,
            namespace_actions_per_hour: 10,
            floor: kubeskippy::safety::SafetyFloor::default(),
            key: kubeskippy::provenance::SigningKey::generate(),
            fence: kubeskippy::lease::Fence::unfenced(),
        };
        let mut cluster = Cluster {
            controller: Controller::new(cache, context),
            analyzer: Analyzer::new(&Config::default(), &PluginFiles::default(), None).unwrap(),
            fake,
            writers,
            clock,
        };
        cluster.sync();
        cluster
    }

    /// What the watchers would have delivered by now.
    fn sync(&mut self) {
        let fake = &self.fake;
        let writers = &mut self.writers;
        collect::fill(
            &mut writers.pods,
            of_kind::<collect::CachedPod>(fake, "/pods/"),
        );
        collect::fill(
            &mut writers.deployments,
            of_kind::<collect::CachedDeployment>(fake, "/deployments/"),
        );
        collect::fill(
            &mut writers.replica_sets,
            of_kind::<collect::CachedReplicaSet>(fake, "/replicasets/"),
        );
        collect::fill(
            &mut writers.policies,
            of_kind::<collect::Lenient<HealingPolicy>>(fake, "/healingpolicies/"),
        );
        collect::fill(&mut writers.cluster_policies, []);
        collect::fill(
            &mut writers.actions,
            of_kind::<collect::Lenient<HealingAction>>(fake, "/healingactions/"),
        );
    }

    async fn evaluate(&mut self) -> Vec<String> {
        let created = self
            .controller
            .evaluate(&self.analyzer)
            .await
            .unwrap()
            .created;
        self.sync();
        created
    }

    /// Reconciles until nothing is due, as consecutive ticks would.
    async fn settle(&mut self) {
        for _ in 0..10 {
            let reconciled = self.controller.reconcile_due(|| true).await;
            self.sync();
            if reconciled == 0 {
                return;
            }
        }
        panic!("reconcile did not settle in 10 rounds");
    }

    fn action(&self, name: &str) -> Value {
        self.fake.get(&format!("{ACTIONS}{name}")).unwrap()
    }

    fn event_reasons(&self) -> Vec<String> {
        self.fake
            .snapshot()
            .into_iter()
            .filter(|(path, _)| path.starts_with("/apis/events.k8s.io/"))
            .map(|(_, event)| event["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn memory_limit(&self) -> Value {
        self.fake.get(APP).unwrap()["spec"]["template"]["spec"]["containers"][0]["resources"]
            ["limits"]["memory"]
            .clone()
    }
}

#[tokio::test]
async fn an_oom_kill_is_healed_and_verified() {
    let mut cluster = Cluster::new("automatic");
    let created = cluster.evaluate().await;
    assert_eq!(created.len(), 1, "{created:?}");
    let name = &created[0];
    assert!(name.starts_with("rule-patch-app-"), "{name}");

    cluster.settle().await;
    let action = cluster.action(name);
    assert_eq!(action["status"]["phase"], "Verifying", "{action:#}");
    assert_eq!(cluster.memory_limit(), "1Gi");

    // The open action keeps a second pass from planning again.
    assert!(cluster.evaluate().await.is_empty());

    cluster.clock.advance(121);
    cluster.settle().await;
    let action = cluster.action(name);
    assert_eq!(action["status"]["phase"], "Succeeded", "{action:#}");
    assert_eq!(cluster.memory_limit(), "1Gi");
    let reasons = cluster.event_reasons();
    for reason in [
        "HealingPlanned",
        "Approved",
        "Started",
        "Verifying",
        "Succeeded",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "no {reason} event in {reasons:?}"
        );
    }

    // The policy's status says what fired and what was done.
    let policy = cluster
        .fake
        .get("/apis/kubeskippy.io/v1alpha1/namespaces/shop/healingpolicies/shop-healing")
        .unwrap();
    assert_eq!(
        policy["status"]["activeTriggers"],
        json!(["oom/Deployment/app"])
    );
    assert!(policy["status"]["lastEvaluation"].is_string());
}

#[tokio::test]
async fn a_change_that_does_not_help_is_rolled_back() {
    let mut cluster = Cluster::new("automatic");
    let name = cluster.evaluate().await.remove(0);
    cluster.settle().await;
    assert_eq!(cluster.memory_limit(), "1Gi");

    // Still OOMKilled after the change, a minute in.
    cluster.clock.advance(60);
    let mut pod = cluster.fake.get(POD_1).unwrap();
    pod["status"]["containerStatuses"][0]["restartCount"] = json!(4);
    pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["finishedAt"] =
        json!("2026-03-14T09:00:50Z");
    cluster.fake.insert(pod);
    cluster.sync();
    cluster.settle().await;

    let action = cluster.action(&name);
    assert_eq!(action["status"]["phase"], "RolledBack", "{action:#}");
    assert_eq!(
        cluster.memory_limit(),
        "512Mi",
        "the original limit is back"
    );
    let reasons = cluster.event_reasons();
    assert!(reasons.iter().any(|r| r == "RolledBack"), "{reasons:?}");
}

#[tokio::test]
async fn manual_mode_waits_for_approval_and_monitor_mode_only_records() {
    let mut cluster = Cluster::new("manual");
    let name = cluster.evaluate().await.remove(0);
    cluster.settle().await;
    assert_eq!(cluster.action(&name)["status"]["phase"], "Pending");
    assert_eq!(cluster.memory_limit(), "512Mi");
    cluster.fake.set_user("alice@example.com");
    kubeskippy::approval::decide(
        &cluster.fake.client(),
        "shop",
        &name,
        kubeskippy::healing_action::ApprovalDecision::Approved,
        Some("looked at the heap graphs"),
        cluster.clock.now(),
    )
    .await
    .unwrap();
    cluster.sync();
    cluster.settle().await;
    let action = cluster.action(&name);
    assert_eq!(action["status"]["phase"], "Verifying", "{action:#}");
    assert_eq!(action["spec"]["approval"]["by"], "alice@example.com");
    assert_eq!(cluster.memory_limit(), "1Gi");

    let mut monitor = Cluster::new("monitor");
    assert!(monitor.evaluate().await.is_empty());
    assert!(
        monitor
            .event_reasons()
            .iter()
            .any(|r| r == "IncidentDetected"),
        "{:?}",
        monitor.event_reasons()
    );
    // Reported once per cooldown, not on every pass.
    let before = monitor.fake.requests().len();
    monitor.evaluate().await;
    let writes = monitor.fake.requests()[before..]
        .iter()
        .filter(|request| request.is_write())
        .count();
    assert_eq!(writes, 0);
    assert_eq!(monitor.memory_limit(), "512Mi");
}
