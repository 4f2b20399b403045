//! The component face of the safety validator.

use kubeskippy_plugin_sdk::HostConfig;
use kubeskippy_plugin_sdk::types::{Incident, Recommendation, ReviewContext, Verdict};

wit_bindgen::generate!({
    path: "../../wit",
    world: "validator-plugin",
    with: {
        "kubeskippy:plugin/types@0.1.1": kubeskippy_plugin_sdk::types,
        "kubeskippy:plugin/host@0.1.1": kubeskippy_plugin_sdk::host,
    },
});

struct Component;

impl exports::kubeskippy::plugin::safety_validator::Guest for Component {
    fn validate(
        recommendation: Recommendation,
        incident: Incident,
        context: ReviewContext,
    ) -> Verdict {
        crate::validate(&recommendation, &incident, context, &HostConfig)
    }
}

export!(Component);
kubeskippy_plugin_sdk::use_call_arena!();
