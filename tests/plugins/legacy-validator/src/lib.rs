//! A validator exactly as one built before 0.1.1 would be: its bindings come
//! from the frozen `wit/0.1.0/plugin.wit`, so it imports and exports the
//! `@0.1.0` names, and the tests show a 0.1.1 host loads it and applies its
//! verdicts. It denies restarts and allows everything else (the host's floor
//! refuses a scale to zero before any validator sees it, so denying that
//! would show nothing), and it logs through the host so it imports
//! `host@0.1.0` too.

#[cfg(target_arch = "wasm32")]
mod component {
    use exports::kubeskippy::plugin::safety_validator::Guest;
    use kubeskippy::plugin::host::{LogLevel, log};
    use kubeskippy::plugin::types::{Action, Incident, Recommendation, ReviewContext, Verdict};

    wit_bindgen::generate!({
        path: "../../../wit/0.1.0",
        world: "validator-plugin",
    });

    struct Component;

    impl Guest for Component {
        fn validate(recommendation: Recommendation, _: Incident, _: ReviewContext) -> Verdict {
            match recommendation.action {
                Action::Restart => {
                    log(LogLevel::Info, "denying a restart");
                    Verdict::Deny("the legacy validator leaves restarts to people".into())
                }
                _ => Verdict::Allow,
            }
        }
    }

    export!(Component);
}
