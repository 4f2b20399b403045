//! Validators with an approval gate (WIT 0.1.1): a gate that asks makes the
//! planned HealingAction wait for a person, with the gate's reason in the
//! action's reasoning; a silent gate changes nothing; a gate that cannot run
//! asks, naming the plugin; no gate spares a wait the policy asks for.

use kubeskippy::analyze::pipeline::{Analyzer, IncidentReport, PluginFiles};
use kubeskippy::core::config::Config;
use kubeskippy::core::crd::ActionKind;
use kubeskippy::core::crd::healing_action::HealingAction;
use kubeskippy::core::crd::policy::HealingPolicy;
use kubeskippy::core::snapshot::Snapshot;
use serde_json::Value;

use crate::common::example;

const GATE: &str = env!("KUBESKIPPY_PLUGIN_APPROVAL_GATE_VALIDATOR");
const ASKS: &str = "patches in namespace shop need a person's approval";

/// The seed scenario (rules recommend a memory patch and a restart of
/// shop/app) reviewed by the default validator and, with `gate`, the approval
/// gate validator under `plugin_config`.
async fn analyze(
    gate: bool,
    plugin_config: &[(&str, &str)],
    policy: Option<HealingPolicy>,
) -> IncidentReport {
    // Loaded machines make the default 100 ms deadline a coin toss, and a
    // gate that times out asks for approval.
    let mut config = Config::parse("plugins:\n  timeout: 10s\n").unwrap();
    for (key, value) in plugin_config {
        config
            .plugins
            .config
            .insert(key.to_string(), value.to_string());
    }
    let files = PluginFiles {
        validators: if gate { vec![GATE.into()] } else { Vec::new() },
        ..PluginFiles::default()
    };
    let analyzer = Analyzer::new(&config, &files, None).unwrap();
    let mut snapshot = Snapshot::load(&example("oom-crashloop.yaml")).unwrap();
    snapshot.policies.extend(policy);
    let mut report = analyzer.analyze(&snapshot).await.unwrap();
    assert_eq!(report.incidents.len(), 1);
    report.incidents.remove(0)
}

fn action(report: &IncidentReport, kind: ActionKind) -> &HealingAction {
    report
        .actions
        .iter()
        .find(|action| action.spec.action.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} planned: {:?}", report.reviewed))
}

fn json(action: &HealingAction) -> Value {
    serde_json::to_value(action).unwrap()
}

#[tokio::test]
async fn a_gate_that_asks_makes_the_action_wait_for_approval_and_says_why() {
    let without = analyze(false, &[], None).await;
    let gated = analyze(true, &[("approvalNamespaces", "prod,shop")], None).await;

    let reasons: Vec<&[String]> = gated
        .reviewed
        .iter()
        .map(|r| r.approval_reasons.as_slice())
        .collect();
    assert_eq!(reasons, [&[format!("{GATE}: {ASKS}")][..], &[]]);

    let baseline = action(&without, ActionKind::Patch);
    let patch = action(&gated, ActionKind::Patch);
    assert!(!baseline.spec.approval_required);
    assert!(patch.spec.approval_required);
    assert_eq!(
        patch.spec.reasoning,
        format!(
            "{} Approval required: {GATE}: {ASKS}",
            baseline.spec.reasoning
        )
    );
    // Nothing else of the plan changes: same name, same change.
    let mut expected = baseline.clone();
    expected.spec.approval_required = true;
    expected.spec.reasoning = patch.spec.reasoning.clone();
    assert_eq!(json(patch), json(&expected));

    // The gate asks about patches only: the restart runs as the policy says.
    assert_eq!(
        json(action(&gated, ActionKind::Restart)),
        json(action(&without, ActionKind::Restart))
    );
}

#[tokio::test]
async fn a_silent_gate_changes_nothing() {
    let without = analyze(false, &[], None).await;
    let gated = analyze(true, &[("approvalNamespaces", "prod")], None).await;
    assert!(
        gated
            .reviewed
            .iter()
            .all(|r| r.allowed && r.approval_reasons.is_empty()),
        "{:?}",
        gated.reviewed
    );
    assert_eq!(gated.actions.len(), 2);
    let plans = |report: &IncidentReport| report.actions.iter().map(json).collect::<Vec<_>>();
    assert_eq!(plans(&gated), plans(&without));
}

#[tokio::test]
async fn a_gate_that_cannot_run_asks_for_approval_naming_the_plugin() {
    let gated = analyze(
        true,
        &[("approvalNamespaces", "shop"), ("gatePanics", "true")],
        None,
    )
    .await;
    assert_eq!(gated.actions.len(), 2, "a failed gate denies nothing");
    for reviewed in &gated.reviewed {
        assert!(reviewed.allowed, "{:?}", reviewed.rejections);
        let [reason] = reviewed.approval_reasons.as_slice() else {
            panic!("one reason: {:?}", reviewed.approval_reasons);
        };
        assert!(
            reason.starts_with(&format!("plugin {GATE}: trapped: ")),
            "{reason}"
        );
        assert!(
            reason.ends_with("(approval required because the approval gate could not run)"),
            "{reason}"
        );
    }
    for action in &gated.actions {
        assert!(action.spec.approval_required);
        assert!(
            action
                .spec
                .reasoning
                .contains(&format!("Approval required: plugin {GATE}: trapped: ")),
            "{}",
            action.spec.reasoning
        );
    }
}

#[tokio::test]
async fn a_silent_gate_does_not_spare_a_wait_the_policy_asks_for() {
    let mut policy = HealingPolicy::builtin_default();
    policy.spec.safety.require_approval = true;
    policy.validate().unwrap();
    let gated = analyze(true, &[("approvalNamespaces", "prod")], Some(policy)).await;
    assert_eq!(gated.actions.len(), 2);
    assert!(
        gated
            .actions
            .iter()
            .all(|action| action.spec.approval_required)
    );
}
