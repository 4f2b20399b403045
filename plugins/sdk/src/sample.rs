//! The seed document's incident — Deployment `app` whose pod `app-xyz` is
//! OOM-killed in a crash loop — as plugin input, for plugin tests and benchmarks.

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
