use kubeskippy_plugin_sdk::sample::oom_crashloop_incident;
use kubeskippy_plugin_sdk::types::{
    Action, Analysis, Incident, Issue, ObjectRef, Patch, Recommendation, ResourcePatch, Severity,
};
use proptest::prelude::*;

use crate::parse_response;

const GI: u64 = 1 << 30;
const MI: u64 = 1 << 20;

const SEED_TEXT: &str = "SUMMARY:
The application is experiencing memory pressure leading to OOM kills and crash loops.
The pod is consuming 3x its memory limit.

ISSUES:
- Memory leak in application
  Severity: High
  Impact: Service unavailability, repeated crashes
  Root Cause: Likely memory leak or insufficient memory allocation

RECOMMENDATIONS:
1. Increase memory limit to 2GB
   Target: Deployment/app
   Reason: Current usage exceeds limit by 3x
   Risk: May mask underlying memory leak
   Confidence: 0.85

2. Restart pod with heap dump enabled
   Target: Pod/app-xyz
   Reason: Collect diagnostic data
   Risk: Minimal
   Confidence: 0.90

3. Scale horizontally to distribute load
   Target: Deployment/app
   Reason: Reduce memory pressure per pod
   Risk: May increase total resource usage
   Confidence: 0.75
";

const CLEAN_JSON: &str = r#"{
  "summary": "The app container is OOM-killed: it uses 1500Mi against a 512Mi limit.",
  "issues": [
    {"title": "Memory limit too low", "severity": "high", "impact": "Crash loop, service down", "root_cause": "Limit below working set"}
  ],
  "recommendations": [
    {"action": "patch", "target": "Deployment/app", "description": "Raise the memory limit", "container": "app",
     "memory_limit": "2Gi", "reason": "Usage is 1500Mi", "risk": "Uses more node memory", "confidence": 0.9},
    {"action": "restart", "target": "Deployment/app", "reason": "Clear the crash loop", "risk": "Brief disruption", "confidence": 0.7},
    {"action": "scale", "target": "Deployment/app", "replicas": 4, "reason": "Spread load", "risk": "More resources", "confidence": 0.6}
  ]
}"#;

fn incident() -> Incident {
    oom_crashloop_incident()
}

fn parse(reply: &str) -> Analysis {
    parse_response(reply, &incident()).unwrap_or_else(|why| panic!("{why}\nreply: {reply}"))
}

fn error(reply: &str) -> String {
    match parse_response(reply, &incident()) {
        Ok(analysis) => panic!("expected an error, got {analysis:?}"),
        Err(why) => why,
    }
}

fn deployment() -> ObjectRef {
    ObjectRef::new("Deployment", "shop", "app")
}

fn pod() -> ObjectRef {
    ObjectRef::new("Pod", "shop", "app-xyz")
}

fn resources(container: &str) -> ResourcePatch {
    ResourcePatch {
        container: container.to_string(),
        cpu_limit_millicores: None,
        cpu_request_millicores: None,
        memory_limit_bytes: None,
        memory_request_bytes: None,
    }
}

fn memory_limit(bytes: u64) -> Action {
    Action::Patch(Patch::Resources(ResourcePatch {
        memory_limit_bytes: Some(bytes),
        ..resources("app")
    }))
}

/// The one recommendation of a JSON reply whose recommendation is `fields`.
fn json_recommendation_in(fields: &str, incident: &Incident) -> Recommendation {
    let reply = format!(r#"{{"summary": "s", "recommendations": [{{{fields}}}]}}"#);
    let analysis =
        parse_response(&reply, incident).unwrap_or_else(|why| panic!("{why}\nreply: {reply}"));
    assert_eq!(analysis.recommendations.len(), 1, "{analysis:?}");
    analysis.recommendations.into_iter().next().unwrap()
}

fn json_recommendation(fields: &str) -> Recommendation {
    json_recommendation_in(fields, &incident())
}

/// The action a description alone maps to.
fn described(description: &str) -> Action {
    described_in(description, &incident())
}

fn described_in(description: &str, incident: &Incident) -> Action {
    let description = serde_json::to_string(description).unwrap();
    json_recommendation_in(&format!(r#""description": {description}"#), incident).action
}

fn seed_analysis() -> Analysis {
    Analysis {
        summary: "The application is experiencing memory pressure leading to OOM kills and crash loops.\n\
                  The pod is consuming 3x its memory limit."
            .to_string(),
        issues: vec![Issue {
            title: "Memory leak in application".to_string(),
            severity: Severity::High,
            impact: "Service unavailability, repeated crashes".to_string(),
            root_cause: "Likely memory leak or insufficient memory allocation".to_string(),
        }],
        recommendations: vec![
            Recommendation {
                action: memory_limit(2 * GI),
                target: deployment(),
                reason: "Current usage exceeds limit by 3x".to_string(),
                risk: "May mask underlying memory leak".to_string(),
                confidence: 0.85,
            },
            Recommendation {
                action: Action::Restart,
                target: pod(),
                reason: "Collect diagnostic data".to_string(),
                risk: "Minimal".to_string(),
                confidence: 0.90,
            },
            Recommendation {
                action: Action::Scale(3),
                target: deployment(),
                reason: "Reduce memory pressure per pod".to_string(),
                risk: "May increase total resource usage".to_string(),
                confidence: 0.75,
            },
        ],
    }
}

fn clean_json_analysis() -> Analysis {
    Analysis {
        summary: "The app container is OOM-killed: it uses 1500Mi against a 512Mi limit."
            .to_string(),
        issues: vec![Issue {
            title: "Memory limit too low".to_string(),
            severity: Severity::High,
            impact: "Crash loop, service down".to_string(),
            root_cause: "Limit below working set".to_string(),
        }],
        recommendations: vec![
            Recommendation {
                action: memory_limit(2 * GI),
                target: deployment(),
                reason: "Usage is 1500Mi".to_string(),
                risk: "Uses more node memory".to_string(),
                confidence: 0.9,
            },
            Recommendation {
                action: Action::Restart,
                target: deployment(),
                reason: "Clear the crash loop".to_string(),
                risk: "Brief disruption".to_string(),
                confidence: 0.7,
            },
            Recommendation {
                action: Action::Scale(4),
                target: deployment(),
                reason: "Spread load".to_string(),
                risk: "More resources".to_string(),
                confidence: 0.6,
            },
        ],
    }
}

/// The sample incident with a second container, `sidecar`, in its workload and pod.
fn two_container_incident() -> Incident {
    let mut incident = incident();
    if let Some(workload) = incident.workload.as_mut() {
        workload.containers.push("sidecar".to_string());
    }
    let mut sidecar = incident.pods[0].containers[0].clone();
    sidecar.name = "sidecar".to_string();
    incident.pods[0].containers.push(sidecar);
    incident
}

// ---- the seed's plain-text format ----

#[test]
fn seed_plain_text_reply_parses_into_typed_recommendations() {
    assert_eq!(parse(SEED_TEXT), seed_analysis());
}

#[test]
fn seed_plain_text_with_windows_line_endings_parses_the_same() {
    assert_eq!(parse(&SEED_TEXT.replace('\n', "\r\n")), seed_analysis());
}

#[test]
fn markdown_headings_bullets_and_bold_labels_are_accepted() {
    let reply = "Here is my analysis.

**SUMMARY:**
Memory pressure kills the pod.

## Issues
* **Memory leak**
  * **Severity:** critical
  * **Impact:** Outage

### Recommendations
1) **Increase memory limit to 1536Mi**
   - **Target:** `deployment/app`
   - **Reason:** Usage is 1500Mi
   - **Confidence:** 85%
2) Delete pod app-xyz
   - Target: pod/app-xyz
   - Confidence: 0.7

Let me know if you need anything else!
";
    let analysis = parse(reply);
    assert_eq!(analysis.summary, "Memory pressure kills the pod.");
    assert_eq!(
        analysis.issues,
        vec![Issue {
            title: "Memory leak".to_string(),
            severity: Severity::Critical,
            impact: "Outage".to_string(),
            root_cause: String::new(),
        }]
    );
    assert_eq!(
        analysis.recommendations,
        vec![
            Recommendation {
                action: memory_limit(1536 * MI),
                target: deployment(),
                reason: "Usage is 1500Mi".to_string(),
                risk: String::new(),
                confidence: 0.85,
            },
            Recommendation {
                action: Action::DeletePod,
                target: pod(),
                reason: "Delete pod app-xyz".to_string(),
                risk: String::new(),
                confidence: 0.7,
            },
        ]
    );
}

#[test]
fn inline_confidence_in_a_title_is_read_and_removed() {
    let reply = "SUMMARY: A cron job opens too many connections.

RECOMMENDATIONS:
1. Patch cron job with connection limit (confidence: 0.92)
2. Restart the deployment [Confidence 80%]
";
    let analysis = parse(reply);
    assert_eq!(analysis.summary, "A cron job opens too many connections.");
    assert_eq!(
        analysis.recommendations,
        vec![
            Recommendation {
                action: Action::None,
                target: deployment(),
                reason: "Patch cron job with connection limit".to_string(),
                risk: String::new(),
                confidence: 0.92,
            },
            Recommendation {
                action: Action::Restart,
                target: deployment(),
                reason: "Restart the deployment".to_string(),
                risk: String::new(),
                confidence: 0.8,
            },
        ]
    );
}

#[test]
fn a_confidence_field_wins_over_an_inline_one() {
    let reply = "RECOMMENDATIONS:\n- Restart the deployment (confidence: 0.5)\n  Confidence: 0.8\n";
    let analysis = parse(reply);
    assert_eq!(analysis.recommendations[0].confidence, 0.8);
    assert_eq!(analysis.summary, "");
}

#[test]
fn plain_text_without_summary_uses_the_first_issue_title() {
    let reply = "ISSUES:\n- Container app is OOM-killed\n  Severity: HIGH\n- Probe fails\n  Severity: bogus\n";
    let analysis = parse(reply);
    assert_eq!(analysis.summary, "Container app is OOM-killed");
    let severities: Vec<Severity> = analysis.issues.iter().map(|issue| issue.severity).collect();
    assert_eq!(severities, vec![Severity::High, Severity::Medium]);
    assert!(analysis.recommendations.is_empty());
}

#[test]
fn wrapped_lines_continue_the_field_they_follow() {
    let reply = "SUMMARY:\nx\nRECOMMENDATIONS:\n1. Restart the deployment\n   Reason: the pod is stuck\n   in a crash loop\n   Confidence: 0.8\n";
    let analysis = parse(reply);
    assert_eq!(
        analysis.recommendations[0].reason,
        "the pod is stuck in a crash loop"
    );
}

#[test]
fn plain_text_confidence_forms() {
    for (written, expected) in [
        ("0.85", 0.85),
        ("85%", 0.85),
        ("85 %", 0.85),
        ("High (0.9)", 0.9),
        ("85", 85.0),
        ("high", 0.0),
        ("", 0.0),
    ] {
        let reply =
            format!("RECOMMENDATIONS:\n1. Restart the deployment\n   Confidence: {written}\n");
        assert_eq!(
            parse(&reply).recommendations[0].confidence,
            expected,
            "{written}"
        );
    }
}

#[test]
fn recommendations_written_as_fields_only_split_on_a_repeated_label() {
    let reply = "RECOMMENDATIONS:
Action: restart
Target: Deployment/app
Confidence: 0.8
Action: scale
Replicas: 5
Target: Deployment/app
";
    let actions: Vec<Action> = parse(reply)
        .recommendations
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(actions, vec![Action::Restart, Action::Scale(5)]);
}

// ---- JSON ----

#[test]
fn clean_json_reply_parses() {
    assert_eq!(parse(CLEAN_JSON), clean_json_analysis());
}

#[test]
fn fenced_json_reply_parses() {
    assert_eq!(
        parse(&format!("```json\n{CLEAN_JSON}\n```")),
        clean_json_analysis()
    );
    assert_eq!(
        parse(&format!("```\n{CLEAN_JSON}\n```\n")),
        clean_json_analysis()
    );
}

#[test]
fn json_with_prose_before_and_after_parses() {
    let reply = format!(
        "Sure! Here is the analysis {{as requested}}:\n\n```json\n{CLEAN_JSON}\n```\n\nLet me know if {{anything}} is unclear."
    );
    assert_eq!(parse(&reply), clean_json_analysis());
}

#[test]
fn a_stray_brace_in_prose_does_not_hide_the_json() {
    let reply = format!("Careful with the {{ in this sentence. {CLEAN_JSON}");
    assert_eq!(parse(&reply), clean_json_analysis());
}

#[test]
fn an_analysis_inside_a_wrapper_or_inside_broken_prose_braces_is_found() {
    assert_eq!(
        parse(&format!(r#"{{"response": {CLEAN_JSON}}}"#)),
        clean_json_analysis()
    );
    assert_eq!(
        parse(&format!(r#"{{"status": "ok", "data": [1, {CLEAN_JSON}]}}"#)),
        clean_json_analysis()
    );
    assert_eq!(
        parse(&format!("I think {{the pod {CLEAN_JSON} is fine}}.")),
        clean_json_analysis()
    );
}

#[test]
fn braces_inside_json_strings_do_not_end_the_object() {
    let reply = r#"{"summary": "a } and a { in text", "recommendations": [{"action": "restart", "reason": "x}", "confidence": 0.8}]}"#;
    let analysis = parse(reply);
    assert_eq!(analysis.summary, "a } and a { in text");
    assert_eq!(analysis.recommendations[0].reason, "x}");
}

#[test]
fn json_analysis_wrapped_in_an_array_is_found() {
    assert_eq!(parse(&format!("[{CLEAN_JSON}]")), clean_json_analysis());
}

#[test]
fn json_confidence_forms() {
    for (written, expected) in [
        ("0.85", 0.85),
        ("\"0.85\"", 0.85),
        ("\"85%\"", 0.85),
        ("85", 85.0),
        ("1e15", 1e15),
        ("-0.5", -0.5),
        ("\"very\"", 0.0),
        ("\"NaN\"", 0.0),
        ("\"inf\"", 0.0),
        ("null", 0.0),
        ("true", 0.0),
    ] {
        let recommendation =
            json_recommendation(&format!(r#""action": "restart", "confidence": {written}"#));
        assert_eq!(recommendation.confidence, expected, "{written}");
    }
    let missing = json_recommendation(r#""action": "restart""#);
    assert_eq!(missing.confidence, 0.0);
}

#[test]
fn json_targets_are_resolved_against_the_incident() {
    let two_pods = {
        let mut incident = incident();
        let mut other = incident.pods[0].clone();
        other.name = "app-abc".to_string();
        incident.pods.push(other);
        incident
    };
    let sample = incident();
    let cases: Vec<(&str, &Incident, ObjectRef)> = vec![
        (r#""Deployment/app""#, &sample, deployment()),
        (r#""deployment/app""#, &sample, deployment()),
        (r#""deployments.apps/app""#, &sample, deployment()),
        (
            r#""Deployment/prod/app""#,
            &sample,
            ObjectRef::new("Deployment", "prod", "app"),
        ),
        (r#""Pod/app-xyz""#, &sample, pod()),
        (r#""Pod app-xyz""#, &sample, pod()),
        (
            r#""statefulset/db""#,
            &sample,
            ObjectRef::new("StatefulSet", "shop", "db"),
        ),
        (
            r#""DAEMONSET/agent""#,
            &sample,
            ObjectRef::new("DaemonSet", "shop", "agent"),
        ),
        (
            r#""replicaset/app-5d9""#,
            &sample,
            ObjectRef::new("ReplicaSet", "shop", "app-5d9"),
        ),
        (r#""app""#, &sample, deployment()),
        (r#""app-xyz""#, &sample, pod()),
        (
            r#""stranger""#,
            &sample,
            ObjectRef::new("", "shop", "stranger"),
        ),
        (r#""pod""#, &sample, pod()),
        (r#""deployment""#, &sample, deployment()),
        (r#""Deployment/""#, &sample, deployment()),
        (r#""pod""#, &two_pods, ObjectRef::new("Pod", "shop", "")),
        (
            r#""statefulset""#,
            &sample,
            ObjectRef::new("StatefulSet", "shop", ""),
        ),
        (r#""`Deployment/app`""#, &sample, deployment()),
        (r#""""#, &sample, deployment()),
        ("null", &sample, deployment()),
        (r#"{"kind": "pod", "name": "app-xyz"}"#, &sample, pod()),
        (
            r#"{"kind": "Deployment", "namespace": "shop", "name": "app"}"#,
            &sample,
            deployment(),
        ),
        (r#"{"name": "Deployment/app"}"#, &sample, deployment()),
    ];
    for (written, incident, expected) in cases {
        let recommendation = json_recommendation_in(
            &format!(r#""action": "restart", "target": {written}"#),
            incident,
        );
        assert_eq!(recommendation.target, expected, "{written}");
    }
    let missing = json_recommendation(r#""action": "restart""#);
    assert_eq!(missing.target, deployment());
}

#[test]
fn gemma_style_bare_pod_target() {
    let reply = r#"{"summary": "OOM", "issues": [], "recommendations": [{"action": "delete-pod", "target": "pod", "reason": "stuck", "risk": "low", "confidence": 0.8}]}"#;
    assert_eq!(
        parse(reply).recommendations,
        vec![Recommendation {
            action: Action::DeletePod,
            target: pod(),
            reason: "stuck".to_string(),
            risk: "low".to_string(),
            confidence: 0.8,
        }]
    );
}

#[test]
fn json_with_missing_fields_is_filled_with_defaults() {
    let analysis = parse(r#"{"recommendations": [{"action": "restart"}]}"#);
    assert_eq!(
        analysis,
        Analysis {
            summary: String::new(),
            issues: Vec::new(),
            recommendations: vec![Recommendation {
                action: Action::Restart,
                target: deployment(),
                reason: String::new(),
                risk: String::new(),
                confidence: 0.0,
            }],
        }
    );
    let summary_only = parse(r#"{"summary": "All fine"}"#);
    assert_eq!(summary_only.summary, "All fine");
    assert!(summary_only.issues.is_empty() && summary_only.recommendations.is_empty());
}

#[test]
fn json_issue_fields_are_lenient() {
    let analysis = parse(
        r#"{"summary": "s", "issues": [
            {"title": "a", "severity": "CRITICAL", "impact": "i", "rootCause": "r"},
            {"title": "b", "severity": "urgent"},
            {"title": "c"},
            "d as text",
            {}
        ]}"#,
    );
    let issue = |title: &str, severity, impact: &str, root_cause: &str| Issue {
        title: title.to_string(),
        severity,
        impact: impact.to_string(),
        root_cause: root_cause.to_string(),
    };
    assert_eq!(
        analysis.issues,
        vec![
            issue("a", Severity::Critical, "i", "r"),
            issue("b", Severity::Medium, "", ""),
            issue("c", Severity::Medium, "", ""),
            issue("d as text", Severity::Medium, "", ""),
        ]
    );
}

#[test]
fn json_keys_forgive_case_and_separators() {
    let analysis = parse(
        r#"{"Summary": "s", "Recommendations": [{"Action": "patch", "Memory-Limit": "1Gi", "CPU_Limit": "1", "Confidence": 0.8}]}"#,
    );
    assert_eq!(analysis.summary, "s");
    assert_eq!(
        analysis.recommendations[0].action,
        Action::Patch(Patch::Resources(ResourcePatch {
            memory_limit_bytes: Some(GI),
            cpu_limit_millicores: Some(1000),
            ..resources("app")
        }))
    );
}

#[test]
fn json_recommendation_given_as_one_object_or_as_text() {
    let one =
        parse(r#"{"summary": "s", "recommendations": {"action": "restart", "confidence": 0.8}}"#);
    assert_eq!(one.recommendations[0].action, Action::Restart);
    let text = parse(
        r#"{"summary": "s", "recommendations": ["Scale to 4 replicas", "Implement connection pooling"]}"#,
    );
    let actions: Vec<&Action> = text.recommendations.iter().map(|r| &r.action).collect();
    assert_eq!(actions, vec![&Action::Scale(4), &Action::None]);
    assert_eq!(
        text.recommendations[1].reason,
        "Implement connection pooling"
    );
}

#[test]
fn json_non_string_fields_become_text() {
    let recommendation =
        json_recommendation(r#""action": "restart", "reason": ["a", "b"], "risk": 3"#);
    assert_eq!(recommendation.reason, "a; b");
    assert_eq!(recommendation.risk, "3");
}

// ---- actions from JSON fields ----

#[test]
fn json_scale_uses_replicas() {
    for (replicas, expected) in [
        ("4", Action::Scale(4)),
        ("\"5\"", Action::Scale(5)),
        ("6.0", Action::Scale(6)),
        ("0", Action::Scale(0)),
    ] {
        let recommendation =
            json_recommendation(&format!(r#""action": "scale", "replicas": {replicas}"#));
        assert_eq!(recommendation.action, expected, "{replicas}");
    }
}

#[test]
fn json_scale_without_usable_replicas_falls_back_to_the_description() {
    let horizontal =
        json_recommendation(r#""action": "scale", "description": "Scale horizontally""#);
    assert_eq!(horizontal.action, Action::Scale(3));
    let to_five = json_recommendation(
        r#""action": "scale", "replicas": -1, "description": "Scale to 5 replicas""#,
    );
    assert_eq!(to_five.action, Action::Scale(5));
    let contradiction =
        json_recommendation(r#""action": "scale", "description": "Restart the deployment""#);
    assert_eq!(contradiction.action, Action::None);
    let nothing = json_recommendation(r#""action": "scale", "replicas": "many""#);
    assert_eq!(nothing.action, Action::None);
}

#[test]
fn json_patch_uses_resource_quantities() {
    let cases = [
        (r#""memory_limit": "2Gi""#, memory_limit(2 * GI)),
        (r#""memory_limit": "2GB""#, memory_limit(2 * GI)),
        (r#""memory_limit": "2 GiB""#, memory_limit(2 * GI)),
        (r#""memory_limit": "2G""#, memory_limit(2_000_000_000)),
        (r#""memory_limit": "1536m""#, memory_limit(1536 * MI)),
        (r#""memory_limit": 2147483648"#, memory_limit(2 * GI)),
        (
            r#""cpu_limit": "500m", "cpu_request": 0.25"#,
            Action::Patch(Patch::Resources(ResourcePatch {
                cpu_limit_millicores: Some(500),
                cpu_request_millicores: Some(250),
                ..resources("app")
            })),
        ),
        (
            r#""cpu_limit": "2 cores", "memory_request": "512Mi""#,
            Action::Patch(Patch::Resources(ResourcePatch {
                cpu_limit_millicores: Some(2000),
                memory_request_bytes: Some(512 * MI),
                ..resources("app")
            })),
        ),
    ];
    for (fields, expected) in cases {
        let recommendation = json_recommendation(&format!(r#""action": "patch", {fields}"#));
        assert_eq!(recommendation.action, expected, "{fields}");
    }
}

#[test]
fn json_patch_container_comes_from_the_field_the_text_or_the_workload() {
    let named =
        json_recommendation(r#""action": "patch", "container": "worker", "memory_limit": "1Gi""#);
    assert_eq!(
        named.action,
        Action::Patch(Patch::Resources(ResourcePatch {
            memory_limit_bytes: Some(GI),
            ..resources("worker")
        }))
    );
    let two = two_container_incident();
    let in_text = json_recommendation_in(
        r#""action": "patch", "description": "Give the sidecar more memory", "memory_limit": "1Gi""#,
        &two,
    );
    assert_eq!(
        in_text.action,
        Action::Patch(Patch::Resources(ResourcePatch {
            memory_limit_bytes: Some(GI),
            ..resources("sidecar")
        }))
    );
    let unnamed = json_recommendation_in(r#""action": "patch", "memory_limit": "1Gi""#, &two);
    assert_eq!(unnamed.action, memory_limit(GI));
}

#[test]
fn json_patch_with_an_unparseable_quantity_falls_back_to_the_description() {
    let fallback = json_recommendation(
        r#""action": "patch", "memory_limit": "lots", "description": "Increase memory limit to 3Gi""#,
    );
    assert_eq!(fallback.action, memory_limit(3 * GI));
    let advice =
        json_recommendation(r#""action": "patch", "memory_limit": "lots", "cpu_limit": "1""#);
    assert_eq!(advice.action, Action::None);
}

#[test]
fn json_patch_document_is_a_strategic_merge_only_without_resource_fields() {
    let raw = json_recommendation(r#""action": "patch", "patch": "spec:\n  paused: true""#);
    assert_eq!(
        raw.action,
        Action::Patch(Patch::StrategicMerge("spec:\n  paused: true".to_string()))
    );
    let object = json_recommendation(r#""action": "patch", "patch": {"spec": {"paused": true}}"#);
    assert_eq!(
        object.action,
        Action::Patch(Patch::StrategicMerge(
            r#"{"spec":{"paused":true}}"#.to_string()
        ))
    );
    let fields_win =
        json_recommendation(r#""action": "patch", "patch": "x: 1", "memory_limit": "1Gi""#);
    assert_eq!(fields_win.action, memory_limit(GI));
    let ignored = json_recommendation(r#""action": "restart", "patch": "x: 1""#);
    assert_eq!(ignored.action, Action::Restart);
    let empty = json_recommendation(r#""action": "patch", "description": "Tune the JVM""#);
    assert_eq!(empty.action, Action::None);
}

#[test]
fn json_action_keywords_in_any_spelling() {
    for (written, expected) in [
        ("restart", Action::Restart),
        ("Rollout-Restart", Action::Restart),
        ("delete-pod", Action::DeletePod),
        ("delete_pod", Action::DeletePod),
        ("DELETE POD", Action::DeletePod),
        ("evict", Action::DeletePod),
        ("none", Action::None),
        ("no-op", Action::None),
    ] {
        let recommendation = json_recommendation(&format!(
            r#""action": "{written}", "description": "Scale to 9 replicas""#
        ));
        assert_eq!(recommendation.action, expected, "{written}");
    }
}

#[test]
fn json_free_text_action_is_read_as_a_description() {
    let recommendation =
        json_recommendation(r#""action": "increase_memory_limit", "description": "to 2Gi""#);
    assert_eq!(recommendation.action, memory_limit(2 * GI));
    let words = json_recommendation(r#""action": "Increase memory limit to 1Gi""#);
    assert_eq!(words.action, memory_limit(GI));
}

#[test]
fn advice_keeps_its_description_in_the_reason() {
    let advice = json_recommendation(
        r#""action": "none", "description": "Implement connection pooling", "reason": "Too many connections""#,
    );
    assert_eq!(advice.action, Action::None);
    assert_eq!(
        advice.reason,
        "Implement connection pooling: Too many connections"
    );
    let typed =
        json_recommendation(r#""description": "Restart the deployment", "reason": "Stuck""#);
    assert_eq!(typed.reason, "Stuck");
    let no_reason = json_recommendation(r#""description": "Restart the deployment""#);
    assert_eq!(no_reason.reason, "Restart the deployment");
}

// ---- actions from descriptions ----

#[test]
fn descriptions_map_to_typed_actions() {
    let patch = |patch: ResourcePatch| Action::Patch(Patch::Resources(patch));
    let cases = [
        ("Increase memory limit to 2GB", memory_limit(2 * GI)),
        ("Increase memory limit to 2Gi", memory_limit(2 * GI)),
        ("Increase memory limit to 2 GB.", memory_limit(2 * GI)),
        ("Increase the memory limit to 512MB", memory_limit(512 * MI)),
        ("Bump memory limits to 768m", memory_limit(768 * MI)),
        (
            "Increase memory limit from 512Mi to 1.5Gi",
            memory_limit(1536 * MI),
        ),
        (
            "Increase memory limit to 2Gi (about 4x the current 512Mi)",
            memory_limit(2 * GI),
        ),
        ("Set memory limit 3Gi", memory_limit(3 * GI)),
        (
            "Prevent OOM kills by raising the memory limit to 2Gi",
            memory_limit(2 * GI),
        ),
        (
            "Increase memory limit to 2Gi and restart",
            memory_limit(2 * GI),
        ),
        (
            "Set memory request to 512MB",
            patch(ResourcePatch {
                memory_request_bytes: Some(512 * MI),
                ..resources("app")
            }),
        ),
        (
            "Increase CPU limit to 2 cores",
            patch(ResourcePatch {
                cpu_limit_millicores: Some(2000),
                ..resources("app")
            }),
        ),
        (
            "Raise the CPU limit to 500m",
            patch(ResourcePatch {
                cpu_limit_millicores: Some(500),
                ..resources("app")
            }),
        ),
        (
            "Increase CPU to 2",
            patch(ResourcePatch {
                cpu_limit_millicores: Some(2000),
                ..resources("app")
            }),
        ),
        (
            "Set CPU request to 250m and memory limit to 1Gi",
            patch(ResourcePatch {
                cpu_request_millicores: Some(250),
                memory_limit_bytes: Some(GI),
                ..resources("app")
            }),
        ),
        ("Increase memory limit by 1Gi", Action::None),
        ("Increase memory limit", Action::None),
        ("Increase memory limit to 2048", Action::None),
        ("Restart pod with heap dump enabled", Action::Restart),
        (
            "Perform a rollout restart of the deployment",
            Action::Restart,
        ),
        (
            "Restart the pod after raising memory limit to 2Gi",
            Action::Restart,
        ),
        ("Scale to 4 replicas", Action::Scale(4)),
        ("Scale up to 4", Action::Scale(4)),
        ("Increase replicas from 2 to 5", Action::Scale(5)),
        ("Run 6 replicas", Action::Scale(6)),
        ("Scale horizontally to distribute load", Action::Scale(3)),
        ("Scale up", Action::Scale(3)),
        ("Scale up by 3", Action::Scale(5)),
        ("Scale down by 1", Action::Scale(1)),
        ("Scale down", Action::None),
        ("Scale to 99999999999 replicas", Action::None),
        ("Delete pod app-xyz", Action::DeletePod),
        ("Evict the pod", Action::DeletePod),
        ("Kill pod/app-xyz", Action::DeletePod),
        ("Delete the deployment", Action::None),
        ("Implement connection pooling", Action::None),
        ("Investigate why the pod restarts", Action::None),
        ("Check memory limit is at least 2Gi", Action::None),
        ("Fix the image tag", Action::None),
    ];
    for (description, expected) in cases {
        assert_eq!(described(description), expected, "{description:?}");
    }
}

#[test]
fn delete_is_for_pods_when_the_target_is_a_pod() {
    let recommendation =
        json_recommendation(r#""description": "Delete it", "target": "Pod/app-xyz""#);
    assert_eq!(recommendation.action, Action::DeletePod);
    assert_eq!(recommendation.target, pod());
}

#[test]
fn scaling_without_a_count_needs_the_desired_replicas() {
    let mut unknown = incident();
    unknown.workload = None;
    assert_eq!(described_in("Scale horizontally", &unknown), Action::None);
    assert_eq!(
        described_in("Scale to 4 replicas", &unknown),
        Action::Scale(4)
    );
    assert_eq!(described_in("Scale up by 2", &unknown), Action::None);
}

#[test]
fn patch_container_from_text_or_first_or_none() {
    let two = two_container_incident();
    assert_eq!(
        described_in("Increase sidecar memory limit to 1Gi", &two),
        Action::Patch(Patch::Resources(ResourcePatch {
            memory_limit_bytes: Some(GI),
            ..resources("sidecar")
        }))
    );
    assert_eq!(
        described_in("Increase memory limit to 1Gi", &two),
        memory_limit(GI)
    );
    let mut bare = incident();
    bare.workload = None;
    bare.pods.clear();
    assert_eq!(
        described_in("Increase memory limit to 1Gi", &bare),
        Action::Patch(Patch::Resources(ResourcePatch {
            memory_limit_bytes: Some(GI),
            ..resources("")
        }))
    );
    let from_pods = {
        let mut incident = incident();
        incident.workload = None;
        incident
    };
    assert_eq!(
        described_in("Increase memory limit to 1Gi", &from_pods),
        memory_limit(GI)
    );
}

#[test]
fn a_container_field_in_plain_text_is_used() {
    let reply = "RECOMMENDATIONS:\n1. Increase memory limit to 1Gi\n   Container: sidecar\n   Confidence: 0.8\n";
    let analysis = parse_response(reply, &two_container_incident()).unwrap();
    assert_eq!(
        analysis.recommendations[0].action,
        Action::Patch(Patch::Resources(ResourcePatch {
            memory_limit_bytes: Some(GI),
            ..resources("sidecar")
        }))
    );
}

// ---- malformed replies ----

#[test]
fn empty_and_whitespace_replies_are_errors() {
    assert_eq!(error(""), "the model's reply is empty");
    assert_eq!(error(" \n\t\r\n  "), "the model's reply is empty");
}

#[test]
fn unrelated_text_is_an_error() {
    let expected =
        "the model's reply has neither a JSON object nor SUMMARY/RECOMMENDATIONS sections";
    assert_eq!(error("I'm sorry, I can't help with that."), expected);
    assert_eq!(error("[]"), expected);
    assert_eq!(error("[1, 2, 3]"), expected);
    assert_eq!(
        error("\u{0}\u{1}\u{7f}\u{fffd}\u{feff}garbage\u{0}"),
        expected
    );
    assert_eq!(error("Überlastung — 内存不足 🚀"), expected);
}

#[test]
fn binary_garbage_is_an_error() {
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let garbage = String::from_utf8_lossy(&bytes);
    let why = error(&garbage);
    assert!(why.starts_with("the model's reply has "), "{why}");
    assert!(!why.contains('\n'), "{why}");
}

#[test]
fn a_lone_brace_is_an_unparseable_object() {
    assert_eq!(
        error("{"),
        "the model's reply has a JSON object that does not parse: EOF while parsing an object at line 1 column 1"
    );
}

#[test]
fn truncated_json_names_the_problem_and_where_it_is_in_the_reply() {
    let reply =
        "Here you go:\n```json\n{\"summary\": \"x\",\n  \"recommendations\": [{\"action\": \"rest";
    assert_eq!(
        error(reply),
        "the model's reply has a JSON object that does not parse: EOF while parsing a string at line 4 column 38"
    );
    let cut = &CLEAN_JSON[..CLEAN_JSON.len() / 2];
    let why = error(cut);
    assert!(
        why.starts_with(
            "the model's reply has a JSON object that does not parse: EOF while parsing"
        ),
        "{why}"
    );
}

#[test]
fn json_that_is_not_an_analysis_is_an_error() {
    assert_eq!(
        error("{}"),
        "the model's reply has a JSON object without summary, issues or recommendations"
    );
    assert_eq!(
        error(r#"Result: {"status": "ok"}"#),
        "the model's reply has a JSON object without summary, issues or recommendations"
    );
}

#[test]
fn an_analysis_without_summary_or_recommendations_is_an_error() {
    let expected = "the model's reply has no summary and no recommendations";
    assert_eq!(
        error(r#"{"summary": "", "issues": [], "recommendations": []}"#),
        expected
    );
    assert_eq!(
        error(r#"{"summary": "  ", "recommendations": [{}, null, ""]}"#),
        expected
    );
    assert_eq!(error("SUMMARY:\n\nRECOMMENDATIONS:\n"), expected);
}

#[test]
fn plain_text_wins_over_broken_json() {
    let reply = format!("{SEED_TEXT}\n{{\"summary\": ");
    assert_eq!(parse(&reply), seed_analysis());
}

#[test]
fn deeply_nested_arrays_do_not_overflow_the_stack() {
    let depth = 100_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert_eq!(
        error(&nested),
        "the model's reply has neither a JSON object nor SUMMARY/RECOMMENDATIONS sections"
    );
    let inside = format!(r#"{{"summary": {nested}}}"#);
    let why = error(&inside);
    assert!(
        why.starts_with(
            "the model's reply has a JSON object that does not parse: recursion limit exceeded"
        ),
        "{why}"
    );
}

#[test]
fn deeply_nested_objects_do_not_overflow_the_stack() {
    let depth = 100_000;
    let nested = format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let why = error(&nested);
    assert!(
        why.starts_with(
            "the model's reply has a JSON object that does not parse: recursion limit exceeded"
        ),
        "{why}"
    );
    assert_eq!(
        error(&"{".repeat(depth)),
        "the model's reply has a JSON object that does not parse: key must be a string at line 1 column 2"
    );
}

#[test]
fn unicode_survives_both_formats() {
    let json = r#"{"summary": "Der Pod läuft über — 内存不足 🚀", "recommendations": [{"description": "Ünïcödé ☃ Scale to 4 replicas", "reason": "ø", "confidence": "٣"}]}"#;
    let analysis = parse(json);
    assert_eq!(analysis.summary, "Der Pod läuft über — 内存不足 🚀");
    assert_eq!(analysis.recommendations[0].action, Action::Scale(4));
    assert_eq!(analysis.recommendations[0].confidence, 0.0);

    let text = "ZUSAMMENFASSUNG ignoriert\nSUMMARY: Überlastung 🚀\nRECOMMENDATIONS:\n1. Ünïcödé ☃ — restart (confidence: 0.5) ✓\n   Target: Pod/app-xyz ☃\n";
    let analysis = parse(text);
    assert_eq!(analysis.summary, "Überlastung 🚀");
    assert_eq!(
        analysis.recommendations,
        vec![Recommendation {
            action: Action::Restart,
            target: pod(),
            reason: "Ünïcödé ☃ — restart ✓".to_string(),
            risk: String::new(),
            confidence: 0.5,
        }]
    );
}

#[test]
fn replies_over_one_mebibyte_are_refused() {
    let huge = "a".repeat(2 << 20);
    assert_eq!(
        error(&huge),
        "the model's reply is 2097152 bytes, over the 1 MiB limit"
    );
    let just_over = format!(
        "{CLEAN_JSON}{}",
        " ".repeat((1 << 20) + 1 - CLEAN_JSON.len())
    );
    assert_eq!(
        error(&just_over),
        "the model's reply is 1048577 bytes, over the 1 MiB limit"
    );
    let at_limit = format!("{CLEAN_JSON}{}", " ".repeat((1 << 20) - CLEAN_JSON.len()));
    assert_eq!(parse(&at_limit), clean_json_analysis());
}

#[test]
fn a_mebibyte_of_braces_is_refused_quickly() {
    let started = std::time::Instant::now();
    let why = error(&"{".repeat(1 << 20));
    assert!(why.contains("does not parse"), "{why}");
    let lines = error(&"{\n".repeat(1 << 19));
    assert!(lines.contains("does not parse"), "{lines}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn error_messages_are_one_line() {
    for reply in [
        "",
        "{",
        "{\n\"a\":\n",
        "nothing",
        "{}",
        "{\"summary\": \"\"}",
        "{\"a\": \"\u{0}\"}",
    ] {
        let why = error(reply);
        assert!(!why.contains('\n'), "{reply:?}: {why}");
    }
}

// ---- properties ----

/// What every successful parse promises, however odd the reply.
fn assert_well_formed(analysis: &Analysis) {
    assert!(!analysis.summary.is_empty() || !analysis.recommendations.is_empty());
    assert_eq!(analysis.summary, analysis.summary.trim());
    for recommendation in &analysis.recommendations {
        assert!(recommendation.confidence.is_finite(), "{recommendation:?}");
    }
}

fn char_floor(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn valid_replies() -> Vec<String> {
    vec![
        SEED_TEXT.to_string(),
        CLEAN_JSON.to_string(),
        format!("Sure:\n```json\n{CLEAN_JSON}\n```\nDone."),
        "**SUMMARY:** x\n## Recommendations\n1) **Scale to 4 replicas** (confidence: 92%)\n   - Target: `pod`\n".to_string(),
    ]
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(reply in any::<String>()) {
        if let Ok(analysis) = parse_response(&reply, &incident()) {
            assert_well_formed(&analysis);
        }
    }

    #[test]
    fn json_like_text_never_panics(reply in r#"[{}\[\]":,0-9a-zA-Z .%/\\\n-]{0,300}"#) {
        if let Ok(analysis) = parse_response(&reply, &incident()) {
            assert_well_formed(&analysis);
        }
    }

    #[test]
    fn truncated_replies_never_panic(which in 0usize..4, cut in any::<prop::sample::Index>()) {
        let replies = valid_replies();
        let reply = &replies[which % replies.len()];
        let truncated = &reply[..char_floor(reply, cut.index(reply.len() + 1))];
        if let Ok(analysis) = parse_response(truncated, &incident()) {
            assert_well_formed(&analysis);
        }
    }

    #[test]
    fn spliced_replies_never_panic(which in 0usize..4, at in any::<prop::sample::Index>(), junk in any::<String>()) {
        let replies = valid_replies();
        let reply = &replies[which % replies.len()];
        let at = char_floor(reply, at.index(reply.len() + 1));
        let spliced = format!("{}{junk}{}", &reply[..at], &reply[at..]);
        if let Ok(analysis) = parse_response(&spliced, &incident()) {
            assert_well_formed(&analysis);
        }
    }
}

#[test]
fn every_valid_reply_parses() {
    for reply in valid_replies() {
        assert_well_formed(&parse(&reply));
    }
    let last = parse(&valid_replies()[3]);
    assert_eq!(
        last.recommendations,
        vec![Recommendation {
            action: Action::Scale(4),
            target: pod(),
            reason: "Scale to 4 replicas".to_string(),
            risk: String::new(),
            confidence: 0.92,
        }]
    );
}

#[test]
fn pods_with_an_empty_namespace_take_the_incident_namespace() {
    let mut incident = incident();
    incident.pods[0].namespace = String::new();
    let recommendation =
        json_recommendation_in(r#""action": "delete-pod", "target": "pod""#, &incident);
    assert_eq!(recommendation.target, pod());
}
