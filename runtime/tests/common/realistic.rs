//! The benchmark's realistic incident and the first recommendation the default
//! parser finds in its reply, validated once by a given plugin.

use kubeskippy::plugin_host::{Plugin, PluginHost};
use kubeskippy::wit::{Incident, Recommendation, ReviewContext, Verdict};

pub fn validate(host: &PluginHost, plugin: &Plugin) -> Verdict {
    let incident = kubeskippy::bench::realistic_incident();
    let analysis =
        kubeskippy_parser::parse_response(&kubeskippy::bench::realistic_reply(), &incident)
            .expect("the benchmark reply parses");
    let recommendation: Recommendation = kubeskippy::wit::from_guest(&analysis.recommendations[0]);
    let incident: Incident = kubeskippy::wit::from_guest(&incident);
    let context = ReviewContext {
        rank: 0,
        allowed_so_far: 0,
    };
    host.validate(plugin, &recommendation, &incident, context)
        .expect("the call succeeds")
}
