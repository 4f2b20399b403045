//! The Helm chart agrees with the binary: its CRDs are what `kubeskippy crds`
//! prints, and the config its values render is one the daemon accepts.
//! (scripts/check-chart lints and renders the chart itself.)

use std::path::Path;

fn chart() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubeskippy")
}

#[test]
fn the_charts_crds_are_the_binarys() {
    let shipped = std::fs::read_to_string(chart().join("crds/kubeskippy.io.yaml")).unwrap();
    assert!(
        shipped == kubeskippy::core::crd::crds_yaml(),
        "deploy/kubeskippy/crds/kubeskippy.io.yaml is stale: regenerate it with \
         `cargo run -q -- crds > deploy/kubeskippy/crds/kubeskippy.io.yaml`"
    );
}

#[test]
fn the_default_values_render_a_config_the_daemon_accepts() {
    let values: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let config = serde_yaml_ng::to_string(&values["config"]).unwrap();
    let parsed = kubeskippy::core::config::Config::parse(&config)
        .unwrap_or_else(|error| panic!("values.yaml config: {error}"));
    assert_eq!(parsed.ai.model, "llama2:7b");
    assert_eq!(parsed.ai.min_confidence, 0.7);
}

#[test]
fn the_example_policy_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/shop-healing.yaml");
    let policy: kubeskippy::core::crd::policy::HealingPolicy =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(policy.validate(), Ok(()));
    assert_eq!(policy.spec.triggers.len(), 7);

    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/cluster-latency.yaml");
    let cluster: kubeskippy::core::crd::policy::ClusterHealingPolicy =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cluster = kubeskippy::core::crd::policy::HealingPolicy::from(cluster);
    assert_eq!(cluster.validate(), Ok(()));
    // The same trigger in a namespace's own policy is refused.
    let mut namespaced = cluster.clone();
    namespaced.metadata.namespace = Some("shop".into());
    namespaced.spec.selector.namespaces.clear();
    assert!(
        namespaced
            .validate()
            .unwrap_err()
            .contains("prometheus triggers belong in a ClusterHealingPolicy")
    );
}
