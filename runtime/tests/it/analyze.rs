//! `kubeskippy analyze` as users run it: golden JSON over every example
//! snapshot, the text report, and one-line errors for bad input.
//!
//! Regenerate the golden files after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p kubeskippy --test analyze`.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::example;
use serde_json::Value;

fn kubeskippy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeskippy"))
        .args(args)
        .env_remove("KUBESKIPPY_CONFIG")
        .env_remove("KUBESKIPPY_LLM_ENDPOINT")
        .output()
        .unwrap()
}

fn analyze_json(snapshot: &str) -> Value {
    let path = example(snapshot);
    let output = kubeskippy(&["analyze", "--output", "json", path.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{snapshot}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

const EXAMPLES: [&str; 7] = [
    "oom-crashloop.yaml",
    "cpu-saturation.yaml",
    "image-pull.yaml",
    "missing-configmap.yaml",
    "healthy.yaml",
    "kube-system.yaml",
    "protected-label.yaml",
];

#[test]
fn golden_json_for_every_example() {
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    let mut mismatches = Vec::new();
    for snapshot in EXAMPLES {
        let actual = serde_json::to_string_pretty(&analyze_json(snapshot)).unwrap() + "\n";
        let golden = golden_dir.join(snapshot.replace(".yaml", ".json"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!("{snapshot} differs from {}", golden.display()));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{mismatches:#?}\nrerun with UPDATE_GOLDEN=1 if the change is intended"
    );
}

fn recommendations(report: &Value) -> Vec<&Value> {
    report["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["recommendations"].as_array().unwrap())
        .collect()
}

#[test]
fn the_seed_scenario_plans_a_memory_patch_and_a_restart() {
    let report = analyze_json("oom-crashloop.yaml");
    let incident = &report["incidents"][0];
    assert_eq!(
        incident["target"],
        serde_json::json!({"kind": "Deployment", "namespace": "shop", "name": "app"})
    );
    assert_eq!(incident["analysis"]["source"], "rules");
    let triggers: Vec<&str> = incident["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(
        triggers,
        ["restart-count", "crash-loop", "oom-killed", "memory-limit"]
    );
    let actions = incident["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["apiVersion"], "kubeskippy.io/v1alpha1");
    assert_eq!(actions[0]["kind"], "HealingAction");
    assert_eq!(actions[0]["spec"]["action"]["type"], "patch");
    assert_eq!(
        actions[0]["metadata"]["annotations"]["ai.confidence"],
        "0.80"
    );
    assert_eq!(actions[1]["spec"]["action"]["type"], "restart");
}

#[test]
fn image_pull_failures_get_no_automated_restart_scale_or_delete() {
    let report = analyze_json("image-pull.yaml");
    for recommendation in recommendations(&report) {
        let kind = recommendation["action"]["type"].as_str().unwrap();
        assert!(
            !(recommendation["allowed"] == true
                && ["restart", "scale", "delete-pod"].contains(&kind)),
            "{recommendation}"
        );
    }
    assert!(
        report["incidents"][0]["actions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn protected_targets_are_refused_by_the_safety_floor() {
    for (snapshot, reason) in [
        (
            "kube-system.yaml",
            "safety floor: namespace kube-system is protected",
        ),
        (
            "protected-label.yaml",
            "safety floor: Deployment/ledger is marked kubeskippy.io/protected=true",
        ),
    ] {
        let report = analyze_json(snapshot);
        let all = recommendations(&report);
        assert!(!all.is_empty(), "{snapshot}");
        for recommendation in all {
            if recommendation["action"]["type"] != "none" {
                assert_eq!(
                    recommendation["allowed"], false,
                    "{snapshot}: {recommendation}"
                );
                assert!(
                    recommendation["rejections"].to_string().contains(reason),
                    "{snapshot}: {recommendation}"
                );
            }
        }
        assert!(
            report["incidents"][0]["actions"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{snapshot}"
        );
    }
}

#[test]
fn a_healthy_namespace_has_no_incidents() {
    assert_eq!(
        analyze_json("healthy.yaml")["incidents"],
        serde_json::json!([])
    );
}

#[test]
fn text_and_yaml_outputs_render() {
    let path = example("oom-crashloop.yaml");
    let text = kubeskippy(&["analyze", path.to_str().unwrap()]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("== Deployment shop/app"), "{text}");
    assert!(
        text.contains("ALLOWED patch (container=app, memoryLimit=1875Mi) on Deployment/app"),
        "{text}"
    );
    let yaml = kubeskippy(&["analyze", "--output", "yaml", path.to_str().unwrap()]);
    let parsed: Value = serde_yaml_ng::from_slice(&yaml.stdout).unwrap();
    assert_eq!(parsed, analyze_json("oom-crashloop.yaml"));
}

fn assert_one_line_error(args: &[&str], expected: &str) {
    let output = kubeskippy(args);
    assert!(!output.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(expected),
        "expected {expected:?} in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing half-printed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn bad_input_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    assert_one_line_error(
        &["analyze", "/nonexistent/snapshot.yaml"],
        "cannot read snapshot /nonexistent/snapshot.yaml",
    );
    let bad_yaml = write(
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n",
    );
    assert_one_line_error(&["analyze", &bad_yaml], "document 1 is not valid YAML");
    let bad_field = write(
        "field.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\nspec:\n  containers:\n  - name: c\n    image: i\nstatus:\n  containerStatuses:\n  - name: c\n    restartCount: five\n",
    );
    assert_one_line_error(
        &["analyze", &bad_field],
        "document 1: Pod n/p: field `status.containerStatuses[0]",
    );
    let scalar = write("scalar.yaml", "just a string\n");
    assert_one_line_error(&["analyze", &scalar], "expected a Kubernetes object");
    let bad_quantity = write(
        "quantity.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\nspec:\n  containers:\n  - name: c\n    image: i\n    resources: {limits: {memory: lots}}\n",
    );
    assert_one_line_error(
        &["analyze", &bad_quantity],
        "Pod n/p: invalid memory quantity \"lots\"",
    );
    let bad_policy = write(
        "policy.yaml",
        "apiVersion: kubeskippy.io/v1alpha1\nkind: HealingPolicy\nmetadata: {name: p}\nspec:\n  triggers:\n  - name: t\n    event: {reason: '(unclosed'}\n",
    );
    assert_one_line_error(
        &["analyze", &bad_policy],
        "HealingPolicy p: spec.triggers[0].event.reason is not a valid regex",
    );
    let bad_config = write("config.yaml", "ai:\n  minConfidence: 2\n");
    let snapshot = example("healthy.yaml");
    assert_one_line_error(
        &[
            "analyze",
            "--config",
            &bad_config,
            snapshot.to_str().unwrap(),
        ],
        "ai.minConfidence must be from 0 to 1",
    );
    assert_one_line_error(
        &[
            "analyze",
            "--prompt-plugin",
            &bad_config,
            snapshot.to_str().unwrap(),
        ],
        "is not a WebAssembly component",
    );
}

#[test]
fn a_policy_in_the_snapshot_replaces_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(example("oom-crashloop.yaml")).unwrap();
    let policy = "---\napiVersion: kubeskippy.io/v1alpha1\nkind: HealingPolicy\nmetadata: {name: restarts-only}\nspec:\n  mode: manual\n  selector: {namespaces: [shop]}\n  triggers:\n  - name: many-restarts\n    metric: {name: restartCount, threshold: 5}\n  - name: oom-events\n    event: {reason: 'OOM.*', minCount: 2}\n  actions:\n  - name: restart\n    type: restart\n    triggers: [many-restarts]\n    confidence: 0.9\n";
    let path = dir.path().join("with-policy.yaml");
    std::fs::write(&path, format!("{original}\n{policy}")).unwrap();
    let output = kubeskippy(&["analyze", "--output", "json", path.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let incident = &report["incidents"][0];
    assert_eq!(incident["policy"], "restarts-only");
    let details: Vec<&str> = incident["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        details,
        [
            "Pod app-xyz has restarted 5 times",
            "3 Warning events (OOMKilled) detected"
        ]
    );
    let actions = incident["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0]["spec"]["approvalRequired"], true);
    assert_eq!(actions[0]["spec"]["dryRun"], false);
}

#[test]
fn crds_print_every_custom_resource_definition() {
    let output = kubeskippy(&["crds"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect();
    let names: Vec<&str> = documents
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "healingpolicies.kubeskippy.io",
            "clusterhealingpolicies.kubeskippy.io",
            "healingactions.kubeskippy.io"
        ]
    );
    assert_eq!(documents[0]["spec"]["scope"], "Namespaced");
    assert_eq!(documents[1]["spec"]["scope"], "Cluster");
    assert_eq!(documents[2]["spec"]["scope"], "Namespaced");
    for crd in &documents {
        assert_eq!(crd["kind"], "CustomResourceDefinition");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["subresources"]["status"], serde_json::json!({}));
        assert_eq!(version["schema"]["openAPIV3Schema"]["type"], "object");
    }
    let action_spec =
        &documents[2]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let required: Vec<&str> = action_spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in ["policyRef", "target", "action", "confidence", "reasoning"] {
        assert!(
            required.contains(&field),
            "{field} missing from {required:?}"
        );
    }
}
