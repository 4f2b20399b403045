//! The seed document's incident — Deployment `app` whose pod `app-xyz` is
//! OOM-killed in a crash loop — as plugin input, for plugin tests and benchmarks;
//! the same grown to a realistic size, with a model reply of realistic length.

use crate::types::*;

fn amounts(cpu_millicores: Option<u64>, memory_bytes: Option<u64>) -> ResourceAmounts {
    ResourceAmounts {
        cpu_millicores,
        memory_bytes,
    }
}

pub fn oom_crashloop_incident() -> Incident {
    let deployment = ObjectRef::new("Deployment", "shop", "app");
    let container = ContainerFacts {
        name: "app".into(),
        usage: amounts(Some(890), Some(1500 << 20)),
        limits: amounts(Some(1000), Some(512 << 20)),
        requests: amounts(Some(250), Some(256 << 20)),
        restart_count: 5,
        ready: false,
        waiting_reason: Some("CrashLoopBackOff".into()),
        waiting_message: Some("back-off 2m40s restarting failed container".into()),
        last_termination_reason: Some("OOMKilled".into()),
        last_exit_code: Some(137),
    };
    let pod = PodFacts {
        name: "app-xyz".into(),
        namespace: "shop".into(),
        phase: "Running".into(),
        status_reason: Some("CrashLoopBackOff".into()),
        restart_count: 5,
        usage: container.usage,
        limits: container.limits,
        containers: vec![container],
        owner: Some(deployment.clone()),
        node: Some("node-1".into()),
    };
    Incident {
        id: "shop-deployment-app-0001".into(),
        target: deployment.clone(),
        workload: Some(WorkloadFacts {
            target: deployment,
            desired_replicas: Some(2),
            ready_replicas: Some(1),
            containers: vec!["app".into()],
        }),
        pods: vec![pod],
        events: vec![EventFacts {
            event_type: "Warning".into(),
            reason: "OOMKilled".into(),
            message: "Container app was OOM killed".into(),
            count: 3,
            involved: ObjectRef::new("Pod", "shop", "app-xyz"),
        }],
        findings: vec![
            Finding {
                trigger: "restart-count".into(),
                kind: FindingKind::Restarts,
                detail: "Pod app-xyz has restarted 5 times".into(),
                pod: Some("app-xyz".into()),
            },
            Finding {
                trigger: "memory-limit".into(),
                kind: FindingKind::MemoryPressure,
                detail: "Memory usage at 1500MiB (limit 512MiB)".into(),
                pod: Some("app-xyz".into()),
            },
            Finding {
                trigger: "oom-killed".into(),
                kind: FindingKind::OomKilled,
                detail: "OOMKilled events detected".into(),
                pod: Some("app-xyz".into()),
            },
        ],
    }
}

/// The seed's incident grown to 10 pods and 30 events.
pub fn realistic_incident() -> Incident {
    let mut incident = oom_crashloop_incident();
    let template_pod = incident.pods[0].clone();
    for n in 1..10 {
        let mut pod = template_pod.clone();
        pod.name = format!("app-7d9f8b6c5d-{n:05}");
        pod.restart_count = n;
        incident.pods.push(pod);
    }
    let template_event = incident.events[0].clone();
    for n in 1..30 {
        let mut event = template_event.clone();
        event.reason = ["OOMKilled", "BackOff", "Unhealthy"][n % 3].into();
        event.message = format!(
            "{} (occurrence {n}) for container app in pod app-xyz",
            event.reason
        );
        event.count = n as u32;
        incident.events.push(event);
    }
    incident
}

/// A model reply of about 4 KB following the prompt plugin's schema.
pub fn realistic_reply() -> String {
    let padding = "The pod's working set grows linearly between restarts while traffic stays flat, which points at a leak rather than load. ";
    let reply = serde_json::json!({
        "summary": format!("Memory pressure leads to OOM kills and a crash loop. {}", padding.repeat(9)),
        "issues": [
            { "title": "Memory leak in application", "severity": "high", "impact": "Service unavailability, repeated crashes", "root_cause": padding.repeat(7) },
            { "title": "Limit below working set", "severity": "medium", "impact": "OOM kills under normal load", "root_cause": padding.repeat(2) }
        ],
        "recommendations": [
            { "action": "patch", "target": "Deployment/app", "container": "app", "memory_limit": "2Gi", "description": "Increase memory limit to 2Gi", "reason": padding.repeat(2), "risk": "May mask the leak", "confidence": 0.85 },
            { "action": "restart", "target": "Deployment/app", "description": "Rollout restart", "reason": padding.repeat(2), "risk": "Brief capacity loss", "confidence": 0.8 },
            { "action": "scale", "target": "Deployment/app", "replicas": 3, "description": "Scale to 3 replicas", "reason": padding.repeat(2), "risk": "More resources used", "confidence": 0.75 }
        ]
    });
    serde_json::to_string_pretty(&reply).expect("plain JSON")
}
