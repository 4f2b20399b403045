//! Whole incidents through the controller `kubeskippy run` drives: pod status
//! in the caches → evaluation → analysis (rules, no model) → a HealingAction
//! created through the API → lifecycle → Succeeded, or RolledBack when the
//! change does not help. The API server is the in-memory one; the caches are
//! fed from it directly, as the watchers would; time is a test clock.

use crate::controller_harness;
use crate::shop_app;

use controller_harness::Cluster;
use kubeskippy::operator::execute::Clock;
use serde_json::{Value, json};
use shop_app::{APP, POD_1};

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

trait ShopCluster {
    fn action(&self, name: &str) -> Value;
    fn memory_limit(&self) -> Value;
}

fn shop(mode: &str) -> Cluster {
    Cluster::with(&format!("{}\n---\n{}", shop_app::YAML, policy(mode)))
}

impl ShopCluster for Cluster {
    fn action(&self, name: &str) -> Value {
        self.fake.get(&format!("{ACTIONS}{name}")).unwrap()
    }

    fn memory_limit(&self) -> Value {
        self.fake.get(APP).unwrap()["spec"]["template"]["spec"]["containers"][0]["resources"]
            ["limits"]["memory"]
            .clone()
    }
}

#[tokio::test]
async fn an_oom_kill_is_healed_and_verified() {
    let mut cluster = shop("automatic");
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
    let mut cluster = shop("automatic");
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
    let mut cluster = shop("manual");
    let name = cluster.evaluate().await.remove(0);
    cluster.settle().await;
    assert_eq!(cluster.action(&name)["status"]["phase"], "Pending");
    assert_eq!(cluster.memory_limit(), "512Mi");
    cluster.fake.set_user("alice@example.com");
    kubeskippy::operator::approval::decide(
        &cluster.fake.client(),
        "shop",
        &name,
        kubeskippy::core::crd::healing_action::ApprovalDecision::Approved,
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

    let mut monitor = shop("monitor");
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
