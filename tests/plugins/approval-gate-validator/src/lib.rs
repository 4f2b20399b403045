//! A validator with an approval gate, as a platform team would write one on
//! the 0.1.1 contract: it allows every recommendation, and asks that a person
//! approve patches in the namespaces its `approvalNamespaces` config key
//! lists (comma-separated). With `gatePanics` set to `true` its gate panics
//! on anything but a scale, so the tests can show a gate that cannot run
//! still asks for approval.

#[cfg(target_arch = "wasm32")]
mod component {
    use kubeskippy_plugin_sdk::HostConfig;
    use kubeskippy_plugin_sdk::types::{Incident, Recommendation, ReviewContext, Verdict};

    wit_bindgen::generate!({
        path: "../../../wit",
        world: "gating-validator-plugin",
        with: {
            "kubeskippy:plugin/types@0.1.1": kubeskippy_plugin_sdk::types,
            "kubeskippy:plugin/host@0.1.1": kubeskippy_plugin_sdk::host,
        },
    });

    struct Component;

    impl exports::kubeskippy::plugin::safety_validator::Guest for Component {
        fn validate(_: Recommendation, _: Incident, _: ReviewContext) -> Verdict {
            Verdict::Allow
        }
    }

    impl exports::kubeskippy::plugin::approval_gate::Guest for Component {
        fn requires_approval(recommendation: Recommendation, _: Incident) -> Option<String> {
            crate::requires_approval(&recommendation, &HostConfig)
        }
    }

    export!(Component);
}

use kubeskippy_plugin_sdk::ConfigSource;
use kubeskippy_plugin_sdk::types::{Action, Recommendation};

pub fn requires_approval(
    recommendation: &Recommendation,
    config: &dyn ConfigSource,
) -> Option<String> {
    // Not on a scale: the fixture run that admits a plugin asks about one,
    // and a gate that fails on it would never load.
    if config.get("gatePanics").as_deref() == Some("true")
        && !matches!(recommendation.action, Action::Scale(_))
    {
        panic!("the approval gate panics on purpose");
    }
    let namespace = &recommendation.target.namespace;
    let gated = config.get("approvalNamespaces").is_some_and(|list| {
        list.split(',')
            .any(|listed| listed.trim() == namespace.as_str())
    });
    (gated && matches!(recommendation.action, Action::Patch(_)))
        .then(|| format!("patches in namespace {namespace} need a person's approval"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kubeskippy_plugin_sdk::types::{ObjectRef, Patch};

    use super::*;

    fn recommendation(action: Action, namespace: &str) -> Recommendation {
        Recommendation {
            action,
            target: ObjectRef::new("Deployment", namespace, "app"),
            reason: "test".into(),
            risk: "low".into(),
            confidence: 0.9,
        }
    }

    #[test]
    fn only_patches_in_listed_namespaces_ask() {
        let config = BTreeMap::from([("approvalNamespaces".to_string(), "prod, shop".to_string())]);
        let patch = || Action::Patch(Patch::StrategicMerge("{}".into()));
        assert_eq!(
            requires_approval(&recommendation(patch(), "shop"), &config).as_deref(),
            Some("patches in namespace shop need a person's approval")
        );
        assert_eq!(
            requires_approval(&recommendation(patch(), "dev"), &config),
            None
        );
        assert_eq!(
            requires_approval(&recommendation(Action::Restart, "shop"), &config),
            None
        );
        assert_eq!(
            requires_approval(&recommendation(patch(), "shop"), &BTreeMap::new()),
            None
        );
    }
}
