//! The HealingAction lifecycle: `Pending → Approved → InProgress → Verifying
//! → Succeeded | Failed | RolledBack | Cancelled`.
//!
//! [`reconcile`] makes one transition per call and writes it to the
//! HealingAction's `status` subresource before doing anything the transition
//! leads to: an action is `InProgress` in the API before its change is
//! written, and `Failed` with a pending rollback before the rollback runs. A
//! daemon that dies at any point finds on restart exactly how far it got.
//! Every status write carries the resourceVersion it was computed from, so a
//! stale cache, a second replica or a deposed leader cannot make the same
//! transition twice, and every write checks this replica's leadership fence.
//!
//! The spec only requests. Before anything runs, the action must carry the
//! daemon's signature (`provenance`), act in its own namespace, name the
//! exact policy that governs it, and ask for a change the host types and
//! bounds (`change`); mode, dry-run and approval come from that policy at
//! this moment and can only tighten what the plan said.

pub(crate) mod verify;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::core::change::{Bounds, Change};
use crate::core::crd::healing_action::{
    Approval, ApprovalDecision, HealingAction, HealingActionStatus, Observed, Phase, PolicyKind,
};
use crate::core::crd::policy::{HealingPolicy, Mode, SafetyRules};
use crate::core::crd::set_condition;
use crate::core::gates;
use crate::core::provenance::{SigningKey, spec_digest};
use crate::core::safety::SafetyFloor;
use crate::core::text::{parse_time, stamp};
use crate::core::untrusted::{MAX_MESSAGE, MAX_NAME, clean};
use crate::operator::events::{EventRecorder, Reason};
use crate::operator::execute::{self, Clock, DryRun, ExecuteError, SystemClock, Target};
use crate::operator::leader::Fence;
use crate::telemetry::metrics::metrics;

/// Condition types the lifecycle writes.
pub const BLOCKED: &str = "Blocked";
pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
pub const INTERRUPTED: &str = "Interrupted";
/// True while a failed scale or patch still has to be rolled back.
pub const ROLLBACK_PENDING: &str = "RollbackPending";
/// A rejection recorded after the change was made: it cannot stop what ran.
pub const DECIDED_LATE: &str = "DecidedLate";

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
    /// The client evictions go through. The daemon's does not retry a 429:
    /// the Eviction API answers 429 when a PodDisruptionBudget forbids the
    /// disruption, a verdict, and kube's default retry of it held the
    /// reconcile for minutes. Every other call keeps kube's retries.
    pub evictions: kube::Client,
    pub clock: Arc<dyn Clock>,
    pub events: EventRecorder,
    /// This replica's name, recorded on events.
    pub identity: String,
    /// Actions per hour across every policy and namespace.
    pub cluster_actions_per_hour: u32,
    /// Actions per hour in one namespace, across its policies: one tenant
    /// cannot spend the whole cluster's budget.
    pub namespace_actions_per_hour: u32,
    /// Checked again against the live target before anything runs.
    pub floor: SafetyFloor,
    /// Verifies that an action is the daemon's own, and seals rollback records.
    pub key: SigningKey,
    /// Closed when this replica may no longer write.
    pub fence: Fence,
}

impl Context {
    pub fn new(
        client: kube::Client,
        identity: &str,
        key: SigningKey,
        fence: Fence,
        budgets: (u32, u32),
    ) -> Context {
        Context {
            events: EventRecorder::new(client.clone(), identity),
            evictions: client.clone(),
            client,
            clock: Arc::new(SystemClock),
            identity: identity.into(),
            cluster_actions_per_hour: budgets.0,
            namespace_actions_per_hour: budgets.1,
            floor: SafetyFloor::default(),
            key,
            fence,
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
    /// This replica's leadership fence closed: it writes nothing more.
    #[error("HealingAction {action}: not written, this replica no longer holds the leader lease")]
    NotLeader { action: String },
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

fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

fn condition_on(status: &HealingActionStatus, kind: &str) -> bool {
    status
        .condition(kind)
        .is_some_and(|condition| condition.status == "True")
}

fn fenced(ctx: &Context, action: &HealingAction) -> Result<(), LifecycleError> {
    if ctx.fence.holds() {
        Ok(())
    } else {
        Err(LifecycleError::NotLeader {
            action: action_name(action),
        })
    }
}

/// Runs a write (an execution, a rollback, a status write) only while the
/// fence holds ([`Fence::bound`](crate::operator::leader::Fence::bound)).
async fn within_fence<T>(
    ctx: &Context,
    action: &HealingAction,
    write: impl Future<Output = T>,
) -> Result<T, LifecycleError> {
    fenced(ctx, action)?;
    ctx.fence
        .bound(write)
        .await
        .ok_or_else(|| LifecycleError::NotLeader {
            action: action_name(action),
        })
}

/// Replaces the status, sealed, under the resourceVersion the action was
/// read at.
async fn write(
    ctx: &Context,
    action: &HealingAction,
    status: &HealingActionStatus,
) -> Result<HealingAction, LifecycleError> {
    let mut status = status.clone();
    ctx.key.seal_status(action, &mut status);
    // The whole status is replaced, under the resourceVersion it was
    // computed from: whatever else a status held (written by someone else,
    // or unreadable) must not survive next to what the daemon sealed.
    let mut updated = action.clone();
    updated.status = Some(status);
    let api: Api<HealingAction> = Api::namespaced(
        ctx.client.clone(),
        action.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let name = action.metadata.name.as_deref().unwrap_or_default();
    let params = PostParams {
        field_manager: Some(execute::FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match within_fence(ctx, action, api.replace_status(name, &params, &updated)).await? {
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
    record_phase_change(action, &status);
    let note = status.message.as_deref().unwrap_or_default();
    ctx.events.transition(&updated, reason, note).await;
    Ok(updated)
}

/// Logs the phase `status`, just written over `action`'s, moved it to (one
/// line per change, in the action's span, so an incident's path ends with its
/// outcome), and counts an action it finishes.
fn record_phase_change(action: &HealingAction, status: &HealingActionStatus) {
    let before = action.status.as_ref().map(|status| status.phase);
    if before != Some(status.phase) {
        tracing::info!(
            from = ?before.unwrap_or_default(),
            to = ?status.phase,
            note = status.message.as_deref().unwrap_or_default(),
            "HealingAction phase changed"
        );
    }
    let was_done = action.status.as_ref().is_some_and(done);
    if done(status) && !was_done {
        let kind = action.spec.action.kind.to_string();
        metrics().healing_action_finished(&kind, &format!("{:?}", status.phase));
        if status.phase == Phase::RolledBack {
            metrics().rollback(&kind);
        }
    }
}

/// In a final phase with nothing left to do: a Failed action whose rollback
/// is pending is not done yet.
fn done(status: &HealingActionStatus) -> bool {
    matches!(
        status.phase,
        Phase::Succeeded | Phase::Failed | Phase::RolledBack | Phase::Cancelled
    ) && !condition_on(status, ROLLBACK_PENDING)
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

/// Moves to Failed; a change with a saved rollback record is marked for
/// rollback, which the next call performs.
async fn fail(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
    message: String,
) -> Result<Step, LifecycleError> {
    let roll_back = status.rollback.is_some();
    if roll_back {
        set_condition(
            &mut status.conditions,
            ROLLBACK_PENDING,
            true,
            "Failed",
            "restoring the fields the change wrote, from status.rollback",
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
/// `policy` is the policy the action's `policyRef` names (kind, namespace
/// and name; `None` when there is none); `peers` is every HealingAction the
/// daemon planned itself, this one included, from which rate limits,
/// concurrency and the circuit breaker are counted.
pub async fn reconcile(
    ctx: &Context,
    action: &HealingAction,
    policy: Option<&HealingPolicy>,
    peers: &[Arc<HealingAction>],
) -> Result<Step, LifecycleError> {
    let status = action.status.clone().unwrap_or_default();
    let finished = matches!(
        status.phase,
        Phase::Succeeded | Phase::Failed | Phase::RolledBack | Phase::Cancelled
    );
    if finished && !(status.phase == Phase::Failed && condition_on(&status, ROLLBACK_PENDING)) {
        return Ok(Step::wait(status.phase));
    }
    if let Err(untrusted) = ctx
        .key
        .verify(action)
        .and_then(|()| ctx.key.check_status(action))
    {
        return refuse_untrusted(ctx, action, status, untrusted.to_string()).await;
    }
    match status.phase {
        Phase::Failed => rollback(ctx, action, status).await,
        Phase::InProgress => interrupted(ctx, action, status).await,
        Phase::Verifying => verifying(ctx, action, policy, status).await,
        Phase::Pending | Phase::Approved => {
            let checked = match preconditions(ctx, action, policy, &status).await? {
                Ok(checked) => checked,
                Err((phase, message)) if phase == Phase::Cancelled => {
                    return finish(ctx, action, status, phase, message, Reason::Cancelled).await;
                }
                Err((_, message)) => return fail(ctx, action, status, message).await,
            };
            if status.phase == Phase::Pending {
                approval(ctx, action, status, &checked).await
            } else {
                run(ctx, action, peers, status, &checked).await
            }
        }
        Phase::Succeeded | Phase::RolledBack | Phase::Cancelled => Ok(Step::wait(status.phase)),
    }
}

/// An action the daemon did not sign, or one changed since: nothing in it
/// is acted on. Its event goes on the action alone, never on the object it
/// names, which may be in a namespace its author cannot write to.
async fn refuse_untrusted(
    ctx: &Context,
    action: &HealingAction,
    status: HealingActionStatus,
    why: String,
) -> Result<Step, LifecycleError> {
    let started = matches!(
        status.phase,
        Phase::InProgress | Phase::Verifying | Phase::Failed
    );
    let (phase, message) = if started {
        // Signed when it started, changed since: the target it names now may
        // not be the one that was changed, so it is neither verified nor
        // rolled back.
        (
            Phase::Failed,
            format!("refused to go on: {why}; nothing is verified or rolled back"),
        )
    } else {
        (Phase::Cancelled, format!("refused: {why}"))
    };
    let now = ctx.clock.now();
    // Nothing of a status someone else wrote is kept, or it would be sealed
    // with the daemon's key: a start time of theirs would take the action
    // out of the hour's limits, a rollback record of theirs would be
    // restored. Only the attempts stay (the CRD never lets them decrease),
    // and a start time, counted from now.
    let started_at = (started || status.started_at.is_some()).then(|| {
        let written = parse_time(status.started_at.as_deref()).unwrap_or(now);
        stamp(written.max(now))
    });
    let refused = HealingActionStatus {
        phase,
        attempts: status.attempts,
        started_at,
        completed_at: Some(stamp(now)),
        message: Some(message.clone()),
        dry_run: action.spec.dry_run,
        ..HealingActionStatus::default()
    };
    let updated = write(ctx, action, &refused).await?;
    record_phase_change(action, &refused);
    ctx.events.refused(&updated, &message).await;
    Ok(Step::wait(phase))
}

/// What the checks before running found: the governing policy, the live
/// target, and the typed change within its bounds.
struct Checked<'p> {
    policy: &'p HealingPolicy,
    target_object: Value,
    target: Target,
    change: Change,
}

/// Whether the action waits for a human: the plan said so, or the policy
/// says so now.
fn needs_approval(action: &HealingAction, policy: &HealingPolicy) -> bool {
    action.spec.approval_required
        || policy.spec.mode == Mode::Manual
        || policy.spec.safety.require_approval
}

/// Whether the change runs with server-side dry-run: the plan said so, or the
/// policy says so now.
fn dry_run(action: &HealingAction, policy: &HealingPolicy) -> bool {
    action.spec.dry_run || policy.spec.mode == Mode::Dryrun
}

type Refusal = (Phase, String);

/// What must still hold before an action runs, checked on every call while
/// it is Pending or Approved. Outer error: the API could not be read. Inner
/// error: the phase to end in and why.
async fn preconditions<'p>(
    ctx: &Context,
    action: &HealingAction,
    policy: Option<&'p HealingPolicy>,
    status: &HealingActionStatus,
) -> Result<Result<Checked<'p>, Refusal>, LifecycleError> {
    let cancel = |message: String| Ok(Err((Phase::Cancelled, message)));
    let refuse = |message: String| Ok(Err((Phase::Failed, message)));
    let spec = &action.spec;
    let namespace = action.metadata.namespace.as_deref().unwrap_or_default();
    if spec.target.namespace != namespace {
        return cancel(format!(
            "refused: a HealingAction acts only on objects in its own namespace ({namespace}), and this one targets {} {}/{}",
            spec.target.kind, spec.target.namespace, spec.target.name
        ));
    }
    let reference = &spec.policy_ref;
    let Some(policy) = policy.filter(|policy| reference.names(policy)) else {
        return cancel(format!("{} no longer exists", reference.describe()));
    };
    if reference.uid.is_none() || reference.uid != policy.metadata.uid {
        return cancel(format!(
            "{} was replaced since it planned this action",
            reference.describe()
        ));
    }
    match reference.kind {
        PolicyKind::HealingPolicy if reference.namespace.as_deref() != Some(namespace) => {
            return cancel(format!(
                "refused: {} governs only its own namespace, not {namespace}",
                reference.describe()
            ));
        }
        PolicyKind::ClusterHealingPolicy if !policy.covers_namespace(namespace) => {
            return cancel(format!(
                "{} no longer covers namespace {namespace}",
                reference.describe()
            ));
        }
        _ => {}
    }
    if let Err(why) = policy.validate() {
        return refuse(format!("{} is invalid: {why}", reference.describe()));
    }
    if policy.spec.mode == Mode::Monitor {
        return cancel(format!(
            "{} is in monitor mode: it records incidents and runs nothing",
            reference.describe()
        ));
    }
    let now = ctx.clock.now();
    let Some(planned_at) = parse_time(spec.planned_at.as_deref()) else {
        return cancel("refused: the plan carries no valid plannedAt".into());
    };
    let max_age =
        chrono::Duration::from_std(ctx.floor.max_plan_age()).unwrap_or(chrono::Duration::MAX);
    if status.attempts == 0 && now - planned_at > max_age {
        return cancel(format!(
            "planned at {}, longer ago than safety.maxPlanAge ({}): its evidence is stale",
            stamp(planned_at),
            verify::humanize(max_age)
        ));
    }
    if !(0.0..=1.0).contains(&spec.confidence) {
        return refuse(format!(
            "refused: confidence {} is outside 0..1",
            spec.confidence
        ));
    }
    let kind = spec.action.kind;
    if !policy
        .spec
        .actions
        .iter()
        .any(|allowed| allowed.action_type == kind)
    {
        return refuse(format!(
            "{} does not allow {} actions",
            reference.describe(),
            kind
        ));
    }
    let change = match Change::of_action(&spec.action, &spec.target.kind, ctx.floor.patch_rules()) {
        Ok(change) => change,
        Err(why) => return refuse(format!("refused: {why}")),
    };
    let bounds = match bounds(policy, action, ctx.floor.bounds()) {
        Ok(bounds) => bounds,
        Err(why) => return refuse(why),
    };
    if let Some(why) = change.out_of_bounds(&bounds) {
        return refuse(format!("refused: {why}"));
    }
    let reference = spec.target.object_ref();
    let described = execute::describe(&reference);
    let Some(uid) = spec.target.uid.as_deref() else {
        return cancel(format!(
            "refused: planned without the uid of {described}, so it cannot be told apart from an object recreated under that name"
        ));
    };
    let api = match execute::dynamic_api(&ctx.client, &reference, "read") {
        Ok((_, api)) => api,
        Err(error) => return refuse(error.to_string()),
    };
    let object = match execute::get_json(&api, &reference).await {
        Ok(object) => object,
        Err(ExecuteError::NotFound { .. }) => {
            return cancel(format!("target {described} no longer exists"));
        }
        Err(error) => return Err(LifecycleError::api(action, error)),
    };
    if let Some(why) = ctx.floor.refuses_live(&reference, &object, policy) {
        return cancel(format!("safety floor: {why}"));
    }
    if let Some(why) = refuses_owner(ctx, action, &reference, &object, policy).await? {
        return cancel(format!("safety floor: {why}"));
    }
    let live_uid = object["metadata"]["uid"].as_str().unwrap_or_default();
    if live_uid != uid {
        return cancel(format!(
            "target {described} was replaced: its uid is {live_uid}, the action was planned for {uid}"
        ));
    }
    if let Change::Resources(resources) = &change
        && let Err(why) = resources.record(&object, &spec.target.kind)
    {
        return refuse(format!("refused: {why}"));
    }
    if let Some(why) = spec
        .observed
        .as_ref()
        .and_then(|observed| stale(observed, &object, &spec.target.kind))
    {
        return cancel(format!(
            "stale: {why}; the next evaluation plans again from what is there now"
        ));
    }
    Ok(Ok(Checked {
        policy,
        target: Target::of(&spec.target, uid),
        target_object: object,
        change,
    }))
}

/// A pod's workload, checked as the pod is: evicting the pods of a workload
/// protected since the plan was made would act on it all the same.
async fn refuses_owner(
    ctx: &Context,
    action: &HealingAction,
    target: &crate::core::wit::ObjectRef,
    object: &Value,
    policy: &HealingPolicy,
) -> Result<Option<String>, LifecycleError> {
    if target.kind != "Pod" {
        return Ok(None);
    }
    let (workload, _) = verify::resolve(&ctx.client, target, object)
        .await
        .map_err(|error| LifecycleError::api(action, error))?;
    let workload_ref = crate::core::wit::ObjectRef {
        kind: workload["kind"].as_str().unwrap_or_default().into(),
        namespace: target.namespace.clone(),
        name: workload["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .into(),
    };
    if workload_ref.kind == "Pod" {
        return Ok(None);
    }
    Ok(ctx.floor.refuses_live(&workload_ref, &workload, policy))
}

/// How the live object differs from what the plan was made against, if it
/// does: a scale planned from 2 replicas must not run on 4 (it would scale
/// down), nor a memory raise on a limit someone has raised further since.
fn stale(observed: &Observed, object: &Value, kind: &str) -> Option<String> {
    use crate::core::crd::healing_action::{Field, Resource, Section};
    if let Some(planned) = observed.replicas {
        // An unset count is one, as the API server defaults it.
        let live = object["spec"]["replicas"].as_u64().unwrap_or(1);
        if live != u64::from(planned) {
            return Some(format!(
                "the plan was made for {planned} replicas and {kind} has {live} now"
            ));
        }
    }
    for container in &observed.containers {
        for (section, amounts) in [
            (Section::Limits, &container.limits),
            (Section::Requests, &container.requests),
        ] {
            for (resource, planned) in [
                (Resource::Cpu, amounts.cpu.as_deref()),
                (Resource::Memory, amounts.memory.as_deref()),
            ] {
                let field = Field::Resource {
                    container: container.name.clone(),
                    section,
                    resource,
                };
                let live = field.read(object, kind);
                if !field.same(live.as_deref(), planned) {
                    return Some(format!(
                        "the plan was made for {} {} and it is {} now",
                        field.describe(),
                        planned.unwrap_or("unset"),
                        live.as_deref().unwrap_or("unset")
                    ));
                }
            }
        }
    }
    None
}

/// The approval recorded on the action, if it is for this very spec; a
/// decision given for other content counts for nothing.
fn valid_decision(
    action: &HealingAction,
) -> Result<Option<&crate::core::crd::healing_action::Approval>, String> {
    match &action.spec.approval {
        None => Ok(None),
        Some(decision) if decision.spec_digest == spec_digest(&action.spec) => Ok(Some(decision)),
        Some(decision) => Err(format!(
            "the decision by {} was given for other content (spec digest {}, this spec is {})",
            clean(&decision.by, MAX_NAME),
            clean(&decision.spec_digest, MAX_NAME),
            spec_digest(&action.spec)
        )),
    }
}

/// Pending: waits for a decision when approval is required, else approves.
async fn approval(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
    checked: &Checked<'_>,
) -> Result<Step, LifecycleError> {
    let now = ctx.clock.now();
    let decision = match valid_decision(action) {
        Ok(decision) => decision,
        Err(why) => {
            let message = format!("approval void: {why}");
            return finish(
                ctx,
                action,
                status,
                Phase::Cancelled,
                message,
                Reason::Cancelled,
            )
            .await;
        }
    };
    // Whoever may patch the action wrote these: they reach its status and
    // Events only as any cluster text does.
    let by = decision.map(|decision| clean(&decision.by, MAX_NAME));
    match decision.zip(by) {
        Some((decision, by)) if decision.decision == ApprovalDecision::Rejected => {
            let why = decision
                .reason
                .as_deref()
                .map(|reason| format!(": {}", clean(reason, MAX_MESSAGE)))
                .unwrap_or_default();
            let message = format!("rejected by {by}{why}");
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
        Some((_, by)) => {
            set_condition(
                &mut status.conditions,
                AWAITING_APPROVAL,
                false,
                "Approved",
                &format!("approved by {by}"),
                now,
            );
            approve(ctx, action, status, &by).await
        }
        None if needs_approval(action, checked.policy) => await_approval(ctx, action, status).await,
        None => approve(ctx, action, status, AUTOMATIC).await,
    }
}

async fn await_approval(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
) -> Result<Step, LifecycleError> {
    if status.phase != Phase::Pending || !condition_on(&status, AWAITING_APPROVAL) {
        let name = action.metadata.name.as_deref().unwrap_or_default();
        let namespace = action.metadata.namespace.as_deref().unwrap_or_default();
        let message = format!("waiting for `kubeskippy approve {name} -n {namespace}` (or reject)");
        set_condition(
            &mut status.conditions,
            AWAITING_APPROVAL,
            true,
            "ApprovalRequired",
            &message,
            ctx.clock.now(),
        );
        status.phase = Phase::Pending;
        status.approved_by = None;
        status.message = Some(message);
        transition(ctx, action, status, Reason::AwaitingApproval).await?;
        metrics().gate_held("approval");
    }
    Ok(Step::wait(Phase::Pending))
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

/// The bounds a change must keep: the host's, tightened by the policy's
/// allowed actions (the scale range admitting the requested count, or the
/// first; the largest `maxMemoryLimit` of its patch actions).
fn bounds(policy: &HealingPolicy, action: &HealingAction, host: Bounds) -> Result<Bounds, String> {
    let mut bounds = host;
    let ranges: Vec<(u32, u32)> = policy
        .spec
        .actions
        .iter()
        .filter_map(|allowed| allowed.scale.as_ref())
        .map(|scale| (scale.min_replicas.max(1), scale.max_replicas))
        .collect();
    let wanted = action.spec.action.scale_action.as_ref().map(|s| s.replicas);
    if let Some((min, max)) = ranges
        .iter()
        .find(|(min, max)| wanted.is_some_and(|wanted| (*min..=*max).contains(&wanted)))
        .or(ranges.first())
    {
        bounds.min_replicas = bounds.min_replicas.max(*min);
        bounds.max_replicas = bounds.max_replicas.min(*max);
    }
    let mut memory: Option<u64> = None;
    for (index, allowed) in policy.spec.actions.iter().enumerate() {
        if let Some(rule) = &allowed.patch {
            let bytes = kubeskippy_plugin_sdk::quantity::memory_bytes(&rule.max_memory_limit)
                .map_err(|why| {
                    format!(
                        "policy {}: spec.actions[{index}].patch.maxMemoryLimit: {why}",
                        policy.name()
                    )
                })?;
            memory = Some(memory.map_or(bytes, |largest| largest.max(bytes)));
        }
    }
    if let Some(memory) = memory {
        bounds.max_memory_bytes = bounds.max_memory_bytes.min(memory);
    }
    Ok(bounds)
}

/// Approved: checks the approval again (the policy may want one now), waits
/// out a retry backoff, passes the gates, then runs.
async fn run(
    ctx: &Context,
    action: &HealingAction,
    peers: &[Arc<HealingAction>],
    mut status: HealingActionStatus,
    checked: &Checked<'_>,
) -> Result<Step, LifecycleError> {
    let now = ctx.clock.now();
    let policy = checked.policy;
    let decision = valid_decision(action);
    // A rejection, or a decision for other content, recorded after the
    // action was approved (while it waits out a retry, say) ends it as it
    // would have while Pending, even where the policy needs no approval.
    if matches!(
        &decision,
        Err(_)
            | Ok(Some(Approval {
                decision: ApprovalDecision::Rejected,
                ..
            }))
    ) {
        return approval(ctx, action, status, checked).await;
    }
    let approved =
        matches!(decision, Ok(Some(decision)) if decision.decision == ApprovalDecision::Approved);
    if needs_approval(action, policy) && !approved {
        return await_approval(ctx, action, status).await;
    }
    if let Some(retry_at) = parse_time(status.retry_after.as_deref())
        && retry_at > now
    {
        return Ok(Step::after(Phase::Approved, until(now, retry_at)));
    }
    let target = &checked.target;
    let dry_run = dry_run(action, policy);
    let disruption = if dry_run {
        None
    } else {
        let (workload, pod) = verify::resolve(&ctx.client, &target.object, &checked.target_object)
            .await
            .map_err(|error| LifecycleError::api(action, error))?;
        Some(gates::disruption(
            &action.spec.action,
            &workload,
            pod.as_ref(),
        ))
    };
    let budgets = gates::Budgets {
        cluster_per_hour: ctx.cluster_actions_per_hour,
        namespace_per_hour: ctx.namespace_actions_per_hour,
    };
    let blocked = gates::check(
        policy,
        action,
        peers,
        now,
        budgets,
        dry_run,
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
            metrics().gate_held(blocked.gate.as_str());
        }
        let delay = blocked.until.map_or(BLOCKED_RECHECK, |at| {
            until(now, at).max(Duration::from_secs(1))
        });
        return Ok(Step::after(Phase::Approved, delay));
    }

    // Counted before anything can fail, so a step that keeps failing runs
    // out of attempts.
    status.attempts += 1;
    let recorded = if dry_run {
        None
    } else {
        match execute::capture(&ctx.client, target, &checked.change).await {
            Ok(fields) => fields,
            Err(error) => return execution_failed(ctx, action, status, error).await,
        }
    };
    let baseline = if dry_run {
        None
    } else {
        match verify::baseline(
            &ctx.client,
            action,
            &target.object,
            &checked.target_object,
            now,
        )
        .await
        {
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
    status.dry_run = dry_run;
    status.started_at = Some(stamp(now));
    status.retry_after = None;
    status.rollback = recorded;
    status.verification = baseline;
    status.message = Some(format!(
        "attempt {} of {}: running {} on {}",
        status.attempts,
        action.spec.retry_policy.max_attempts,
        action.spec.action.kind,
        execute::describe(&target.object)
    ));
    let action = transition(ctx, action, status.clone(), Reason::Started).await?;

    let mode = if dry_run { DryRun::Server } else { DryRun::Off };
    let client = match checked.change {
        Change::Evict => &ctx.evictions,
        _ => &ctx.client,
    };
    let outcome = within_fence(
        ctx,
        &action,
        execute::execute(
            client,
            target,
            &checked.change,
            status.rollback.as_deref(),
            mode,
            ctx.clock.as_ref(),
        ),
    )
    .await?;
    match outcome {
        Ok(outcome) if dry_run => {
            status.dry_run_result = outcome.dry_run_result;
            status.phase = Phase::Succeeded;
            status.message = Some(outcome.message);
            status.completed_at = Some(stamp(ctx.clock.now()));
            write_outcome(ctx, &action, status, Reason::DryRunCompleted).await?;
            Ok(Step::wait(Phase::Succeeded))
        }
        Ok(outcome) => {
            let window = verification_window(Some(policy));
            status.phase = Phase::Verifying;
            status.message = Some(format!(
                "{}; verifying for {}",
                outcome.message,
                verify::humanize(window)
            ));
            write_outcome(ctx, &action, status, Reason::Verifying).await?;
            Ok(Step::after(
                Phase::Verifying,
                VERIFY_POLL.min(window.to_std().unwrap_or(VERIFY_POLL)),
            ))
        }
        Err(error) => execution_failed(ctx, &action, status, error).await,
    }
}

/// The write that follows an execution. It is guarded by the sealed
/// InProgress status it follows, not by a resourceVersion: a JSON patch that
/// tests the uid and the seal, then replaces the status. The seal covers
/// phase, attempts, start and rollback record, so the test holds exactly
/// while the action is still this attempt's; edits of anything else (a
/// label, a decision recorded meanwhile), however many, cannot make the
/// outcome miss. A new leader that found the action interrupted wrote
/// another status, and this late write does not land.
async fn write_outcome(
    ctx: &Context,
    in_progress: &HealingAction,
    status: HealingActionStatus,
    reason: Reason,
) -> Result<HealingAction, LifecycleError> {
    let Some(seal) = in_progress
        .status
        .as_ref()
        .and_then(|status| status.seal.clone())
    else {
        // Every InProgress status this daemon writes is sealed; without one
        // the resourceVersion is all there is to guard by.
        return transition(ctx, in_progress, status, reason).await;
    };
    let sealed_over = in_progress.status.as_ref().map(|status| {
        (
            status.phase,
            status.attempts,
            status.started_at.clone(),
            status.seal.clone(),
        )
    });
    let mut sealed = status;
    ctx.key.seal_status(in_progress, &mut sealed);
    // The seal's fields are tested one by one too: someone with status
    // rights could change them and keep the seal's text.
    let (phase, attempts, started_at, _) = sealed_over.clone().unwrap_or_default();
    let test = |path: &str, value: Value| json!({ "op": "test", "path": path, "value": value });
    let mut operations = vec![
        test("/metadata/uid", json!(in_progress.metadata.uid)),
        test("/status/seal", json!(seal)),
        test("/status/phase", json!(phase)),
        test("/status/attempts", json!(attempts)),
    ];
    if let Some(started_at) = started_at {
        operations.push(test("/status/startedAt", json!(started_at)));
    }
    operations.push(json!({ "op": "replace", "path": "/status", "value": sealed }));
    let operations: json_patch::Patch =
        serde_json::from_value(Value::Array(operations)).expect("the operations form a JSON patch");
    let api: Api<HealingAction> = Api::namespaced(
        ctx.client.clone(),
        in_progress
            .metadata
            .namespace
            .as_deref()
            .unwrap_or_default(),
    );
    let name = in_progress.metadata.name.as_deref().unwrap_or_default();
    let params = PatchParams {
        field_manager: Some(execute::FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match within_fence(
        ctx,
        in_progress,
        api.patch_status(name, &params, &Patch::<()>::Json(operations)),
    )
    .await?
    {
        Ok(updated) => {
            record_phase_change(in_progress, &sealed);
            let note = sealed.message.as_deref().unwrap_or_default();
            ctx.events.transition(&updated, reason, note).await;
            Ok(updated)
        }
        // A failed test is a 422, as is a status the CRD refuses: which one,
        // the action as it is now tells.
        Err(kube::Error::Api(refusal)) if refusal.code == 422 => {
            let latest = api
                .get_opt(name)
                .await
                .map_err(|error| LifecycleError::api(in_progress, error))?;
            let still_this_attempt = latest.is_some_and(|latest| {
                latest.metadata.uid == in_progress.metadata.uid
                    && latest.status.map(|status| {
                        (
                            status.phase,
                            status.attempts,
                            status.started_at,
                            status.seal,
                        )
                    }) == sealed_over
            });
            Err(if still_this_attempt {
                LifecycleError::api(
                    in_progress,
                    format!("cannot write status: {}", refusal.message),
                )
            } else {
                LifecycleError::Conflict {
                    action: action_name(in_progress),
                }
            })
        }
        Err(kube::Error::Api(gone)) if gone.code == 404 => Err(LifecycleError::Conflict {
            action: action_name(in_progress),
        }),
        Err(error) => Err(LifecycleError::api(
            in_progress,
            format!("cannot write status: {error}"),
        )),
    }
}

/// Errors worth another attempt (the API failed, or the target moved under
/// the write) are retried with exponential backoff until the retry policy's
/// attempts are used up; a refusal, an unsupported action or a vanished
/// target fail at once.
async fn execution_failed(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
    error: ExecuteError,
) -> Result<Step, LifecycleError> {
    let retry = &action.spec.retry_policy;
    let attempts = status.attempts.max(1);
    // Every executor makes its change in one guarded write, so a failed
    // execution changed nothing and there is nothing to roll back.
    status.rollback = None;
    status.verification = None;
    if !error.is_transient() {
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
    write_outcome(ctx, action, status, Reason::Retrying).await?;
    Ok(Step::after(Phase::Approved, backoff))
}

fn verification_window(policy: Option<&HealingPolicy>) -> chrono::Duration {
    let window = policy.map_or_else(
        || SafetyRules::default().verification_window(),
        |policy| policy.spec.safety.verification_window(),
    );
    gates::chrono_of(window)
}

/// Verifying: watches the pods until the window closes or something fails.
async fn verifying(
    ctx: &Context,
    action: &HealingAction,
    policy: Option<&HealingPolicy>,
    status: HealingActionStatus,
) -> Result<Step, LifecycleError> {
    let now = ctx.clock.now();
    if let Some(rejection) = late_rejection(action, &status) {
        return record_late_rejection(ctx, action, status, rejection).await;
    }
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
    let policy = policy.filter(|policy| action.spec.policy_ref.names(policy));
    let window = verification_window(policy);
    match verify::judge(&baseline, &pods, now, window) {
        verify::Verdict::Passed(message) => {
            let step = finish(
                ctx,
                action,
                status,
                Phase::Succeeded,
                message,
                Reason::Succeeded,
            )
            .await?;
            metrics().verification(true);
            Ok(step)
        }
        verify::Verdict::Failed(message) => {
            let step = fail(
                ctx,
                action,
                status,
                format!("verification failed: {message}"),
            )
            .await?;
            metrics().verification(false);
            Ok(step)
        }
        verify::Verdict::Waiting => {
            let since = parse_time(Some(&baseline.since)).unwrap_or(now);
            let left = until(now, since + window);
            Ok(Step::after(Phase::Verifying, left.min(VERIFY_POLL)))
        }
    }
}

/// A rejection written after the action was approved and carried out (an
/// action that needed no approval, say), not yet reported.
fn late_rejection(action: &HealingAction, status: &HealingActionStatus) -> Option<String> {
    let decision = action.spec.approval.as_ref()?;
    if decision.decision != ApprovalDecision::Rejected || status.condition(DECIDED_LATE).is_some() {
        return None;
    }
    let why = decision
        .reason
        .as_deref()
        .map(|reason| format!(": {}", clean(reason, MAX_MESSAGE)))
        .unwrap_or_default();
    Some(format!(
        "rejected by {}{why} after the change was made; the change stands and is verified as any other, and the daemon undoes it only if verification fails: revert it by hand if it must not stay",
        clean(&decision.by, MAX_NAME)
    ))
}

/// Says so on the status and in an Event, so the person who rejected learns
/// their decision came too late; verification goes on at the next call.
async fn record_late_rejection(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
    message: String,
) -> Result<Step, LifecycleError> {
    set_condition(
        &mut status.conditions,
        DECIDED_LATE,
        true,
        "RejectedAfterExecution",
        &message,
        ctx.clock.now(),
    );
    status.message = Some(message);
    transition(ctx, action, status, Reason::DecidedLate).await?;
    Ok(Step::after(Phase::Verifying, Duration::ZERO))
}

/// InProgress at the start of a reconcile: the daemon stopped between saving
/// InProgress and saving the outcome, so the change may or may not be in the
/// cluster. A recorded change is rolled back where it landed (by the next
/// call: a field that does not hold what the change wrote is left alone);
/// anything else can only be reported.
async fn interrupted(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
) -> Result<Step, LifecycleError> {
    let message = if status.rollback.is_some() {
        "interrupted; the change may or may not have been applied, so the fields it wrote are restored where they hold what it wrote".to_string()
    } else if status.dry_run {
        "interrupted during a dry run; nothing was changed".to_string()
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

/// Failed with a rollback pending: restores what the sealed record says the
/// change wrote.
async fn rollback(
    ctx: &Context,
    action: &HealingAction,
    mut status: HealingActionStatus,
) -> Result<Step, LifecycleError> {
    let now = ctx.clock.now();
    let failure = status.message.clone().unwrap_or_default();
    let result = match (&status.rollback, action.spec.target.uid.as_deref()) {
        (Some(fields), Some(uid)) => {
            let target = Target::of(&action.spec.target, uid);
            within_fence(ctx, action, execute::rollback(&ctx.client, &target, fields)).await?
        }
        _ => Err(ExecuteError::CannotRollBack {
            target: execute::describe(&action.spec.target.object_ref()),
            message: "nothing was recorded to restore".into(),
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
        // Tried again on the next call; a replaced target (Moved) never
        // becomes the right one again.
        Err(error @ (ExecuteError::Api { .. } | ExecuteError::Conflict { .. })) => {
            Err(LifecycleError::api(action, error))
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
