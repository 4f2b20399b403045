//! Deleting a pod through the Eviction API rather than a plain DELETE, so the
//! API server holds it against the pod's PodDisruptionBudgets.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams, PostParams};

use super::{DryRun, ExecuteError, Outcome, api_error, describe, one_line, to_json, unsupported};
use crate::wit::ObjectRef;

/// Evicts the pod `target` names. A PodDisruptionBudget that forbids the
/// disruption makes the server answer 429, which is a refusal, not a failure.
pub async fn evict(
    client: &kube::Client,
    target: &ObjectRef,
    mode: DryRun,
) -> Result<Outcome, ExecuteError> {
    if target.kind != "Pod" {
        return Err(unsupported(target, "delete-pod"));
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
    let params = EvictParams {
        post_options: PostParams {
            dry_run: mode.is_on(),
            ..PostParams::default()
        },
        ..EvictParams::default()
    };
    let status = pods
        .evict(&target.name, &params)
        .await
        .map_err(|error| match error {
            kube::Error::Api(status) if blocked_by_budget(&status) => ExecuteError::Refused {
                target: describe(target),
                reason: one_line(&format!(
                    "blocked by a PodDisruptionBudget: {}",
                    budget_message(&status)
                )),
            },
            other => api_error(target, other),
        })?;
    Ok(Outcome {
        message: format!("{}evict {}", mode.prefix(), describe(target)),
        original: None,
        // The Eviction API answers with a Status, not an object: on success
        // the pod is simply gone.
        dry_run_result: mode.is_on().then(|| to_json(&status)),
    })
}

/// The eviction subresource answers 429 for a budget that allows no
/// disruption; API priority-and-fairness throttling also answers 429 but
/// without the `DisruptionBudget` cause, and is an ordinary, retryable error.
fn blocked_by_budget(status: &kube::core::Status) -> bool {
    status.code == 429
        && (status.details.as_ref().is_some_and(|details| {
            details
                .causes
                .iter()
                .any(|cause| cause.reason == "DisruptionBudget")
        }) || status.message.contains("disruption budget"))
}

fn budget_message(status: &kube::core::Status) -> String {
    let causes: Vec<&str> = status
        .details
        .iter()
        .flat_map(|details| &details.causes)
        .filter(|cause| !cause.message.is_empty())
        .map(|cause| cause.message.as_str())
        .collect();
    if causes.is_empty() {
        status.message.clone()
    } else {
        format!("{} ({})", status.message, causes.join("; "))
    }
}
