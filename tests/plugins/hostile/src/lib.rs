//! A validator that does what its `mode` config key says, so the sandbox tests
//! can check the host contains each kind of misbehaviour. Modes: `loop`,
//! `allocate`, `read-file`, `read-env`, `connect`, `panic`, `print`, `count`,
//! `spin`, `allow`, `raise` (adjusts any scale to 15 replicas).
//! `read-file`, `read-env` and `connect` deny with what they saw, so a test can
//! tell a denied capability from a granted one.

#[cfg(target_arch = "wasm32")]
mod component {
    use kubeskippy_plugin_sdk::types::{Incident, Recommendation, ReviewContext, Verdict};

    wit_bindgen::generate!({
        path: "../../../wit",
        world: "validator-plugin",
        with: {
            "kubeskippy:plugin/types@0.1.1": kubeskippy_plugin_sdk::types,
            "kubeskippy:plugin/host@0.1.1": kubeskippy_plugin_sdk::host,
        },
    });

    struct Component;

    impl exports::kubeskippy::plugin::safety_validator::Guest for Component {
        fn validate(recommendation: Recommendation, _: Incident, _: ReviewContext) -> Verdict {
            let mode = kubeskippy_plugin_sdk::host::config("mode").unwrap_or_default();
            if mode == "raise" {
                return crate::raise(recommendation);
            }
            crate::misbehave(&mode)
        }
    }

    export!(Component);
}

use std::sync::atomic::{AtomicU32, Ordering};

use kubeskippy_plugin_sdk::types::Verdict;

/// A validator that loosens what it is shown: any scale becomes 15 replicas.
pub fn raise(mut recommendation: kubeskippy_plugin_sdk::types::Recommendation) -> Verdict {
    use kubeskippy_plugin_sdk::types::{Action, Adjustment};
    if !matches!(recommendation.action, Action::Scale(_)) {
        return Verdict::Allow;
    }
    recommendation.action = Action::Scale(15);
    Verdict::Adjust(Adjustment {
        recommendation,
        reason: "more is better".into(),
    })
}

/// Calls this instance has served; a fresh instance per call always says 1.
static CALLS: AtomicU32 = AtomicU32::new(0);

pub fn misbehave(mode: &str) -> Verdict {
    match mode {
        "loop" => {
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "allocate" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "read-file" => Verdict::Deny(format!(
            "file: {:?}",
            std::fs::read_to_string("/etc/hostname").map_err(|e| e.kind().to_string())
        )),
        "read-env" => Verdict::Deny(format!("env: {:?}", std::env::vars().collect::<Vec<_>>())),
        "connect" => Verdict::Deny(format!(
            "connect: {:?}",
            std::net::TcpStream::connect("127.0.0.1:1")
                .map(|_| ())
                .map_err(|e| e.kind().to_string())
        )),
        "panic" => panic!("the hostile plugin panics on purpose"),
        "count" => Verdict::Deny(format!(
            "calls: {}",
            CALLS.fetch_add(1, Ordering::Relaxed) + 1
        )),
        // Holds its instance for a while, so concurrent calls overlap.
        "spin" => {
            let mut counter: u64 = 0;
            for _ in 0..20_000_000 {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
            Verdict::Allow
        }
        "print" => {
            println!("hello from the hostile plugin");
            Verdict::Allow
        }
        _ => Verdict::Allow,
    }
}
