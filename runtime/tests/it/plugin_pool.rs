//! Instances drawn from the host's pool: each call still starts from a fresh
//! memory, and more concurrent calls than the pool has slots wait instead of
//! failing.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use kubeskippy::core::wit::Verdict;
use kubeskippy::host::{Limits, Plugin, PluginHost, PluginKind};

use crate::realistic;

const HOSTILE: &str = env!("KUBESKIPPY_PLUGIN_HOSTILE_PLUGIN");

fn hostile(host: &PluginHost, mode: &str) -> Plugin {
    let config = BTreeMap::from([("mode".to_string(), mode.to_string())]);
    let limits = Limits {
        // Generous: with dozens of threads on a few cores, a call waits long
        // for the CPU.
        deadline: Duration::from_secs(30),
        ..Limits::default()
    };
    host.load_file(HOSTILE.as_ref(), PluginKind::Validator, limits, config)
        .expect("the hostile plugin loads")
}

#[test]
fn every_call_sees_a_fresh_instance() {
    let host = PluginHost::with_cache_dir(None).unwrap();
    let counter = hostile(&host, "count");
    for _ in 0..50 {
        assert_eq!(
            realistic::validate(&host, &counter),
            Verdict::Deny("calls: 1".into())
        );
    }
}

#[test]
fn more_concurrent_calls_than_slots_wait_for_one() {
    let host = Arc::new(PluginHost::with_cache_dir(None).unwrap());
    let spinner = hostile(&host, "spin");
    // Well above the pool's 16 slots: every thread holds an instance for
    // milliseconds of CPU on a machine with few cores, so most overlap.
    let threads = 48;
    let start = Arc::new(Barrier::new(threads));
    let calls: Vec<_> = (0..threads)
        .map(|_| {
            let (host, spinner, start) = (host.clone(), spinner.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                realistic::validate(&host, &spinner)
            })
        })
        .collect();
    for handle in calls {
        assert_eq!(handle.join().expect("no call panics"), Verdict::Allow);
    }
}
