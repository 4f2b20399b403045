//! {{name}}: a KubeSkippy validator (world `{{world}}`). It denies scaling to
//! zero replicas and allows everything else; put your rules in `judge`.

wit_bindgen::generate!({
    path: "{{wit_dir}}",
    world: "{{world}}",
});

use exports::kubeskippy::plugin::safety_validator::Guest;
use kubeskippy::plugin::types::{Action, Incident, Recommendation, ReviewContext, Verdict};

struct Component;

impl Guest for Component {
    fn validate(recommendation: Recommendation, incident: Incident, context: ReviewContext) -> Verdict {
        judge(&recommendation, &incident, context)
    }
}

export!(Component);

/// Plain Rust over the WIT types, so `cargo test` runs it natively.
pub fn judge(recommendation: &Recommendation, _incident: &Incident, _context: ReviewContext) -> Verdict {
    match recommendation.action {
        Action::Scale(0) => Verdict::Deny("scaling to zero replicas takes the workload down".to_string()),
        _ => Verdict::Allow,
    }
}
