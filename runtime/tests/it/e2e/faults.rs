//! Faults under a running daemon: the leader killed with SIGKILL while its
//! action is under way, the API server restarted, and the HealingAction
//! edited between the daemon's read and its write.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kubeskippy::core::crd::healing_action::{HealingAction, Phase};

use super::{RealCluster, actions, app, eventually, settled};

const LEASE_SECONDS: u64 = 6;

fn policy(namespace: &str, verification: &str) -> String {
    format!(
        r#"
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {{name: faults, namespace: {namespace}}}
spec:
  mode: automatic
  selector: {{namespaces: [{namespace}]}}
  triggers: [{{name: oom, condition: {{states: [OOMKilled, CrashLoopBackOff]}}}}]
  actions: [{{name: more-memory, type: patch, triggers: [oom], patch: {{maxMemoryLimit: 1Gi}}}}]
  safety: {{minHealthyPercent: 0, verificationWindow: {verification}}}
"#
    )
}

async fn replica_sets(client: &Client, namespace: &str) -> usize {
    Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len()
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test]
async fn the_standby_takes_over_from_a_killed_leader_and_nothing_runs_twice() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let namespace = cluster.namespace("e2e-failover").await;
    let admin = cluster.client("admin").await;
    cluster
        .apply("admin", &app(&namespace, "oom-always", "64Mi"))
        .await
        .unwrap();
    // A long verification, so the leader dies with the action under way.
    cluster
        .apply("admin", &policy(&namespace, "45s"))
        .await
        .unwrap();
    let election = [
        "--leader-elect=true".to_string(),
        format!("--lease-duration={LEASE_SECONDS}s"),
    ];
    let election: Vec<&str> = election.iter().map(String::as_str).collect();
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &cluster.release.namespace);
    let lease = format!("{}-leader", cluster.release.name);
    let mut first = cluster.daemon("failover-first", &[&namespace], &election);
    first.ready().await;
    eventually(
        Duration::from_secs(30),
        "the first replica to lead",
        async || (holder(&leases, &lease).await.as_deref() == Some("failover-first")).then_some(()),
    )
    .await;
    let mut second = cluster.daemon("failover-second", &[&namespace], &election);
    second.ready().await;
    eventually(
        Duration::from_secs(120),
        "the action under way",
        async || {
            let action = actions(&admin, &namespace).await.pop()?;
            matches!(action.status?.phase, Phase::InProgress | Phase::Verifying).then_some(())
        },
    )
    .await;

    first.kill();
    let killed = Instant::now();
    eventually(Duration::from_secs(30), "the standby to lead", async || {
        (holder(&leases, &lease).await.as_deref() == Some("failover-second")).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!("failover: the standby led {takeover:?} after the leader's SIGKILL");
    // The lease must expire first; the standby tries every third of it.
    assert!(
        takeover <= Duration::from_secs(LEASE_SECONDS + LEASE_SECONDS / 3 + 1),
        "took {takeover:?}"
    );

    let action = settled(&admin, &namespace, Duration::from_secs(120)).await;
    let status = action.status.unwrap();
    assert!(
        matches!(status.phase, Phase::RolledBack | Phase::Failed),
        "{:?}: {:?}",
        status.phase,
        status.message
    );
    // Executed once: one attempt, and one rollout of the patch (the original
    // ReplicaSet and the patched one; a rollback returns to the first).
    assert_eq!(status.attempts, 1, "{:?}", status.message);
    assert_eq!(replica_sets(&admin, &namespace).await, 2);
    second.stop_and_check_rbac();
}

#[tokio::test]
async fn the_daemons_watches_recover_when_the_api_server_restarts() {
    let Some((cluster, _alone)) = super::exclusive().await else {
        return;
    };
    let namespace = cluster.namespace("e2e-restart").await;
    cluster
        .apply("admin", &policy(&namespace, "10s"))
        .await
        .unwrap();
    let mut daemon = cluster.daemon("restart", &[&namespace], &[]);
    daemon.ready().await;
    let restarting = chrono::Utc::now();
    cluster.restart("kube-apiserver");
    let restarted = chrono::Utc::now();
    // Created after the restart: only a recovered watch sees it.
    cluster
        .apply("admin", &app(&namespace, "oom-crashloop", "64Mi"))
        .await
        .unwrap();
    let admin = cluster.client("admin").await;
    let action = settled(&admin, &namespace, Duration::from_secs(120)).await;
    let status = action.status.unwrap();
    assert_eq!(status.phase, Phase::Succeeded, "{:?}", status.message);
    assert_eq!(status.attempts, 1);
    assert_eq!(replica_sets(&admin, &namespace).await, 2);
    // Refusals while the new API server fills its RBAC caches are the
    // server's; any later one is the chart's.
    daemon.stop_and_check_rbac_outside(Some((
        restarting,
        restarted + chrono::TimeDelta::seconds(10),
    )));
}

#[tokio::test]
async fn a_write_that_meets_a_newer_version_is_retried_not_lost() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let namespace = cluster.namespace("e2e-conflict").await;
    let admin = cluster.client("admin").await;
    cluster
        .apply("admin", &policy(&namespace, "15s"))
        .await
        .unwrap();
    cluster
        .apply("admin", &app(&namespace, "oom-crashloop", "64Mi"))
        .await
        .unwrap();
    let mut daemon = cluster.daemon("conflict", &[&namespace], &[]);
    daemon.ready().await;
    let action = eventually(Duration::from_secs(120), "a HealingAction", async || {
        actions(&admin, &namespace).await.pop()
    })
    .await;
    // Someone keeps labelling the action while the daemon works on it:
    // every label moves its resourceVersion on under the daemon's feet.
    let name = action.metadata.name.unwrap();
    let poker = tokio::spawn({
        let api: Api<HealingAction> = Api::namespaced(admin.clone(), &namespace);
        async move {
            for poke in 0u32.. {
                let label = serde_json::json!({"metadata": {"labels": {"kubeskippy.test/poke": poke.to_string()}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(label))
                    .await
                    .ok();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
    });
    let action = settled(&admin, &namespace, Duration::from_secs(120)).await;
    poker.abort();
    let status = action.status.unwrap();
    assert_eq!(status.phase, Phase::Succeeded, "{:?}", status.message);
    assert_eq!(status.attempts, 1);
    assert_eq!(replica_sets(&admin, &namespace).await, 2);
    let log = daemon.stop_and_check_rbac();
    assert!(
        log.contains("changed since it was read"),
        "the daemon never met a conflict, so the test proved nothing"
    );
}

impl RealCluster {
    /// `scripts/cluster restart`: SIGKILL one component and start it again.
    fn restart(&self, component: &str) {
        let status = std::process::Command::new(super::repository().join("scripts/cluster"))
            .arg("restart")
            .arg(&self.dir)
            .arg(component)
            .status()
            .unwrap();
        assert!(status.success(), "restarting {component}");
    }
}
