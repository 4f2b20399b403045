//! The sandbox contains misbehaving plugins: each hostile call ends in a typed
//! error (or a denied capability) and the very next call on the same host works.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kubeskippy::analyze::pipeline::defaults;
use kubeskippy::core::wit::{Action, Incident, ObjectRef, Recommendation, ReviewContext, Verdict};
use kubeskippy::host::{Limits, Plugin, PluginError, PluginHost, PluginKind};

const HOSTILE: &str = env!("KUBESKIPPY_PLUGIN_HOSTILE_PLUGIN");

fn incident() -> Incident {
    kubeskippy::core::wit::from_guest(&kubeskippy_plugin_sdk::sample::oom_crashloop_incident())
}

fn recommendation() -> Recommendation {
    Recommendation {
        action: Action::Restart,
        target: ObjectRef {
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "app".into(),
        },
        reason: "test".into(),
        risk: "none".into(),
        confidence: 0.9,
    }
}

fn hostile(host: &PluginHost, mode: &str, limits: Limits) -> Plugin {
    let config = BTreeMap::from([("mode".to_string(), mode.to_string())]);
    host.load_file(HOSTILE.as_ref(), PluginKind::Validator, limits, config)
        .expect("the hostile plugin loads")
}

fn call(host: &PluginHost, plugin: &Plugin) -> Result<Verdict, PluginError> {
    host.validate(
        plugin,
        &recommendation(),
        &incident(),
        ReviewContext {
            rank: 0,
            allowed_so_far: 0,
        },
    )
}

/// Limits for calls that are not about the deadline: the default 100 ms is
/// for one plugin call on an idle core, and `scripts/test` runs these beside
/// two model servers and a control plane on two cores.
fn roomy() -> Limits {
    Limits {
        deadline: Duration::from_secs(10),
        ..Limits::default()
    }
}

/// After any failure the host must still serve: a well-behaved call on the same
/// host succeeds.
fn assert_host_still_serves(host: &PluginHost) {
    let polite = hostile(host, "allow", roomy());
    assert_eq!(call(host, &polite), Ok(Verdict::Allow));
}

#[test]
fn an_infinite_loop_hits_the_deadline() {
    let host = PluginHost::new().unwrap();
    let limits = Limits {
        deadline: Duration::from_millis(50),
        ..Limits::default()
    };
    let plugin = hostile(&host, "loop", limits);
    let started = Instant::now();
    let error = call(&host, &plugin).unwrap_err();
    assert!(
        matches!(&error, PluginError::Timeout { limit_ms: 50, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("timed out after 50 ms"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline did not stop the loop promptly"
    );
    assert_host_still_serves(&host);
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let host = PluginHost::new().unwrap();
    let limits = Limits {
        memory_bytes: 16 << 20,
        deadline: Duration::from_secs(5),
    };
    let plugin = hostile(&host, "allocate", limits);
    let error = call(&host, &plugin).unwrap_err();
    assert_eq!(
        error,
        PluginError::MemoryLimit {
            plugin: HOSTILE.to_string(),
            limit_bytes: 16 << 20
        }
    );
    assert_host_still_serves(&host);
}

#[test]
fn a_panic_is_a_trap_naming_the_plugin() {
    let host = PluginHost::new().unwrap();
    let plugin = hostile(&host, "panic", roomy());
    match call(&host, &plugin).unwrap_err() {
        PluginError::Trap { plugin, message } => {
            assert_eq!(plugin, HOSTILE);
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_host_still_serves(&host);
}

fn denied_with(host: &PluginHost, mode: &str) -> String {
    match call(host, &hostile(host, mode, roomy())) {
        Ok(Verdict::Deny(report)) => report,
        other => panic!("mode {mode}: expected the plugin to report what it saw, got {other:?}"),
    }
}

#[test]
fn files_environment_and_network_are_denied() {
    // SAFETY: tests in this file do not read this variable concurrently.
    unsafe { std::env::set_var("KUBESKIPPY_SECRET_FOR_TEST", "must-not-leak") };
    let host = PluginHost::new().unwrap();
    let file = denied_with(&host, "read-file");
    assert!(
        file.starts_with("file: Err("),
        "reading a host file succeeded: {file}"
    );
    let env = denied_with(&host, "read-env");
    assert_eq!(env, "env: []", "the plugin saw environment variables");
    let connect = denied_with(&host, "connect");
    assert!(
        connect.starts_with("connect: Err("),
        "opening a socket succeeded: {connect}"
    );
    assert_host_still_serves(&host);
}

#[test]
fn printing_does_not_disturb_the_call() {
    let host = PluginHost::new().unwrap();
    let plugin = hostile(&host, "print", roomy());
    assert_eq!(call(&host, &plugin), Ok(Verdict::Allow));
}

#[test]
fn wrong_files_fail_to_load_with_clear_messages() {
    let host = PluginHost::new().unwrap();
    let load = |bytes: &[u8], kind| {
        host.load("candidate", bytes, kind, Limits::default(), BTreeMap::new())
            .err()
            .map(|e| e.to_string())
    };

    let text = load(b"not wasm at all", PluginKind::Prompt).unwrap();
    assert!(text.contains("is not a WebAssembly component"), "{text}");

    let core_module = wat::parse_str("(module)").unwrap();
    let text = load(&core_module, PluginKind::Prompt).unwrap();
    assert!(
        text.contains("core WebAssembly module, not a component"),
        "{text}"
    );

    let text = load(defaults::PARSER, PluginKind::Prompt).unwrap();
    assert!(
        text.contains("is a parser plugin, not a prompt plugin"),
        "{text}"
    );

    let empty_component = wat::parse_str("(component)").unwrap();
    let text = load(&empty_component, PluginKind::Validator).unwrap();
    assert!(
        text.contains("exports none of the KubeSkippy plugin interfaces"),
        "{text}"
    );

    let missing = host.load_file(
        "/nonexistent/plugin.wasm".as_ref(),
        PluginKind::Parser,
        Limits::default(),
        BTreeMap::new(),
    );
    assert!(
        missing
            .err()
            .unwrap()
            .to_string()
            .starts_with("plugin /nonexistent/plugin.wasm: cannot load:")
    );
}

#[test]
fn a_plugin_for_an_incompatible_major_version_is_refused() {
    // A component that exports the prompt interface of a future 0.2.0 package.
    let future = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $exported (export "build-prompt" (func $f)))
            (export "kubeskippy:plugin/prompt-builder@0.2.0" (instance $exported)))"#,
    )
    .unwrap();
    let error = PluginHost::new()
        .unwrap()
        .load(
            "future",
            &future,
            PluginKind::Prompt,
            Limits::default(),
            BTreeMap::new(),
        )
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("was built for kubeskippy:plugin@0.2.0"),
        "{error}"
    );
    assert!(error.contains("loads 0.1.x plugins only"), "{error}");
}

#[test]
fn compiled_plugins_are_cached_and_a_corrupt_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let load = |host: &PluginHost| {
        host.load(
            "prompt",
            defaults::PROMPT,
            PluginKind::Prompt,
            Limits::default(),
            BTreeMap::new(),
        )
    };
    let host = PluginHost::with_cache_dir(Some(dir.path().to_path_buf())).unwrap();
    load(&host).unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].extension().unwrap(), "cwasm");

    std::fs::write(&entries[0], b"garbage").unwrap();
    let again = PluginHost::with_cache_dir(Some(dir.path().to_path_buf())).unwrap();
    let plugin = load(&again).expect("a corrupt cache entry is discarded, not fatal");
    let prompt = again.build_prompt(&plugin, &incident()).unwrap();
    assert!(prompt.user.contains("CLUSTER METRICS"));
    assert!(
        std::fs::read(&entries[0]).unwrap().len() > 1000,
        "the entry was rewritten"
    );
}
