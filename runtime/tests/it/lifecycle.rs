//! The HealingAction lifecycle against the in-memory API server (the harness
//! in `common/harness.rs`): every transition, approval and rejection, each
//! gate, the breaker, dry runs, verification and rollback, interruption and
//! retries.

use crate::harness;
use crate::shop_app;

use std::time::Duration;

use chrono::{DateTime, Utc};
use harness::*;
use kubeskippy::core::crd::healing_action::Phase;
use kubeskippy::core::crd::policy::HealingPolicy;
use kubeskippy::core::gates::{self, Disruption};
use kubeskippy::operator::execute::Clock;
use kubeskippy::operator::lifecycle::{self, LifecycleError, Step};
use serde_json::{Value, json};
use shop_app::{APP, POD_1};

// ---- the main path ----

#[tokio::test]
async fn a_rejection_recorded_after_the_change_ran_is_reported_and_verification_goes_on() {
    let shop = shop();
    shop.plan("heal", "Deployment", "app", restart());
    assert_eq!(shop.step("heal").await.phase, Phase::Approved);
    assert_eq!(shop.step("heal").await.phase, Phase::Verifying);
    // The policy needed no approval; someone rejects once it has run.
    let path = format!("{ACTIONS}heal");
    let mut action = shop.fake.get(&path).unwrap();
    action["spec"]["approval"] = json!({
        "decision": "rejected", "by": "alice\u{202e}", "at": "2026-03-14T09:00:30Z",
        "reason": "not during the sale", "specDigest": "a".repeat(64),
    });
    shop.fake.insert(action);

    let step = shop.step("heal").await;
    assert_eq!(step, Step::after(Phase::Verifying, Duration::ZERO));
    let status = shop.status("heal");
    let late = condition(&status, "DecidedLate");
    assert_eq!(late["status"], "True");
    let told = late["message"].as_str().unwrap();
    assert!(
        told.starts_with("rejected by alice: not during the sale after the change was made"),
        "{told}"
    );
    assert_eq!(
        shop.action_event_reasons(),
        ["Approved", "Started", "Verifying", "DecidedLate"]
    );
    // Reported once; the change is verified as any other.
    shop.clock.advance(120);
    assert_eq!(shop.step("heal").await, Step::wait(Phase::Succeeded));
    assert_eq!(
        shop.action_event_reasons(),
        [
            "Approved",
            "Started",
            "Verifying",
            "DecidedLate",
            "Succeeded"
        ]
    );
}

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

    kubeskippy::operator::approval::decide(
        &shop.ctx.client,
        "shop",
        "heal",
        kubeskippy::core::crd::healing_action::ApprovalDecision::Approved,
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
    kubeskippy::operator::approval::decide(
        &shop.ctx.client,
        "shop",
        "heal",
        kubeskippy::core::crd::healing_action::ApprovalDecision::Rejected,
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
        "HealingPolicy shop/deleted-policy no longer exists"
    );

    let mut policy = shop.fake.get(POLICY).unwrap();
    policy["spec"]["actions"] = json!([{"name": "restart", "type": "restart"}]);
    shop.fake.insert(policy);
    shop.plan("scale", "Deployment", "app", scale_to(3));
    assert_eq!(shop.step("scale").await, Step::wait(Phase::Failed));
    assert_eq!(
        shop.status("scale")["message"],
        "HealingPolicy shop/shop-healing does not allow scale actions"
    );
    assert_eq!(shop.deployment()["spec"]["replicas"], 2);
}

#[tokio::test]
async fn the_safety_floor_is_checked_again_on_the_live_target() {
    // Plans made before their targets were marked or listed as protected.
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
        "rate limit of HealingPolicy shop/shop-healing: 2 actions started in the last hour, the limit is 2"
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
        "HealingPolicy shop/shop-healing allows 1 action(s) at once and 1 running: first"
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

fn spec_of(action: Value) -> kubeskippy::core::crd::healing_action::ActionSpec {
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
    let paused = gates::breaker(&policy, "shop", &shop.peers(), start()).expect("open");
    // fail-3 completed 10 minutes ago: paused for 20 more.
    assert_eq!(
        paused.until,
        "2026-03-14T09:20:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(
        paused.reason,
        "circuit breaker open: the last 3 actions of HealingPolicy shop/shop-healing failed (fail-3, fail-2, fail-1); paused until 2026-03-14T09:20:00Z or `kubeskippy resume shop-healing -n shop`"
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
        gates::breaker(&policy, "shop", &shop.peers(), shop.clock.now()),
        None,
        "cooled off"
    );
    assert_eq!(shop.step("heal").await.phase, Phase::Verifying);

    // The one action let through after the cool-off fails: open again.
    shop.set_pod_restarts(POD_1, 4);
    shop.until("heal", Phase::Failed).await;
    let paused =
        gates::breaker(&policy, "shop", &shop.peers(), shop.clock.now()).expect("open again");
    assert_eq!(
        paused.until,
        shop.clock.now() + chrono::Duration::minutes(30)
    );

    // A resume stamped far ahead (anyone who may patch the policy can write
    // one) does not switch the breaker off for good: it counts from then.
    let mut stamped_ahead = policy.clone();
    stamped_ahead.metadata.annotations = Some(
        [(
            gates::RESUMED_AT.to_string(),
            "9999-12-31T00:00:00Z".to_string(),
        )]
        .into(),
    );
    assert_eq!(
        gates::breaker(&stamped_ahead, "shop", &shop.peers(), shop.clock.now()),
        Some(paused.clone()),
        "a future resume changes nothing yet"
    );

    kubeskippy::operator::approval::resume(
        &shop.ctx.client,
        Some("shop"),
        "shop-healing",
        shop.clock.now(),
    )
    .await
    .unwrap();
    let resumed = shop.policy().unwrap();
    assert_eq!(
        resumed.metadata.annotations.unwrap()[gates::RESUMED_AT],
        "2026-03-14T09:20:00Z"
    );
    assert_eq!(
        gates::breaker(
            &shop.policy().unwrap(),
            "shop",
            &shop.peers(),
            shop.clock.now()
        ),
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
    let status = shop.status("scale");
    assert_eq!(
        status["rollback"],
        json!([{"field": {"kind": "replicas"}, "previous": "2", "wrote": "3"}]),
        "what the scale writes, and what it replaces"
    );
    assert!(
        status["seal"].as_str().unwrap().starts_with("v1."),
        "the daemon seals what it writes: {status}"
    );

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
        "refused: memory limit 4Gi for container app exceeds the maximum 2Gi",
        0,
    )
    .await;
    assert_eq!(
        shop.deployment()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "512Mi"
    );
}

// ---- interruption ----

fn interrupted(action: Value) -> Value {
    let mut action = action;
    action["status"] =
        json!({"phase": "InProgress", "attempts": 1, "startedAt": "2026-03-14T08:59:00Z"});
    action
}

#[tokio::test]
async fn an_interrupted_scale_is_rolled_back_and_an_interrupted_restart_fails() {
    let shop = shop();
    let mut deployment = shop.deployment();
    deployment["spec"]["replicas"] = json!(4);
    shop.fake.insert(deployment);
    shop.add(shop.with_rollback(
        interrupted(healing_action(
            "scale",
            "Deployment",
            "app",
            scale_to(4),
            json!({}),
        )),
        json!([{"field": {"kind": "replicas"}, "previous": "2", "wrote": "4"}]),
    ));
    shop.add(interrupted(healing_action(
        "restart",
        "Deployment",
        "app",
        restart(),
        json!({}),
    )));

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

/// An approved scale (three attempts, 30 s apart) whose first `failures`
/// writes the API server answers with 503.
async fn scale_that_fails(failures: usize) -> Shop {
    let shop = shop();
    shop.fake
        .fail_next("PATCH", &format!("{APP}/scale"), 503, failures);
    shop.add(healing_action(
        "scale",
        "Deployment",
        "app",
        scale_to(3),
        json!({"retryPolicy": {"maxAttempts": 3, "backoffSeconds": 30}}),
    ));
    shop.step("scale").await;
    shop
}

#[tokio::test]
async fn a_rejection_recorded_while_an_action_waits_to_retry_ends_it() {
    let shop = scale_that_fails(1).await;
    let step = shop.step("scale").await;
    assert_eq!(step, Step::after(Phase::Approved, Duration::from_secs(30)));

    // The policy needs no approval, yet someone rejects the action while it
    // waits out its backoff (kubectl patch: `kubeskippy reject` takes only
    // Pending actions).
    let path = format!("{ACTIONS}scale");
    let mut action = shop.fake.get(&path).unwrap();
    let spec: kubeskippy::core::crd::healing_action::HealingActionSpec =
        serde_json::from_value(action["spec"].clone()).unwrap();
    action["spec"]["approval"] = json!({
        "decision": "rejected", "by": "alice", "at": "2026-03-14T09:00:10Z",
        "reason": "not now", "specDigest": kubeskippy::core::provenance::spec_digest(&spec),
    });
    shop.fake.insert(action);

    shop.clock.advance(30);
    shop.step("scale").await;
    let status = shop.status("scale");
    assert_eq!(status["phase"], "Cancelled", "{status}");
    assert_eq!(status["message"], "rejected by alice: not now");
    assert_eq!(
        shop.fake.get(APP).unwrap()["spec"]["replicas"],
        json!(2),
        "the rejected scale never ran"
    );
}

#[tokio::test]
async fn api_errors_are_retried_with_exponential_backoff_until_attempts_run_out() {
    let shop = scale_that_fails(3).await;

    let step = shop.step("scale").await;
    assert_eq!(step, Step::after(Phase::Approved, Duration::from_secs(30)));
    let status = shop.status("scale");
    assert_eq!(status["attempts"], 1);
    assert_eq!(status["retryAfter"], "2026-03-14T09:00:30Z");
    assert!(status.get("rollback").is_none(), "nothing was changed");

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
        1,
    )
    .await;
}

#[tokio::test]
async fn a_bare_pod_restart_has_nothing_to_verify() {
    let shop = shop();
    shop.edit_policy(json!({"minHealthyPercent": 0}));
    let mut action = healing_action("debug", "Pod", "debug", restart(), json!({}));
    action["spec"]["action"]["restartAction"]["strategy"] = json!("evict");
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
        "evict Pod shop/debug; verifying for 2m; nothing recreates a bare pod, so there is nothing to verify"
    );
}
