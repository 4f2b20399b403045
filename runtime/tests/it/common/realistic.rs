//! The benchmark's realistic incident and the first recommendation the default
//! parser finds in its reply, validated once by a given plugin.

use kubeskippy::core::wit::{Incident, Recommendation, ReviewContext, Verdict};
use kubeskippy::host::{Plugin, PluginHost};

/// The first recommendation the default parser finds in the realistic reply.
pub fn recommendation() -> Recommendation {
    let incident = kubeskippy_plugin_sdk::sample::realistic_incident();
    let analysis = kubeskippy_parser::parse_response(
        &kubeskippy_plugin_sdk::sample::realistic_reply(),
        &incident,
    )
    .expect("the benchmark reply parses");
    kubeskippy::core::wit::from_guest(&analysis.recommendations[0])
}

pub fn validate(host: &PluginHost, plugin: &Plugin) -> Verdict {
    let incident: Incident =
        kubeskippy::core::wit::from_guest(&kubeskippy_plugin_sdk::sample::realistic_incident());
    let context = ReviewContext {
        rank: 0,
        allowed_so_far: 0,
    };
    host.validate(plugin, &recommendation(), &incident, context)
        .expect("the call succeeds")
}
