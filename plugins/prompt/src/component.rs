//! The component face of the prompt builder: reads configuration through the
//! host import and hands the incident to the native logic.

use kubeskippy_plugin_sdk::HostConfig;
use kubeskippy_plugin_sdk::types::{Incident, Prompt};

wit_bindgen::generate!({
    path: "../../wit",
    world: "prompt-plugin",
    with: {
        "kubeskippy:plugin/types@0.1.1": kubeskippy_plugin_sdk::types,
        "kubeskippy:plugin/host@0.1.1": kubeskippy_plugin_sdk::host,
    },
});

struct Component;

impl exports::kubeskippy::plugin::prompt_builder::Guest for Component {
    fn build_prompt(incident: Incident) -> Result<Prompt, String> {
        crate::build_prompt(&incident, &HostConfig)
    }
}

export!(Component);
kubeskippy_plugin_sdk::use_call_arena!();
