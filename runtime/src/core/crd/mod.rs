//! KubeSkippy's custom resources: HealingPolicy and ClusterHealingPolicy (what
//! to watch for and what may be done), HealingAction (one planned change and
//! its lifecycle).

/// A label or annotation `true` on a workload or pod: KubeSkippy never acts on
/// it, and no patch may set it (it is what keeps an object out of reach).
pub const PROTECTED_KEY: &str = "kubeskippy.io/protected";

pub mod healing_action;
pub mod policy;

/// Sets a condition of a policy's or an action's status, keeping its
/// transition time when its status stays.
pub fn set_condition(
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

/// What a policy allows and a HealingAction does: `type: restart`, `scale`,
/// `patch` or `delete-pod` in both.
#[derive(
    Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    Restart,
    Scale,
    Patch,
    DeletePod,
}

/// A duration as a policy writes it (`30s`, `10m`, `500ms`, `1h`), parsed
/// once, when the policy is read, and written back as it was written. A text
/// that does not parse keeps why, so the policy is reported invalid naming the
/// field ([`policy::HealingPolicy::validate`]) instead of failing to read.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDuration {
    text: String,
    parsed: Result<std::time::Duration, String>,
}

impl PolicyDuration {
    pub fn parse(text: &str) -> PolicyDuration {
        PolicyDuration {
            text: text.to_string(),
            parsed: crate::core::text::parse_duration(text),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The duration, or why the text is not one.
    pub fn checked(&self) -> Result<std::time::Duration, String> {
        self.parsed.clone()
    }

    /// The duration; `None` only in a policy that fails validation, which
    /// nothing acts under.
    pub fn get(&self) -> Option<std::time::Duration> {
        self.parsed.as_ref().ok().copied()
    }
}

impl From<&str> for PolicyDuration {
    fn from(text: &str) -> Self {
        PolicyDuration::parse(text)
    }
}

impl serde::Serialize for PolicyDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for PolicyDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(PolicyDuration::parse(&text))
    }
}

impl schemars::JsonSchema for PolicyDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PolicyDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "maxLength": 32})
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActionKind::Restart => "restart",
            ActionKind::Scale => "scale",
            ActionKind::Patch => "patch",
            ActionKind::DeletePod => "delete-pod",
        })
    }
}

use chrono::{DateTime, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, ValidationRule,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResourceExt;

use healing_action::HealingAction;
use policy::{ClusterHealingPolicy, HealingPolicy};

/// The CustomResourceDefinitions KubeSkippy owns.
pub fn crds() -> [CustomResourceDefinition; 3] {
    [
        HealingPolicy::crd(),
        ClusterHealingPolicy::crd(),
        healing_action_crd(),
    ]
}

/// The same, as YAML documents.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd).expect("a CRD renders as YAML"));
    }
    out
}

/// The HealingAction CRD, with what the derive cannot express: a status,
/// once written, cannot be removed (an action with none looks like one never
/// started, and would run again); and `spec.approval` is not nullable, so an
/// explicit null is pruned rather than stored — CRD rules read a stored null
/// as absent and admission policies as present, and an approval written over
/// one would slip past both.
pub fn healing_action_crd() -> CustomResourceDefinition {
    let mut crd = HealingAction::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|validation| validation.open_api_v3_schema.as_mut())
        {
            let approval = schema
                .properties
                .as_mut()
                .and_then(|properties| properties.get_mut("spec"))
                .and_then(|spec| spec.properties.as_mut())
                .and_then(|properties| properties.get_mut("approval"))
                .expect("the HealingAction schema has spec.approval");
            approval.nullable = None;
            schema
                .x_kubernetes_validations
                .get_or_insert_with(Vec::new)
                .push(ValidationRule {
                    rule: "!has(oldSelf.status) || has(self.status)".into(),
                    message: Some("a HealingAction's status cannot be removed once written".into()),
                    ..ValidationRule::default()
                });
        }
    }
    crd
}
