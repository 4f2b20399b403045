//! The component face of the response parser.

use kubeskippy_plugin_sdk::types::{Analysis, Incident};

wit_bindgen::generate!({
    path: "../../wit",
    world: "parser-plugin",
    with: {
        "kubeskippy:plugin/types@0.1.1": kubeskippy_plugin_sdk::types,
        "kubeskippy:plugin/host@0.1.1": kubeskippy_plugin_sdk::host,
    },
});

struct Component;

impl exports::kubeskippy::plugin::response_parser::Guest for Component {
    fn parse_response(reply: String, incident: Incident) -> Result<Analysis, String> {
        crate::parse_response(&reply, &incident)
    }
}

export!(Component);
kubeskippy_plugin_sdk::use_call_arena!();
