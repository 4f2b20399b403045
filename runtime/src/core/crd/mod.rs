//! KubeSkippy's custom resources: HealingPolicy and ClusterHealingPolicy (what
//! to watch for and what may be done), HealingAction (one planned change and
//! its lifecycle).

/// A label or annotation `true` on a workload or pod: KubeSkippy never acts on
/// it, and no patch may set it (it is what keeps an object out of reach).
pub const PROTECTED_KEY: &str = "kubeskippy.io/protected";

pub mod healing_action;
pub mod policy;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, ValidationRule,
};
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

/// The HealingAction CRD, with the one rule on the whole object the derive
/// cannot express: a status, once written, cannot be removed (an action with
/// none looks like one never started, and would run again).
pub fn healing_action_crd() -> CustomResourceDefinition {
    let mut crd = HealingAction::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|validation| validation.open_api_v3_schema.as_mut())
        {
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
