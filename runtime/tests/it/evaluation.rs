//! The live evaluation pass with a controlled clock: `duration` held back then
//! firing, memory reset when a condition clears, event windows, cooldowns and
//! open HealingActions read from HealingAction objects, and which of many
//! overlapping policies governs a workload.

use chrono::{DateTime, Duration, Utc};
use kubeskippy::core::crd::healing_action::{HealingAction, HealingActionStatus, Phase};
use kubeskippy::core::crd::policy::HealingPolicy;
use kubeskippy::core::evaluation::{self, Pass, Suppression, TriggerMemory};
use kubeskippy::core::facts::ClusterFacts;
use kubeskippy::core::plan::{self, Source};
use kubeskippy::core::rules;
use kubeskippy::core::snapshot::Snapshot;
use kubeskippy::core::triggers::{self, Context};

const T0: &str = "2026-11-26T09:00:00Z";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(T0)
        .unwrap()
        .with_timezone(&Utc)
}

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

/// A Deployment `shop/app` with two pods; `app-1` is crash-looping when
/// `crashing`, and `events` is appended as YAML documents.
fn shop(crashing: bool, events: &str) -> Snapshot {
    let state = if crashing {
        "waiting: {reason: CrashLoopBackOff, message: back-off 5m0s}"
    } else {
        "running: {startedAt: '2026-11-26T08:00:00Z'}"
    };
    let crashing_pod = pod_yaml("app-1", !crashing, if crashing { 4 } else { 0 }, state);
    let healthy_pod = pod_yaml("app-2", true, 0, "running: {}");
    let yaml = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: shop, uid: d-1, labels: {{app: app, tier: web}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: app, image: app:1}}]}}
status: {{replicas: 2, readyReplicas: 1}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: app-5d8f7
  namespace: shop
  ownerReferences: [{{apiVersion: apps/v1, kind: Deployment, name: app, uid: d-1, controller: true}}]
spec: {{replicas: 2, selector: {{matchLabels: {{app: app}}}}}}
{crashing_pod}{healthy_pod}{events}"#
    );
    Snapshot::parse(&yaml, "test").unwrap()
}

fn pod_yaml(name: &str, ready: bool, restarts: u32, state: &str) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: shop
  uid: uid-{name}
  labels: {{app: app}}
  ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: app-5d8f7, uid: rs-1, controller: true}}]
spec: {{containers: [{{name: app, image: app:1}}]}}
status:
  phase: Running
  containerStatuses:
  - {{name: app, image: app:1, imageID: '', ready: {ready}, restartCount: {restarts}, state: {{{state}}}}}
"#
    )
}

/// A Warning event about pod `app-1`, last seen `minutes_ago` before T0.
fn warning(name: &str, reason: &str, count: u32, first_ago: i64, last_ago: i64) -> String {
    let stamp = |ago: i64| (t0() - Duration::minutes(ago)).to_rfc3339();
    format!(
        "---\napiVersion: v1\nkind: Event\nmetadata: {{name: {name}, namespace: shop}}\ninvolvedObject: {{kind: Pod, namespace: shop, name: app-1}}\nreason: {reason}\nmessage: trouble\ntype: Warning\ncount: {count}\nfirstTimestamp: '{}'\nlastTimestamp: '{}'\n",
        stamp(first_ago),
        stamp(last_ago)
    )
}

fn policy(yaml: &str) -> HealingPolicy {
    let policy: HealingPolicy = serde_yaml_ng::from_str(yaml).unwrap();
    policy.validate().unwrap();
    policy
}

fn crash_policy(duration: Option<&str>) -> HealingPolicy {
    let duration = duration
        .map(|d| format!(", duration: {d}"))
        .unwrap_or_default();
    policy(&format!(
        "apiVersion: kubeskippy.io/v1alpha1\nkind: HealingPolicy\nmetadata: {{name: crash, namespace: shop}}\nspec:\n  safety: {{cooldown: 10m}}\n  triggers:\n  - name: crash-loop\n    condition: {{states: [CrashLoopBackOff]{duration}}}\n  actions:\n  - {{name: restart, type: restart, triggers: [crash-loop]}}\n"
    ))
}

fn run<'p>(
    snapshot: &Snapshot,
    policies: &'p [HealingPolicy],
    memory: &mut TriggerMemory,
    actions: &[HealingAction],
    now: DateTime<Utc>,
) -> Pass<'p> {
    evaluation::pass(&snapshot.objects(), policies, memory, actions, now).unwrap()
}

fn suppression_reasons(pass: &Pass) -> Vec<Suppression> {
    pass.policies
        .iter()
        .flat_map(|p| &p.suppressed)
        .map(|s| s.reason.clone())
        .collect()
}

#[test]
fn a_duration_holds_the_trigger_back_until_the_condition_has_held_that_long() {
    let snapshot = shop(true, "");
    let policies = [crash_policy(Some("3m"))];
    let mut memory = TriggerMemory::new();

    let first = run(&snapshot, &policies, &mut memory, &[], at(0));
    assert!(first.incidents.is_empty());
    assert_eq!(
        suppression_reasons(&first),
        [Suppression::DurationPending {
            since: at(0),
            fires_at: at(3)
        }]
    );
    let suppressed = &first.policies[0].suppressed[0];
    assert_eq!(
        (
            suppressed.target.name.as_str(),
            suppressed.pod.as_deref(),
            suppressed.trigger.as_str()
        ),
        ("app", Some("app-1"), "crash-loop")
    );
    assert!(first.policies[0].active.is_empty());

    let still = run(&snapshot, &policies, &mut memory, &[], at(2));
    assert!(still.incidents.is_empty());
    assert_eq!(memory.len(), 1);

    let fired = run(&snapshot, &policies, &mut memory, &[], at(3));
    assert_eq!(fired.incidents.len(), 1);
    let incident = &fired.incidents[0].incident;
    assert_eq!(incident.target.name, "app");
    assert_eq!(incident.findings[0].trigger, "crash-loop");
    assert_eq!(incident.findings[0].pod.as_deref(), Some("app-1"));
    assert_eq!(fired.policies[0].active.len(), 1);
    assert_eq!(fired.policies[0].active[0].trigger, "crash-loop");
    assert!(fired.policies[0].suppressed.is_empty());
}

#[test]
fn a_condition_that_clears_starts_its_wait_over() {
    let crashing = shop(true, "");
    let healthy = shop(false, "");
    let policies = [crash_policy(Some("3m"))];
    let mut memory = TriggerMemory::new();

    run(&crashing, &policies, &mut memory, &[], at(0));
    assert_eq!(memory.len(), 1);
    let cleared = run(&healthy, &policies, &mut memory, &[], at(2));
    assert!(cleared.incidents.is_empty());
    assert!(suppression_reasons(&cleared).is_empty());
    assert!(memory.is_empty(), "a cleared condition is forgotten");

    // Three minutes after the first sighting, but only one after the return.
    let again = run(&crashing, &policies, &mut memory, &[], at(3));
    assert!(again.incidents.is_empty());
    assert_eq!(
        suppression_reasons(&again),
        [Suppression::DurationPending {
            since: at(3),
            fires_at: at(6)
        }]
    );
    assert_eq!(
        run(&crashing, &policies, &mut memory, &[], at(6))
            .incidents
            .len(),
        1
    );
}

#[test]
fn without_a_duration_a_trigger_fires_at_once_and_nothing_is_remembered() {
    let snapshot = shop(true, "");
    let policies = [crash_policy(None)];
    let mut memory = TriggerMemory::new();
    assert_eq!(
        run(&snapshot, &policies, &mut memory, &[], at(0))
            .incidents
            .len(),
        1
    );
    assert!(memory.is_empty());
}

fn event_policy(window: &str) -> HealingPolicy {
    policy(&format!(
        "apiVersion: kubeskippy.io/v1alpha1\nkind: HealingPolicy\nmetadata: {{name: events, namespace: shop}}\nspec:\n  triggers:\n  - name: back-off\n    event: {{reason: 'BackOff|OOM.*', minCount: 3{window}}}\n"
    ))
}

#[test]
fn an_event_window_counts_only_events_last_seen_within_it() {
    // 5 occurrences ending 30 minutes ago, 2 ending 1 minute ago.
    let events = warning("old", "BackOff", 5, 40, 30) + &warning("new", "OOMKilling", 2, 2, 1);
    let snapshot = shop(false, &events);
    let mut memory = TriggerMemory::new();

    let windowed = [event_policy(", window: 10m")];
    let pass = run(&snapshot, &windowed, &mut memory, &[], at(0));
    assert!(
        pass.incidents.is_empty(),
        "only 2 occurrences fall within 10m"
    );

    let unwindowed = [event_policy("")];
    let pass = run(&snapshot, &unwindowed, &mut memory, &[], at(0));
    assert_eq!(pass.incidents.len(), 1);
    assert_eq!(
        pass.incidents[0].incident.findings[0].detail,
        "7 Warning events (BackOff, OOMKilling) detected"
    );

    let wide = [event_policy(", window: 1h")];
    let pass = run(&snapshot, &wide, &mut memory, &[], at(0));
    assert_eq!(
        pass.incidents[0].incident.findings[0].detail,
        "7 Warning events (BackOff, OOMKilling) detected within 1h"
    );

    // Half an hour later even the recent events have left a 10m window.
    let later = [event_policy(", window: 10m")];
    let events = warning("recent", "BackOff", 4, 3, 1);
    let snapshot = shop(false, &events);
    assert_eq!(
        run(&snapshot, &later, &mut memory, &[], at(0))
            .incidents
            .len(),
        1
    );
    assert!(
        run(&snapshot, &later, &mut memory, &[], at(30))
            .incidents
            .is_empty()
    );
}

#[test]
fn the_error_event_rate_counts_the_share_of_a_series_inside_its_window() {
    // 60 occurrences spread over the last 60 minutes: 10 fall in the last 10.
    let events = warning("steady", "BackOff", 60, 60, 0);
    let snapshot = shop(false, &events);
    let rate = |threshold: &str| {
        policy(&format!(
            "apiVersion: kubeskippy.io/v1alpha1\nkind: HealingPolicy\nmetadata: {{name: rate}}\nspec:\n  triggers:\n  - name: errors\n    metric: {{name: errorEventRate, threshold: {threshold}, window: 10m}}\n"
        ))
    };
    let mut memory = TriggerMemory::new();
    let at_one = [rate("1")];
    let pass = run(&snapshot, &at_one, &mut memory, &[], at(0));
    assert_eq!(pass.incidents.len(), 1);
    let finding = &pass.incidents[0].incident.findings[0];
    assert_eq!(
        finding.detail,
        "1.0 Warning events per minute over the last 10m (threshold 1)"
    );
    assert_eq!(finding.pod, None, "the rate is the workload's");
    let above = [rate("1.5")];
    assert!(
        run(&snapshot, &above, &mut memory, &[], at(0))
            .incidents
            .is_empty()
    );
}

#[test]
fn offline_analysis_ends_windows_at_the_newest_event_and_does_not_check_durations() {
    // The newest event is from T0 - 1m; offline, windows end there whatever
    // the wall clock says.
    let events = warning("old", "BackOff", 5, 40, 30) + &warning("new", "BackOff", 3, 2, 1);
    let snapshot = shop(true, &events);
    let facts = ClusterFacts::from_snapshot(&snapshot).unwrap();
    let context = Context::offline(&facts);
    assert_eq!(context.now, Some(at(-1)));

    let policies = [event_policy(", window: 10m"), crash_policy(Some("1h"))];
    // `crash` sorts first and governs the workload: its duration is not
    // observable in a snapshot, so it fires.
    let fired = triggers::evaluate(&facts, &policies[1..], &context).unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].findings[0].trigger, "crash-loop");

    let fired = triggers::evaluate(&facts, &policies[..1], &context).unwrap();
    assert_eq!(
        fired[0].findings[0].detail,
        "3 Warning events (BackOff) detected within 10m"
    );
}

/// The HealingAction a rule-based pass plans for the snapshot's incident, as
/// the daemon would create it, with a creation time and a phase.
fn planned_action(
    snapshot: &Snapshot,
    policy: &HealingPolicy,
    created: DateTime<Utc>,
    phase: Option<Phase>,
) -> HealingAction {
    let policies = std::slice::from_ref(policy);
    let pass = run(snapshot, policies, &mut TriggerMemory::new(), &[], at(0));
    let open = &pass.incidents[0];
    let analysis = rules::analyze(&open.incident, open.policy);
    let mut action = plan::plan(
        open,
        &analysis.recommendations[0],
        &[],
        Source::Rules,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(action.spec.triggers, ["crash-loop"]);
    action.metadata.creation_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created.to_rfc3339().parse().unwrap()),
    );
    action.status = phase.map(|phase| HealingActionStatus {
        phase,
        ..HealingActionStatus::default()
    });
    action
}

#[test]
fn a_cooldown_from_the_newest_action_holds_the_trigger_back_then_expires() {
    let snapshot = shop(true, "");
    let policies = [crash_policy(None)];
    let older = planned_action(&snapshot, &policies[0], at(-30), Some(Phase::Succeeded));
    let mut newer = planned_action(&snapshot, &policies[0], at(0), Some(Phase::Succeeded));
    newer.metadata.name = Some("newer".into());
    let actions = [older, newer];
    let mut memory = TriggerMemory::new();

    let cooling = run(&snapshot, &policies, &mut memory, &actions, at(5));
    assert!(cooling.incidents.is_empty());
    assert_eq!(
        suppression_reasons(&cooling),
        [Suppression::Cooldown {
            action: "newer".into(),
            until: at(10)
        }]
    );
    assert_eq!(
        run(&snapshot, &policies, &mut memory, &actions, at(10))
            .incidents
            .len(),
        1
    );
}

#[test]
fn a_cooldown_is_per_trigger_and_per_policy() {
    let snapshot = shop(true, "");
    let both = policy(
        "apiVersion: kubeskippy.io/v1alpha1\nkind: HealingPolicy\nmetadata: {name: crash, namespace: shop}\nspec:\n  safety: {cooldown: 10m}\n  triggers:\n  - name: crash-loop\n    condition: {states: [CrashLoopBackOff]}\n  - name: restarts\n    metric: {name: restartCount, threshold: 3}\n",
    );
    let mut action = planned_action(
        &snapshot,
        &crash_policy(None),
        at(0),
        Some(Phase::Succeeded),
    );
    let policies = [both];
    let pass = run(
        &snapshot,
        &policies,
        &mut TriggerMemory::new(),
        std::slice::from_ref(&action),
        at(5),
    );
    assert_eq!(pass.incidents.len(), 1, "restarts is not cooling down");
    let findings = &pass.incidents[0].incident.findings;
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].trigger, "restarts");

    action.spec.policy_ref.name = "another-policy".into();
    let pass = run(
        &snapshot,
        &policies,
        &mut TriggerMemory::new(),
        &[action],
        at(5),
    );
    assert_eq!(pass.incidents[0].incident.findings.len(), 2);
}

#[test]
fn an_open_action_on_the_target_suppresses_every_trigger() {
    let snapshot = shop(true, "");
    let policies = [crash_policy(None)];
    let mut memory = TriggerMemory::new();
    for phase in [
        None,
        Some(Phase::Pending),
        Some(Phase::Approved),
        Some(Phase::InProgress),
        Some(Phase::Verifying),
    ] {
        // Created long ago: only its being open holds the trigger back.
        let action = planned_action(&snapshot, &policies[0], at(-600), phase);
        let name = action.metadata.name.clone().unwrap();
        let pass = run(&snapshot, &policies, &mut memory, &[action], at(0));
        assert!(pass.incidents.is_empty(), "{phase:?}");
        assert_eq!(
            suppression_reasons(&pass),
            [Suppression::OpenAction { action: name }]
        );
    }
    for phase in [
        Phase::Succeeded,
        Phase::Failed,
        Phase::RolledBack,
        Phase::Cancelled,
    ] {
        let action = planned_action(&snapshot, &policies[0], at(-600), Some(phase));
        let pass = run(&snapshot, &policies, &mut memory, &[action], at(0));
        assert_eq!(pass.incidents.len(), 1, "{phase:?} is finished");
    }
}

#[test]
fn an_open_action_on_one_of_the_workloads_pods_counts_for_the_workload() {
    let snapshot = shop(true, "");
    let policies = [crash_policy(None)];
    let mut action = planned_action(&snapshot, &policies[0], at(0), Some(Phase::InProgress));
    // Planned by other means: no incident id to read the workload from.
    action.spec.incident_id = "manual".into();
    action.spec.target.kind = "Pod".into();
    action.spec.target.name = "app-2".into();
    let pass = run(
        &snapshot,
        &policies,
        &mut TriggerMemory::new(),
        &[action],
        at(0),
    );
    assert!(pass.incidents.is_empty());
}

#[test]
fn of_twenty_overlapping_policies_the_first_by_name_that_selects_governs() {
    let mut policies: Vec<HealingPolicy> = (0..20)
        .map(|i| {
            let selector = match i {
                // Policies of another namespace, which govern only theirs,
                // whatever they select.
                0..=4 => "{}".to_string(),
                // The right namespace, the wrong tier.
                5..=9 => "{namespaces: [shop], labelSelector: {matchLabels: {tier: batch}}}".into(),
                // Excludes the workload by name.
                10 => "{excludeNames: [app]}".into(),
                // Kinds that are not the workload's.
                11 => "{kinds: [StatefulSet]}".into(),
                // Selects: by namespace, tier and kind (case-insensitive).
                12 => "{namespaces: [shop], kinds: [deployment], labelSelector: {matchExpressions: [{key: tier, operator: In, values: [web]}]}}".into(),
                _ => "{}".into(),
            };
            let namespace = if i <= 4 { "elsewhere" } else { "shop" };
            policy(&format!(
                "apiVersion: kubeskippy.io/v1alpha1\nkind: HealingPolicy\nmetadata: {{name: policy-{i:02}, namespace: {namespace}}}\nspec:\n  selector: {selector}\n  triggers:\n  - name: crash-loop\n    condition: {{states: [CrashLoopBackOff]}}\n"
            ))
        })
        .collect();
    policies.reverse();
    let snapshot = shop(true, "");
    let pass = run(&snapshot, &policies, &mut TriggerMemory::new(), &[], at(0));
    assert_eq!(pass.incidents.len(), 1);
    assert_eq!(pass.incidents[0].policy.name(), "policy-12");
    assert_eq!(pass.policies.len(), 20, "every policy gets an outcome");
    for outcome in &pass.policies {
        let governs = outcome.policy.name() == "policy-12";
        assert_eq!(
            !outcome.active.is_empty(),
            governs,
            "{}",
            outcome.policy.name()
        );
    }
}

#[test]
fn an_invalid_policy_is_reported_and_the_others_still_run() {
    let mut broken = crash_policy(None);
    broken.metadata.name = Some("a-broken".into());
    broken.spec.triggers[0].condition.as_mut().unwrap().duration = Some("soon".into());
    let policies = [broken, crash_policy(None)];
    let snapshot = shop(true, "");
    let pass = run(&snapshot, &policies, &mut TriggerMemory::new(), &[], at(0));
    assert_eq!(pass.incidents.len(), 1);
    assert_eq!(pass.incidents[0].policy.name(), "crash");
    assert_eq!(
        pass.policies[0].errors,
        [
            "invalid policy: spec.triggers[0].condition.duration: invalid duration \"soon\": expected a number and a unit such as 30s"
        ]
    );
}

#[test]
fn an_incident_id_names_its_workload_once_the_namespace_is_known() {
    use kubeskippy::core::incidents::workload_of_incident_id;
    assert_eq!(
        workload_of_incident_id("team-1-deployment-svc-3-abcd1234", "team-1"),
        Some(("deployment", "svc-3"))
    );
    assert_eq!(
        workload_of_incident_id("shop-pod-app-7d9f-x2-0011aaff", "shop"),
        Some(("pod", "app-7d9f-x2"))
    );
    assert_eq!(workload_of_incident_id("manual", "shop"), None);
    assert_eq!(
        workload_of_incident_id("shop-deployment-app-notahash", "shop"),
        None
    );
}
