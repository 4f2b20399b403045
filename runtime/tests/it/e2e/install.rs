//! Installing as a user would: the chart by real Helm, its CRDs accepted and
//! established by the real API server, the same CRDs `kubeskippy crds`
//! prints, and their printer columns in the API's Table output.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serde_json::Value;

#[tokio::test]
async fn the_chart_installs_with_real_helm_and_its_crds_are_the_binarys() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    assert_eq!(cluster.release.status, "deployed", "{:?}", cluster.release);
    // The daemon's identity in every other e2e test is this ServiceAccount's token.
    assert_eq!(cluster.release.service_account, cluster.release.name);
    for kind in [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(
            cluster.release.kinds.iter().any(|k| k == kind),
            "the release has a {kind}: {:?}",
            cluster.release.kinds
        );
    }

    for kind in ["NetworkPolicy", "PersistentVolumeClaim", "Service"] {
        assert!(
            cluster.release.kinds.iter().any(|k| k == kind),
            "the release has a {kind}: {:?}",
            cluster.release.kinds
        );
    }

    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client("admin").await);
    for ours in kubeskippy::core::crd::crds() {
        let name = ours.metadata.name.clone().unwrap();
        let live = crds.get(&name).await.unwrap();
        let conditions = live
            .status
            .and_then(|status| status.conditions)
            .unwrap_or_default();
        for wanted in ["Established", "NamesAccepted"] {
            assert!(
                conditions
                    .iter()
                    .any(|c| c.type_ == wanted && c.status == "True"),
                "{name} is {wanted}: {conditions:?}"
            );
        }
        // What Helm installed from the chart's crds/ is what the binary
        // prints, down to the schema the server keeps.
        // (JSON numbers compare by value: the server writes 2.0 back as 2.)
        let difference = first_difference(
            &serde_json::to_value(&live.spec.versions).unwrap(),
            &serde_json::to_value(&ours.spec.versions).unwrap(),
            "versions",
        );
        assert_eq!(
            difference, None,
            "{name}: the live CRD differs from `kubeskippy crds`"
        );
        assert_eq!(live.spec.names.kind, ours.spec.names.kind);
    }
}

/// Where two JSON documents first differ, numbers compared by value.
fn first_difference(live: &Value, ours: &Value, path: &str) -> Option<String> {
    match (live, ours) {
        (Value::Number(a), Value::Number(b)) => {
            (a.as_f64() != b.as_f64()).then(|| format!("{path}: {a} != {b}"))
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .find_map(|key| match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => first_difference(x, y, &format!("{path}.{key}")),
                    (x, _) => Some(format!(
                        "{path}.{key}: only in the {} CRD",
                        if x.is_some() { "live" } else { "binary's" }
                    )),
                })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        (a, b) => (a != b).then(|| format!("{path}: {a} != {b}")),
    }
}

/// The `kubectl get` columns of a kind, read through the Table output.
async fn table(client: &kube::Client, path: &str) -> Value {
    let request = http::Request::get(path)
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    client.request::<Value>(request).await.unwrap()
}

#[tokio::test]
async fn printer_columns_read_through_the_apis_table_output() {
    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let admin = cluster.client("admin").await;
    let namespace = cluster.namespace("e2e-columns").await;
    let policy: kubeskippy::core::crd::policy::HealingPolicy = serde_yaml_ng::from_str(&format!(
        r#"
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {{name: columns, namespace: {namespace}}}
spec:
  mode: dryrun
  selector: {{namespaces: [{namespace}]}}
  triggers: [{{name: crash, condition: {{states: [CrashLoopBackOff]}}}}]
  actions: [{{name: restart, type: restart}}]
"#
    ))
    .unwrap();
    Api::<kubeskippy::core::crd::policy::HealingPolicy>::namespaced(admin.clone(), &namespace)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();

    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for (plural, path) in [
        (
            "healingpolicies",
            format!("/apis/kubeskippy.io/v1alpha1/namespaces/{namespace}/healingpolicies"),
        ),
        (
            "healingactions",
            "/apis/kubeskippy.io/v1alpha1/healingactions".to_string(),
        ),
    ] {
        let crd = crds.get(&format!("{plural}.kubeskippy.io")).await.unwrap();
        let wanted: Vec<String> = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|column| column.name)
            .collect();
        assert!(!wanted.is_empty(), "{plural} has printer columns");
        let table = table(&admin, &path).await;
        assert_eq!(table["kind"], "Table", "{table:#}");
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|column| column["name"].as_str().unwrap())
            .collect();
        assert_eq!(names[0], "Name");
        for column in &wanted {
            assert!(
                names.contains(&column.as_str()),
                "{plural}: {column} in {names:?}"
            );
        }
    }
    let policies = table(
        &admin,
        &format!("/apis/kubeskippy.io/v1alpha1/namespaces/{namespace}/healingpolicies"),
    )
    .await;
    let row = &policies["rows"][0]["cells"];
    assert_eq!(row[0], "columns", "{policies:#}");
    assert!(
        row.as_array().unwrap().iter().any(|cell| cell == "dryrun"),
        "the mode column reads dryrun: {row}"
    );
}

/// install-chart.py enables the in-cluster Ollama, the NetworkPolicy and the
/// dashboard: the real API server stored each (kwok runs no container, so
/// Ollama never serves and its claim stays unbound; nothing waits for them),
/// and the config it holds is one the daemon accepts, pointing at that Ollama.
#[tokio::test]
async fn the_charts_optional_pieces_are_accepted_by_the_api_server() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use kube::api::ListParams;

    let Some((cluster, _running)) = super::shared().await else {
        return;
    };
    let admin = cluster.client("admin").await;
    let namespace = cluster.release.namespace.as_str();
    let release = cluster.release.name.as_str();
    let ollama = format!("{release}-ollama");

    let deployment = Api::<Deployment>::namespaced(admin.clone(), namespace)
        .get(&ollama)
        .await
        .unwrap();
    let pod = deployment.spec.template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("ollama/ollama:0.17.4")
    );
    let claim = Api::<PersistentVolumeClaim>::namespaced(admin.clone(), namespace)
        .get(&format!("{ollama}-models"))
        .await
        .unwrap();
    assert_eq!(
        claim.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
        "20Gi"
    );
    let services = Api::<Service>::namespaced(admin.clone(), namespace);
    let model_port = services
        .get(&ollama)
        .await
        .unwrap()
        .spec
        .unwrap()
        .ports
        .unwrap();
    assert_eq!(model_port[0].port, 11434);
    let metrics = services.get(release).await.unwrap().spec.unwrap();
    assert_eq!(
        metrics.ports.as_ref().unwrap()[0].name.as_deref(),
        Some("http")
    );

    let policy = Api::<NetworkPolicy>::namespaced(admin.clone(), namespace)
        .get(release)
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(
        policy.policy_types.as_deref(),
        Some(&["Ingress".to_string(), "Egress".to_string()][..])
    );
    let configmaps = Api::<ConfigMap>::namespaced(admin.clone(), namespace);
    let dashboard = configmaps
        .get(&format!("{release}-dashboard"))
        .await
        .unwrap();
    assert_eq!(dashboard.metadata.labels.unwrap()["grafana_dashboard"], "1");
    let shipped: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            super::repository().join("deploy/kubeskippy/dashboards/kubeskippy.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let stored: serde_json::Value =
        serde_json::from_str(&dashboard.data.unwrap()["kubeskippy.json"]).unwrap();
    assert_eq!(stored, shipped);

    // The config the chart's daemon would read, as the API server holds it.
    let config = configmaps.get(&format!("{release}-config")).await.unwrap();
    let config = kubeskippy::core::config::Config::parse(&config.data.unwrap()["config.yaml"])
        .unwrap_or_else(|error| panic!("the installed config: {error}"));
    assert_eq!(
        config.ai.endpoint.as_deref(),
        Some(format!("http://{ollama}.{namespace}.svc:11434").as_str())
    );

    // The metrics Service selects the daemon's (kwok-run) pod: the endpoint
    // controller lists it, on the health port.
    let slices = Api::<EndpointSlice>::namespaced(admin, namespace);
    let selector = format!("kubernetes.io/service-name={release}");
    super::eventually(
        std::time::Duration::from_secs(60),
        "the metrics Service's EndpointSlice to list the daemon's pod",
        async || {
            let list = slices
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            list.items.iter().find_map(|slice| {
                let port = slice.ports.as_ref()?.first()?;
                (port.name.as_deref() == Some("http")
                    && port.port == Some(8080)
                    && !slice.endpoints.as_ref()?.is_empty())
                .then_some(())
            })
        },
    )
    .await;
}
