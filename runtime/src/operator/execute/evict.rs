//! Pods are removed only through the Eviction API, never by a plain DELETE,
//! so the API server holds the eviction against the pod's
//! PodDisruptionBudgets. The eviction carries the pod's uid as a
//! precondition: a pod recreated under the same name is not evicted.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde_json::json;

use super::{DryRun, ExecuteError, Outcome, Target, api_error, one_line, to_json, unsupported};

/// Evicts the pod `target` names. A PodDisruptionBudget that forbids the
/// disruption makes the server answer 429, which is a refusal, not a failure.
pub async fn evict(
    client: &kube::Client,
    target: &Target,
    mode: DryRun,
) -> Result<Outcome, ExecuteError> {
    let pod = &target.object;
    if pod.kind != "Pod" {
        return Err(unsupported(pod, "eviction"));
    }
    let mut delete_options = json!({ "preconditions": { "uid": target.uid } });
    let mut path = format!(
        "/api/v1/namespaces/{}/pods/{}/eviction",
        pod.namespace, pod.name
    );
    if mode.is_on() {
        delete_options["dryRun"] = json!(["All"]);
        path.push_str("?dryRun=All");
    }
    // Built here rather than with kube's `evict`, which sends the options
    // under `delete_options`, a key the API server does not read.
    let body = json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": { "name": pod.name, "namespace": pod.namespace },
        "deleteOptions": delete_options,
    });
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).expect("an eviction serialises"))
        .expect("a valid request");
    let status: Status = client.request(request).await.map_err(|error| match error {
        kube::Error::Api(status) if blocked_by_budget(&status) => ExecuteError::Refused {
            target: target.describe(),
            reason: one_line(&format!(
                "blocked by a PodDisruptionBudget: {}",
                budget_message(&status)
            )),
        },
        kube::Error::Api(status) if status.code == 409 => ExecuteError::Moved {
            target: target.describe(),
            message: format!(
                "was replaced: it is no longer the pod {} the eviction is for",
                target.uid
            ),
        },
        other => api_error(pod, other),
    })?;
    Ok(Outcome {
        message: format!("{}evict {}", mode.prefix(), target.describe()),
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
