//! Where an address-space limit refuses the instance pool's reservation, the
//! host allocates instances on demand instead of failing to start. A test
//! binary of its own: the limit applies to the whole process.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;

use kubeskippy::analyze::pipeline::defaults;
use kubeskippy::core::wit::Verdict;
use kubeskippy::host::{Limits, PluginHost, PluginKind};

#[path = "it/common/realistic.rs"]
mod realistic;

#[repr(C)]
struct Rlimit {
    current: u64,
    maximum: u64,
}

unsafe extern "C" {
    fn setrlimit(resource: i32, limit: *const Rlimit) -> i32;
}

const RLIMIT_AS: i32 = 9;

#[test]
fn a_host_under_an_address_space_limit_allocates_on_demand() {
    // Room for the process and one instance on demand (a 4 GiB reservation),
    // far below the pool's 130 GiB.
    let limit = Rlimit {
        current: 24 << 30,
        maximum: 24 << 30,
    };
    assert_eq!(
        unsafe { setrlimit(RLIMIT_AS, &limit) },
        0,
        "setrlimit failed"
    );

    let host = PluginHost::with_cache_dir(None).expect("the host starts under the limit");
    let validator = host
        .load(
            "default-validator",
            defaults::VALIDATOR,
            PluginKind::Validator,
            Limits::default(),
            BTreeMap::new(),
        )
        .expect("the default validator loads");
    for _ in 0..3 {
        assert_eq!(realistic::validate(&host, &validator), Verdict::Allow);
    }
}
