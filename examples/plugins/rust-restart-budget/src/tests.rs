use super::*;
use kubeskippy::plugin::types::{
    ContainerFacts, FindingKind, Finding, ObjectRef, Patch, PodFacts, ResourceAmounts, ResourcePatch,
};

fn object(kind: &str, name: &str) -> ObjectRef {
    ObjectRef { kind: kind.into(), namespace: "shop".into(), name: name.into() }
}

fn amounts() -> ResourceAmounts {
    ResourceAmounts { cpu_millicores: None, memory_bytes: Some(512 << 20) }
}

/// The SDK's sample incident, pared down to what the rules read.
fn incident(last_termination: &str, restarts: u32) -> Incident {
    let container = ContainerFacts {
        name: "app".into(),
        usage: amounts(),
        limits: amounts(),
        requests: amounts(),
        restart_count: restarts,
        ready: false,
        waiting_reason: Some("CrashLoopBackOff".into()),
        waiting_message: None,
        last_termination_reason: Some(last_termination.into()),
        last_exit_code: Some(137),
    };
    Incident {
        id: "shop-deployment-app-0001".into(),
        target: object("Deployment", "app"),
        workload: None,
        pods: vec![PodFacts {
            name: "app-xyz".into(),
            namespace: "shop".into(),
            phase: "Running".into(),
            status_reason: Some("CrashLoopBackOff".into()),
            restart_count: restarts,
            usage: amounts(),
            limits: amounts(),
            containers: vec![container],
            owner: Some(object("Deployment", "app")),
            node: None,
        }],
        events: Vec::new(),
        findings: vec![Finding {
            trigger: "restart-count".into(),
            kind: FindingKind::Restarts,
            detail: "restarts".into(),
            pod: Some("app-xyz".into()),
        }],
    }
}

fn recommendation(action: Action) -> Recommendation {
    Recommendation {
        action,
        target: object("Deployment", "app"),
        reason: "r".into(),
        risk: "r".into(),
        confidence: 0.9,
    }
}

fn no_config(_: &str) -> Option<String> {
    None
}

fn is_deny(verdict: &Verdict, words: &str) -> bool {
    matches!(verdict, Verdict::Deny(reason) if reason.contains(words))
}

#[test]
fn restarts_after_an_oom_kill_are_denied() {
    let verdict = judge(&recommendation(Action::Restart), &incident("OOMKilled", 5), &no_config);
    assert!(
        is_deny(&verdict, "restarting cannot help: container app was OOM-killed"),
        "{verdict:?}"
    );
    let verdict = judge(&recommendation(Action::DeletePod), &incident("OOMKilled", 1), &no_config);
    assert!(is_deny(&verdict, "evicting a pod cannot help"), "{verdict:?}");
}

#[test]
fn allow_on_oom_lets_restarts_through_within_the_budget() {
    let config = |key: &str| (key == "restartBudget.allowOnOom").then(|| "true".to_string());
    let verdict = judge(&recommendation(Action::Restart), &incident("OOMKilled", 5), &config);
    assert!(matches!(verdict, Verdict::Allow), "{verdict:?}");
}

#[test]
fn restarts_over_the_budget_are_denied() {
    let verdict = judge(&recommendation(Action::Restart), &incident("Error", 10), &no_config);
    assert!(is_deny(&verdict, "restarted 10 times (budget 10)"), "{verdict:?}");
    let verdict = judge(&recommendation(Action::Restart), &incident("Error", 9), &no_config);
    assert!(matches!(verdict, Verdict::Allow), "{verdict:?}");
    let config = |key: &str| (key == "restartBudget.maxRestarts").then(|| " 3 ".to_string());
    let verdict = judge(&recommendation(Action::Restart), &incident("Error", 3), &config);
    assert!(is_deny(&verdict, "budget 3"), "{verdict:?}");
}

#[test]
fn other_actions_are_not_this_validators_business() {
    let patch = Action::Patch(Patch::Resources(ResourcePatch {
        container: "app".into(),
        cpu_limit_millicores: None,
        cpu_request_millicores: None,
        memory_limit_bytes: Some(2 << 30),
        memory_request_bytes: None,
    }));
    for action in [Action::Scale(3), Action::None, patch] {
        let verdict = judge(&recommendation(action), &incident("OOMKilled", 50), &no_config);
        assert!(matches!(verdict, Verdict::Allow), "{verdict:?}");
    }
}

#[test]
fn bad_configuration_denies_naming_the_key() {
    for (key, text) in [("restartBudget.maxRestarts", "0"), ("restartBudget.allowOnOom", "yes")] {
        let config = |asked: &str| (asked == key).then(|| text.to_string());
        let verdict = judge(&recommendation(Action::Scale(3)), &incident("Error", 0), &config);
        assert!(is_deny(&verdict, &format!("config {key} must be")), "{verdict:?}");
    }
}
