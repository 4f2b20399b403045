//! The host safety floor: checks compiled into the host that run after every
//! validator plugin and that no plugin or policy can loosen.

use std::collections::BTreeSet;

use crate::incidents::OpenIncident;
use crate::policy::HealingPolicy;
use crate::wit::{Action, ObjectRef, Recommendation};

pub const PROTECTED_KEY: &str = "kubeskippy.io/protected";
const ALWAYS_PROTECTED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, Clone)]
pub struct SafetyFloor {
    protected_namespaces: BTreeSet<String>,
}

impl Default for SafetyFloor {
    fn default() -> Self {
        SafetyFloor::new(std::iter::empty::<String>())
    }
}

impl SafetyFloor {
    /// The built-in protected namespaces plus `extra`; the built-in ones cannot
    /// be removed.
    pub fn new(extra: impl IntoIterator<Item = impl Into<String>>) -> SafetyFloor {
        let mut protected_namespaces: BTreeSet<String> = ALWAYS_PROTECTED_NAMESPACES
            .iter()
            .map(|ns| ns.to_string())
            .collect();
        protected_namespaces.extend(extra.into_iter().map(Into::into));
        SafetyFloor {
            protected_namespaces,
        }
    }

    pub fn protected_namespaces(&self) -> impl Iterator<Item = &str> {
        self.protected_namespaces.iter().map(String::as_str)
    }

    /// Every reason the floor refuses the recommendation; empty means it passes.
    pub fn objections(&self, recommendation: &Recommendation, open: &OpenIncident) -> Vec<String> {
        let mut objections = Vec::new();
        let incident = &open.incident;
        let target = &recommendation.target;
        if matches!(recommendation.action, Action::None) {
            return objections;
        }
        if self.protected_namespaces.contains(&target.namespace)
            || self
                .protected_namespaces
                .contains(&incident.target.namespace)
        {
            objections.push(format!("namespace {} is protected", target.namespace));
        }
        let is_workload = target.kind == incident.target.kind
            && target.name == incident.target.name
            && target.namespace == incident.target.namespace;
        let pod_marks = open
            .pod_marks
            .iter()
            .find(|(name, _)| {
                target.kind == "Pod"
                    && *name == target.name
                    && target.namespace == incident.target.namespace
            })
            .map(|(_, marks)| marks);
        if !is_workload && pod_marks.is_none() {
            objections.push(format!(
                "{}/{} in namespace {} is neither the incident's workload nor one of its pods",
                target.kind, target.name, target.namespace
            ));
        }
        let marked = |marks: &crate::facts::ObjectMarks| {
            marks.labels.get(PROTECTED_KEY).is_some_and(|v| v == "true")
                || marks
                    .annotations
                    .get(PROTECTED_KEY)
                    .is_some_and(|v| v == "true")
        };
        if marked(&open.target_marks) {
            objections.push(format!(
                "{}/{} is marked {PROTECTED_KEY}=true",
                incident.target.kind, incident.target.name
            ));
        }
        if pod_marks.is_some_and(marked) {
            objections.push(format!(
                "Pod {} is marked {PROTECTED_KEY}=true",
                target.name
            ));
        }
        if let Some(why) = policy_protects(open.policy, &incident.target)
            .or_else(|| policy_protects(open.policy, target))
        {
            objections.push(why);
        }
        let deletes = matches!(recommendation.action, Action::DeletePod)
            || (matches!(recommendation.action, Action::Restart) && target.kind == "Pod");
        // Only pods are ever deleted, so a Namespace, Node, PersistentVolume or
        // CustomResourceDefinition can never be, whatever a plugin says.
        if deletes && target.kind != "Pod" {
            objections.push(format!(
                "only pods are ever deleted, and {}/{} is not a pod",
                target.kind, target.name
            ));
        }
        objections
    }

    /// Why the floor refuses to change `object`, the target as the API server
    /// returns it right before execution: a HealingAction may have been
    /// written by anyone allowed to create one, so planning-time checks are
    /// not enough.
    pub fn refuses_live(
        &self,
        target: &ObjectRef,
        object: &serde_json::Value,
        policy: &HealingPolicy,
    ) -> Option<String> {
        if self.protected_namespaces.contains(&target.namespace) {
            return Some(format!("namespace {} is protected", target.namespace));
        }
        let metadata = &object["metadata"];
        if metadata["labels"][PROTECTED_KEY] == "true"
            || metadata["annotations"][PROTECTED_KEY] == "true"
        {
            return Some(format!(
                "{}/{} is marked {PROTECTED_KEY}=true",
                target.kind, target.name
            ));
        }
        policy_protects(policy, target)
    }
}

/// The policy's own `safety.protectedResources`.
fn policy_protects(policy: &HealingPolicy, target: &ObjectRef) -> Option<String> {
    policy
        .spec
        .safety
        .protected_resources
        .iter()
        .any(|protected| {
            protected.kind.eq_ignore_ascii_case(&target.kind) && protected.name == target.name
        })
        .then(|| {
            format!(
                "policy {} protects {}/{}",
                policy.name(),
                target.kind,
                target.name
            )
        })
}
