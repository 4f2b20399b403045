//! The third, independent review of the trust boundaries: what it broke after
//! the second review's fixes, as tests of what the daemon should do instead.
//! Against the in-memory API server, with the shared harnesses.

use crate::controller_harness;
use crate::harness;
use crate::shop_app;

use harness::*;
use kube::Api;
use kube::api::PostParams;
use kubeskippy::core::crd::healing_action::{HealingAction, Phase};
use serde_json::{Value, json};

fn restarted_at(shop: &Shop) -> Value {
    shop.deployment()["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .clone()
}

fn put_status(shop: &Shop, name: &str, status: Value) {
    let mut stored = shop.fake.get(&format!("{ACTIONS}{name}")).unwrap();
    stored["status"] = status;
    shop.fake.insert(stored);
}

// ---- A. a sealed status can be replayed: the seal has no notion of "earlier" ----
// Fixed by the CRD's status rules (a status only moves forward), which the API
// server enforces for every writer; `crd_rules.rs` checks each of them.

#[tokio::test]
async fn a_finished_action_given_back_an_earlier_sealed_status_is_not_run_again() {
    // The seal binds a status to the action's namespace, name and uid, but not
    // to its place in the action's history. Every status the daemon ever wrote
    // for an action verifies forever. Someone with healingactions/status
    // (watching the action, or reading its managedFields/audit history) keeps
    // the sealed `Approved` status (attempts 0) and, after the action
    // Succeeded, writes it back verbatim. The daemon takes it for its own and
    // runs the change again — and again, on each replay: one approval buys
    // any number of runs, and because the action counts only once in the
    // hourly limits (its own startedAt is overwritten), they are bypassed too.
    let shop = shop();
    shop.plan("restart", "Deployment", "app", restart());
    shop.until("restart", Phase::Approved).await;
    let approved = shop.status("restart");
    assert!(approved["seal"].is_string(), "{approved}");
    shop.until("restart", Phase::Verifying).await;
    shop.clock.advance(121);
    shop.until("restart", Phase::Succeeded).await;
    let first = restarted_at(&shop);
    assert!(first.is_string());

    shop.clock.advance(600);
    // Through the API, as someone with healingactions/status would: the
    // CRD's rules refuse an earlier status over a finished one.
    let api: Api<HealingAction> = Api::namespaced(shop.fake.client(), "shop");
    let mut replay = shop.fake.get(&format!("{ACTIONS}restart")).unwrap();
    replay["status"] = approved.clone();
    let refused = api
        .replace_status(
            "restart",
            &PostParams::default(),
            &serde_json::from_value(replay).unwrap(),
        )
        .await
        .expect_err("the API server refuses the replay");
    assert!(
        matches!(&refused, kube::Error::Api(status) if status.code == 422
            && status.message.contains("a finished HealingAction's phase is final")),
        "{refused}"
    );
    let step = shop.step("restart").await;

    assert_eq!(
        restarted_at(&shop),
        first,
        "a replayed sealed status ran the finished restart again (step {step:?}): {}",
        shop.status("restart")
    );
}

// ---- B. refusing a rewritten status seals what the rewriter chose ----

#[tokio::test]
async fn a_rewritten_status_refused_by_the_daemon_still_counts_towards_the_rate_limit() {
    // A status nobody sealed is refused: the daemon writes Failed (or
    // Cancelled) over it — but keeps every other field of the rewritten
    // status and seals them. So whoever has status rights picks the sealed
    // `startedAt`, `dryRun`, `attempts`, `rollback` and `verification` of a
    // real action. Here the action really ran; the rewrite says it started two
    // hours ago and was a dry run. Once the daemon has refused (and sealed) it,
    // the action no longer counts for the rate limit, the budgets or the
    // breaker: rewriting a status freed the gate after all.
    let shop = shop();
    shop.edit_policy(json!({"maxActionsPerHour": 1}));
    shop.plan("first", "Deployment", "app", restart());
    shop.until("first", Phase::Verifying).await;

    let mut forged = shop.status("first");
    forged["startedAt"] = json!("2026-03-14T07:00:00Z");
    forged["dryRun"] = json!(true);
    put_status(&shop, "first", forged);
    shop.until("first", Phase::Failed).await;
    assert!(
        shop.ctx.key.check_status(&shop.action("first")).is_ok(),
        "the daemon sealed the refused status"
    );

    shop.clock.advance(60);
    shop.plan("second", "Deployment", "app", restart());
    shop.until("second", Phase::Approved).await;
    let step = shop.step("second").await;
    assert_eq!(
        step.phase,
        Phase::Approved,
        "the first action started a minute ago and the limit is 1 an hour: {}",
        shop.status("second")
    );
    assert_eq!(
        condition(&shop.status("second"), "Blocked")["status"],
        "True"
    );
}

// ---- C. the live floor of an eviction looks at the pod, not at its workload ----

#[tokio::test]
async fn an_eviction_planned_before_its_workload_was_protected_does_not_run() {
    // At planning the floor refuses a pod whose workload is marked
    // kubeskippy.io/protected or listed in the policy's protectedResources.
    // Before running it checks again "on the live object" — but for an
    // eviction that object is the pod, and only the pod's own marks and the
    // pod's own kind/name are compared. Protecting the Deployment (a freeze,
    // an incident, a protectedResources entry added by the namespace owner)
    // after the plan was made does not stop evicting its pods, although it
    // stops restarting, scaling or patching the Deployment itself
    // (lifecycle.rs: the_safety_floor_is_checked_again_on_the_live_target).
    let shop = shop();
    shop.plan(
        "evict",
        "Pod",
        "app-6f9c7b8d4-2xkqp",
        evict("app-6f9c7b8d4-2xkqp"),
    );
    let mut app = shop.deployment();
    app["metadata"]["labels"]["kubeskippy.io/protected"] = json!("true");
    shop.fake.insert(app);

    let step = shop.step("evict").await;
    let step = if step.phase == Phase::Approved {
        shop.step("evict").await
    } else {
        step
    };
    assert_eq!(step.phase, Phase::Cancelled, "{}", shop.status("evict"));
    assert!(
        shop.fake.get(shop_app::POD_1).is_some(),
        "a pod of the protected Deployment was evicted"
    );
}

// ---- D. an Event is evidence about the object it names, in any namespace ----

/// shop's own policy: restart a Deployment whose pods back off.
const RESTART_ON_BACKOFF: &str = r#"
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {name: backoff, namespace: shop, uid: uid-backoff}
spec:
  mode: automatic
  triggers: [{name: backoff, event: {reason: BackOff, minCount: 3, window: 10m}}]
  actions: [{name: restart, type: restart, triggers: [backoff]}]
"#;

#[tokio::test]
async fn an_event_written_in_one_namespace_is_no_evidence_about_another() {
    // Creating Events is often granted broadly (and every namespace's `edit`
    // has it). The API server holds only an old-style Event (no eventTime)
    // to name an object of its own namespace; one with eventTime (and
    // reportingComponent, reportingInstance, action, as here) may name any
    // namespace's object (legacyValidateEvent in
    // pkg/apis/core/validation/events.go). facts.rs files an Event under `involvedObject.namespace`,
    // not under the namespace it was written in: a tenant of tenant-a writes
    // Warning Events there about shop's pods, and the daemon restarts shop's
    // Deployment (and feeds the tenant's text to shop's model prompt as
    // shop's evidence). shop's owner never granted tenant-a anything.
    let event = r#"
apiVersion: v1
kind: Event
metadata: {name: forged-backoff, namespace: tenant-a}
involvedObject: {kind: Pod, namespace: shop, name: app-6f9c7b8d4-2xkqp}
reason: BackOff
message: Back-off restarting failed container app
type: Warning
count: 5
eventTime: "2026-03-14T08:58:00.000000Z"
firstTimestamp: "2026-03-14T08:55:00Z"
lastTimestamp: "2026-03-14T08:59:00Z"
reportingComponent: tenant-a
reportingInstance: tenant-a
action: BackOff
"#;
    let mut cluster = controller_harness::Cluster::with(&format!(
        "{}\n---\n{RESTART_ON_BACKOFF}\n---\n{event}",
        shop_app::YAML
    ));
    let created = cluster.evaluate().await;
    assert!(
        created.is_empty(),
        "an Event in tenant-a made the daemon plan {created:?} on shop/app"
    );
    cluster.settle().await;
    let restarted =
        cluster.fake.get(shop_app::APP).unwrap()["spec"]["template"]["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/restartedAt")
            .is_some();
    assert!(!restarted, "shop/app was restarted on tenant-a's word");
}

// ---- E. a status the daemon cannot parse takes the action out of every count ----

/// shop's policy: a rollout restart on OOM, at most one an hour.
const RESTART_ONCE_AN_HOUR: &str = r#"
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {name: oom, namespace: shop, uid: uid-oom}
spec:
  mode: automatic
  triggers: [{name: oom, condition: {states: [OOMKilled]}}]
  actions: [{name: restart, type: restart, triggers: [oom]}]
  safety: {verificationWindow: 2m, cooldown: 10m, maxActionsPerHour: 1}
"#;

#[tokio::test]
async fn an_action_whose_status_cannot_be_parsed_still_counts_towards_the_rate_limit() {
    // status.rollback is declared free-form in the CRD (items are objects with
    // x-kubernetes-preserve-unknown-fields), so the API server accepts
    // `rollback: [{}]` from anyone with healingactions/status. The daemon's
    // typed parse then fails, the cache files the action as unreadable, and
    // unreadable actions are left out of `countable`: no open action on the
    // workload, no cooldown, no place in the rate limit, budgets or breaker.
    // report_unreadable's merge patch sets phase Cancelled but leaves the
    // garbage, so the action stays uncounted for good. The threat model says
    // "rewriting a status frees nothing"; here one write frees everything.
    let mut cluster = controller_harness::Cluster::with(&format!(
        "{}\n---\n{RESTART_ONCE_AN_HOUR}",
        shop_app::YAML
    ));
    let first = cluster.evaluate().await;
    assert_eq!(first.len(), 1, "{first:?}");
    cluster.settle().await;
    let restarted_at = |cluster: &controller_harness::Cluster| {
        cluster.fake.get(shop_app::APP).unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"]
            .clone()
    };
    let first_restart = restarted_at(&cluster);
    assert_eq!(first_restart, "2026-03-14T09:00:00Z");

    let path = format!("{ACTIONS}{}", first[0]);
    let mut action = cluster.fake.get(&path).unwrap();
    action["status"]["rollback"] = json!([{}]);
    cluster.fake.insert(action);
    cluster.sync();

    // Past the cooldown, well within the hour.
    cluster.clock.advance(11 * 60);
    cluster.evaluate().await;
    cluster.settle().await;
    assert_eq!(
        restarted_at(&cluster),
        first_restart,
        "a second restart within the hour, against maxActionsPerHour 1"
    );
}
