use super::*;
use kubeskippy_plugin_sdk::sample::oom_crashloop_incident;
use kubeskippy_plugin_sdk::types::{Finding, ObjectRef, ResourcePatch, WorkloadFacts};
use std::collections::BTreeMap;

const MI: u64 = 1 << 20;
const GI: u64 = 1 << 30;

fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn context(allowed_so_far: u32) -> ReviewContext {
    ReviewContext {
        rank: allowed_so_far,
        allowed_so_far,
    }
}

fn recommendation(action: Action, kind: &str, name: &str) -> Recommendation {
    Recommendation {
        action,
        target: ObjectRef::new(kind, "shop", name),
        reason: "because".into(),
        risk: "low".into(),
        confidence: 0.9,
    }
}

fn with_confidence(mut recommendation: Recommendation, confidence: f64) -> Recommendation {
    recommendation.confidence = confidence;
    recommendation
}

fn on_deployment(action: Action) -> Recommendation {
    recommendation(action, "Deployment", "app")
}

fn on_pod(action: Action) -> Recommendation {
    recommendation(action, "Pod", "app-xyz")
}

fn resource_patch(container: &str) -> ResourcePatch {
    ResourcePatch {
        container: container.into(),
        cpu_limit_millicores: None,
        cpu_request_millicores: None,
        memory_limit_bytes: None,
        memory_request_bytes: None,
    }
}

fn memory_patch(limit: Option<u64>, request: Option<u64>) -> Action {
    Action::Patch(Patch::Resources(ResourcePatch {
        memory_limit_bytes: limit,
        memory_request_bytes: request,
        ..resource_patch("app")
    }))
}

/// Judges with default settings against `incident`, as the first recommendation.
fn check_against(recommendation: &Recommendation, incident: &Incident) -> Verdict {
    validate(recommendation, incident, context(0), &BTreeMap::new())
}

fn check(recommendation: &Recommendation) -> Verdict {
    check_against(recommendation, &oom_crashloop_incident())
}

fn check_with(recommendation: &Recommendation, pairs: &[(&str, &str)]) -> Verdict {
    validate(
        recommendation,
        &oom_crashloop_incident(),
        context(0),
        &config(pairs),
    )
}

fn denial(verdict: Verdict) -> String {
    match verdict {
        Verdict::Deny(reason) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn adjustment(verdict: Verdict) -> Adjustment {
    match verdict {
        Verdict::Adjust(adjustment) => adjustment,
        other => panic!("expected an adjustment, got {other:?}"),
    }
}

/// The sample with its only finding replaced by an image-pull failure.
fn image_pull_incident() -> Incident {
    let mut incident = oom_crashloop_incident();
    let container = &mut incident.pods[0].containers[0];
    container.waiting_reason = Some("ImagePullBackOff".into());
    container.waiting_message = Some("Back-off pulling image \"app:v2\"".into());
    container.last_termination_reason = None;
    incident.findings = vec![Finding {
        trigger: "image-pull".into(),
        kind: FindingKind::ImagePull,
        detail: "Image app:v2 cannot be pulled".into(),
        pod: Some("app-xyz".into()),
    }];
    incident
}

/// The sample as if `app-xyz` were a bare pod with no owner.
fn bare_pod_incident() -> Incident {
    let mut incident = oom_crashloop_incident();
    incident.target = ObjectRef::new("Pod", "shop", "app-xyz");
    incident.workload = None;
    incident.pods[0].owner = None;
    incident
}

/// The sample as if the pod belonged to DaemonSet `agent`.
fn daemonset_incident() -> Incident {
    let mut incident = oom_crashloop_incident();
    let daemonset = ObjectRef::new("DaemonSet", "shop", "agent");
    incident.target = daemonset.clone();
    incident.workload = Some(WorkloadFacts {
        target: daemonset.clone(),
        desired_replicas: None,
        ready_replicas: None,
        containers: vec!["app".into()],
    });
    incident.pods[0].owner = Some(daemonset);
    incident
}

// ---------------------------------------------------------------- settings

#[test]
fn settings_default_when_nothing_is_configured() {
    let settings = Settings::from_config(&BTreeMap::new()).unwrap();
    assert_eq!(
        settings,
        Settings {
            min_confidence: 0.7,
            max_recommendations: 3,
            max_replicas: 10,
            max_memory_limit_bytes: 8 * GI,
            allow_raw_patches: false,
        }
    );
    assert_eq!(settings, Settings::default());
}

#[test]
fn settings_read_every_key() {
    let settings = Settings::from_config(&config(&[
        ("minConfidence", " 0.5 "),
        ("maxRecommendations", "5"),
        ("maxReplicas", "4"),
        ("maxMemoryLimit", "1.5Gi"),
        ("allowRawPatches", "true"),
    ]))
    .unwrap();
    assert_eq!(
        settings,
        Settings {
            min_confidence: 0.5,
            max_recommendations: 5,
            max_replicas: 4,
            max_memory_limit_bytes: 1536 * MI,
            allow_raw_patches: true,
        }
    );
    let settings = Settings::from_config(&config(&[("allowRawPatches", "false")])).unwrap();
    assert!(!settings.allow_raw_patches);
}

#[test]
fn settings_errors_name_the_key_and_value() {
    let cases = [
        (
            "minConfidence",
            "abc",
            "config minConfidence must be a number from 0 to 1, got \"abc\"",
        ),
        (
            "minConfidence",
            "1.5",
            "config minConfidence must be a number from 0 to 1, got \"1.5\"",
        ),
        (
            "minConfidence",
            "NaN",
            "config minConfidence must be a number from 0 to 1, got \"NaN\"",
        ),
        (
            "maxRecommendations",
            "0",
            "config maxRecommendations must be a positive integer, got \"0\"",
        ),
        (
            "maxReplicas",
            "-1",
            "config maxReplicas must be a positive integer, got \"-1\"",
        ),
        (
            "maxMemoryLimit",
            "lots",
            "config maxMemoryLimit: invalid memory quantity \"lots\": no digits",
        ),
        (
            "allowRawPatches",
            "yes",
            "config allowRawPatches must be true or false, got \"yes\"",
        ),
    ];
    for (key, value, expected) in cases {
        assert_eq!(
            Settings::from_config(&config(&[(key, value)])),
            Err(expected.to_string()),
            "{key}={value}"
        );
    }
}

#[test]
fn misconfiguration_denies_even_a_harmless_recommendation() {
    let harmless = on_deployment(Action::None);
    assert_eq!(check(&harmless), Verdict::Allow);
    let cases = [
        (
            "minConfidence",
            "abc",
            "validator misconfigured: config minConfidence must be a number from 0 to 1, got \"abc\"",
        ),
        (
            "maxRecommendations",
            "0",
            "validator misconfigured: config maxRecommendations must be a positive integer, got \"0\"",
        ),
        (
            "allowRawPatches",
            "yes",
            "validator misconfigured: config allowRawPatches must be true or false, got \"yes\"",
        ),
        (
            "maxMemoryLimit",
            "lots",
            "validator misconfigured: config maxMemoryLimit: invalid memory quantity \"lots\": no digits",
        ),
    ];
    for (key, value, expected) in cases {
        let reason = denial(check_with(&harmless, &[(key, value)]));
        assert!(reason.starts_with("validator misconfigured:"), "{reason}");
        assert_eq!(reason, expected);
    }
}

// ---------------------------------------------------------------- evidence

#[test]
fn the_workload_and_its_pods_are_valid_targets() {
    assert_eq!(check(&on_deployment(Action::Restart)), Verdict::Allow);
    assert_eq!(check(&on_pod(Action::DeletePod)), Verdict::Allow);
    assert_eq!(check(&on_pod(Action::None)), Verdict::Allow);
    // Kinds compare case-insensitively, names exactly.
    assert_eq!(
        check(&recommendation(Action::Restart, "deployment", "app")),
        Verdict::Allow
    );
    assert_eq!(
        check(&recommendation(Action::DeletePod, "pod", "app-xyz")),
        Verdict::Allow
    );
}

#[test]
fn a_target_outside_the_evidence_is_denied() {
    let cases = [
        (
            recommendation(Action::Restart, "Deployment", "other"),
            "target Deployment/other in namespace \"shop\" is not part of the incident's evidence",
        ),
        (
            recommendation(Action::Restart, "Deployment", "App"),
            "target Deployment/App in namespace \"shop\" is not part of the incident's evidence",
        ),
        (
            recommendation(Action::Restart, "StatefulSet", "app"),
            "target StatefulSet/app in namespace \"shop\" is not part of the incident's evidence",
        ),
        (
            recommendation(Action::DeletePod, "Pod", "app-abc"),
            "target Pod/app-abc in namespace \"shop\" is not part of the incident's evidence",
        ),
        (
            // A pod's name under another kind is not the pod.
            recommendation(Action::DeletePod, "Deployment", "app-xyz"),
            "target Deployment/app-xyz in namespace \"shop\" is not part of the incident's evidence",
        ),
        (
            // The workload's name as a pod is not a pod of the incident.
            recommendation(Action::DeletePod, "Pod", "app"),
            "target Pod/app in namespace \"shop\" is not part of the incident's evidence",
        ),
    ];
    for (recommendation, expected) in cases {
        assert_eq!(check(&recommendation), Verdict::Deny(expected.to_string()));
    }
}

#[test]
fn a_target_in_another_namespace_is_denied() {
    for (kind, name) in [("Deployment", "app"), ("Pod", "app-xyz")] {
        let mut other = recommendation(Action::None, kind, name);
        other.target.namespace = "default".into();
        assert_eq!(
            check(&other),
            Verdict::Deny(format!(
                "target {kind}/{name} in namespace \"default\" is not part of the incident's evidence"
            ))
        );
        other.target.namespace = String::new();
        assert_eq!(
            check(&other),
            Verdict::Deny(format!(
                "target {kind}/{name} in namespace \"\" is not part of the incident's evidence"
            ))
        );
    }
}

// ---------------------------------------------------------------- confidence

#[test]
fn confidence_outside_zero_to_one_is_denied() {
    let cases = [
        (f64::NAN, "confidence NaN is outside 0..1"),
        (-0.1, "confidence -0.1 is outside 0..1"),
        (1e15, "confidence 1000000000000000 is outside 0..1"),
        (1.0000001, "confidence 1.0000001 is outside 0..1"),
        (f64::INFINITY, "confidence inf is outside 0..1"),
        (f64::NEG_INFINITY, "confidence -inf is outside 0..1"),
    ];
    for (confidence, expected) in cases {
        let verdict = check(&with_confidence(on_deployment(Action::Restart), confidence));
        assert_eq!(verdict, Verdict::Deny(expected.to_string()), "{confidence}");
    }
}

#[test]
fn confidence_below_the_minimum_is_denied_and_at_the_minimum_allowed() {
    let restart = on_deployment(Action::Restart);
    assert_eq!(
        check(&with_confidence(restart.clone(), 0.69)),
        Verdict::Deny("confidence 0.69 is below the minimum 0.7".into())
    );
    assert_eq!(
        check(&with_confidence(restart.clone(), 0.0)),
        Verdict::Deny("confidence 0 is below the minimum 0.7".into())
    );
    assert_eq!(
        check(&with_confidence(restart.clone(), 0.7)),
        Verdict::Allow
    );
    assert_eq!(
        check(&with_confidence(restart.clone(), 1.0)),
        Verdict::Allow
    );

    let lenient = [("minConfidence", "0.4")];
    assert_eq!(
        check_with(&with_confidence(restart.clone(), 0.4), &lenient),
        Verdict::Allow
    );
    assert_eq!(
        check_with(&with_confidence(restart.clone(), 0.39), &lenient),
        Verdict::Deny("confidence 0.39 is below the minimum 0.4".into())
    );
    let strict = [("minConfidence", "1")];
    assert_eq!(
        check_with(&with_confidence(restart.clone(), 0.99), &strict),
        Verdict::Deny("confidence 0.99 is below the minimum 1".into())
    );
    assert_eq!(
        check_with(&with_confidence(restart, 1.0), &strict),
        Verdict::Allow
    );
}

#[test]
fn confidence_is_judged_before_the_target() {
    let stranger = with_confidence(recommendation(Action::Restart, "Deployment", "other"), 0.1);
    assert_eq!(
        check(&stranger),
        Verdict::Deny("confidence 0.1 is below the minimum 0.7".into())
    );
}

// ---------------------------------------------------------------- the cap

#[test]
fn at_most_max_recommendations_pass() {
    let incident = oom_crashloop_incident();
    let restart = on_deployment(Action::Restart);
    let defaults = BTreeMap::new();
    for allowed in 0..3 {
        assert_eq!(
            validate(&restart, &incident, context(allowed), &defaults),
            Verdict::Allow,
            "{allowed} allowed so far"
        );
    }
    assert_eq!(
        validate(&restart, &incident, context(3), &defaults),
        Verdict::Deny("3 recommendations already allowed; the limit is 3".into())
    );
    assert_eq!(
        validate(&restart, &incident, context(7), &defaults),
        Verdict::Deny("7 recommendations already allowed; the limit is 3".into())
    );

    let one = config(&[("maxRecommendations", "1")]);
    assert_eq!(
        validate(&restart, &incident, context(0), &one),
        Verdict::Allow
    );
    assert_eq!(
        validate(&restart, &incident, context(1), &one),
        Verdict::Deny("1 recommendations already allowed; the limit is 1".into())
    );
}

#[test]
fn the_cap_counts_allowed_recommendations_not_rank() {
    let incident = oom_crashloop_incident();
    let late_but_first_allowed = ReviewContext {
        rank: 9,
        allowed_so_far: 0,
    };
    assert_eq!(
        validate(
            &on_deployment(Action::Restart),
            &incident,
            late_but_first_allowed,
            &BTreeMap::new()
        ),
        Verdict::Allow
    );
}

// ---------------------------------------------------------------- image pull

#[test]
fn image_pull_failures_deny_restart_scale_and_delete() {
    let incident = image_pull_incident();
    let expected = Verdict::Deny(
        "restarting, scaling or deleting pods cannot fix an image pull failure".into(),
    );
    for recommendation in [
        on_deployment(Action::Restart),
        on_deployment(Action::Scale(3)),
        on_pod(Action::DeletePod),
    ] {
        assert_eq!(
            check_against(&recommendation, &incident),
            expected,
            "{:?}",
            recommendation.action
        );
    }
    // The same actions pass without the image-pull finding.
    for recommendation in [
        on_deployment(Action::Restart),
        on_deployment(Action::Scale(3)),
        on_pod(Action::DeletePod),
    ] {
        assert_eq!(check(&recommendation), Verdict::Allow);
    }
}

#[test]
fn image_pull_failures_allow_advice_and_patches() {
    let incident = image_pull_incident();
    assert_eq!(
        check_against(&on_deployment(Action::None), &incident),
        Verdict::Allow
    );
    assert_eq!(
        check_against(&on_pod(Action::None), &incident),
        Verdict::Allow
    );
    assert_eq!(
        check_against(&on_deployment(memory_patch(Some(2 * GI), None)), &incident),
        Verdict::Allow
    );
    let raw = on_deployment(Action::Patch(Patch::StrategicMerge(
        "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"app\",\"image\":\"app:v1\"}]}}}}"
            .into(),
    )));
    assert_eq!(
        validate(
            &raw,
            &incident,
            context(0),
            &config(&[("allowRawPatches", "true")])
        ),
        Verdict::Allow
    );
}

#[test]
fn one_image_pull_finding_among_others_is_enough() {
    let mut incident = oom_crashloop_incident();
    incident.findings.extend(image_pull_incident().findings);
    assert_eq!(
        check_against(&on_deployment(Action::Restart), &incident),
        Verdict::Deny(
            "restarting, scaling or deleting pods cannot fix an image pull failure".into()
        )
    );
}

// ---------------------------------------------------------------- restart

#[test]
fn restarting_a_bare_pod_is_denied() {
    let incident = bare_pod_incident();
    assert_eq!(
        check_against(&on_pod(Action::Restart), &incident),
        Verdict::Deny("restarting a bare pod deletes it and nothing recreates it".into())
    );
    assert_eq!(
        check_against(&on_pod(Action::None), &incident),
        Verdict::Allow
    );
    // The vanished Deployment is no longer evidence.
    assert_eq!(
        check_against(&on_deployment(Action::Restart), &incident),
        Verdict::Deny(
            "target Deployment/app in namespace \"shop\" is not part of the incident's evidence"
                .into()
        )
    );
}

#[test]
fn restart_must_target_the_workload_not_a_pod() {
    assert_eq!(
        check(&on_pod(Action::Restart)),
        Verdict::Deny(
            "restart targets the workload, not one of its pods; use delete-pod for one pod".into()
        )
    );
    assert_eq!(check(&on_deployment(Action::Restart)), Verdict::Allow);
}

// ---------------------------------------------------------------- scale

#[test]
fn scaling_the_workload_within_bounds_is_allowed() {
    for replicas in [1, 2, 5, 10] {
        assert_eq!(
            check(&on_deployment(Action::Scale(replicas))),
            Verdict::Allow,
            "{replicas}"
        );
    }
}

#[test]
fn scaling_a_pod_is_denied() {
    assert_eq!(
        check(&on_pod(Action::Scale(3))),
        Verdict::Deny("only a workload can be scaled, not Pod/app-xyz".into())
    );
}

#[test]
fn scaling_a_bare_pod_is_denied() {
    assert_eq!(
        check_against(&on_pod(Action::Scale(3)), &bare_pod_incident()),
        Verdict::Deny("only a workload can be scaled, not Pod/app-xyz".into())
    );
}

#[test]
fn scaling_a_daemonset_is_denied() {
    let incident = daemonset_incident();
    let expected = Verdict::Deny("a DaemonSet has no replica count to scale".into());
    assert_eq!(
        check_against(
            &recommendation(Action::Scale(3), "DaemonSet", "agent"),
            &incident
        ),
        expected
    );
    assert_eq!(
        check_against(
            &recommendation(Action::Scale(0), "DaemonSet", "agent"),
            &incident
        ),
        expected
    );
    assert_eq!(
        check_against(
            &recommendation(Action::Restart, "DaemonSet", "agent"),
            &incident
        ),
        Verdict::Allow
    );
}

#[test]
fn scaling_to_zero_is_denied() {
    assert_eq!(
        check(&on_deployment(Action::Scale(0))),
        Verdict::Deny("scaling to zero replicas takes the workload down".into())
    );
}

#[test]
fn scaling_above_max_replicas_is_lowered_to_the_bound() {
    let scale = on_deployment(Action::Scale(25));
    let adjusted = adjustment(check(&scale));
    assert_eq!(
        adjusted.reason,
        "replicas lowered from 25 to the maximum 10"
    );
    assert_eq!(adjusted.recommendation.action, Action::Scale(10));
    let expected = Recommendation {
        action: Action::Scale(10),
        ..scale.clone()
    };
    assert_eq!(adjusted.recommendation, expected);
    // The adjusted recommendation passes unchanged.
    assert_eq!(check(&adjusted.recommendation), Verdict::Allow);

    let adjusted = adjustment(check_with(&scale, &[("maxReplicas", "4")]));
    assert_eq!(adjusted.reason, "replicas lowered from 25 to the maximum 4");
    assert_eq!(adjusted.recommendation.action, Action::Scale(4));
    assert_eq!(
        check_with(&on_deployment(Action::Scale(4)), &[("maxReplicas", "4")]),
        Verdict::Allow
    );
    assert_eq!(
        check(&on_deployment(Action::Scale(11))),
        Verdict::Adjust(Adjustment {
            recommendation: on_deployment(Action::Scale(10)),
            reason: "replicas lowered from 11 to the maximum 10".into(),
        })
    );
}

// ---------------------------------------------------------------- delete-pod

#[test]
fn delete_pod_must_name_a_pod() {
    assert_eq!(
        check(&on_deployment(Action::DeletePod)),
        Verdict::Deny("delete-pod must name a pod, not Deployment/app".into())
    );
    assert_eq!(check(&on_pod(Action::DeletePod)), Verdict::Allow);
}

#[test]
fn deleting_a_bare_pod_is_denied() {
    assert_eq!(
        check_against(&on_pod(Action::DeletePod), &bare_pod_incident()),
        Verdict::Deny("deleting a bare pod loses it: nothing recreates it".into())
    );
}

// ---------------------------------------------------------------- raw patches

#[test]
fn raw_strategic_merge_patches_are_denied_by_default() {
    let raw = on_deployment(Action::Patch(Patch::StrategicMerge(
        "spec:\n  replicas: 3\n".into(),
    )));
    let denied = Verdict::Deny(
        "raw strategic-merge patches are not allowed (set allowRawPatches to permit them)".into(),
    );
    assert_eq!(check(&raw), denied);
    assert_eq!(check_with(&raw, &[("allowRawPatches", "false")]), denied);
    assert_eq!(
        check_with(&raw, &[("allowRawPatches", "true")]),
        Verdict::Allow
    );
    assert_eq!(
        check_with(&raw, &[("allowRawPatches", " true\n")]),
        Verdict::Allow
    );
}

// ---------------------------------------------------------------- resource patches

#[test]
fn a_reasonable_memory_patch_is_allowed() {
    assert_eq!(
        check(&on_deployment(memory_patch(Some(2 * GI), Some(GI)))),
        Verdict::Allow
    );
    assert_eq!(
        check(&on_deployment(memory_patch(Some(2 * GI), None))),
        Verdict::Allow
    );
    assert_eq!(
        check(&on_deployment(memory_patch(None, Some(GI)))),
        Verdict::Allow
    );
}

#[test]
fn a_patch_for_an_unknown_container_is_denied() {
    let patch = Action::Patch(Patch::Resources(ResourcePatch {
        memory_limit_bytes: Some(2 * GI),
        ..resource_patch("sidecar")
    }));
    assert_eq!(
        check(&on_deployment(patch)),
        Verdict::Deny("container \"sidecar\" is not in the incident's workload".into())
    );
}

#[test]
fn containers_are_known_from_the_workload_template_or_the_pods() {
    let patch = Action::Patch(Patch::Resources(ResourcePatch {
        memory_limit_bytes: Some(2 * GI),
        ..resource_patch("sidecar")
    }));
    let mut incident = oom_crashloop_incident();
    incident
        .workload
        .as_mut()
        .unwrap()
        .containers
        .push("sidecar".into());
    assert_eq!(
        check_against(&on_deployment(patch.clone()), &incident),
        Verdict::Allow
    );

    // A bare pod has no workload; its containers come from the pod.
    let incident = bare_pod_incident();
    assert_eq!(
        check_against(&on_pod(memory_patch(Some(2 * GI), None)), &incident),
        Verdict::Allow
    );
    assert_eq!(
        check_against(&on_pod(patch), &incident),
        Verdict::Deny("container \"sidecar\" is not in the incident's workload".into())
    );
}

#[test]
fn an_empty_resource_patch_is_denied() {
    assert_eq!(
        check(&on_deployment(Action::Patch(Patch::Resources(
            resource_patch("app")
        )))),
        Verdict::Deny("the resource patch changes nothing".into())
    );
}

#[test]
fn a_request_above_its_limit_is_denied() {
    assert_eq!(
        check(&on_deployment(memory_patch(Some(2 * GI), Some(3 * GI)))),
        Verdict::Deny("memory request above the memory limit".into())
    );
    let cpu = Action::Patch(Patch::Resources(ResourcePatch {
        cpu_limit_millicores: Some(500),
        cpu_request_millicores: Some(750),
        ..resource_patch("app")
    }));
    assert_eq!(
        check(&on_deployment(cpu)),
        Verdict::Deny("CPU request above the CPU limit".into())
    );
    // Equal is fine.
    let cpu = Action::Patch(Patch::Resources(ResourcePatch {
        cpu_limit_millicores: Some(2000),
        cpu_request_millicores: Some(2000),
        ..resource_patch("app")
    }));
    assert_eq!(check(&on_deployment(cpu)), Verdict::Allow);
    assert_eq!(
        check(&on_deployment(memory_patch(Some(2 * GI), Some(2 * GI)))),
        Verdict::Allow
    );
}

#[test]
fn a_memory_limit_below_current_usage_is_denied() {
    // The sample container uses 1500Mi.
    assert_eq!(
        check(&on_deployment(memory_patch(Some(GI), None))),
        Verdict::Deny("memory limit 1Gi is below the container's current usage 1500Mi".into())
    );
    assert_eq!(
        check(&on_deployment(memory_patch(
            Some(1499 * MI),
            Some(256 * MI)
        ))),
        Verdict::Deny("memory limit 1499Mi is below the container's current usage 1500Mi".into())
    );
    assert_eq!(
        check(&on_deployment(memory_patch(Some(1500 * MI), None))),
        Verdict::Allow
    );
}

#[test]
fn the_usage_that_counts_is_the_highest_among_the_pods() {
    let mut incident = oom_crashloop_incident();
    let mut second = incident.pods[0].clone();
    second.name = "app-abc".into();
    second.containers[0].usage.memory_bytes = Some(1800 * MI);
    incident.pods.push(second);
    assert_eq!(
        check_against(
            &on_deployment(memory_patch(Some(1600 * MI), None)),
            &incident
        ),
        Verdict::Deny("memory limit 1600Mi is below the container's current usage 1800Mi".into())
    );
    // Without metrics there is nothing to compare with.
    for pod in &mut incident.pods {
        pod.containers[0].usage.memory_bytes = None;
    }
    assert_eq!(
        check_against(
            &on_deployment(memory_patch(Some(256 * MI), None)),
            &incident
        ),
        Verdict::Allow
    );
}

#[test]
fn a_memory_limit_above_the_maximum_is_lowered_with_the_request() {
    let patch = on_deployment(memory_patch(Some(16 * GI), Some(12 * GI)));
    assert_eq!(
        check(&patch),
        Verdict::Adjust(Adjustment {
            recommendation: on_deployment(memory_patch(Some(8 * GI), Some(8 * GI))),
            reason: "memory limit lowered from 16Gi to the maximum 8Gi".into(),
        })
    );
}

#[test]
fn a_memory_limit_above_the_maximum_keeps_a_request_within_it() {
    let adjusted = adjustment(check(&on_deployment(memory_patch(
        Some(10 * GI),
        Some(2 * GI),
    ))));
    assert_eq!(
        adjusted.reason,
        "memory limit lowered from 10Gi to the maximum 8Gi"
    );
    assert_eq!(
        adjusted.recommendation.action,
        memory_patch(Some(8 * GI), Some(2 * GI))
    );
    assert_eq!(check(&adjusted.recommendation), Verdict::Allow);

    let adjusted = adjustment(check(&on_deployment(memory_patch(Some(9 * GI), None))));
    assert_eq!(
        adjusted.recommendation.action,
        memory_patch(Some(8 * GI), None)
    );
}

#[test]
fn the_memory_maximum_follows_config_and_other_fields_survive() {
    let patch = on_deployment(Action::Patch(Patch::Resources(ResourcePatch {
        cpu_limit_millicores: Some(2000),
        cpu_request_millicores: Some(500),
        memory_limit_bytes: Some(4 * GI),
        memory_request_bytes: Some(3 * GI),
        ..resource_patch("app")
    })));
    let adjusted = adjustment(check_with(&patch, &[("maxMemoryLimit", "2Gi")]));
    assert_eq!(
        adjusted.reason,
        "memory limit lowered from 4Gi to the maximum 2Gi"
    );
    assert_eq!(
        adjusted.recommendation,
        on_deployment(Action::Patch(Patch::Resources(ResourcePatch {
            cpu_limit_millicores: Some(2000),
            cpu_request_millicores: Some(500),
            memory_limit_bytes: Some(2 * GI),
            memory_request_bytes: Some(2 * GI),
            ..resource_patch("app")
        })))
    );
    assert_eq!(
        check_with(&patch, &[("maxMemoryLimit", "4Gi")]),
        Verdict::Allow
    );
}

#[test]
fn lowering_to_the_memory_maximum_must_not_go_below_usage() {
    // Usage is 1500Mi; a 1Gi maximum would turn a safe 2Gi limit into one that
    // is sure to OOM, which the validator denies when asked for directly.
    let verdict = check_with(
        &on_deployment(memory_patch(Some(2 * GI), None)),
        &[("maxMemoryLimit", "1Gi")],
    );
    assert_eq!(
        verdict,
        Verdict::Deny(
            "memory limit lowered from 2Gi to the maximum 1Gi, but then memory limit 1Gi is \
             below the container's current usage 1500Mi"
                .into()
        )
    );
}

#[test]
fn objections_win_over_adjustments() {
    // Above the maximum and below usage cannot both hold, but a denial for
    // another reason must not be turned into an adjustment.
    let mut stranger = on_deployment(Action::Scale(50));
    stranger.target.name = "other".into();
    assert!(matches!(check(&stranger), Verdict::Deny(_)));
    assert_eq!(
        validate(
            &on_deployment(Action::Scale(50)),
            &oom_crashloop_incident(),
            context(3),
            &BTreeMap::new()
        ),
        Verdict::Deny("3 recommendations already allowed; the limit is 3".into())
    );
}

#[test]
fn judge_uses_the_settings_it_is_given() {
    let settings = Settings {
        min_confidence: 0.95,
        ..Settings::default()
    };
    assert_eq!(
        judge(
            &on_deployment(Action::Restart),
            &oom_crashloop_incident(),
            context(0),
            &settings
        ),
        Verdict::Deny("confidence 0.9 is below the minimum 0.95".into())
    );
    assert_eq!(
        judge(
            &on_deployment(Action::Restart),
            &oom_crashloop_incident(),
            context(0),
            &Settings::default()
        ),
        Verdict::Allow
    );
}
