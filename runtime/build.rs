//! Builds the default plugins (and the test plugins of tests/plugins: the
//! hostile one, a validator built against the frozen 0.1.0 contract, one with
//! an approval gate) for wasm32-wasip2 so the host can embed them and
//! `cargo run` works from a fresh checkout. The
//! plugins get a target directory of their own: the outer build holds the lock
//! on the normal one.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const PLUGINS: [(&str, &str); 6] = [
    ("kubeskippy-prompt", "kubeskippy_prompt"),
    ("kubeskippy-parser", "kubeskippy_parser"),
    ("kubeskippy-validator", "kubeskippy_validator"),
    ("kubeskippy-hostile-plugin", "kubeskippy_hostile_plugin"),
    ("kubeskippy-legacy-validator", "kubeskippy_legacy_validator"),
    (
        "kubeskippy-approval-gate-validator",
        "kubeskippy_approval_gate_validator",
    ),
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("runtime/ lives in the workspace")
        .to_path_buf();
    for watched in ["wit", "plugins", "tests/plugins", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm-plugins");

    println!(
        "cargo:rustc-env=KUBESKIPPY_WIT_VERSION={}",
        wit_version(&workspace.join("wit/plugin.wit"))
    );
    ensure_wasm_target();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (package, _) in PLUGINS {
        command.args(["-p", package]);
    }
    // Flags and wrappers meant for the host build (coverage, sanitizers, clippy
    // acting as rustc) must not leak into the guest build.
    for variable in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        command.env_remove(variable);
    }
    // Plugins are shipped inside the binary: small and fast beats debuggable.
    // The linker sizes the initial memory to the 1 MiB stack and the data,
    // leaving libc's allocator next to no heap, so a call that builds a prompt
    // or parses a reply would grow the memory several times, and every grow is
    // a host call that changes page protections (and is undone when the pooled
    // instance is reset). 2 MiB leaves a heap these calls fit in.
    command
        .env(
            "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
            "-C link-arg=--initial-memory=2097152",
        )
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    let status = command
        .status()
        .expect("cannot run cargo to build the plugins");
    assert!(
        status.success(),
        "building the default plugins for wasm32-wasip2 failed; run `rustup target add wasm32-wasip2` if the target is missing"
    );

    let artifacts = target_dir.join("wasm32-wasip2").join("release");
    for (package, file_stem) in PLUGINS {
        let path = artifacts.join(format!("{file_stem}.wasm"));
        assert!(
            path.exists(),
            "{package} built, but {} is missing",
            path.display()
        );
        let variable = format!(
            "KUBESKIPPY_PLUGIN_{}",
            file_stem.trim_start_matches("kubeskippy_").to_uppercase()
        );
        println!("cargo:rustc-env={variable}={}", path.display());
    }
}

/// rustup installs the targets of rust-toolchain.toml only when it installs the
/// toolchain; a machine that already had the toolchain lacks wasm32-wasip2, so
/// add it here and `cargo run` works from a fresh checkout.
fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string());
    let installed = sysroot
        .map(|root| {
            PathBuf::from(root)
                .join("lib/rustlib/wasm32-wasip2")
                .exists()
        })
        .unwrap_or(false);
    if installed {
        return;
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", "wasm32-wasip2"]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        rustup.args(["--toolchain", &toolchain]);
    }
    match rustup.status() {
        Ok(status) if status.success() => {}
        _ => println!(
            "cargo:warning=could not add the wasm32-wasip2 target with rustup; the plugin build will fail without it"
        ),
    }
}

/// The version of `package kubeskippy:plugin@X.Y.Z;` in the WIT file: what the
/// host says it implements is the interface it was built from.
fn wit_version(wit: &std::path::Path) -> String {
    let text = std::fs::read_to_string(wit)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", wit.display()));
    text.lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("package kubeskippy:plugin@")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            panic!(
                "{} declares no `package kubeskippy:plugin@VERSION;`",
                wit.display()
            )
        })
}
