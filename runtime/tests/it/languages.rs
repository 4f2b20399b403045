//! Plugins in three languages on one WIT, built by the real toolchains
//! (`scripts/build-plugin`: cargo, jco, componentize-py) and run by the real
//! host: the example plugins pass their own fixtures and the daemon's
//! checks, and `plugin new` makes a project in each language that builds and
//! passes `plugin test` as generated.
//!
//! Runs when `KUBESKIPPY_JCO` and `KUBESKIPPY_COMPONENTIZE_PY` name the
//! toolchains (`scripts/test` installs them with `scripts/plugin-toolchains`);
//! otherwise each test skips with a note.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn toolchains() -> bool {
    let present = ["KUBESKIPPY_JCO", "KUBESKIPPY_COMPONENTIZE_PY"]
        .iter()
        .all(|variable| std::env::var_os(variable).is_some());
    if !present {
        eprintln!(
            "skipped: set KUBESKIPPY_JCO and KUBESKIPPY_COMPONENTIZE_PY (eval \"$(scripts/plugin-toolchains)\") to build plugins in JS and Python"
        );
    }
    present
}

/// Builds the plugin project `source` in `lang` into `out`.
fn build(lang: &str, source: &Path, out: &Path, extra: &[&str]) {
    let output = Command::new(repository().join("scripts/build-plugin"))
        .arg(lang)
        .arg(source)
        .arg(out)
        .args(extra)
        // Rust plugins share one target folder outside the repository, kept
        // between runs.
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-builds"),
        )
        .output()
        .expect("scripts/build-plugin runs");
    assert!(
        output.status.success(),
        "building {} failed: {}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn kubeskippy(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kubeskippy"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn check_and_test(wasm: &Path, fixtures: &Path) -> String {
    let (passed, check) = kubeskippy(&["plugin".as_ref(), "check".as_ref(), wasm.as_os_str()]);
    assert!(passed, "{check}");
    let (passed, test) = kubeskippy(&[
        "plugin".as_ref(),
        "test".as_ref(),
        wasm.as_os_str(),
        "--fixtures".as_ref(),
        fixtures.as_os_str(),
    ]);
    assert!(passed, "{test}");
    assert!(test.contains(" 0 failed"), "{test}");
    check
}

#[test]
fn the_example_plugins_build_and_pass_their_fixtures_in_rust_js_and_python() {
    if !toolchains() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    for (lang, example, kind) in [
        ("rust", "rust-restart-budget", "validator plugin"),
        ("js", "jvm-memory-prompt", "prompt plugin"),
        ("python", "team-validator", "validator plugin"),
    ] {
        let source = repository().join("examples/plugins").join(example);
        let wasm = out.path().join(format!("{example}.wasm"));
        build(lang, &source, &wasm, &[]);
        let check = check_and_test(&wasm, &source.join("fixtures"));
        assert!(check.contains(kind), "{example}: {check}");
    }
}

#[test]
fn a_scaffolded_project_builds_and_passes_plugin_test_in_each_language() {
    if !toolchains() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // One kind per language, so each language and each kind is covered once.
    for (lang, kind) in [
        ("rust", "validator"),
        ("js", "prompt"),
        ("python", "parser"),
    ] {
        let name = format!("team-{lang}-{kind}");
        let project = work.path().join(&name);
        let (made, said) = kubeskippy(&[
            "plugin".as_ref(),
            "new".as_ref(),
            name.as_ref(),
            "--lang".as_ref(),
            lang.as_ref(),
            "--kind".as_ref(),
            kind.as_ref(),
            "--dir".as_ref(),
            project.as_os_str(),
        ]);
        assert!(made, "{said}");
        let wasm = work.path().join(format!("{name}.wasm"));
        // The project's own copy of the WIT, as the binary that made it has it.
        let wit = project.join("wit/plugin.wit");
        let extra: Vec<&str> = match lang {
            "rust" => vec![],
            _ => vec!["--wit", wit.to_str().unwrap()],
        };
        build(lang, &project, &wasm, &extra);
        let check = check_and_test(&wasm, &project.join("fixtures"));
        assert!(check.contains(&format!("{kind} plugin")), "{lang}: {check}");
    }
}
