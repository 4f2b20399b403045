//! `kubeskippy approve`, `reject` and `resume` against the in-memory API
//! server: the identity comes from a SelfSubjectReview, decisions are written
//! under a resourceVersion lock, and actions not waiting are refused.

use crate::fake_api;

use chrono::{DateTime, Utc};
use fake_api::FakeApi;
use kubeskippy::core::crd::healing_action::ApprovalDecision::{Approved, Rejected};
use kubeskippy::core::crd::healing_action::HealingAction;
use kubeskippy::operator::approval::{self, ApprovalError};
use serde_json::{Value, json};

const ACTION: &str = "/apis/kubeskippy.io/v1alpha1/namespaces/shop/healingactions/heal";

fn at() -> DateTime<Utc> {
    "2026-03-14T09:30:00Z".parse().unwrap()
}

/// A HealingAction the daemon planned (signed: the CLI cannot check the
/// signature, only that there is one) or, with `signed` false, one written
/// by hand.
fn action(signed: bool, status: Value) -> Value {
    let mut action = json!({
        "apiVersion": "kubeskippy.io/v1alpha1",
        "kind": "HealingAction",
        "metadata": {"name": "heal", "namespace": "shop"},
        "spec": {
            "policyRef": {"kind": "HealingPolicy", "namespace": "shop", "name": "shop-healing", "uid": "uid-policy"},
            "incidentId": "shop/app",
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "app"},
            "action": {"type": "restart", "restartAction": {"strategy": "rollout"}},
            "source": "llm", "confidence": 0.9, "reasoning": "OOMKilled", "risk": "low",
            "plannedAt": "2026-03-14T09:00:00Z",
            "approvalRequired": true,
        },
        "status": status,
    });
    if signed {
        action["metadata"]["annotations"] = json!({"kubeskippy.io/signature": "v1.00"});
    }
    action
}

fn digest(object: &Value) -> String {
    let action: HealingAction = serde_json::from_value(object.clone()).unwrap();
    kubeskippy::core::provenance::spec_digest(&action.spec)
}

fn waiting() -> FakeApi {
    let fake = FakeApi::new();
    fake.insert(action(true, json!({"phase": "Pending"})));
    fake.set_user("alice@example.com");
    fake
}

#[tokio::test]
async fn approve_records_the_callers_identity_under_a_resource_version_lock() {
    let fake = waiting();
    let version = fake.get(ACTION).unwrap()["metadata"]["resourceVersion"].clone();
    let approval = approval::decide(
        &fake.client(),
        "shop",
        "heal",
        Approved,
        Some(" looks right "),
        at(),
    )
    .await
    .unwrap();
    assert_eq!(approval.by, "alice@example.com");
    let stored = fake.get(ACTION).unwrap();
    assert_eq!(
        stored["spec"]["approval"],
        json!({"decision": "approved", "by": "alice@example.com", "at": "2026-03-14T09:30:00Z",
               "reason": "looks right", "specDigest": digest(&stored)}),
        "the decision is bound to the content approved"
    );
    assert_eq!(
        fake.request_lines(),
        [
            format!("GET {ACTION}"),
            "POST /apis/authentication.k8s.io/v1/selfsubjectreviews".to_string(),
            format!("PATCH {ACTION}"),
        ]
    );
    let patch = &fake.requests()[2];
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(patch.body["metadata"]["resourceVersion"], version);
}

#[tokio::test]
async fn reject_records_the_decision_and_its_reason() {
    let fake = waiting();
    approval::decide(
        &fake.client(),
        "shop",
        "heal",
        Rejected,
        Some("peak traffic"),
        at(),
    )
    .await
    .unwrap();
    let stored = &fake.get(ACTION).unwrap()["spec"]["approval"];
    assert_eq!(stored["decision"], "rejected");
    assert_eq!(stored["reason"], "peak traffic");
}

#[tokio::test]
async fn of_two_racing_deciders_exactly_one_wins() {
    let fake = waiting();
    let client = fake.client();
    let (first, second) = tokio::join!(
        approval::decide(&client, "shop", "heal", Approved, None, at()),
        approval::decide(&client, "shop", "heal", Rejected, None, at()),
    );
    let outcomes = [first.is_ok(), second.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|won| **won).count(),
        1,
        "{first:?} {second:?}"
    );
    let loser = match (first, second) {
        (Err(loser), _) | (_, Err(loser)) => loser,
        (Ok(_), Ok(_)) => unreachable!("one won"),
    };
    assert!(
        // Both read the action before either wrote: the lock decides.
        matches!(loser, ApprovalError::Conflict { .. }),
        "{loser}"
    );
    let decision = &fake.get(ACTION).unwrap()["spec"]["approval"]["decision"];
    assert_eq!(*decision, if outcomes[0] { "approved" } else { "rejected" });
}

#[tokio::test]
async fn actions_not_waiting_for_approval_are_refused_with_one_line() {
    let cases = [
        (
            action(false, json!({"phase": "Pending"})),
            "KubeSkippy did not plan it, and the daemon will not run it",
        ),
        (action(true, json!({"phase": "Approved"})), "it is Approved"),
        (
            action(true, json!({"phase": "Cancelled"})),
            "it is Cancelled",
        ),
    ];
    for (object, why) in cases {
        let fake = FakeApi::new();
        fake.set_user("alice");
        fake.insert(object);
        let error = approval::decide(&fake.client(), "shop", "heal", Approved, None, at())
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("HealingAction shop/heal is not waiting for approval: {why}")
        );
        assert!(
            fake.requests()
                .iter()
                .all(|request| request.method == "GET"),
            "nothing written"
        );
    }

    let fake = waiting();
    approval::decide(&fake.client(), "shop", "heal", Approved, None, at())
        .await
        .unwrap();
    let error = approval::decide(&fake.client(), "shop", "heal", Rejected, None, at())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "HealingAction shop/heal is not waiting for approval: already approved by alice@example.com at 2026-03-14T09:30:00Z"
    );

    let error = approval::decide(&fake.client(), "shop", "missing", Approved, None, at())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "HealingAction shop/missing not found");
}

#[tokio::test]
async fn without_self_subject_review_nothing_is_recorded() {
    let fake = FakeApi::new();
    fake.insert(action(true, json!({"phase": "Pending"})));
    let error = approval::decide(&fake.client(), "shop", "heal", Approved, None, at())
        .await
        .unwrap_err();
    assert!(matches!(error, ApprovalError::NoSelfSubjectReview));
    assert!(!error.to_string().contains('\n'));
    assert!(fake.get(ACTION).unwrap()["spec"]["approval"].is_null());
}

#[tokio::test]
async fn resume_stamps_the_policy_and_names_a_missing_one() {
    let fake = FakeApi::new();
    fake.insert(json!({
        "apiVersion": "kubeskippy.io/v1alpha1", "kind": "HealingPolicy",
        "metadata": {"name": "shop-healing", "namespace": "shop"},
        "spec": {"triggers": [{"name": "oom", "condition": {"states": ["OOMKilled"]}}]},
    }));
    approval::resume(&fake.client(), Some("shop"), "shop-healing", at())
        .await
        .unwrap();
    let policy = fake
        .get("/apis/kubeskippy.io/v1alpha1/namespaces/shop/healingpolicies/shop-healing")
        .unwrap();
    assert_eq!(
        policy["metadata"]["annotations"]["kubeskippy.io/resumed-at"],
        "2026-03-14T09:30:00Z"
    );
    let error = approval::resume(&fake.client(), Some("shop"), "nope", at())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "HealingPolicy shop/nope not found");
}
