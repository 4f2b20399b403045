//! `kubeskippy plugin …` as an author runs it: the binary on real files.

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::ConfigMap;
use kubeskippy::analyze::pipeline::defaults;
use kubeskippy::operator::plugins::package;

fn kubeskippy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeskippy"))
        .args(args)
        .env("KUBESKIPPY_CACHE_DIR", "off")
        .output()
        .expect("the binary runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn check_reports_what_a_component_is_and_refuses_what_the_daemon_would() {
    let dir = tempfile::tempdir().unwrap();
    let validator = write(dir.path(), "validator.wasm", defaults::VALIDATOR);
    let output = kubeskippy(&["plugin", "check", &validator]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("validator.wasm: validator plugin, built for kubeskippy:plugin@0.1"),
        "{stdout}"
    );
    assert!(stdout.contains("fits one ConfigMap"), "{stdout}");
    assert!(stdout.contains("kubeskippy:plugin/host@0.1"), "{stdout}");
    assert!(stdout.contains("fixture run:"), "{stdout}");

    let module = write(
        dir.path(),
        "module.wasm",
        &wat::parse_str("(module)").unwrap(),
    );
    let output = kubeskippy(&["plugin", "check", &module]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("module.wasm: is a core WebAssembly module, not a component"),
        "{stderr}"
    );

    let output = kubeskippy(&["plugin", "check", "/nonexistent.wasm"]);
    assert!(!output.status.success());
    assert!(text(&output).1.contains("/nonexistent.wasm: No such file"));
}

#[test]
fn configmap_prints_configmaps_the_daemon_reassembles() {
    let dir = tempfile::tempdir().unwrap();
    let big =
        crate::versions::versioned_with_padding(defaults::PROMPT, 1, 2 * package::CHUNK_BYTES);
    let file = write(dir.path(), "big.wasm", &big);
    let output = kubeskippy(&[
        "plugin",
        "configmap",
        &file,
        "--name",
        "jvm-prompt",
        "--namespace",
        "ops",
        "--plugin-version",
        "1.0.0",
    ]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let configmaps: Vec<ConfigMap> = serde_yaml_ng::Deserializer::from_str(&stdout)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect();
    assert_eq!(configmaps.len(), 3);
    for configmap in &configmaps {
        assert_eq!(configmap.metadata.namespace.as_deref(), Some("ops"));
        let labels = configmap.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[package::LABEL], "jvm-prompt");
    }
    let refs: Vec<&ConfigMap> = configmaps.iter().collect();
    let assembled = package::assemble("jvm-prompt", &refs, 64 << 20).unwrap();
    assert_eq!(assembled.wasm, big);
    assert_eq!(assembled.version.as_deref(), Some("1.0.0"));

    let output = kubeskippy(&["plugin", "configmap", &file, "--name", "Not_A_Name"]);
    assert!(!output.status.success());
    assert!(
        text(&output)
            .1
            .contains("plugin name \"Not_A_Name\" must be")
    );
}

#[test]
fn test_compares_with_fixtures_and_shows_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let validator = write(dir.path(), "validator.wasm", defaults::VALIDATOR);
    let fixtures = dir.path().join("fixtures");
    std::fs::create_dir(&fixtures).unwrap();
    let incident =
        serde_json::to_value(kubeskippy_plugin_sdk::sample::oom_crashloop_incident()).unwrap();
    std::fs::write(
        fixtures.join("incident.json"),
        serde_json::to_string(&incident).unwrap(),
    )
    .unwrap();
    let case = |action: &str, confidence: f64, expect: &str| {
        format!(
            "incident: incident.json\nrecommendation:\n  action: {action}\n  target: {{kind: Deployment, namespace: shop, name: app}}\n  reason: r\n  risk: r\n  confidence: {confidence}\n{expect}"
        )
    };
    std::fs::write(
        fixtures.join("scale.yaml"),
        case("{Scale: 3}", 0.9, "expect: Allow\n"),
    )
    .unwrap();
    std::fs::write(fixtures.join("unsure.yaml"), case("Restart", 0.1, "")).unwrap();

    let fixtures_arg = fixtures.display().to_string();
    let test = |extra: &[&str]| {
        let mut args = vec!["plugin", "test", &validator, "--fixtures", &fixtures_arg];
        args.extend_from_slice(extra);
        kubeskippy(&args)
    };
    // No expectation yet: --update records what the plugin returns.
    let output = test(&[]);
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("run with --update"),
        "{:?}",
        text(&output)
    );
    let output = test(&["--update"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let recorded = std::fs::read_to_string(fixtures.join("unsure.yaml")).unwrap();
    assert!(
        recorded.contains("Deny"),
        "a low confidence is denied: {recorded}"
    );

    let output = test(&[]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("ok      scale") && stdout.contains("2 passed, 0 failed"),
        "{stdout}"
    );

    // A wrong expectation fails with a diff.
    std::fs::write(
        fixtures.join("scale.yaml"),
        case("{Scale: 3}", 0.9, "expect: {Deny: nope}\n"),
    )
    .unwrap();
    let output = test(&[]);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stdout.contains("FAILED  scale"), "{stdout}");
    assert!(
        stdout.contains("-Deny: nope") && stdout.contains("+Allow"),
        "{stdout}"
    );
    assert!(stderr.contains("1 of 2 fixture cases failed"), "{stderr}");

    // A case cannot make the tool read a file outside its directory.
    std::fs::write(dir.path().join("secret.json"), "\"token\"").unwrap();
    std::fs::write(
        fixtures.join("scale.yaml"),
        case("{Scale: 3}", 0.9, "expect: Allow\n").replace("incident.json", "../secret.json"),
    )
    .unwrap();
    let output = test(&[]);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("incident file \"../secret.json\" is outside the fixtures directory"),
        "{stderr}"
    );
    assert!(!format!("{stdout}{stderr}").contains("token"));
}

#[test]
fn bench_prints_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = write(dir.path(), "prompt.wasm", defaults::PROMPT);
    let output = kubeskippy(&["plugin", "bench", &prompt, "--calls", "20"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    for figure in [
        "compile (no cache):",
        "load from the cache:",
        "20 calls: p50",
        "peak linear memory per call:",
    ] {
        assert!(stdout.contains(figure), "{figure}: {stdout}");
    }
}
