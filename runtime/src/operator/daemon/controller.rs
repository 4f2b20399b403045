//! The control loop's two steps. `evaluate` runs one evaluation pass over the
//! caches and turns each incident into HealingActions through the same
//! `Analyzer` as `kubeskippy analyze`; `reconcile_due` moves every unfinished
//! HealingAction on by one lifecycle transition when its time has come.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::analyze::pipeline::Analyzer;
use crate::core::crd::healing_action::{HealingAction, Phase};
use crate::core::crd::policy::{ClusterHealingPolicy, HealingPolicy, Mode};
use crate::core::crd::set_condition;
use crate::core::evaluation::{self, PolicyOutcome, TriggerMemory};
use crate::core::gates;
use crate::core::incidents::OpenIncident;
use crate::core::text::stamp;
use crate::core::untrusted::{MAX_NAME, clean};
use crate::operator::collect::ClusterCache;
use crate::operator::events::IncidentNote;
use crate::operator::execute::FIELD_MANAGER;
use crate::operator::lifecycle;
use crate::telemetry::metrics::metrics;
use tracing::Instrument;

/// Policy status is rewritten at least this often even when nothing changed,
/// so `lastEvaluation` shows the controller is alive.
const STATUS_REFRESH: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("evaluation: {0}")]
    Evaluation(#[from] evaluation::EvaluationError),
}

/// What one evaluation did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Evaluated {
    pub incidents: usize,
    /// HealingActions created, by name.
    pub created: Vec<String>,
    /// Incidents only recorded: their policy is in monitor mode.
    pub monitored: usize,
    /// Incidents for which no recommendation was allowed.
    pub without_action: usize,
}

pub struct Controller {
    cache: ClusterCache,
    lifecycle: lifecycle::Context,
    memory: TriggerMemory,
    /// Incidents reported without a HealingAction (monitor mode, or nothing
    /// allowed), by incident id: reported again only after the policy's
    /// cooldown, so an unresolvable problem is not re-analysed every pass.
    reported: HashMap<String, DateTime<Utc>>,
    /// Incidents counted in the metrics, until their cooldown ends: one
    /// whose HealingAction could not be created is raised again next pass,
    /// and counted once.
    counted: HashMap<String, DateTime<Utc>>,
    /// Per action (namespace, name): the resourceVersion last reconciled and
    /// when to look again (`None`: only when the object changes).
    schedule: HashMap<(String, String), Scheduled>,
    /// The status last written per policy, to skip identical rewrites.
    written_status: HashMap<(Option<String>, String), (serde_json::Value, DateTime<Utc>)>,
    /// Objects reported unreadable, at the resourceVersion reported.
    reported_unreadable: HashMap<(&'static str, Option<String>, String), Option<String>>,
    /// HealingActions as this controller last created or read them after a
    /// reconcile, for [`RECENT`]: the cache lags behind its own writes, and
    /// every gate and cooldown must count an action as it is now — an action
    /// started a moment ago is in progress, not still approved.
    recent: HashMap<(String, String), (Arc<HealingAction>, DateTime<Utc>)>,
}

/// Entries of a policy's `status.activeTriggers` listed by name.
const MAX_ACTIVE_TRIGGERS: usize = 100;

/// Far longer than the cache takes to catch up with a write.
const RECENT: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

impl Controller {
    pub fn new(cache: ClusterCache, lifecycle: lifecycle::Context) -> Self {
        Controller {
            cache,
            lifecycle,
            memory: TriggerMemory::new(),
            reported: HashMap::new(),
            counted: HashMap::new(),
            schedule: HashMap::new(),
            written_status: HashMap::new(),
            reported_unreadable: HashMap::new(),
            recent: HashMap::new(),
        }
    }

    /// The safety floor checked against live targets, after a config reload.
    pub fn set_floor(&mut self, floor: crate::core::safety::SafetyFloor) {
        self.lifecycle.floor = floor;
    }

    fn now(&self) -> DateTime<Utc> {
        self.lifecycle.clock.now()
    }

    /// The daemon's own actions among `actions` (the cache's), each as this
    /// controller last saw it when that is more recent.
    fn own(&mut self, actions: &[Arc<HealingAction>]) -> Vec<Arc<HealingAction>> {
        let now = self.now();
        self.recent.retain(|_, (_, seen)| now - *seen < RECENT);
        let mut merged: Vec<Arc<HealingAction>> = actions
            .iter()
            .map(|action| match self.recent.get(&action_key(action)) {
                Some((fresh, _)) => fresh.clone(),
                None => action.clone(),
            })
            .collect();
        let cached: std::collections::HashSet<(String, String)> =
            actions.iter().map(|action| action_key(action)).collect();
        merged.extend(
            self.recent
                .iter()
                .filter(|(key, _)| !cached.contains(*key))
                .map(|(_, (fresh, _))| fresh.clone()),
        );
        crate::core::provenance::countable(&self.lifecycle.key, &merged)
    }

    /// Records `action` as it is now, for [`Controller::own`].
    fn saw(&mut self, action: HealingAction) -> Arc<HealingAction> {
        let action = Arc::new(action);
        let now = self.now();
        self.recent
            .insert(action_key(&action), (action.clone(), now));
        action
    }

    /// One evaluation pass, then the policies' status.
    pub async fn evaluate(&mut self, analyzer: &Analyzer) -> Result<Evaluated, ControllerError> {
        let started = std::time::Instant::now();
        let evaluated = self.evaluate_pass(analyzer).await;
        metrics().evaluation(started.elapsed());
        evaluated
    }

    async fn evaluate_pass(&mut self, analyzer: &Analyzer) -> Result<Evaluated, ControllerError> {
        let now = self.now();
        let view = self.cache.view();
        let objects = view.objects();
        let own = self.own(&view.actions);
        let pass = evaluation::pass(
            &objects,
            view.policies(),
            &mut self.memory,
            own.iter().map(Arc::as_ref),
            now,
        )?;
        let mut evaluated = Evaluated {
            incidents: pass.incidents.len(),
            ..Evaluated::default()
        };
        self.reported.retain(|_, until| *until > now);
        self.counted.retain(|_, until| *until > now);
        for open in &pass.incidents {
            let span = tracing::info_span!(
                "incident",
                incident = %open.incident.id,
                policy = %open.policy.name(),
                target = %format_args!(
                    "{} {}/{}",
                    open.incident.target.kind,
                    open.incident.target.namespace,
                    open.incident.target.name
                ),
            );
            self.handle_incident(analyzer, open, now, &mut evaluated)
                .instrument(span)
                .await;
        }
        for outcome in &pass.policies {
            self.write_policy_status(outcome, &own, now).await;
        }
        self.report_unreadable(now).await;
        Ok(evaluated)
    }

    /// Says on each policy or HealingAction the daemon cannot read why, once
    /// per version of it: a policy gets `Ready=False`, an action is
    /// Cancelled. Everything else goes on being watched and acted on.
    async fn report_unreadable(&mut self, now: DateTime<Utc>) {
        let broken = self.cache.unreadable();
        self.reported_unreadable.retain(|key, _| {
            broken
                .iter()
                .any(|object| (object.kind, object.namespace.clone(), object.name.clone()) == *key)
        });
        for object in broken {
            let key = (object.kind, object.namespace.clone(), object.name.clone());
            if self.reported_unreadable.get(&key) == Some(&object.resource_version) {
                continue;
            }
            if !self.lifecycle.fence.holds() {
                return;
            }
            tracing::warn!(
                kind = object.kind,
                namespace = object.namespace.as_deref().unwrap_or_default(),
                name = %object.name,
                "cannot read it: {}",
                object.why
            );
            let message = format!("the daemon cannot read this object: {}", object.why);
            let status = match object.kind {
                "HealingAction" => json!({
                    "phase": "Cancelled",
                    "message": message,
                    "completedAt": stamp(now),
                }),
                _ => json!({ "conditions": [{
                    "type": "Ready", "status": "False", "reason": "Unreadable",
                    "message": message, "lastTransitionTime": stamp(now),
                }] }),
            };
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            };
            // Guarded: the version that could not be read is the one reported.
            let patch = Patch::Merge(json!({
                "metadata": { "resourceVersion": object.resource_version },
                "status": status,
            }));
            let client = self.lifecycle.client.clone();
            let written = match (object.kind, &object.namespace) {
                ("HealingAction", Some(namespace)) => {
                    Api::<crate::core::objects::Lenient<HealingAction>>::namespaced(
                        client, namespace,
                    )
                    .patch_status(&object.name, &params, &patch)
                    .await
                    .map(|updated| updated.metadata().resource_version.clone())
                }
                ("HealingPolicy", Some(namespace)) => {
                    Api::<crate::core::objects::Lenient<HealingPolicy>>::namespaced(
                        client, namespace,
                    )
                    .patch_status(&object.name, &params, &patch)
                    .await
                    .map(|updated| updated.metadata().resource_version.clone())
                }
                _ => Api::<crate::core::objects::Lenient<ClusterHealingPolicy>>::all(client)
                    .patch_status(&object.name, &params, &patch)
                    .await
                    .map(|updated| updated.metadata().resource_version.clone()),
            };
            // The write makes a new version: that one is the one reported.
            match written {
                Ok(version) => {
                    self.reported_unreadable.insert(key, version);
                }
                Err(error) => {
                    tracing::warn!(name = %object.name, %error, "cannot report an unreadable object")
                }
            }
        }
    }

    async fn handle_incident(
        &mut self,
        analyzer: &Analyzer,
        open: &OpenIncident<'_>,
        now: DateTime<Utc>,
        evaluated: &mut Evaluated,
    ) {
        let incident = &open.incident;
        if self.reported.contains_key(&incident.id) {
            return;
        }
        let policy = open.policy;
        let quiet_until = now + gates::chrono_of(policy.spec.safety.cooldown());
        let findings: Vec<String> = incident
            .findings
            .iter()
            .map(|finding| finding.detail.clone())
            .collect();
        let target = object_reference(&incident.target, open);
        if !self.lifecycle.fence.holds() {
            return;
        }
        let first_kind = incident.findings.first().map_or("other", |finding| {
            crate::core::triggers::finding_kind_name(finding.kind)
        });
        // Namespaced, so one tenant's policy cannot pass for another's.
        let policy_label = match &policy.metadata.namespace {
            Some(namespace) => format!("{namespace}/{}", policy.name()),
            None => policy.name().to_string(),
        };
        if self
            .counted
            .insert(incident.id.clone(), quiet_until)
            .is_none()
        {
            metrics().incident(first_kind, &policy_label);
        }
        tracing::info!(findings = %findings.join("; "), "incident raised");
        if policy.spec.mode == Mode::Monitor {
            self.lifecycle
                .events
                .incident(
                    &target,
                    None,
                    IncidentNote::Detected,
                    &format!(
                        "policy {} (monitor): {}",
                        policy.name(),
                        findings.join("; ")
                    ),
                )
                .await;
            self.reported.insert(incident.id.clone(), quiet_until);
            evaluated.monitored += 1;
            return;
        }
        let report = analyzer.analyze_incident(open).await;
        for note in &report.plugin_notes {
            tracing::warn!(incident = %incident.id, "{note}");
        }
        // The analysis may have outlived the lease (a slow model, retries).
        if !self.lifecycle.fence.holds() {
            return;
        }
        if report.actions.is_empty() {
            let rejections: Vec<String> = report
                .reviewed
                .iter()
                .flat_map(|reviewed| reviewed.rejections.iter().cloned())
                .collect();
            let why = if rejections.is_empty() {
                "no recommendation".to_string()
            } else {
                rejections.join("; ")
            };
            self.lifecycle
                .events
                .incident(
                    &target,
                    None,
                    IncidentNote::NoSafeAction,
                    &format!("policy {}: {}: {why}", policy.name(), findings.join("; ")),
                )
                .await;
            self.reported.insert(incident.id.clone(), quiet_until);
            evaluated.without_action += 1;
            return;
        }
        let fence = self.lifecycle.fence.clone();
        for planned in &report.actions {
            if !fence.holds() {
                return;
            }
            let Some(created) = fence.bound(self.create(planned, now)).await else {
                return;
            };
            match created {
                Ok(created) => {
                    let created = self.saw(created);
                    let name = created.metadata.name.clone().unwrap_or_default();
                    tracing::info!(action = %name, incident = %incident.id, "HealingAction created");
                    self.lifecycle
                        .events
                        .incident(
                            &target,
                            Some(created.object_ref(&())),
                            IncidentNote::Planned,
                            &format!(
                                "HealingAction {name} ({}, confidence {:.2}, source {}): {}",
                                created.spec.action.kind,
                                created.spec.confidence,
                                created.spec.source,
                                created.spec.reasoning
                            ),
                        )
                        .await;
                    evaluated.created.push(name);
                    // The cache may not show the new action on the next
                    // pass yet: the incident is not planned again until
                    // the cooldown, by which time it does.
                    self.reported.insert(incident.id.clone(), quiet_until);
                }
                Err(error) => {
                    tracing::warn!(incident = %incident.id, %error, "could not create HealingAction");
                }
            }
        }
    }

    /// Creates `planned` under a name of its own (the plan's name with a
    /// random suffix, so a name can neither be taken ahead by someone else
    /// nor block the next occurrence of the same incident), stamped with when
    /// it was planned and signed.
    async fn create(
        &self,
        planned: &HealingAction,
        now: DateTime<Utc>,
    ) -> Result<HealingAction, kube::Error> {
        let namespace = planned.metadata.namespace.clone().unwrap_or_default();
        let api: Api<HealingAction> = Api::namespaced(self.lifecycle.client.clone(), &namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let mut tries = 0;
        loop {
            let mut action = planned.clone();
            action.metadata.name = Some(crate::core::plan::unique_name(
                planned.metadata.name.as_deref().unwrap_or("action"),
            ));
            action.spec.planned_at = Some(stamp(now));
            self.lifecycle.key.sign(&mut action);
            match api.create(&params, &action).await {
                // Two random suffixes colliding is news; a second one is not.
                Err(kube::Error::Api(status)) if status.code == 409 && tries == 0 => tries += 1,
                outcome => return outcome,
            }
        }
    }

    /// Reconciles each HealingAction whose object changed or whose requeue
    /// time has come, one transition each, while `keep_going` holds (the
    /// daemon stops between transitions on shutdown or lost leadership).
    pub async fn reconcile_due(&mut self, keep_going: impl Fn() -> bool) -> usize {
        let now = self.now();
        let (policies, actions) = self.cache.policies_and_actions();
        let policies: BTreeMap<(Option<String>, String), Arc<HealingPolicy>> = policies
            .iter()
            .map(|policy| {
                (
                    (policy.metadata.namespace.clone(), policy.name().to_string()),
                    policy.clone(),
                )
            })
            .collect();
        let mut peers = self.own(&actions);
        let live: std::collections::HashSet<(String, String)> =
            actions.iter().map(|action| action_key(action)).collect();
        self.schedule.retain(|key, _| live.contains(key));
        let mut reconciled = 0;
        for cached in &actions {
            if !keep_going() {
                break;
            }
            let key = action_key(cached);
            let version = cached.metadata.resource_version.clone();
            let due = match self.schedule.get(&key) {
                None => true,
                Some((seen, next)) => *seen != version || next.is_some_and(|next| next <= now),
            };
            if !due {
                continue;
            }
            // The cache may lag behind this controller's own last write; an
            // action must never be judged from a stale phase.
            let api: Api<HealingAction> = Api::namespaced(self.lifecycle.client.clone(), &key.0);
            let action = match api.get_opt(&key.1).await {
                Ok(Some(action)) => action,
                Ok(None) => {
                    self.schedule.remove(&key);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(action = %key.1, %error, "cannot read HealingAction");
                    continue;
                }
            };
            let reference = &action.spec.policy_ref;
            let policy = policies
                .get(&(reference.namespace.clone(), reference.name.clone()))
                .map(Arc::as_ref)
                .filter(|policy| reference.names(policy));
            // The spec is whoever wrote the action's: one printable line each.
            let logged = |text: &str| clean(text, MAX_NAME);
            let target = &action.spec.target;
            let span = tracing::info_span!(
                "action",
                action = %key.1,
                namespace = %key.0,
                incident = %logged(&action.spec.incident_id),
                policy = %logged(&reference.name),
                target = %logged(&format!("{} {}/{}", target.kind, target.namespace, target.name)),
            );
            let outcome = lifecycle::reconcile(&self.lifecycle, &action, policy, &peers)
                .instrument(span)
                .await;
            // The next action of this pass is gated by this one as it is now:
            // one started a moment ago counts as in progress.
            if let Ok(Some(now_stored)) = api.get_opt(&key.1).await {
                let fresh = self.saw(now_stored);
                peers.retain(|peer| action_key(peer) != key);
                peers.extend(crate::core::provenance::countable(
                    &self.lifecycle.key,
                    std::slice::from_ref(&fresh),
                ));
            }
            match outcome {
                Ok(step) => {
                    reconciled += 1;
                    let next = step.requeue_after.map(|after| {
                        now + chrono::TimeDelta::from_std(after).unwrap_or(chrono::TimeDelta::MAX)
                    });
                    // A transition rewrites the object; its new version makes
                    // it due again at once, which is what moves an action
                    // through several phases on consecutive ticks.
                    self.schedule.insert(key, (version, next));
                }
                Err(error) => {
                    tracing::warn!(%error, "reconcile failed; retrying next tick");
                    self.schedule.insert(key, (version, Some(now)));
                }
            }
        }
        reconciled
    }

    async fn write_policy_status(
        &mut self,
        outcome: &PolicyOutcome<'_>,
        actions: &[Arc<HealingAction>],
        now: DateTime<Utc>,
    ) {
        let policy = outcome.policy;
        let name = policy.name().to_string();
        // Firing counts, whether or not a cooldown or an open action held
        // the incident back this pass.
        let mut active: Vec<String> = outcome
            .active
            .iter()
            .map(|active| (&active.trigger, &active.target))
            .chain(
                outcome
                    .suppressed
                    .iter()
                    .map(|suppressed| (&suppressed.trigger, &suppressed.target)),
            )
            .map(|(trigger, target)| match &policy.metadata.namespace {
                Some(_) => format!("{trigger}/{}/{}", target.kind, target.name),
                // A cluster policy's targets are in many namespaces.
                None => format!(
                    "{trigger}/{}/{}/{}",
                    target.kind, target.namespace, target.name
                ),
            })
            .collect();
        active.sort();
        active.dedup();
        // A policy matching thousands of failing pods must not grow its
        // status past what the API server stores.
        let firing = active.len();
        if firing > MAX_ACTIVE_TRIGGERS {
            active.truncate(MAX_ACTIVE_TRIGGERS);
            active.push(format!("... and {} more", firing - MAX_ACTIVE_TRIGGERS));
        }
        let actions_taken = actions
            .iter()
            .filter(|action| {
                action.spec.policy_ref.names(policy)
                    && !action.spec.dry_run
                    && !action.status.as_ref().is_some_and(|status| status.dry_run)
                    && action.status.as_ref().is_some_and(|status| {
                        matches!(
                            status.phase,
                            Phase::InProgress
                                | Phase::Verifying
                                | Phase::Succeeded
                                | Phase::Failed
                                | Phase::RolledBack
                        )
                    })
            })
            .count();
        let mut conditions = policy
            .status
            .as_ref()
            .map(|status| status.conditions.clone())
            .unwrap_or_default();
        // A HealingPolicy's breaker is its namespace's; a cluster policy has
        // one in each namespace it acted in.
        let namespaces: std::collections::BTreeSet<&str> = match &policy.metadata.namespace {
            Some(namespace) => [namespace.as_str()].into(),
            None => actions
                .iter()
                .filter(|action| action.spec.policy_ref.names(policy))
                .filter_map(|action| action.metadata.namespace.as_deref())
                .collect(),
        };
        let paused: Vec<String> = namespaces
            .into_iter()
            .filter_map(|namespace| gates::breaker(policy, namespace, actions, now))
            .map(|paused| paused.reason)
            .collect();
        match paused.is_empty() {
            false => set_condition(
                &mut conditions,
                "Paused",
                true,
                "CircuitOpen",
                &paused.join("; "),
                now,
            ),
            true => set_condition(
                &mut conditions,
                "Paused",
                false,
                "Closed",
                "actions are allowed",
                now,
            ),
        }
        if outcome.errors.is_empty() {
            set_condition(
                &mut conditions,
                "Ready",
                true,
                "Evaluated",
                "every trigger was evaluated",
                now,
            );
        } else {
            set_condition(
                &mut conditions,
                "Ready",
                false,
                "EvaluationError",
                &outcome.errors.join("; "),
                now,
            );
        }
        let body = json!({
            "activeTriggers": active,
            "actionsTaken": actions_taken,
            "conditions": conditions,
        });
        let key = (policy.metadata.namespace.clone(), name.clone());
        if let Some((last, at)) = self.written_status.get(&key)
            && *last == body
            && now - *at < STATUS_REFRESH
        {
            return;
        }
        if !self.lifecycle.fence.holds() {
            return;
        }
        let mut status = body.clone();
        status["lastEvaluation"] = json!(stamp(now));
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let patch = Patch::Merge(json!({ "status": status }));
        let client = self.lifecycle.client.clone();
        let written = match &policy.metadata.namespace {
            Some(namespace) => Api::<HealingPolicy>::namespaced(client, namespace)
                .patch_status(&name, &params, &patch)
                .await
                .map(|_| ()),
            None => Api::<ClusterHealingPolicy>::all(client)
                .patch_status(&name, &params, &patch)
                .await
                .map(|_| ()),
        };
        match written {
            Ok(_) => {
                self.written_status.insert(key, (body, now));
            }
            Err(error) => tracing::warn!(policy = %name, %error, "cannot write policy status"),
        }
    }
}

/// The resourceVersion last reconciled, and when to look again.
type Scheduled = (Option<String>, Option<DateTime<Utc>>);

/// (namespace, name): how the controller keys a HealingAction.
fn action_key(action: &HealingAction) -> (String, String) {
    (
        action.metadata.namespace.clone().unwrap_or_default(),
        action.metadata.name.clone().unwrap_or_default(),
    )
}

fn object_reference(target: &crate::core::wit::ObjectRef, open: &OpenIncident) -> ObjectReference {
    ObjectReference {
        api_version: Some(crate::core::plan::api_version_of(&target.kind).to_string()),
        kind: Some(target.kind.clone()),
        namespace: Some(target.namespace.clone()),
        name: Some(target.name.clone()),
        uid: open
            .target_marks
            .as_ref()
            .and_then(|marks| marks.uid.clone()),
        ..ObjectReference::default()
    }
}
