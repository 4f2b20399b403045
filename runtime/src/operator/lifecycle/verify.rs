//! Verification: after a change, the target's pods are watched for a window.
//! Restarts climbing above the baseline or a new OOM kill fail it at once; at
//! the window's end it passes only if the pods are Ready.

use chrono::{DateTime, Duration, Utc};
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;

use crate::core::crd::ActionKind;
use crate::core::crd::healing_action::{HealingAction, VerificationBaseline, WorkloadRef};
use crate::core::gates::pod_ready;
use crate::core::text::{parse_time, stamp};
use crate::core::wit::ObjectRef;
use crate::operator::execute::{self, ExecuteError, Kind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed(String),
    Failed(String),
    /// Nothing wrong yet; the window is still open.
    Waiting,
}

/// An object's controller reference: kind, name and uid.
struct Owner<'a> {
    kind: &'a str,
    name: &'a str,
    uid: &'a str,
}

fn controller_of(object: &Value) -> Option<Owner<'_>> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|owner| owner["controller"] == true)
        .and_then(|owner| {
            Some(Owner {
                kind: owner["kind"].as_str()?,
                name: owner["name"].as_str()?,
                uid: owner["uid"].as_str()?,
            })
        })
}

fn in_namespace(namespace: &str, kind: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// The object `owner` names, or `None` when it is gone, of a kind the healer
/// does not read (a Job's pods are judged on their own), or another object
/// than the reference's uid says: anyone who may create a pod may write its
/// ownerReferences, so only one that checks out makes a pod part of a workload.
async fn get_owner(
    client: &kube::Client,
    namespace: &str,
    owner: Owner<'_>,
) -> Result<Option<Value>, ExecuteError> {
    Ok(get_named(client, namespace, owner.kind, owner.name)
        .await?
        .filter(|object| object["metadata"]["uid"] == owner.uid))
}

/// The object `kind` `name` of `namespace`, or `None` when it is gone or of a
/// kind the healer does not read.
async fn get_named(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Option<Value>, ExecuteError> {
    let reference = in_namespace(namespace, kind, name);
    let Ok((_, api)) = execute::dynamic_api(client, &reference, "read") else {
        return Ok(None);
    };
    match execute::get_json(&api, &reference).await {
        Ok(object) => Ok(Some(object)),
        Err(ExecuteError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The workload an action on `target` affects, and the pod when the target
/// is one: pod → ReplicaSet → Deployment, pod → StatefulSet or DaemonSet, or
/// the pod itself when nothing owns it.
pub(crate) async fn resolve(
    client: &kube::Client,
    target: &ObjectRef,
    target_object: &Value,
) -> Result<(Value, Option<Value>), ExecuteError> {
    if target.kind != "Pod" {
        return Ok((target_object.clone(), None));
    }
    let pod = target_object.clone();
    let Some(owner) = controller_of(&pod) else {
        return Ok((pod.clone(), Some(pod)));
    };
    let Some(owner) = get_owner(client, &target.namespace, owner).await? else {
        return Ok((pod.clone(), Some(pod)));
    };
    if owner["kind"] == "ReplicaSet"
        && let Some(deployment) = controller_of(&owner).filter(|owner| owner.kind == "Deployment")
        && let Some(deployment) = get_owner(client, &target.namespace, deployment).await?
    {
        return Ok((deployment, Some(pod)));
    }
    Ok((owner, Some(pod)))
}

fn workload_ref(object: &Value) -> WorkloadRef {
    WorkloadRef {
        kind: object["kind"].as_str().unwrap_or_default().into(),
        name: object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .into(),
    }
}

/// `app=shop,tier=web` from the workload's `spec.selector.matchLabels`;
/// ownership is checked afterwards, so a selector that matches too much
/// costs a larger list, never a wrong verdict.
fn selector(workload: &Value) -> String {
    workload["spec"]["selector"]["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some(format!("{key}={}", value.as_str()?)))
        .collect::<Vec<_>>()
        .join(",")
}

async fn list(
    client: &kube::Client,
    namespace: &str,
    kind: Kind,
    labels: &str,
    context: &ObjectRef,
) -> Result<Vec<Value>, ExecuteError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
    let list = api
        .list(&ListParams::default().labels(labels))
        .await
        .map_err(|error| execute::api_error(context, error))?;
    Ok(list.items.iter().map(execute::to_json).collect())
}

/// The pods of `workload` now, found through their owners.
pub(crate) async fn pods_of(
    client: &kube::Client,
    namespace: &str,
    workload: &WorkloadRef,
) -> Result<Vec<Value>, ExecuteError> {
    let reference = in_namespace(namespace, &workload.kind, &workload.name);
    let Some(object) = get_named(client, namespace, &workload.kind, &workload.name).await? else {
        return Ok(Vec::new());
    };
    if workload.kind == "Pod" {
        return Ok(vec![object]);
    }
    let labels = selector(&object);
    let uid = |object: &Value| object["metadata"]["uid"].as_str().map(str::to_string);
    // Owners by uid: a pod naming the workload (or one of its ReplicaSets)
    // under another uid is not one of its pods.
    let owners: Vec<String> = if workload.kind == "Deployment" {
        let deployment = uid(&object);
        list(client, namespace, Kind::ReplicaSet, &labels, &reference)
            .await?
            .iter()
            .filter(|set| {
                controller_of(set).is_some_and(|owner| {
                    owner.kind == "Deployment" && Some(owner.uid) == deployment.as_deref()
                })
            })
            .filter_map(uid)
            .collect()
    } else {
        uid(&object).into_iter().collect()
    };
    Ok(list(client, namespace, Kind::Pod, &labels, &reference)
        .await?
        .into_iter()
        .filter(|pod| {
            controller_of(pod).is_some_and(|owner| owners.iter().any(|uid| uid == owner.uid))
        })
        .collect())
}

fn container_statuses(pod: &Value) -> impl Iterator<Item = &Value> {
    ["containerStatuses", "initContainerStatuses"]
        .into_iter()
        .flat_map(|list| pod["status"][list].as_array().into_iter().flatten())
}

fn restarts(pod: &Value) -> u32 {
    container_statuses(pod)
        .filter_map(|status| status["restartCount"].as_u64())
        .map(|count| u32::try_from(count).unwrap_or(u32::MAX))
        .fold(0, u32::saturating_add)
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// What verification compares against, captured before the change. A bare
/// pod that is deleted or restarted (deleted) leaves nothing to watch.
pub(crate) async fn baseline(
    client: &kube::Client,
    action: &HealingAction,
    target: &ObjectRef,
    target_object: &Value,
    now: DateTime<Utc>,
) -> Result<VerificationBaseline, ExecuteError> {
    let (workload, pod) = resolve(client, target, target_object).await?;
    let removes_pod = matches!(
        action.spec.action.kind,
        ActionKind::Restart | ActionKind::DeletePod
    );
    let workload = if pod.is_some() && workload["kind"] == "Pod" && removes_pod {
        None
    } else {
        Some(workload_ref(&workload))
    };
    let mut baseline = VerificationBaseline {
        since: stamp(now),
        workload,
        ..VerificationBaseline::default()
    };
    if let Some(workload) = &baseline.workload {
        for pod in pods_of(client, &target.namespace, workload).await? {
            baseline.restarts.insert(name(&pod).into(), restarts(&pod));
        }
    }
    Ok(baseline)
}

/// An OOM kill of one of the pod's containers after `since`.
fn oom_kill_after(pod: &Value, since: DateTime<Utc>) -> Option<String> {
    container_statuses(pod).find_map(|status| {
        ["state", "lastState"].into_iter().find_map(|which| {
            let terminated = &status[which]["terminated"];
            let at = parse_time(terminated["finishedAt"].as_str())?;
            (terminated["reason"] == "OOMKilled" && at > since).then(|| {
                format!(
                    "container {} of pod {} was OOMKilled at {}",
                    status["name"].as_str().unwrap_or_default(),
                    name(pod),
                    stamp(at)
                )
            })
        })
    })
}

/// Judges `pods` (the workload's pods now) against the baseline.
pub fn judge(
    baseline: &VerificationBaseline,
    pods: &[Value],
    now: DateTime<Utc>,
    window: Duration,
) -> Verdict {
    let Some(since) = parse_time(Some(&baseline.since)) else {
        return Verdict::Failed(format!(
            "verification baseline has an invalid time {:?}",
            baseline.since
        ));
    };
    for pod in pods {
        let before = baseline.restarts.get(name(pod)).copied().unwrap_or(0);
        let now_count = restarts(pod);
        if now_count > before {
            return Verdict::Failed(format!(
                "pod {} restarted during verification ({before} → {now_count} restarts)",
                name(pod)
            ));
        }
        if let Some(kill) = oom_kill_after(pod, since) {
            return Verdict::Failed(kill);
        }
    }
    if now < since + window {
        return Verdict::Waiting;
    }
    let live: Vec<&Value> = pods
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .collect();
    let not_ready: Vec<&str> = live
        .iter()
        .filter(|pod| !pod_ready(pod))
        .map(|pod| name(pod))
        .collect();
    let window = humanize(window);
    if live.is_empty() {
        Verdict::Failed(format!("no pods after the {window} verification window"))
    } else if !not_ready.is_empty() {
        Verdict::Failed(format!(
            "pods not Ready after the {window} verification window: {}",
            not_ready.join(", ")
        ))
    } else {
        Verdict::Passed(format!(
            "verified: {} pod(s) Ready, no restarts or OOM kills for {window}",
            live.len()
        ))
    }
}

pub(crate) fn humanize(duration: Duration) -> String {
    let seconds = duration.num_seconds();
    if seconds % 3600 == 0 && seconds > 0 {
        format!("{}h", seconds / 3600)
    } else if seconds % 60 == 0 && seconds > 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}
