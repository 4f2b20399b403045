//! The contract's compatible bump, 0.1.0 → 0.1.1: a validator built against
//! the frozen `wit/0.1.0/plugin.wit` loads in this host unchanged, wasmtime
//! finds its `@0.1.0` exports through the host's 0.1.1 bindings, and its
//! verdicts are applied.

use std::time::Duration;

use kubeskippy::analyze::pipeline::{Analyzer, PluginFiles};
use kubeskippy::core::config::Config;
use kubeskippy::core::snapshot::Snapshot;
use kubeskippy::core::wit::{
    Action, Incident, ObjectRef, Patch, Recommendation, ReviewContext, Verdict,
};
use kubeskippy::host::{Limits, PluginHost, PluginKind, WIT_VERSION};
use wasmtime::component::{Component, Linker};

use crate::common::example;

const LEGACY: &str = env!("KUBESKIPPY_PLUGIN_LEGACY_VALIDATOR");
const VALIDATE: &str = "kubeskippy:plugin/safety-validator";

fn legacy_component(engine: &wasmtime::Engine) -> Component {
    Component::from_file(engine, LEGACY).expect("the legacy validator compiles")
}

fn recommendation(action: Action) -> Recommendation {
    Recommendation {
        action,
        target: ObjectRef::new("Deployment", "shop", "app"),
        reason: "test".into(),
        risk: "low".into(),
        confidence: 0.9,
    }
}

#[test]
fn the_legacy_validator_speaks_only_0_1_0_to_a_0_1_1_host() {
    assert_eq!(WIT_VERSION, "0.1.1");
    let engine = wasmtime::Engine::default();
    let component = legacy_component(&engine);
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(&engine).map(|(name, _)| name.into()).collect();
    let exports: Vec<String> = ty.exports(&engine).map(|(name, _)| name.into()).collect();
    assert_eq!(exports, [format!("{VALIDATE}@0.1.0")]);
    assert!(
        imports.contains(&"kubeskippy:plugin/host@0.1.0".to_string()),
        "{imports:?}"
    );
    assert!(
        imports
            .iter()
            .filter(|name| name.starts_with("kubeskippy:"))
            .all(|name| name.ends_with("@0.1.0")),
        "{imports:?}"
    );
}

/// What the generated `ValidatorPluginPre::new` does: it looks the export up
/// by the name in the host's WIT (`@0.1.1`), and wasmtime answers with the
/// semver-compatible `@0.1.0` export, but not across a breaking version.
#[test]
fn wasmtimes_export_lookup_is_semver_compatible() {
    let engine = wasmtime::Engine::default();
    let component = legacy_component(&engine);
    assert!(
        component
            .get_export_index(None, format!("{VALIDATE}@0.1.1"))
            .is_some()
    );
    assert!(
        component
            .get_export_index(None, format!("{VALIDATE}@0.2.0"))
            .is_none()
    );
    let mut linker = Linker::<()>::new(&engine);
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let instance_pre = linker.instantiate_pre(&component).unwrap();
    kubeskippy::core::wit::validator::ValidatorPluginPre::new(instance_pre)
        .expect("the 0.1.1 bindings find the 0.1.0 export");
}

#[test]
fn the_0_1_1_host_loads_the_legacy_validator_and_calls_it() {
    let host = PluginHost::with_cache_dir(None).unwrap();
    let limits = Limits {
        deadline: Duration::from_secs(10),
        ..Limits::default()
    };
    let plugin = host
        .load_file(
            LEGACY.as_ref(),
            PluginKind::Validator,
            limits,
            Default::default(),
        )
        .expect("a 0.1.0 validator loads in a 0.1.1 host");
    let incident: Incident =
        kubeskippy::core::wit::from_guest(&kubeskippy_plugin_sdk::sample::oom_crashloop_incident());
    let context = ReviewContext {
        rank: 0,
        allowed_so_far: 0,
    };
    let validate = |action| {
        host.validate(&plugin, &recommendation(action), &incident, context)
            .unwrap()
    };
    assert_eq!(
        validate(Action::Restart),
        Verdict::Deny("the legacy validator leaves restarts to people".into())
    );
    assert_eq!(
        validate(Action::Patch(Patch::StrategicMerge("{}".into()))),
        Verdict::Allow
    );
    // It has no approval gate, so it never asks for approval.
    assert_eq!(
        host.requires_approval(&plugin, &recommendation(Action::Restart), &incident),
        Ok(None)
    );
}

#[tokio::test]
async fn the_legacy_validators_verdicts_decide_what_is_planned() {
    let config = Config::parse("plugins:\n  timeout: 10s\n").unwrap();
    let files = PluginFiles {
        validators: vec![LEGACY.into()],
        replace_default_validator: true,
        ..PluginFiles::default()
    };
    let analyzer = Analyzer::new(&config, &files, None).unwrap();
    let snapshot = Snapshot::load(&example("oom-crashloop.yaml")).unwrap();
    let report = analyzer.analyze(&snapshot).await.unwrap();
    let incident = &report.incidents[0];
    let [patch, restart] = &incident.reviewed[..] else {
        panic!(
            "the rules recommend a patch and a restart: {:?}",
            incident.reviewed
        );
    };
    assert!(matches!(patch.recommendation.action, Action::Patch(_)));
    assert!(patch.allowed, "{:?}", patch.rejections);
    assert_eq!(restart.recommendation.action, Action::Restart);
    assert!(!restart.allowed);
    assert_eq!(
        restart.rejections,
        [format!(
            "{LEGACY}: the legacy validator leaves restarts to people"
        )]
    );
    let planned: Vec<_> = incident
        .actions
        .iter()
        .map(|action| action.spec.action.kind)
        .collect();
    assert_eq!(planned, [kubeskippy::core::crd::ActionKind::Patch]);
}
