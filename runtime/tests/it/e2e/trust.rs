//! The trust boundaries with the real API server enforcing them: token users
//! under real RBAC, the chart's ValidatingAdmissionPolicy, the CRD's CEL
//! rules, and a tenant who may write HealingPolicies (and try HealingActions)
//! only in their own namespace. Nothing a tenant writes makes the daemon
//! change what the tenant could not change themselves.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use kubeskippy::core::crd::healing_action::{HealingAction, Phase};
use kubeskippy::core::crd::policy::HealingPolicy;
use serde_json::json;

use super::{RealCluster, actions, app, eventually, restarted};

/// Lets `user` write HealingPolicies and HealingActions (and read
/// Deployments) in `namespace` only, as a namespace admin might be allowed.
async fn grant_tenant(cluster: &RealCluster, user: &str, namespace: &str) {
    cluster
        .apply(
            "admin",
            &format!(
                r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: tenant, namespace: {namespace}}}
rules:
- apiGroups: [kubeskippy.io]
  resources: [healingpolicies, healingactions, healingactions/status]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch]
"#
            ),
        )
        .await
        .unwrap();
    bind(cluster, user, namespace, "Role", "tenant").await;
    allowed(
        cluster,
        user,
        namespace,
        "create",
        KUBESKIPPY,
        "healingactions",
    )
    .await;
}

/// Lets `user` change the workloads in `namespace` themselves, through the
/// built-in `edit` ClusterRole.
async fn grant_edit(cluster: &RealCluster, user: &str, namespace: &str) {
    bind(cluster, user, namespace, "ClusterRole", "edit").await;
    allowed(cluster, user, namespace, "patch", "apps", "deployments").await;
}

const KUBESKIPPY: &str = "kubeskippy.io";

/// Waits until RBAC lets `user` `verb` `resource` in `namespace`: the API
/// server's authorizer learns of new bindings from a watch, a moment later.
async fn allowed(
    cluster: &RealCluster,
    user: &str,
    namespace: &str,
    verb: &str,
    group: &str,
    resource: &str,
) {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(cluster.client(user).await);
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"resourceAttributes": {
            "namespace": namespace, "verb": verb, "group": group, "resource": resource
        }}
    }))
    .unwrap();
    eventually(
        Duration::from_secs(10),
        "the new RoleBinding to take effect",
        async || {
            let answer = reviews
                .create(&PostParams::default(), &review)
                .await
                .unwrap();
            answer
                .status
                .is_some_and(|status| status.allowed)
                .then_some(())
        },
    )
    .await;
}

/// Binds `user` to a Role or ClusterRole in `namespace`.
async fn bind(cluster: &RealCluster, user: &str, namespace: &str, kind: &str, role: &str) {
    cluster
        .apply(
            "admin",
            &format!(
                r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {user}-{role}, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: {kind}, name: {role}}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]
"#
            ),
        )
        .await
        .unwrap();
}

fn restart_policy(namespace: &str, selected: &str, mode: &str) -> String {
    format!(
        r#"
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {{name: heal, namespace: {namespace}}}
spec:
  mode: {mode}
  selector: {{namespaces: [{selected}]}}
  triggers: [{{name: crash, condition: {{states: [CrashLoopBackOff]}}}}]
  actions: [{{name: restart, type: restart, triggers: [crash]}}]
  safety: {{minHealthyPercent: 0, verificationWindow: 10s}}
"#
    )
}

pub(super) fn hand_written_action(namespace: &str, target_namespace: &str) -> HealingAction {
    serde_json::from_value(json!({
        "apiVersion": "kubeskippy.io/v1alpha1",
        "kind": "HealingAction",
        "metadata": {"name": "borrowed", "namespace": namespace},
        "spec": {
            "policyRef": {"kind": "HealingPolicy", "namespace": namespace, "name": "heal", "uid": "x"},
            "incidentId": "shop-deployment-shop-00000000",
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": target_namespace, "name": "shop", "uid": "x"},
            "action": {"type": "restart", "restartAction": {"strategy": "rollout"}},
            "source": "rules", "confidence": 0.9, "reasoning": "trust me", "risk": "low",
            "plannedAt": "2026-12-01T00:00:00Z", "dryRun": false, "approvalRequired": false,
            "retryPolicy": {"maxAttempts": 1, "backoffSeconds": 30}
        }
    }))
    .unwrap()
}

fn refusal(result: Result<impl std::fmt::Debug, kube::Error>) -> Status {
    match result {
        Err(kube::Error::Api(response)) => *response,
        other => panic!("expected the API server to refuse, got {other:?}"),
    }
}

#[tokio::test]
async fn nobody_but_the_daemon_can_create_a_healing_action_not_even_a_cluster_admin() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let namespace = cluster.namespace("e2e-tenant").await;
    grant_tenant(cluster, "tenant-a", &namespace).await;
    for user in ["tenant-a", "admin"] {
        let api: Api<HealingAction> = Api::namespaced(cluster.client(user).await, &namespace);
        let response = refusal(
            api.create(
                &PostParams::default(),
                &hand_written_action(&namespace, &namespace),
            )
            .await,
        );
        assert_eq!(response.code, 403, "{user}: {response:?}");
        assert!(
            response
                .message
                .contains("planned by the KubeSkippy daemon only"),
            "{user}: {}",
            response.message
        );
    }
    // The user with no rights is stopped by RBAC before admission.
    let api: Api<HealingAction> = Api::namespaced(cluster.client("nobody").await, &namespace);
    let response = refusal(api.list(&ListParams::default()).await);
    assert_eq!(response.code, 403, "{response:?}");
}

#[tokio::test]
async fn a_tenants_policy_acts_in_their_namespace_and_never_in_anothers() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let own = cluster.namespace("e2e-tenant-own").await;
    let other = cluster.namespace("e2e-tenant-other").await;
    grant_tenant(cluster, "tenant-a", &own).await;
    cluster
        .apply("admin", &app(&own, "oom-always", "64Mi"))
        .await
        .unwrap();
    cluster
        .apply("admin", &app(&other, "oom-always", "64Mi"))
        .await
        .unwrap();

    // A policy that would act needs its writer to hold the rights its actions
    // use: the API server's authorizer answers, at admission.
    let response = refusal(
        cluster
            .apply("tenant-a", &restart_policy(&own, &own, "automatic"))
            .await,
    );
    assert_eq!(response.code, 403, "{response:?}");
    let borrowed = format!(
        "this policy would have the KubeSkippy daemon do what you may not: patch \
         apps/deployments in {own}"
    );
    assert!(response.message.contains(&borrowed), "{}", response.message);
    // One that only watches is theirs to write.
    cluster
        .apply("tenant-a", &restart_policy(&own, &own, "monitor"))
        .await
        .unwrap();
    // An acting policy someone with the rights wrote, they may resume: that
    // leaves the spec as it was.
    cluster
        .apply("admin", &restart_policy(&own, &own, "automatic"))
        .await
        .unwrap();
    let resumed = Command::new(env!("CARGO_BIN_EXE_kubeskippy"))
        .args(["resume", "heal", "--namespace", &own])
        .env("KUBECONFIG", cluster.kubeconfig("tenant-a"))
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{resumed:?}");
    grant_edit(cluster, "tenant-a", &own).await;

    // RBAC keeps the tenant's policies out of the other namespace...
    let refused = cluster
        .apply("tenant-a", &restart_policy(&other, &other, "automatic"))
        .await;
    assert_eq!(refusal(refused).code, 403);
    // ...and a policy of theirs that names it is refused by the daemon as a
    // whole, with the reason on its status.
    cluster
        .apply(
            "tenant-a",
            &restart_policy(&own, &format!("{own}, {other}"), "automatic"),
        )
        .await
        .unwrap();
    let mut daemon = cluster.daemon(&own, &[&own, &other], &[]);
    daemon.ready().await;
    let admin = cluster.client("admin").await;
    let policies: Api<HealingPolicy> = Api::namespaced(admin.clone(), &own);
    let reason = eventually(
        Duration::from_secs(60),
        "the policy's refusal on its status",
        async || {
            let policy = policies.get("heal").await.unwrap();
            let conditions = policy.status?.conditions;
            let ready = conditions.into_iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "False").then_some(ready.message)
        },
    )
    .await;
    assert!(
        reason.contains("governs only its own namespace"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let everywhere: Api<HealingAction> = Api::all(admin.clone());
    let planned: Vec<_> = everywhere
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|action| {
            [own.as_str(), other.as_str()]
                .contains(&action.metadata.namespace.as_deref().unwrap_or(""))
        })
        .collect();
    assert!(planned.is_empty(), "{planned:#?}");

    // Narrowed to their own namespace, the policy works there, and only there.
    cluster
        .apply("tenant-a", &restart_policy(&own, &own, "automatic"))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(120),
        "a HealingAction in the tenant's namespace",
        async || actions(&admin, &own).await.pop(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for action in everywhere.list(&ListParams::default()).await.unwrap().items {
        assert_ne!(
            action.metadata.namespace.as_deref(),
            Some(other.as_str()),
            "{action:#?}"
        );
        assert_ne!(action.spec.target.namespace, other, "{action:#?}");
    }
    assert!(
        !restarted(&admin, &other).await,
        "{other}'s Deployment was restarted"
    );
    daemon.stop_and_check_rbac();
}

/// A crash-looping app under a manual policy in `namespace`, a daemon on it,
/// and the HealingAction it planned, waiting (Pending) for a decision.
async fn awaiting_approval(
    cluster: &RealCluster,
    namespace: &str,
) -> (super::Daemon, HealingAction) {
    cluster
        .apply("admin", &app(namespace, "oom-always", "64Mi"))
        .await
        .unwrap();
    cluster
        .apply("admin", &restart_policy(namespace, namespace, "manual"))
        .await
        .unwrap();
    let mut daemon = cluster.daemon(namespace, &[namespace], &[]);
    daemon.ready().await;
    let admin = cluster.client("admin").await;
    let waiting = eventually(
        Duration::from_secs(120),
        "a HealingAction awaiting approval",
        async || {
            let action = actions(&admin, namespace).await.pop()?;
            (action.status.as_ref()?.phase == Phase::Pending).then_some(action)
        },
    )
    .await;
    (daemon, waiting)
}

fn decide(
    cluster: &RealCluster,
    user: &str,
    verb: &str,
    name: &str,
    namespace: &str,
) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kubeskippy"))
        .args([verb, name, "--namespace", namespace, "--reason", "e2e"])
        .env("KUBECONFIG", cluster.kubeconfig(user))
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test]
async fn approval_for_real_only_an_approver_decides_and_never_the_daemon() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let namespace = cluster.namespace("e2e-approval").await;
    let approver_role = format!("{}-approver", cluster.release.name);
    bind(
        cluster,
        "approver",
        &namespace,
        "ClusterRole",
        &approver_role,
    )
    .await;
    let (daemon, waiting) = awaiting_approval(cluster, &namespace).await;
    let admin = cluster.client("admin").await;
    let actions: Api<HealingAction> = Api::namespaced(admin.clone(), &namespace);
    let name = waiting.metadata.name.clone().unwrap();
    assert!(waiting.spec.approval_required, "{waiting:#?}");

    // The daemon's own identity cannot write a decision: it has no patch on
    // HealingActions.
    let as_daemon: Api<HealingAction> = Api::namespaced(cluster.client("daemon").await, &namespace);
    let response = refusal(
        as_daemon
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"approval": {"decision": "approved", "by": "daemon"}}}),
                ),
            )
            .await,
    );
    assert_eq!(response.code, 403, "{response:?}");

    // No rights, no decision.
    let (ok, output) = decide(cluster, "nobody", "approve", &name, &namespace);
    assert!(!ok, "{output}");
    assert!(
        output.to_ascii_lowercase().contains("forbidden"),
        "{output}"
    );

    // An approver may not rewrite what is approved: the CRD keeps the spec.
    let as_approver: Api<HealingAction> =
        Api::namespaced(cluster.client("approver").await, &namespace);
    let response = refusal(
        as_approver
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"target": {"name": "something-else"}}})),
            )
            .await,
    );
    assert_eq!(response.code, 422, "{response:?}");

    // A null written over the approval is pruned by the CRD, not stored:
    // stored, admission would take it for a decision already made.
    actions
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(
                    json!([{"op": "add", "path": "/spec/approval", "value": null}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(actions.get(&name).await.unwrap().spec.approval, None);

    // The approver role alone lets them decide, but an approval has the
    // daemon make the change: only someone who could make it may give it.
    let (ok, output) = decide(cluster, "approver", "approve", &name, &namespace);
    assert!(!ok, "{output}");
    assert!(
        output.contains(&format!(
            "approving this action would have the KubeSkippy daemon do what you may not: \
             patch apps/deployments shop in {namespace}"
        )),
        "{output}"
    );
    grant_edit(cluster, "approver", &namespace).await;
    let (ok, output) = decide(cluster, "approver", "approve", &name, &namespace);
    assert!(ok, "{output}");
    let approved = actions.get(&name).await.unwrap();
    let approval = approved.spec.approval.clone().expect("a recorded decision");
    // Who approved, as the API server's SelfSubjectReview names them.
    assert_eq!(approval.by, "approver", "{approval:?}");
    eventually(
        Duration::from_secs(120),
        "the approved action to run",
        async || {
            let action = actions.get(&name).await.unwrap();
            let status = action.status?;
            (!matches!(status.phase, Phase::Pending | Phase::Approved)).then_some(())
        },
    )
    .await;
    daemon.stop_and_check_rbac();
}

#[tokio::test]
async fn the_daemons_identity_is_refused_what_the_daemon_never_needs() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let namespace = cluster.namespace("e2e-least").await;
    cluster
        .apply(
            "admin",
            &format!(
                r#"
apiVersion: v1
kind: Secret
metadata: {{name: database, namespace: {namespace}}}
stringData: {{password: hunter2}}
---
apiVersion: v1
kind: Secret
metadata: {{name: neighbour, namespace: {release}}}
stringData: {{token: not-yours}}
"#,
                release = cluster.release.namespace
            ),
        )
        .await
        .unwrap();
    cluster
        .apply("admin", &app(&namespace, "oom-always", "64Mi"))
        .await
        .unwrap();
    let daemon = cluster.client("daemon").await;
    let refused = |result: Result<(), kube::Error>| refusal(result).code;

    for (secrets_namespace, name) in [
        (namespace.as_str(), "database"),
        (cluster.release.namespace.as_str(), "neighbour"),
    ] {
        let secrets: Api<Secret> = Api::namespaced(daemon.clone(), secrets_namespace);
        assert_eq!(
            refused(secrets.get(name).await.map(drop)),
            403,
            "get {name}"
        );
        assert_eq!(
            refused(secrets.list(&ListParams::default()).await.map(drop)),
            403,
            "list secrets in {secrets_namespace}"
        );
    }
    let deployments: Api<Deployment> = Api::namespaced(daemon.clone(), &namespace);
    assert_eq!(
        refused(
            deployments
                .delete("shop", &Default::default())
                .await
                .map(drop)
        ),
        403
    );
    let pods: Api<Pod> = Api::namespaced(daemon.clone(), &namespace);
    assert_eq!(
        refused(
            pods.delete_collection(&Default::default(), &ListParams::default())
                .await
                .map(drop)
        ),
        403,
        "pods are only ever evicted"
    );
    let actions: Api<HealingAction> = Api::namespaced(daemon.clone(), &namespace);
    assert_eq!(
        refused(
            actions
                .patch(
                    "any",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"reasoning": "rewritten"}})),
                )
                .await
                .map(drop)
        ),
        403,
        "the daemon never patches a HealingAction's spec"
    );
    // What it does need it has: its signing key, and nothing more of Secrets.
    let reviews: Api<SelfSubjectAccessReview> = Api::all(daemon);
    let may = async |verb: &str, name: &str| {
        let review: SelfSubjectAccessReview = serde_json::from_value(json!({
            "spec": {"resourceAttributes": {
                "namespace": cluster.release.namespace, "verb": verb, "resource": "secrets", "name": name
            }}
        }))
        .unwrap();
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .unwrap();
        answer.status.is_some_and(|status| status.allowed)
    };
    let key = format!("{}-signing-key", cluster.release.name);
    assert!(may("get", &key).await);
    assert!(!may("update", &key).await);
    assert!(!may("delete", &key).await);
}

#[tokio::test]
async fn a_status_a_tenant_forges_to_skip_approval_is_refused_and_nothing_runs() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let namespace = cluster.namespace("e2e-forged").await;
    grant_tenant(cluster, "tenant-a", &namespace).await;
    allowed(
        cluster,
        "tenant-a",
        &namespace,
        "patch",
        KUBESKIPPY,
        "healingactions/status",
    )
    .await;
    let (daemon, waiting) = awaiting_approval(cluster, &namespace).await;
    let admin = cluster.client("admin").await;
    let name = waiting.metadata.name.clone().unwrap();

    // The tenant may write the status subresource: they move it on to
    // Approved as if someone had decided, keeping the daemon's seal.
    let as_tenant: Api<HealingAction> =
        Api::namespaced(cluster.client("tenant-a").await, &namespace);
    as_tenant
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Approved", "approvedBy": "on-call"}})),
        )
        .await
        .expect("RBAC and the CRD's forward-only rules let the tenant write this");

    let actions_api: Api<HealingAction> = Api::namespaced(admin.clone(), &namespace);
    let refused = eventually(
        Duration::from_secs(60),
        "the forged status refused",
        async || {
            let status = actions_api.get(&name).await.unwrap().status?;
            (status.phase == Phase::Cancelled).then_some(status)
        },
    )
    .await;
    assert!(
        refused
            .message
            .as_deref()
            .unwrap_or("")
            .starts_with("refused"),
        "{refused:?}"
    );
    assert!(
        !restarted(&admin, &namespace).await,
        "the forged approval restarted the Deployment"
    );
    daemon.stop_and_check_rbac();
}
