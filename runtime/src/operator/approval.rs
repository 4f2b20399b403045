//! `kubeskippy approve`, `reject` and `resume`: a human's decisions, written to
//! the API with the identity the API server knows the caller by.
//!
//! The identity comes from a SelfSubjectReview, so it is whoever the
//! kubeconfig authenticates as, not a name the caller types; the chart's
//! admission policy refuses an approval whose `by` is not the user writing
//! it. A decision records the digest of the spec it was given for, and the
//! write is guarded by the resourceVersion that was read, so it counts for
//! exactly the content the approver saw.

use chrono::{DateTime, Utc};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::core::crd::healing_action::{Approval, ApprovalDecision, HealingAction, Phase};
use crate::core::crd::policy::{ClusterHealingPolicy, HealingPolicy};
use crate::core::gates::RESUMED_AT;
use crate::core::provenance::{SIGNATURE, spec_digest};
use crate::core::text::stamp;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(
        "cannot tell who you are: the API server does not serve authentication.k8s.io/v1 SelfSubjectReview (Kubernetes 1.28 or later does), and a decision is never recorded without an identity"
    )]
    NoSelfSubjectReview,
    #[error("cannot tell who you are: {0}")]
    Identity(String),
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("HealingAction {namespace}/{name} is not waiting for approval: {why}")]
    NotWaiting {
        namespace: String,
        name: String,
        why: String,
    },
    #[error(
        "HealingAction {namespace}/{name} changed while you decided (someone else may have decided first); run the command again to see where it stands"
    )]
    Conflict { namespace: String, name: String },
    #[error("{kind} {namespace}/{name}: {message}")]
    Api {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
}

fn api_error(kind: &'static str, namespace: &str, name: &str, error: kube::Error) -> ApprovalError {
    match error {
        kube::Error::Api(status) if status.code == 404 => ApprovalError::NotFound {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        },
        kube::Error::Api(status) if status.code == 409 => ApprovalError::Conflict {
            namespace: namespace.into(),
            name: name.into(),
        },
        // The server's own message says why (RBAC, an admission policy);
        // kube's rendering of an API error appends the whole Status again.
        kube::Error::Api(status) => ApprovalError::Api {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            message: crate::operator::execute::one_line(&format!(
                "{} (HTTP {})",
                status.message, status.code
            )),
        },
        other => ApprovalError::Api {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            message: crate::operator::execute::one_line(&other.to_string()),
        },
    }
}

/// The caller's user name, as the API server authenticated them.
pub async fn who_am_i(client: &kube::Client) -> Result<String, ApprovalError> {
    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|error| match error {
            kube::Error::Api(status) if status.code == 404 => ApprovalError::NoSelfSubjectReview,
            other => {
                ApprovalError::Identity(crate::operator::execute::one_line(&other.to_string()))
            }
        })?;
    review
        .status
        .and_then(|status| status.user_info)
        .and_then(|user| user.username)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ApprovalError::Identity("the SelfSubjectReview answer names no user".into()))
}

/// Why `action` cannot take a decision now, if it cannot.
fn not_waiting(action: &HealingAction) -> Option<String> {
    if let Some(approval) = &action.spec.approval {
        let decision = match approval.decision {
            ApprovalDecision::Approved => "approved",
            ApprovalDecision::Rejected => "rejected",
        };
        return Some(format!(
            "already {decision} by {} at {}",
            approval.by, approval.at
        ));
    }
    if action
        .metadata
        .annotations
        .as_ref()
        .is_none_or(|annotations| !annotations.contains_key(SIGNATURE))
    {
        return Some("KubeSkippy did not plan it, and the daemon will not run it".into());
    }
    let phase = action.status.as_ref().map_or(Phase::Pending, |s| s.phase);
    (phase != Phase::Pending).then(|| format!("it is {phase:?}"))
}

/// Records `decision` on the HealingAction `namespace/name` as the caller.
/// The write is guarded by the resourceVersion that was checked, so of two
/// racing deciders exactly one wins and the other gets
/// [`ApprovalError::Conflict`].
pub async fn decide(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    decision: ApprovalDecision,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<Approval, ApprovalError> {
    let kind = "HealingAction";
    let actions: Api<HealingAction> = Api::namespaced(client.clone(), namespace);
    let action = actions
        .get(name)
        .await
        .map_err(|error| api_error(kind, namespace, name, error))?;
    if let Some(why) = not_waiting(&action) {
        return Err(ApprovalError::NotWaiting {
            namespace: namespace.into(),
            name: name.into(),
            why,
        });
    }
    let approval = Approval {
        decision,
        by: who_am_i(client).await?,
        at: stamp(at),
        reason: reason
            .map(str::trim)
            .filter(|reason| !reason.is_empty())
            .map(str::to_string),
        spec_digest: spec_digest(&action.spec),
    };
    let patch = json!({
        "metadata": { "resourceVersion": action.metadata.resource_version },
        "spec": { "approval": approval },
    });
    actions
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|error| api_error(kind, namespace, name, error))?;
    Ok(approval)
}

/// Lifts a policy's circuit breaker: failures before `at` stop counting.
/// `namespace` names a HealingPolicy's; `None` a ClusterHealingPolicy.
pub async fn resume(
    client: &kube::Client,
    namespace: Option<&str>,
    policy: &str,
    at: DateTime<Utc>,
) -> Result<(), ApprovalError> {
    let patch = json!({
        "metadata": { "annotations": {
            RESUMED_AT: stamp(at)
        } }
    });
    let params = PatchParams::default();
    let patch = Patch::Merge(&patch);
    match namespace {
        Some(namespace) => {
            let policies: Api<HealingPolicy> = Api::namespaced(client.clone(), namespace);
            policies
                .patch(policy, &params, &patch)
                .await
                .map_err(|error| api_error("HealingPolicy", namespace, policy, error))?;
        }
        None => {
            let policies: Api<ClusterHealingPolicy> = Api::all(client.clone());
            policies
                .patch(policy, &params, &patch)
                .await
                .map_err(|error| api_error("ClusterHealingPolicy", "", policy, error))?;
        }
    }
    Ok(())
}
