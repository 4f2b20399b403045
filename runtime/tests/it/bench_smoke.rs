//! `kubeskippy bench` runs end to end on a small cluster: the benchmark is
//! code like any other, and a figure it cannot print is a figure nobody
//! measured. Only with the `bench` feature (on in `./scripts/test`); the
//! figures themselves are not judged here.
#![cfg(feature = "bench")]

use std::process::Command;

#[test]
fn the_benchmark_runs_on_a_small_cluster() {
    let output = Command::new(env!("CARGO_BIN_EXE_kubeskippy"))
        .args(["bench", "--iterations", "5", "--pods", "200"])
        .env("KUBESKIPPY_CACHE_DIR", "off")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for section in ["plugin calls", "provider overhead", "evaluation pass"] {
        assert!(stdout.contains(section), "no {section:?} in:\n{stdout}");
    }
}
