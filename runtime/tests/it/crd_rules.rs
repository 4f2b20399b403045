//! The CEL rules the API server enforces for KubeSkippy, evaluated with the
//! `kube-cel` crate (Kubernetes' CEL libraries, client-side): the
//! HealingAction CRD's transition rules, which freeze a spec once created
//! except for the one approval, and the chart's ValidatingAdmissionPolicy,
//! which lets only the daemon create HealingActions and binds an approval to
//! the user who writes it; the status rules, which let a status only move
//! forward. The real control plane runs them too (issue 11);
//! these catch a broken rule before any cluster is up.

use kube_cel::Validator;
use kube_cel::{AdmissionRequest, VapEvaluator, VapExpression};
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(kubeskippy::core::crd::healing_action_crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn action() -> Value {
    json!({
        "apiVersion": "kubeskippy.io/v1alpha1",
        "kind": "HealingAction",
        "metadata": {"name": "heal", "namespace": "shop"},
        "spec": {
            "policyRef": {"kind": "HealingPolicy", "namespace": "shop", "name": "shop-healing", "uid": "p-1"},
            "incidentId": "shop-deployment-app-0011aabb",
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "app", "uid": "u-1"},
            "action": {"type": "restart", "restartAction": {"strategy": "rollout"}},
            "source": "rules", "confidence": 0.8, "reasoning": "r", "risk": "low",
            "plannedAt": "2026-03-14T09:00:00Z",
            "dryRun": false, "approvalRequired": true,
            "retryPolicy": {"maxAttempts": 3, "backoffSeconds": 30},
        },
    })
}

fn approval(by: &str) -> Value {
    json!({"decision": "approved", "by": by, "at": "2026-03-14T09:05:00Z", "specDigest": "a".repeat(64)})
}

/// The messages of the rules `new` breaks, as an update of `old` (or a
/// creation when `old` is `None`).
fn broken(new: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema(), new, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .iter()
            .map(|error| format!("{}: {}", error.field_path, error.message))
            .collect(),
    }
}

#[test]
fn a_spec_is_frozen_once_created() {
    let created = action();
    assert_eq!(broken(&created, None), Vec::<String>::new());

    let mut labelled = created.clone();
    labelled["metadata"]["labels"] = json!({"team": "shop"});
    assert_eq!(broken(&labelled, Some(&created)), Vec::<String>::new());

    for (field, value) in [
        (
            "target",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "payments", "name": "payments-api", "uid": "u-9"}),
        ),
        (
            "action",
            json!({"type": "scale", "scaleAction": {"replicas": 1}}),
        ),
        (
            "policyRef",
            json!({"kind": "HealingPolicy", "namespace": "tenant-a", "name": "mine", "uid": "p-9"}),
        ),
        ("approvalRequired", json!(false)),
        ("dryRun", json!(true)),
        ("confidence", json!(0.99)),
        ("plannedAt", json!("2026-03-15T09:00:00Z")),
    ] {
        let mut edited = created.clone();
        edited["spec"][field] = value;
        let errors = broken(&edited, Some(&created));
        assert!(
            errors
                .iter()
                .any(|error| error.contains("is immutable once the HealingAction is created")),
            "{field}: {errors:?}"
        );
    }
}

#[test]
fn an_approval_is_written_once_and_never_changed_or_removed() {
    let created = action();
    let mut approved = created.clone();
    approved["spec"]["approval"] = approval("alice");
    assert_eq!(broken(&approved, Some(&created)), Vec::<String>::new());

    let mut changed = approved.clone();
    changed["spec"]["approval"] = approval("mallory");
    let errors = broken(&changed, Some(&approved));
    assert!(
        errors.iter().any(|e| e.contains("is immutable")),
        "{errors:?}"
    );

    let errors = broken(&created, Some(&approved));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.approval cannot be removed once recorded")),
        "{errors:?}"
    );
}

fn with_status(phase: &str, attempts: u32, started_at: Option<&str>) -> Value {
    let mut object = action();
    object["status"] = json!({"phase": phase, "attempts": attempts});
    if let Some(at) = started_at {
        object["status"]["startedAt"] = json!(at);
    }
    object
}

#[test]
fn a_status_only_moves_forward() {
    let at = |minute: u32| format!("2026-03-14T09:{minute:02}:00Z");
    let t1 = at(1);
    let t2 = at(2);
    // Every transition the lifecycle writes.
    let forward = [
        (("Pending", 0, None), ("Approved", 0, None)),
        (("Approved", 0, None), ("Pending", 0, None)),
        (("Approved", 0, None), ("InProgress", 1, Some(&t1))),
        (("InProgress", 1, Some(&t1)), ("Approved", 1, Some(&t1))),
        (("Approved", 1, Some(&t1)), ("InProgress", 2, Some(&t2))),
        (("InProgress", 2, Some(&t2)), ("Verifying", 2, Some(&t2))),
        (("Verifying", 2, Some(&t2)), ("Succeeded", 2, Some(&t2))),
        (("Verifying", 2, Some(&t2)), ("Failed", 2, Some(&t2))),
        (("InProgress", 2, Some(&t2)), ("Failed", 2, Some(&t2))),
        (("Failed", 2, Some(&t2)), ("RolledBack", 2, Some(&t2))),
        (("Failed", 2, Some(&t2)), ("Failed", 2, Some(&t2))),
        (("Pending", 0, None), ("Cancelled", 0, None)),
        (("Verifying", 2, Some(&t1)), ("Failed", 2, Some(&t2))),
    ];
    let status = |(phase, attempts, started): (&str, u32, Option<&String>)| {
        with_status(phase, attempts, started.map(String::as_str))
    };
    for (old, new) in forward {
        assert_eq!(
            broken(&status(new), Some(&status(old))),
            Vec::<String>::new(),
            "{old:?} -> {new:?}"
        );
    }
    // An earlier status written back over a later one.
    let backward = [
        (
            ("Approved", 1, Some(&t1)),
            ("InProgress", 1, Some(&t1)),
            "a HealingAction enters InProgress only as a new attempt",
        ),
        (
            ("Succeeded", 1, Some(&t1)),
            ("Approved", 0, None),
            "a finished HealingAction's phase is final",
        ),
        (
            ("RolledBack", 1, Some(&t1)),
            ("Verifying", 1, Some(&t1)),
            "a finished HealingAction's phase is final",
        ),
        (
            ("Cancelled", 0, None),
            ("Pending", 0, None),
            "a finished HealingAction's phase is final",
        ),
        (
            ("Failed", 1, Some(&t1)),
            ("Verifying", 1, Some(&t1)),
            "a failed HealingAction can only be rolled back",
        ),
        (
            ("Verifying", 1, Some(&t1)),
            ("InProgress", 1, Some(&t1)),
            "a change being verified cannot be made to run again",
        ),
        (
            ("Verifying", 1, Some(&t1)),
            ("Approved", 1, Some(&t1)),
            "a change being verified cannot be made to run again",
        ),
        (
            ("InProgress", 2, Some(&t2)),
            ("Approved", 1, Some(&t1)),
            "status.attempts never decreases",
        ),
        (
            ("Approved", 1, Some(&t2)),
            ("Approved", 1, Some(&t1)),
            "status.startedAt never moves back",
        ),
        (
            ("Approved", 1, Some(&t1)),
            ("Approved", 1, None),
            "status.startedAt never moves back",
        ),
    ];
    for (old, new, rule) in backward {
        let errors = broken(&status(new), Some(&status(old)));
        assert!(
            errors.iter().any(|error| error.contains(rule)),
            "{old:?} -> {new:?}: {errors:?}"
        );
    }
    // Nor can a written status be removed: the action would look unstarted.
    let errors = broken(&action(), Some(&status(("Verifying", 1, Some(&t1)))));
    assert!(
        errors
            .iter()
            .any(|error| error.contains("status cannot be removed once written")),
        "{errors:?}"
    );
}

#[test]
fn a_rollback_record_names_every_part_of_its_fields() {
    let mut recorded = with_status("InProgress", 1, Some("2026-03-14T09:01:00Z"));
    recorded["status"]["rollback"] = json!([
        {"field": {"kind": "resource", "container": "app", "section": "limits", "resource": "memory"},
         "previous": "512Mi", "wrote": "1Gi"},
        {"field": {"kind": "replicas"}, "previous": "2", "wrote": "3"},
    ]);
    assert_eq!(broken(&recorded, None), Vec::<String>::new());
    recorded["status"]["rollback"][0]["field"] = json!({"kind": "resource", "container": "app"});
    recorded["status"]["rollback"][1]["field"] = json!({"kind": "annotation"});
    let errors = broken(&recorded, None);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("names its container, section and resource"))
            && errors
                .iter()
                .any(|e| e.contains("an annotation field names its key")),
        "{errors:?}"
    );
}

/// The chart's admission expressions, as the template writes them, with the
/// release's service account filled in.
fn admission_expressions() -> Vec<VapExpression> {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/kubeskippy/templates/admission-policy.yaml"),
    )
    .unwrap();
    let mut expressions = Vec::new();
    let mut lines = template.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() != "- expression: >-" {
            continue;
        }
        let mut folded = Vec::new();
        while let Some(next) = lines.peek() {
            if next.trim_start().starts_with("message:") {
                break;
            }
            folded.push(lines.next().unwrap().trim());
        }
        expressions.push(VapExpression {
            expression: folded.join(" ").replace(
                "{{ $daemon }}",
                "system:serviceaccount:kubeskippy:kubeskippy",
            ),
            message: None,
            message_expression: None,
        });
    }
    assert_eq!(expressions.len(), 3, "{template}");
    expressions
}

fn admitted(operation: &str, user: &str, object: &Value, old: Option<&Value>) -> bool {
    let mut builder = VapEvaluator::builder()
        .object(object.clone())
        .request(AdmissionRequest {
            operation: operation.into(),
            username: user.into(),
            ..Default::default()
        });
    if let Some(old) = old {
        builder = builder.old_object(old.clone());
    }
    builder
        .build()
        .evaluate(&admission_expressions())
        .iter()
        .all(|result| result.passed)
}

#[test]
fn only_the_daemon_creates_and_an_approval_names_its_author() {
    let daemon = "system:serviceaccount:kubeskippy:kubeskippy";
    let created = action();
    assert!(admitted("CREATE", daemon, &created, None));
    assert!(!admitted("CREATE", "alice", &created, None));
    assert!(!admitted(
        "CREATE",
        "system:serviceaccount:tenant-a:default",
        &created,
        None
    ));

    let mut approved = created.clone();
    approved["spec"]["approval"] = approval("alice");
    assert!(admitted("UPDATE", "alice", &approved, Some(&created)));
    assert!(!admitted("UPDATE", "mallory", &approved, Some(&created)));
    // Later updates (a label) by anyone allowed to make them are not about
    // the approval.
    let mut labelled = approved.clone();
    labelled["metadata"]["labels"] = json!({"team": "shop"});
    assert!(admitted("UPDATE", "bob", &labelled, Some(&approved)));

    // The annotations, the signature among them, are the daemon's.
    let mut signed = created.clone();
    signed["metadata"]["annotations"] = json!({"kubeskippy.io/signature": "v1.ab"});
    let mut defaced = signed.clone();
    defaced["metadata"]["annotations"]["kubeskippy.io/signature"] = json!("v1.00");
    assert!(!admitted("UPDATE", "alice", &defaced, Some(&signed)));
    let mut stripped = signed.clone();
    stripped["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    assert!(!admitted("UPDATE", "alice", &stripped, Some(&signed)));
    assert!(admitted("UPDATE", daemon, &defaced, Some(&signed)));
}
