//! The HealingAction lifecycle: `Pending → Approved → InProgress → Verifying
//! → Succeeded | Failed | RolledBack | Cancelled`.
//!
//! [`reconcile`] makes one transition per call and writes it to the
//! HealingAction's `status` subresource before doing anything the transition
//! leads to: an action is `InProgress` in the API before its change is
//! written, and `Failed` with a pending rollback before the rollback runs. A
//! daemon that dies at any point finds on restart exactly how far it got.
//! Every status write carries the resourceVersion it was computed from, so a
//! stale cache or a second replica cannot make the same transition twice.

pub mod gates;
pub mod verify;

use crate::safety::SafetyFloor;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::events::{EventRecorder, Reason};
use crate::execute::{self, Clock, DryRun, ExecuteError, Limits, SystemClock};
use crate::healing_action::{
    ActionKind, ApprovalDecision, HealingAction, HealingActionStatus, Phase,
};
use crate::policy::{ActionType, HealingPolicy, SafetyRules};

/// Condition types the lifecycle writes.
pub const BLOCKED: &str = "Blocked";
pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
pub const INTERRUPTED: &str = "Interrupted";
/// True while a failed scale or patch still has to be rolled back.
pub const ROLLBACK_PENDING: &str = "RollbackPending";

/// Who approves actions that need no human approval.
pub const AUTOMATIC: &str = "kubeskippy (automatic mode)";

/// How often a blocked action is looked at again when no gate says when it
/// will lift.
const BLOCKED_RECHECK: Duration = Duration::from_secs(30);
/// How often pods are looked at during verification.
const VERIFY_POLL: Duration = Duration::from_secs(15);

/// What reconcile needs besides the action.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub clock: Arc<dyn Clock>,
    pub events: EventRecorder,
    /// This replica's name, recorded on events.
    pub identity: String,
    /// Actions per hour across every policy.
    pub cluster_actions_per_hour: u32,
    /// Checked again against the live target before anything runs.
    pub floor: SafetyFloor,
}

impl Context {
    pub fn new(client: kube::Client, identity: &str, cluster_actions_per_hour: u32) -> Context {
        Context {
            events: EventRecorder::new(client.clone(), identity),
            client,
            clock: Arc::new(SystemClock),
            identity: identity.into(),
            cluster_actions_per_hour,
            floor: SafetyFloor::default(),
        }
    }
}

/// Where a reconcile left the action, and when to call again: `None` means
/// only a change to the action (or its policy) can move it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub phase: Phase,
    pub requeue_after: Option<Duration>,
}

impl Step {
    pub fn wait(phase: Phase) -> Step {
        Step {
            phase,
            requeue_after: None,
        }
    }

    pub fn after(phase: Phase, delay: Duration) -> Step {
        Step {
            phase,
            requeue_after: Some(delay),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// Someone (another replica, `kubeskippy approve`) changed the action
    /// since it was read: reconcile the newer copy.
    #[error("HealingAction {action} changed since it was read; reconcile its latest version")]
    Conflict { action: String },
    #[error("HealingAction {action}: {message}")]
    Api { action: String, message: String },
}

impl LifecycleError {
    fn api(action: &HealingAction, message: impl std::fmt::Display) -> LifecycleError {
        LifecycleError::Api {
            action: action_name(action),
            message: execute::one_line(&message.to_string()),
        }
    }
}

fn action_name(action: &HealingAction) -> String {
    format!(
        "{}/{}",
        action.metadata.namespace.as_deref().unwrap_or_default(),
        action.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Status timestamps: RFC 3339 in UTC, whole seconds, as Kubernetes writes them.
pub(crate) fn stamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Sets a condition, keeping its transition time when its status stays.
pub(crate) fn set_condition(
    conditions: &mut Vec<Condition>,
    kind: &str,
    on: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    let value = if on { "True" } else { "False" };
    let transitioned = Time(
        k8s_openapi::jiff::Timestamp::from_second(now.timestamp())
            .expect("the clock is within jiff's range"),
    );
    let condition = Condition {
        type_: kind.into(),
        status: value.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: transitioned,
        observed_generation: None,
    };
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(existing) => {
            let keep = existing.status == value;
            let time = existing.last_transition_time.clone();
            *existing = condition;
            if keep {
                existing.last_transition_time = time;
            }
        }
        None => conditions.push(condition),
    }
}

fn condition_on(status: &HealingActionStatus, kind: &str) -> bool {
    status
        .condition(kind)
        .is_some_and(|condition| condition.status == "True")
}

/// Writes `status` with a merge patch guarded by the resourceVersion the
/// action was read at; fields the new status drops are sent as `null`.
async fn write(
    ctx: &Context,
    action: &HealingAction,
    status: &HealingActionStatus,
) -> Result<HealingAction, LifecycleError> {
    let before = action
        .status
        .as_ref()
        .map_or_else(|| json!({}), execute::to_json);
    let diff = execute::merge_diff(&before, &execute::to_json(status));
    let patch = json!({
        "metadata": { "resourceVersion": action.metadata.resource_version },
        "status": diff,
    });
    let api: Api<HealingAction> = Api::namespaced(
        ctx.client.clone(),
        action.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let name = action.metadata.name.as_deref().unwrap_or_default();
    let params = PatchParams {
        field_manager: Some(execute::FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api.patch_status(name, &params, &Patch::Merge(&patch)).await {
        Ok(updated) => Ok(updated),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(LifecycleError::Conflict {
            action: action_name(action),
        }),
        Err(error) => Err(LifecycleError::api(
            action,
            format!("cannot write status: {error}"),
        )),
    }
}

/// Writes `status` and records `reason` with the status message as events.
async fn transition(
    ctx: &Context,
    action: &HealingAction,
    status: HealingActionStatus,
    reason: Reason,
) -> Result<HealingAction, LifecycleError> {
    let updated = write(ctx, action, &status).await?;
    let note = status.message.as_deref().unwrap_or_default();
    ctx.events.transition(&updated, reason, note).await;
    Ok(updated)
}

/// Moves to a final phase with `message`.
async fn finish(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
    phase: Phase,
    message: String,
    reason: Reason,
) -> Result<Step, LifecycleError> {
    status.phase = phase;
    status.message = Some(message);
    status.completed_at = Some(stamp(ctx.clock.now()));
    status.retry_after = None;
    transition(ctx, action, status, reason).await?;
    Ok(Step::wait(phase))
}

/// Moves to Failed; a scale or patch that may have changed something is
/// marked for rollback, which the next call performs.
async fn fail(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
    message: String,
) -> Result<Step, LifecycleError> {
    let roll_back = execute::reversible(&action.spec.action)
        && !action.spec.dry_run
        && status.original.is_some();
    if roll_back {
        set_condition(
            &mut status.conditions,
            ROLLBACK_PENDING,
            true,
            "Failed",
            "restoring the original from status.original",
            ctx.clock.now(),
        );
    }
    let step = finish(ctx, action, status, Phase::Failed, message, Reason::Failed).await?;
    Ok(if roll_back {
        Step::after(Phase::Failed, Duration::ZERO)
    } else {
        step
    })
}

/// Reconciles one HealingAction by at most one transition.
///
/// `policy` is the HealingPolicy the action names (`None` when it no longer
/// exists); `peers` is every HealingAction the caller knows of, this one
/// included, from which rate limits, concurrency and the circuit breaker are
/// counted.
pub async fn reconcile(
    ctx: &Context,
    action: &HealingAction,
    policy: Option<&HealingPolicy>,
    peers: &[Arc<HealingAction>],
) -> Result<Step, LifecycleError> {
    let status = action.status.clone().unwrap_or_default();
    match status.phase {
        Phase::Failed if condition_on(&status, ROLLBACK_PENDING) => {
            rollback(ctx, action, status).await
        }
        Phase::Succeeded | Phase::Failed | Phase::RolledBack | Phase::Cancelled => {
            Ok(Step::wait(status.phase))
        }
        Phase::InProgress => interrupted(ctx, action, status).await,
        Phase::Verifying => verifying(ctx, action, policy, status).await,
        Phase::Pending | Phase::Approved => {
            let (policy, target) = match preconditions(ctx, action, policy).await? {
                Ok(found) => found,
                Err((phase, message)) if phase == Phase::Cancelled => {
                    return finish(ctx, action, status, phase, message, Reason::Cancelled).await;
                }
                Err((_, message)) => return fail(ctx, action, status, message).await,
            };
            if status.phase == Phase::Pending {
                approval(ctx, action, status).await
            } else {
                run(ctx, action, policy, peers, status, &target).await
            }
        }
    }
}

fn action_type(kind: ActionKind) -> ActionType {
    match kind {
        ActionKind::Restart => ActionType::Restart,
        ActionKind::Scale => ActionType::Scale,
        ActionKind::Patch => ActionType::Patch,
        ActionKind::DeletePod => ActionType::DeletePod,
    }
}

pub(crate) fn kind_name(kind: ActionKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// What must still hold before an action runs: its policy exists and allows
/// the action, and its target exists and is the object it was planned for.
/// Outer error: the API could not be read. Inner error: the phase to end in
/// and why.
async fn preconditions<'p>(
    ctx: &Context,
    action: &HealingAction,
    policy: Option<&'p HealingPolicy>,
) -> Result<Result<(&'p HealingPolicy, Value), (Phase, String)>, LifecycleError> {
    let policy_name = &action.spec.policy_ref.name;
    let Some(policy) = policy else {
        return Ok(Err((
            Phase::Cancelled,
            format!("policy {policy_name} no longer exists"),
        )));
    };
    let kind = action.spec.action.kind;
    if !policy
        .spec
        .actions
        .iter()
        .any(|allowed| allowed.action_type == action_type(kind))
    {
        return Ok(Err((
            Phase::Failed,
            format!(
                "policy {policy_name} does not allow {} actions",
                kind_name(kind)
            ),
        )));
    }
    let target = execute::object_ref(&action.spec.target);
    let described = format!("{} {}/{}", target.kind, target.namespace, target.name);
    let api = match execute::dynamic_api(&ctx.client, &target, "read") {
        Ok((_, api)) => api,
        Err(error) => return Ok(Err((Phase::Failed, error.to_string()))),
    };
    let object = match execute::get_json(&api, &target).await {
        Ok(object) => object,
        Err(ExecuteError::NotFound { .. }) => {
            return Ok(Err((
                Phase::Cancelled,
                format!("target {described} no longer exists"),
            )));
        }
        Err(error) => return Err(LifecycleError::api(action, error)),
    };
    if let Some(why) = ctx.floor.refuses_live(&target, &object, policy) {
        return Ok(Err((Phase::Cancelled, format!("safety floor: {why}"))));
    }
    if let Some(planned) = &action.spec.target.uid {
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
        if uid != planned {
            return Ok(Err((
                Phase::Cancelled,
                format!(
                    "target {described} was replaced: its uid is {uid}, the action was planned for {planned}"
                ),
            )));
        }
    }
    Ok(Ok((policy, object)))
}

/// Pending: waits for a decision when approval is required, else approves.
async fn approval(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
) -> Result<Step, LifecycleError> {
    let now = ctx.clock.now();
    match &action.spec.approval {
        Some(decision) if decision.decision == ApprovalDecision::Rejected => {
            let why = decision
                .reason
                .as_deref()
                .map(|reason| format!(": {reason}"))
                .unwrap_or_default();
            let message = format!("rejected by {}{why}", decision.by);
            finish(
                ctx,
                action,
                status,
                Phase::Cancelled,
                message,
                Reason::Cancelled,
            )
            .await
        }
        Some(decision) => {
            set_condition(
                &mut status.conditions,
                AWAITING_APPROVAL,
                false,
                "Approved",
                &format!("approved by {}", decision.by),
                now,
            );
            approve(ctx, action, status, &decision.by).await
        }
        None if action.spec.approval_required => {
            if status.condition(AWAITING_APPROVAL).is_none() {
                let name = action.metadata.name.as_deref().unwrap_or_default();
                let namespace = action.metadata.namespace.as_deref().unwrap_or_default();
                let message =
                    format!("waiting for `kubeskippy approve {name} -n {namespace}` (or reject)");
                set_condition(
                    &mut status.conditions,
                    AWAITING_APPROVAL,
                    true,
                    "ApprovalRequired",
                    &message,
                    now,
                );
                status.message = Some(message);
                transition(ctx, action, status, Reason::AwaitingApproval).await?;
            }
            Ok(Step::wait(Phase::Pending))
        }
        None => approve(ctx, action, status, AUTOMATIC).await,
    }
}

async fn approve(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
    by: &str,
) -> Result<Step, LifecycleError> {
    status.phase = Phase::Approved;
    status.approved_by = Some(by.into());
    status.message = Some(format!("approved by {by}"));
    transition(ctx, action, status, Reason::Approved).await?;
    Ok(Step::after(Phase::Approved, Duration::ZERO))
}

/// The bounds the policy's allowed actions put on what the executors write:
/// the scale range of a scale action that admits the requested count (or
/// the first), and the largest `maxMemoryLimit` of its patch actions.
fn limits(policy: &HealingPolicy, action: &HealingAction) -> Limits {
    let ranges: Vec<(u32, u32)> = policy
        .spec
        .actions
        .iter()
        .filter_map(|allowed| allowed.scale.as_ref())
        .map(|bounds| (bounds.min_replicas, bounds.max_replicas))
        .collect();
    let wanted = action.spec.action.scale_action.as_ref().map(|s| s.replicas);
    let replicas = ranges
        .iter()
        .find(|(min, max)| wanted.is_some_and(|wanted| (*min..=*max).contains(&wanted)))
        .or(ranges.first())
        .copied();
    let max_memory_bytes = policy
        .spec
        .actions
        .iter()
        .filter_map(|allowed| allowed.patch.as_ref())
        .filter_map(|rule| {
            kubeskippy_plugin_sdk::quantity::memory_bytes(&rule.max_memory_limit).ok()
        })
        .max();
    Limits {
        replicas,
        max_memory_bytes,
    }
}

/// Approved: waits out a retry backoff, passes the gates, then runs.
async fn run(
    ctx: &Context,
    action: &HealingAction,
    policy: &HealingPolicy,
    peers: &[Arc<HealingAction>],
    mut status: HealingActionStatus,
    target_object: &Value,
) -> Result<Step, LifecycleError> {
    let now = ctx.clock.now();
    if let Some(retry_at) = parse_time(status.retry_after.as_deref())
        && retry_at > now
    {
        return Ok(Step::after(Phase::Approved, until(now, retry_at)));
    }
    let target = execute::object_ref(&action.spec.target);
    let dry_run = action.spec.dry_run;
    let disruption = if dry_run {
        None
    } else {
        let (workload, pod) = verify::resolve(&ctx.client, &target, target_object)
            .await
            .map_err(|error| LifecycleError::api(action, error))?;
        Some(gates::disruption(
            &action.spec.action,
            &workload,
            pod.as_ref(),
        ))
    };
    let blocked = gates::check(
        policy,
        action,
        peers,
        now,
        ctx.cluster_actions_per_hour,
        disruption.as_ref(),
    );
    if let Some(blocked) = blocked {
        let already = status.condition(BLOCKED).is_some_and(|condition| {
            condition.status == "True" && condition.message == blocked.reason
        });
        if !already {
            set_condition(
                &mut status.conditions,
                BLOCKED,
                true,
                "GateClosed",
                &blocked.reason,
                now,
            );
            status.message = Some(format!("blocked: {}", blocked.reason));
            transition(ctx, action, status, Reason::Blocked).await?;
        }
        let delay = blocked.until.map_or(BLOCKED_RECHECK, |at| {
            until(now, at).max(Duration::from_secs(1))
        });
        return Ok(Step::after(Phase::Approved, delay));
    }

    // Counted before anything can fail, so a step that keeps failing runs
    // out of attempts.
    status.attempts += 1;
    let original = if dry_run {
        None
    } else {
        match execute::capture_original(&ctx.client, &target, &action.spec.action).await {
            Ok(original) => original,
            Err(error) => return execution_failed(ctx, action, status, error).await,
        }
    };
    let baseline = if dry_run {
        None
    } else {
        match verify::baseline(&ctx.client, action, &target, target_object, now).await {
            Ok(baseline) => Some(baseline),
            Err(error) => return execution_failed(ctx, action, status, error).await,
        }
    };
    if status.condition(BLOCKED).is_some() {
        set_condition(
            &mut status.conditions,
            BLOCKED,
            false,
            "GatesPassed",
            "every gate passed",
            now,
        );
    }
    status.phase = Phase::InProgress;
    status.started_at = Some(stamp(now));
    status.retry_after = None;
    status.original = original;
    status.verification = baseline;
    status.message = Some(format!(
        "attempt {} of {}: running {} on {}",
        status.attempts,
        action.spec.retry_policy.max_attempts,
        kind_name(action.spec.action.kind),
        execute::describe(&target)
    ));
    let mut action = transition(ctx, action, status.clone(), Reason::Started).await?;
    // The guarded InProgress write made this call the one running the
    // action, and only the lifecycle writes status. Guarding the outcome's
    // write too would turn an unrelated edit (a label) made meanwhile into a
    // conflict, leave the action InProgress, and have the next call roll
    // back a change that worked.
    action.metadata.resource_version = None;

    let mode = if dry_run { DryRun::Server } else { DryRun::Off };
    let outcome = execute::execute_spec(
        &ctx.client,
        &target,
        &action.spec.action,
        mode,
        &limits(policy, &action),
        ctx.clock.as_ref(),
    )
    .await;
    match outcome {
        Ok(outcome) if dry_run => {
            status.dry_run_result = outcome.dry_run_result;
            finish(
                ctx,
                &action,
                status,
                Phase::Succeeded,
                outcome.message,
                Reason::DryRunCompleted,
            )
            .await
        }
        Ok(outcome) => {
            let window = verification_window(Some(policy));
            status.phase = Phase::Verifying;
            status.message = Some(format!(
                "{}; verifying for {}",
                outcome.message,
                verify::humanize(window)
            ));
            transition(ctx, &action, status, Reason::Verifying).await?;
            Ok(Step::after(
                Phase::Verifying,
                VERIFY_POLL.min(window.to_std().unwrap_or(VERIFY_POLL)),
            ))
        }
        Err(error) => execution_failed(ctx, &action, status, error).await,
    }
}

/// API errors are retried with exponential backoff until the retry policy's
/// attempts are used up; a refusal, an unsupported or invalid action, or a
/// vanished target fail at once.
async fn execution_failed(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
    error: ExecuteError,
) -> Result<Step, LifecycleError> {
    let retry = &action.spec.retry_policy;
    let attempts = status.attempts.max(1);
    // Every executor makes its change in one write, so a failed execution
    // changed nothing and there is nothing to roll back.
    status.original = None;
    status.verification = None;
    if !matches!(error, ExecuteError::Api { .. }) {
        return fail(ctx, action, status, error.to_string()).await;
    }
    if attempts >= retry.max_attempts {
        let message = format!("gave up after {attempts} attempt(s): {error}");
        return fail(ctx, action, status, message).await;
    }
    let now = ctx.clock.now();
    let factor = 2u64.saturating_pow(attempts - 1);
    let backoff = Duration::from_secs(u64::from(retry.backoff_seconds).saturating_mul(factor));
    let retry_at = now + chrono::Duration::from_std(backoff).unwrap_or(chrono::Duration::MAX);
    status.phase = Phase::Approved;
    status.retry_after = Some(stamp(retry_at));
    status.message = Some(format!(
        "attempt {attempts} of {} failed: {error}; retrying at {}",
        retry.max_attempts,
        stamp(retry_at)
    ));
    transition(ctx, action, status, Reason::Retrying).await?;
    Ok(Step::after(Phase::Approved, backoff))
}

fn verification_window(policy: Option<&HealingPolicy>) -> chrono::Duration {
    let defaults = SafetyRules::default();
    let text = policy.map_or(&defaults.verification_window, |policy| {
        &policy.spec.safety.verification_window
    });
    let window = crate::config::parse_duration(text)
        .or_else(|_| crate::config::parse_duration(&defaults.verification_window))
        .expect("the default window parses");
    chrono::Duration::from_std(window).expect("windows are at most a day")
}

/// Verifying: watches the pods until the window closes or something fails.
async fn verifying(
    ctx: &Context,
    action: &HealingAction,
    policy: Option<&HealingPolicy>,
    status: HealingActionStatus,
) -> Result<Step, LifecycleError> {
    let now = ctx.clock.now();
    let Some(baseline) = status.verification.clone() else {
        let message = "nothing recorded to verify against".to_string();
        return fail(ctx, action, status, message).await;
    };
    let Some(workload) = &baseline.workload else {
        let message = format!(
            "{}; nothing recreates a bare pod, so there is nothing to verify",
            status.message.as_deref().unwrap_or("done")
        );
        return finish(
            ctx,
            action,
            status,
            Phase::Succeeded,
            message,
            Reason::Succeeded,
        )
        .await;
    };
    let namespace = &action.spec.target.namespace;
    let pods = verify::pods_of(&ctx.client, namespace, workload)
        .await
        .map_err(|error| LifecycleError::api(action, error))?;
    let window = verification_window(policy);
    match verify::judge(&baseline, &pods, now, window) {
        verify::Verdict::Passed(message) => {
            finish(
                ctx,
                action,
                status,
                Phase::Succeeded,
                message,
                Reason::Succeeded,
            )
            .await
        }
        verify::Verdict::Failed(message) => {
            fail(
                ctx,
                action,
                status,
                format!("verification failed: {message}"),
            )
            .await
        }
        verify::Verdict::Waiting => {
            let since = parse_time(Some(&baseline.since)).unwrap_or(now);
            let left = until(now, since + window);
            Ok(Step::after(Phase::Verifying, left.min(VERIFY_POLL)))
        }
    }
}

/// InProgress at the start of a reconcile: the daemon stopped between saving
/// InProgress and saving the outcome, so the change may or may not be in the
/// cluster. A scale or patch is rolled back from the saved original (by the
/// next call); anything else can only be reported.
async fn interrupted(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
) -> Result<Step, LifecycleError> {
    let message = if action.spec.dry_run {
        "interrupted during a dry run; nothing was changed".to_string()
    } else if execute::reversible(&action.spec.action) && status.original.is_some() {
        "interrupted; the change may or may not have been applied, so it is rolled back from the saved original".to_string()
    } else {
        "interrupted; the change may or may not have been applied".to_string()
    };
    set_condition(
        &mut status.conditions,
        INTERRUPTED,
        true,
        "DaemonRestarted",
        &message,
        ctx.clock.now(),
    );
    fail(ctx, action, status, message).await
}

/// Failed with a rollback pending: restores the saved original.
async fn rollback(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
) -> Result<Step, LifecycleError> {
    let now = ctx.clock.now();
    let failure = status.message.clone().unwrap_or_default();
    let target = execute::object_ref(&action.spec.target);
    let result = match &status.original {
        Some(original) => {
            execute::rollback_spec(&ctx.client, &target, &action.spec.action, original).await
        }
        None => Err(ExecuteError::InvalidOriginal {
            target: execute::describe(&target),
            message: "no original was saved".into(),
        }),
    };
    match result {
        Ok(outcome) => {
            set_condition(
                &mut status.conditions,
                ROLLBACK_PENDING,
                false,
                "RolledBack",
                &outcome.message,
                now,
            );
            status.phase = Phase::RolledBack;
            status.message = Some(format!("{failure}; rolled back: {}", outcome.message));
            transition(ctx, action, status, Reason::RolledBack).await?;
            Ok(Step::wait(Phase::RolledBack))
        }
        Err(error) => {
            let why = error.to_string();
            set_condition(
                &mut status.conditions,
                ROLLBACK_PENDING,
                false,
                "RollbackFailed",
                &why,
                now,
            );
            status.message = Some(format!("{failure}; rollback failed: {why}"));
            transition(ctx, action, status, Reason::Failed).await?;
            Ok(Step::wait(Phase::Failed))
        }
    }
}
