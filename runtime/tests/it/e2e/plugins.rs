//! Plugins delivered through the API: ConfigMaps as `kubeskippy plugin
//! configmap` prints them, applied to the real API server, watched by a
//! `kubeskippy run` process. A new version serves within seconds; every kind
//! of bad version is refused with a Warning Event on its ConfigMap while the
//! previous version goes on serving; a missing chunk is refused after the
//! grace period and a late chunk still completes the version; deleting the
//! ConfigMaps withdraws the plugin.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{Api, DeleteParams, ListParams};
use kubeskippy::analyze::pipeline::defaults;
use kubeskippy::host::PluginKind;
use kubeskippy::host::catalog::PluginStatus;
use kubeskippy::operator::plugins::package;

use super::{RealCluster, eventually};

const HOSTILE: &[u8] = include_bytes!(env!("KUBESKIPPY_PLUGIN_HOSTILE_PLUGIN"));

/// Lets the chart's ServiceAccount read ConfigMaps in `namespace`, as the
/// chart grants it in the namespace it watches for plugins.
async fn grant_plugin_reading(cluster: &RealCluster, namespace: &str) {
    let release = &cluster.release;
    cluster
        .apply(
            "admin",
            &format!(
                r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: plugins, namespace: {namespace}}}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [list, watch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: plugins, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: plugins}}
subjects:
- {{kind: ServiceAccount, name: {}, namespace: {}}}
"#,
                release.service_account, release.namespace
            ),
        )
        .await
        .unwrap();
}

async fn apply(cluster: &RealCluster, configmaps: &[ConfigMap]) {
    for configmap in configmaps {
        let mut value = serde_json::to_value(configmap).unwrap();
        value["apiVersion"] = "v1".into();
        value["kind"] = "ConfigMap".into();
        cluster
            .apply("admin", &serde_yaml_ng::to_string(&value).unwrap())
            .await
            .unwrap();
    }
}

async fn served(health: u16) -> Vec<PluginStatus> {
    let url = format!("http://127.0.0.1:{health}/plugins");
    let Ok(reply) = reqwest::get(&url).await else {
        return Vec::new();
    };
    reply.json().await.unwrap_or_default()
}

async fn status_of(health: u16, name: &str) -> Option<PluginStatus> {
    served(health).await.into_iter().find(|p| p.name == name)
}

/// Waits for `name` to serve `digest`.
async fn serving(health: u16, name: &str, digest: &str) -> PluginStatus {
    eventually(
        Duration::from_secs(30),
        &format!("plugin {name} serving sha256:{digest}"),
        async || {
            status_of(health, name).await.filter(|status| {
                status.state == "serving" && status.digest.as_deref() == Some(digest)
            })
        },
    )
    .await
}

/// Waits for a Warning Event on ConfigMap `configmap` whose note holds `words`.
async fn rejected(cluster: &RealCluster, namespace: &str, configmap: &str, words: &str) -> String {
    let events: Api<Event> = Api::namespaced(cluster.client("admin").await, namespace);
    eventually(
        Duration::from_secs(30),
        &format!("a PluginRejected Event on {configmap} saying {words:?}"),
        async || {
            events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|event| {
                    event.reason.as_deref() == Some("PluginRejected")
                        && event.involved_object.name.as_deref() == Some(configmap)
                })
                .filter_map(|event| event.message)
                .find(|message| message.contains(words))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_configmaps_are_served_swapped_refused_and_withdrawn() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let namespace = cluster.namespace("plugins").await;
    grant_plugin_reading(cluster, &namespace).await;
    // The hostile plugin loops in every call under this config: its fixture run times out.
    let config = cluster.dir.join(format!("plugins-{namespace}.yaml"));
    std::fs::write(&config, "plugins:\n  config:\n    mode: loop\n").unwrap();
    let mut daemon = cluster.daemon(
        "plugins",
        &[&namespace],
        &[
            &format!("--plugin-namespace={namespace}"),
            "--plugin-chunk-grace=3s",
            &format!("--config={}", config.display()),
        ],
    );
    daemon.ready().await;
    let health = daemon.health_port();
    let pack = |name: &str, wasm: &[u8]| {
        package::configmaps(
            name,
            PluginKind::Validator,
            Some("e2e"),
            Some(&namespace),
            wasm,
        )
        .unwrap()
    };

    let first = crate::versions::versioned(defaults::VALIDATOR, 1);
    apply(cluster, &pack("strict", &first)).await;
    let status = serving(health, "strict", &package::sha256_hex(&first)).await;
    assert_eq!(status.kind, "validator");
    assert_eq!(status.version.as_deref(), Some("e2e"));
    assert_eq!(status.source, format!("configmap {namespace}/strict"));

    let second = crate::versions::versioned(defaults::VALIDATOR, 2);
    apply(cluster, &pack("strict", &second)).await;
    serving(health, "strict", &package::sha256_hex(&second)).await;

    // Each bad version is refused, with the reason on the ConfigMap; the
    // second version goes on serving throughout.
    apply(cluster, &pack("strict", b"not a component")).await;
    let note = rejected(
        cluster,
        &namespace,
        "strict",
        "is not a WebAssembly component",
    )
    .await;
    assert!(
        note.contains("the previous version goes on serving"),
        "{note}"
    );

    let mut mispinned = pack(
        "strict",
        &crate::versions::versioned(defaults::VALIDATOR, 3),
    );
    mispinned[0].metadata.annotations.as_mut().unwrap().insert(
        package::SHA256.into(),
        package::sha256_hex(b"what the author meant to ship"),
    );
    apply(cluster, &mispinned).await;
    rejected(cluster, &namespace, "strict", "not the pinned").await;

    apply(cluster, &pack("strict", HOSTILE)).await;
    rejected(cluster, &namespace, "strict", "the fixture run failed").await;
    let status = serving(health, "strict", &package::sha256_hex(&second)).await;
    assert!(
        status
            .last_rejection
            .as_deref()
            .is_some_and(|why| why.contains("timed out")),
        "{status:?}"
    );

    // A plugin of three chunks, one of them late.
    let big =
        crate::versions::versioned_with_padding(defaults::VALIDATOR, 4, 2 * package::CHUNK_BYTES);
    let chunks = pack("big", &big);
    assert_eq!(chunks.len(), 3);
    apply(cluster, &[chunks[0].clone(), chunks[2].clone()]).await;
    rejected(cluster, &namespace, "big", "chunk 2 of 3").await;
    assert!(
        status_of(health, "big")
            .await
            .is_some_and(|status| status.digest.is_none()),
        "nothing serves under a name whose only version is incomplete"
    );
    apply(cluster, &chunks[1..2]).await;
    serving(health, "big", &package::sha256_hex(&big)).await;

    // What an on-call engineer sees: the CLI's table of the daemon's plugins.
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_kubeskippy"))
        .args([
            "plugin",
            "list",
            "--daemon",
            &format!("http://127.0.0.1:{health}"),
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{table}");
    let strict = table
        .lines()
        .find(|line| line.starts_with("strict "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        strict.contains("validator")
            && strict.contains("serving")
            && strict.contains(&package::sha256_hex(&second)[..12]),
        "{table}"
    );
    assert!(
        table.contains("last rejected:") && table.contains("timed out"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("default-prompt ")),
        "{table}"
    );

    // Deleting the ConfigMap withdraws the plugin.
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client("admin").await, &namespace);
    configmaps
        .delete("strict", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "plugin strict removed",
        async || {
            status_of(health, "strict")
                .await
                .filter(|status| status.state == "removed" && status.digest.is_none())
        },
    )
    .await;
    let log = daemon.stop_and_check_rbac();
    assert!(
        log.contains("policies that name it deny every recommendation until it is back"),
        "the daemon says what stands in for a withdrawn plugin"
    );
}
