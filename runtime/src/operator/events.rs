//! Kubernetes Events (`events.k8s.io/v1`) for every HealingAction transition,
//! on the HealingAction and on its target, so `kubectl describe` of either
//! shows what the healer did and why. Events are best-effort: a refused event
//! is logged and never stops the lifecycle.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::core::crd::healing_action::HealingAction;

/// Shown as the events' reporting controller.
pub const CONTROLLER: &str = "kubeskippy";

/// The API server refuses notes over 1 kB.
const MAX_NOTE_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    AwaitingApproval,
    Approved,
    Blocked,
    Started,
    Retrying,
    DryRunCompleted,
    Verifying,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
    DecidedLate,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AwaitingApproval => "AwaitingApproval",
            Reason::Approved => "Approved",
            Reason::Blocked => "Blocked",
            Reason::Started => "Started",
            Reason::Retrying => "Retrying",
            Reason::DryRunCompleted => "DryRunCompleted",
            Reason::Verifying => "Verifying",
            Reason::Succeeded => "Succeeded",
            Reason::Failed => "Failed",
            Reason::RolledBack => "RolledBack",
            Reason::Cancelled => "Cancelled",
            Reason::DecidedLate => "DecidedLate",
        }
    }

    fn event_type(self) -> EventType {
        match self {
            Reason::Blocked
            | Reason::Retrying
            | Reason::Failed
            | Reason::RolledBack
            | Reason::DecidedLate => EventType::Warning,
            _ => EventType::Normal,
        }
    }
}

#[derive(Clone)]
pub struct EventRecorder {
    recorder: Recorder,
}

impl EventRecorder {
    /// `instance` tells replicas apart (the pod name, usually).
    pub fn new(client: kube::Client, instance: &str) -> EventRecorder {
        let reporter = Reporter {
            controller: CONTROLLER.into(),
            instance: Some(instance.into()),
        };
        EventRecorder {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes `reason` with `note` on the action (as just written) and on
    /// its target.
    ///
    /// The recorder folds events with the same regarding object, reason and
    /// related object into one series that keeps the first note. Every
    /// transition writes the action first, so its reference carries a new
    /// resourceVersion, and each event names the other object as `related`:
    /// no two transitions share a series and every note is shown.
    pub async fn transition(&self, action: &HealingAction, reason: Reason, note: &str) {
        let mut own = action.object_ref(&());
        own.resource_version = action.metadata.resource_version.clone();
        let target = target_ref(action);
        let note = truncate(note);
        for (regarding, related) in [(&own, &target), (&target, &own)] {
            let event = Event {
                type_: reason.event_type(),
                reason: reason.as_str().into(),
                note: Some(note.clone()),
                action: "Heal".into(),
                secondary: Some(related.clone()),
            };
            if let Err(error) = self.recorder.publish(&event, regarding).await {
                tracing::warn!(
                    reason = reason.as_str(),
                    object = regarding.name.as_deref().unwrap_or_default(),
                    "event not recorded: {error}"
                );
            }
        }
    }
}

impl EventRecorder {
    /// A Warning on a HealingAction the daemon refuses to act on, and on it
    /// alone: the object it names may be in a namespace its author cannot
    /// write to.
    pub async fn refused(&self, action: &HealingAction, note: &str) {
        let mut own = action.object_ref(&());
        own.resource_version = action.metadata.resource_version.clone();
        let event = Event {
            type_: EventType::Warning,
            reason: "Refused".into(),
            note: Some(truncate(note)),
            action: "Heal".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &own).await {
            tracing::warn!(
                reason = "Refused",
                object = own.name.as_deref().unwrap_or_default(),
                "event not recorded: {error}"
            );
        }
    }
}

/// What the controller says about an incident on the workload itself, before
/// (or instead of) any HealingAction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentNote {
    /// Its policy is in monitor mode: recorded, nothing planned.
    Detected,
    /// A HealingAction was created for it.
    Planned,
    /// Every recommendation was refused.
    NoSafeAction,
}

impl IncidentNote {
    fn reason(self) -> &'static str {
        match self {
            IncidentNote::Detected => "IncidentDetected",
            IncidentNote::Planned => "HealingPlanned",
            IncidentNote::NoSafeAction => "NoSafeAction",
        }
    }
}

impl EventRecorder {
    /// Publishes `note` on `regarding`, the incident's workload or pod;
    /// `related` (the HealingAction planned) keeps each plan's note its own
    /// rather than folded into one series.
    pub async fn incident(
        &self,
        regarding: &ObjectReference,
        related: Option<ObjectReference>,
        kind: IncidentNote,
        note: &str,
    ) {
        let event = Event {
            type_: match kind {
                IncidentNote::Planned => EventType::Normal,
                IncidentNote::Detected | IncidentNote::NoSafeAction => EventType::Warning,
            },
            reason: kind.reason().into(),
            note: Some(truncate(note)),
            action: "Evaluate".into(),
            secondary: related,
        };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(
                reason = kind.reason(),
                object = regarding.name.as_deref().unwrap_or_default(),
                "event not recorded: {error}"
            );
        }
    }
}

pub fn target_ref(action: &HealingAction) -> ObjectReference {
    let target = &action.spec.target;
    ObjectReference {
        api_version: Some(target.api_version.clone()),
        kind: Some(target.kind.clone()),
        namespace: Some(target.namespace.clone()),
        name: Some(target.name.clone()),
        uid: target.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Notes quote findings, reasons and messages: one line, redacted, within the
/// API server's limit.
fn truncate(note: &str) -> String {
    crate::core::untrusted::clean(note, MAX_NOTE_BYTES)
}

impl EventRecorder {
    /// An Event on a plugin ConfigMap: loaded, rejected or removed.
    pub async fn about_plugin(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(note)),
            action: "LoadPlugin".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(
                reason,
                object = regarding.name.as_deref().unwrap_or_default(),
                "event not recorded: {error}"
            );
        }
    }
}
