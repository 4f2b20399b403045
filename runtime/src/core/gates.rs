//! The checks an approved HealingAction must pass before it runs, in the
//! order [`check`] applies them. Each is a pure function of the policy, the
//! HealingActions the daemon knows (its peers), the time and, for
//! `minHealthyPercent`, the workload's state, so it holds across restarts and
//! replicas and is tested without an API server.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::core::crd::ActionKind;
use crate::core::crd::healing_action::{ActionSpec, HealingAction, Phase};
use crate::core::crd::policy::HealingPolicy;
use crate::core::text::{parse_time as time, stamp};

/// Set on a HealingPolicy by `kubeskippy resume`: failures before this time
/// no longer count towards its circuit breaker.
pub const RESUMED_AT: &str = "kubeskippy.io/resumed-at";

/// Why an action may not run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub gate: Gate,
    pub reason: String,
    /// When the block lifts by itself, if that is known.
    pub until: Option<DateTime<Utc>>,
}

/// Which gate holds an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Breaker,
    PolicyRate,
    NamespaceBudget,
    ClusterBudget,
    MaxConcurrent,
    MinHealthy,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Breaker => "breaker",
            Gate::PolicyRate => "policy_rate",
            Gate::NamespaceBudget => "namespace_budget",
            Gate::ClusterBudget => "cluster_budget",
            Gate::MaxConcurrent => "max_concurrent",
            Gate::MinHealthy => "min_healthy",
        }
    }
}

/// A policy whose circuit breaker is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    pub reason: String,
    pub until: DateTime<Utc>,
}

/// What `minHealthyPercent` needs to know about the workload an action
/// touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disruption {
    /// `Deployment shop/app`.
    pub workload: String,
    pub desired: u32,
    pub available: u32,
    /// Available replicas the action takes down at once.
    pub takes_down: u32,
}

/// The policy's peers in `namespace`: HealingActions naming exactly it
/// (kind, namespace and name) there, other than `action` itself (a retried
/// action must not count against itself). A ClusterHealingPolicy's limits
/// and breaker hold per namespace, so one namespace's failures or volume do
/// not stop healing in another.
fn policy_peers<'a>(
    policy: &'a HealingPolicy,
    namespace: &'a str,
    action: Option<&'a HealingAction>,
    peers: &'a [Arc<HealingAction>],
) -> impl Iterator<Item = &'a HealingAction> + 'a {
    peers
        .iter()
        .map(Arc::as_ref)
        .filter(move |peer| peer.spec.policy_ref.names(policy))
        .filter(move |peer| peer.metadata.namespace.as_deref() == Some(namespace))
        .filter(move |peer| action.is_none_or(|action| !same(peer, action)))
}

fn namespace_of(action: &HealingAction) -> &str {
    action.metadata.namespace.as_deref().unwrap_or_default()
}

/// Whether a peer changed (or is changing) something: not a dry run, as
/// planned or as the policy made it when it ran.
fn for_real(peer: &HealingAction) -> bool {
    !peer.spec.dry_run && !peer.status.as_ref().is_some_and(|status| status.dry_run)
}

fn same(a: &HealingAction, b: &HealingAction) -> bool {
    a.metadata.namespace == b.metadata.namespace && a.metadata.name == b.metadata.name
}

/// `HealingPolicy shop/restarts` or `ClusterHealingPolicy defaults`.
fn policy_name(policy: &HealingPolicy) -> String {
    crate::core::crd::healing_action::PolicyRef::of(policy).describe()
}

/// The per-policy circuit breaker in `namespace` (a HealingPolicy's own; one
/// of those a ClusterHealingPolicy covers): open while the last
/// `breakerThreshold` finished, non-dry-run actions of the policy there
/// (since the last `kubeskippy resume`) all failed, until `breakerCoolOff`
/// after the last of them. After the cool-off one more action may run; if it
/// fails too, the breaker opens again from its failure.
pub fn breaker(
    policy: &HealingPolicy,
    namespace: &str,
    peers: &[Arc<HealingAction>],
    now: DateTime<Utc>,
) -> Option<Paused> {
    let safety = &policy.spec.safety;
    // A stamp in the future counts from when it comes: written far ahead, it
    // would otherwise keep every failure from counting, for good.
    let resumed_at = time(
        policy
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(RESUMED_AT))
            .map(String::as_str),
    )
    .filter(|resumed| *resumed <= now);
    let mut finished: Vec<(DateTime<Utc>, &HealingAction, bool)> =
        policy_peers(policy, namespace, None, peers)
            .filter(|peer| for_real(peer))
            .filter_map(|peer| {
                let status = peer.status.as_ref()?;
                let failed = match status.phase {
                    Phase::Failed | Phase::RolledBack => true,
                    Phase::Succeeded => false,
                    _ => return None,
                };
                let completed = time(status.completed_at.as_deref())?;
                resumed_at
                    .is_none_or(|resumed| completed >= resumed)
                    .then_some((completed, peer, failed))
            })
            .collect();
    finished.sort_by_key(|(completed, ..)| std::cmp::Reverse(*completed));
    let threshold = safety.breaker_threshold.max(1) as usize;
    let last = &finished.get(..threshold)?;
    if !last.iter().all(|(_, _, failed)| *failed) {
        return None;
    }
    let until = last[0].0 + chrono_of(safety.breaker_cool_off());
    if now >= until {
        return None;
    }
    let names: Vec<&str> = last
        .iter()
        .map(|(_, peer, _)| peer.metadata.name.as_deref().unwrap_or_default())
        .collect();
    let (resume, scope) = match policy.metadata.namespace.as_deref() {
        Some(namespace) => (
            format!("kubeskippy resume {} -n {namespace}", policy.name()),
            String::new(),
        ),
        None => (
            format!("kubeskippy resume {} --cluster", policy.name()),
            format!(" in namespace {namespace}"),
        ),
    };
    Some(Paused {
        reason: format!(
            "circuit breaker open: the last {threshold} actions of {}{scope} failed ({}); paused until {} or `{resume}`",
            policy_name(policy),
            names.join(", "),
            stamp(until),
        ),
        until,
    })
}

/// Start times within the last hour of the non-dry-run `actions`, oldest first.
fn started_within_hour<'a>(
    actions: impl Iterator<Item = &'a HealingAction>,
    now: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let hour_ago = now - Duration::hours(1);
    let mut started: Vec<DateTime<Utc>> = actions
        .filter(|peer| for_real(peer))
        .filter_map(|peer| time(peer.status.as_ref()?.started_at.as_deref()))
        .filter(|started| *started > hour_ago && *started <= now)
        .collect();
    started.sort();
    started
}

/// Blocked when `limit` actions already started in the last hour; lifts
/// when enough of them are an hour old.
fn hourly(started: &[DateTime<Utc>], limit: u32, gate: Gate, what: String) -> Option<Blocked> {
    let limit = limit as usize;
    if started.len() < limit {
        return None;
    }
    Some(Blocked {
        gate,
        reason: format!(
            "{what}: {} actions started in the last hour, the limit is {limit}",
            started.len()
        ),
        until: (limit > 0).then(|| started[started.len() - limit] + Duration::hours(1)),
    })
}

/// `maxActionsPerHour` of the policy.
pub fn policy_rate(
    policy: &HealingPolicy,
    action: &HealingAction,
    peers: &[Arc<HealingAction>],
    now: DateTime<Utc>,
) -> Option<Blocked> {
    let namespace = namespace_of(action);
    let started = started_within_hour(policy_peers(policy, namespace, Some(action), peers), now);
    let scope = if policy.is_cluster_wide() {
        format!(" in namespace {namespace}")
    } else {
        String::new()
    };
    hourly(
        &started,
        policy.spec.safety.max_actions_per_hour,
        Gate::PolicyRate,
        format!("rate limit of {}{scope}", policy_name(policy)),
    )
}

/// The hourly budgets above every policy's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Across every namespace.
    pub cluster_per_hour: u32,
    /// In one namespace, across its policies and the cluster policies acting
    /// there: a tenant's actions cannot spend the others' share.
    pub namespace_per_hour: u32,
}

/// The cluster-wide budget: actions per hour across every policy.
pub fn cluster_budget(
    per_hour: u32,
    action: &HealingAction,
    peers: &[Arc<HealingAction>],
    now: DateTime<Utc>,
) -> Option<Blocked> {
    let others = peers
        .iter()
        .map(Arc::as_ref)
        .filter(|peer| !same(peer, action));
    hourly(
        &started_within_hour(others, now),
        per_hour,
        Gate::ClusterBudget,
        "cluster-wide budget".into(),
    )
}

/// The namespace's budget: actions per hour in the action's namespace.
pub fn namespace_budget(
    per_hour: u32,
    action: &HealingAction,
    peers: &[Arc<HealingAction>],
    now: DateTime<Utc>,
) -> Option<Blocked> {
    let namespace = action.metadata.namespace.as_deref();
    let others = peers
        .iter()
        .map(Arc::as_ref)
        .filter(|peer| peer.metadata.namespace.as_deref() == namespace)
        .filter(|peer| !same(peer, action));
    hourly(
        &started_within_hour(others, now),
        per_hour,
        Gate::NamespaceBudget,
        format!("budget of namespace {}", namespace.unwrap_or_default()),
    )
}

/// `maxConcurrent`: actions of the policy running or being verified.
pub fn max_concurrent(
    policy: &HealingPolicy,
    action: &HealingAction,
    peers: &[Arc<HealingAction>],
) -> Option<Blocked> {
    let running: Vec<&str> = policy_peers(policy, namespace_of(action), Some(action), peers)
        .filter(|peer| {
            peer.status
                .as_ref()
                .is_some_and(|status| matches!(status.phase, Phase::InProgress | Phase::Verifying))
        })
        .map(|peer| peer.metadata.name.as_deref().unwrap_or_default())
        .collect();
    let limit = policy.spec.safety.max_concurrent;
    (running.len() >= limit as usize).then(|| Blocked {
        gate: Gate::MaxConcurrent,
        reason: format!(
            "{} allows {limit} action(s) at once and {} running: {}",
            policy_name(policy),
            running.len(),
            running.join(", ")
        ),
        until: None,
    })
}

/// `minHealthyPercent`: blocked when the action would take the workload's
/// available replicas below ceil(desired × percent / 100). An action that
/// takes nothing down is never blocked, even on a workload already below the
/// threshold: that is the workload healing needs most.
pub fn min_healthy(policy: &HealingPolicy, disruption: &Disruption) -> Option<Blocked> {
    let percent = policy.spec.safety.min_healthy_percent;
    let needed = (u64::from(disruption.desired) * u64::from(percent)).div_ceil(100);
    let after = disruption.available.saturating_sub(disruption.takes_down);
    (disruption.takes_down > 0 && u64::from(after) < needed).then(|| Blocked {
        gate: Gate::MinHealthy,
        reason: format!(
            "minHealthyPercent {percent}: {} would have {after} of {} replicas available ({} taken down at once), below the {needed} required",
            disruption.workload, disruption.desired, disruption.takes_down
        ),
        until: None,
    })
}

/// The gates in order: breaker, policy rate, namespace budget, cluster
/// budget, concurrency, minimum healthy. A dry run changes nothing, so only
/// the breaker holds it.
pub fn check(
    policy: &HealingPolicy,
    action: &HealingAction,
    peers: &[Arc<HealingAction>],
    now: DateTime<Utc>,
    budgets: Budgets,
    dry_run: bool,
    disruption: Option<&Disruption>,
) -> Option<Blocked> {
    if let Some(paused) = breaker(policy, namespace_of(action), peers, now) {
        return Some(Blocked {
            gate: Gate::Breaker,
            reason: paused.reason,
            until: Some(paused.until),
        });
    }
    if dry_run {
        return None;
    }
    policy_rate(policy, action, peers, now)
        .or_else(|| namespace_budget(budgets.namespace_per_hour, action, peers, now))
        .or_else(|| cluster_budget(budgets.cluster_per_hour, action, peers, now))
        .or_else(|| max_concurrent(policy, action, peers))
        .or_else(|| disruption.and_then(|disruption| min_healthy(policy, disruption)))
}

/// What `action` takes down of `workload` (a Deployment, StatefulSet,
/// DaemonSet, ReplicaSet, or the bare pod itself), given `pod` when the
/// action's target is a pod.
pub fn disruption(action: &ActionSpec, workload: &Value, pod: Option<&Value>) -> Disruption {
    let kind = workload["kind"].as_str().unwrap_or_default();
    let (desired, available) = replicas(kind, workload);
    let takes_down = match (action.kind, pod) {
        (ActionKind::Restart | ActionKind::DeletePod, Some(pod)) => u32::from(pod_ready(pod)),
        (ActionKind::Scale, _) => {
            let wanted = action
                .scale_action
                .as_ref()
                .map_or(desired, |scale| scale.replicas);
            available - available.min(wanted)
        }
        (ActionKind::Restart | ActionKind::Patch, None) => rollout_unavailable(kind, workload),
        _ => 0,
    };
    Disruption {
        workload: format!(
            "{kind} {}/{}",
            workload["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default(),
            workload["metadata"]["name"].as_str().unwrap_or_default()
        ),
        desired,
        available,
        takes_down: takes_down.min(available),
    }
}

fn count(value: &Value) -> Option<u32> {
    value.as_u64().map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// `(desired, available)` replicas.
fn replicas(kind: &str, workload: &Value) -> (u32, u32) {
    let status = &workload["status"];
    match kind {
        "Pod" => (1, u32::from(pod_ready(workload))),
        "DaemonSet" => (
            count(&status["desiredNumberScheduled"]).unwrap_or(0),
            count(&status["numberAvailable"]).unwrap_or(0),
        ),
        // An unset replica count means one.
        _ => (
            count(&workload["spec"]["replicas"]).unwrap_or(1),
            count(&status["availableReplicas"])
                .or_else(|| count(&status["readyReplicas"]))
                .unwrap_or(0),
        ),
    }
}

pub(crate) fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
}

/// An int-or-percent field resolved against `total`.
fn scaled(value: &Value, total: u32, round_up: bool) -> Option<u32> {
    if let Some(number) = count(value) {
        return Some(number);
    }
    let percent: u64 = value.as_str()?.strip_suffix('%')?.trim().parse().ok()?;
    let scaled = u64::from(total) * percent;
    let rounded = if round_up {
        scaled.div_ceil(100)
    } else {
        scaled / 100
    };
    Some(u32::try_from(rounded).unwrap_or(u32::MAX))
}

/// Pods a rollout of the pod template takes down at once, as the workload's
/// controller resolves its update strategy.
fn rollout_unavailable(kind: &str, workload: &Value) -> u32 {
    let spec = &workload["spec"];
    match kind {
        "Deployment" => {
            let desired = count(&spec["replicas"]).unwrap_or(1);
            if spec["strategy"]["type"] == "Recreate" {
                return desired;
            }
            let rolling = &spec["strategy"]["rollingUpdate"];
            let or_default = |value: &Value| {
                if value.is_null() {
                    Value::from("25%")
                } else {
                    value.clone()
                }
            };
            // The deployment controller rounds maxUnavailable down and
            // maxSurge up, and uses 1 when both come out as 0.
            let unavailable =
                scaled(&or_default(&rolling["maxUnavailable"]), desired, false).unwrap_or(0);
            let surge = scaled(&or_default(&rolling["maxSurge"]), desired, true).unwrap_or(0);
            if unavailable == 0 && surge == 0 {
                1
            } else {
                unavailable
            }
        }
        "StatefulSet" if spec["updateStrategy"]["type"] == "OnDelete" => 0,
        "StatefulSet" => 1,
        "DaemonSet" if spec["updateStrategy"]["type"] == "OnDelete" => 0,
        "DaemonSet" => {
            let desired = count(&workload["status"]["desiredNumberScheduled"]).unwrap_or(0);
            let rolling = &spec["updateStrategy"]["rollingUpdate"];
            if rolling["maxUnavailable"].is_null() {
                1
            } else {
                scaled(&rolling["maxUnavailable"], desired, true).unwrap_or(1)
            }
        }
        // A ReplicaSet does not roll its pods when its template changes, and
        // a bare pod's spec cannot change in a way that restarts it here.
        _ => 0,
    }
}

/// Policy durations are at most a day, far inside chrono's range.
pub(crate) fn chrono_of(duration: std::time::Duration) -> Duration {
    Duration::from_std(duration).unwrap_or(Duration::MAX)
}
