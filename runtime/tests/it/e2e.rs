//! End to end against a real cluster (kind, k3d, any test cluster you can
//! spare): runs only when `KUBESKIPPY_E2E_KUBECONFIG` names a kubeconfig, and
//! skips with a note otherwise. It installs the CRDs, creates a namespace of
//! its own with a crash-looping Deployment and a HealingPolicy, runs the
//! controller in-process (the same `Controller` `kubeskippy run` drives) and
//! waits for the HealingAction to finish; then deletes the namespace.
//!
//! ```sh
//! kind create cluster
//! KUBESKIPPY_E2E_KUBECONFIG=$HOME/.kube/config cargo test -p kubeskippy --test e2e -- --nocapture
//! ```

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kubeskippy::analyze::pipeline::{Analyzer, PluginFiles};
use kubeskippy::core::config::Config;
use kubeskippy::core::crd::healing_action::{HealingAction, Phase};
use kubeskippy::core::crd::policy::HealingPolicy;
use kubeskippy::operator::collect::ClusterCache;
use kubeskippy::operator::daemon::controller::Controller;

async fn client() -> Option<Client> {
    let Some(path) = std::env::var_os("KUBESKIPPY_E2E_KUBECONFIG") else {
        eprintln!(
            "skipped: set KUBESKIPPY_E2E_KUBECONFIG to a test cluster's kubeconfig to run the e2e suite"
        );
        return None;
    };
    let kubeconfig = Kubeconfig::read_from(&path).expect("KUBESKIPPY_E2E_KUBECONFIG is readable");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("the kubeconfig has a current context");
    Some(Client::try_from(config).expect("a client for the e2e cluster"))
}

async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in kubeskippy::core::crd::crds() {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("kubeskippy-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("the CRD applies");
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("the CRD is established within 30s")
        .unwrap();
    }
}

fn namespace_name() -> String {
    format!(
        "kubeskippy-e2e-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    )
}

fn manifests(namespace: &str, mode: &str) -> (Deployment, HealingPolicy) {
    let deployment: Deployment = serde_yaml_ng::from_str(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: crasher, namespace: {namespace}, labels: {{app: crasher}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: crasher}}}}
  template:
    metadata: {{labels: {{app: crasher}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: busybox:1.36
          command: ["sh", "-c", "echo starting; sleep 2; exit 1"]
          resources:
            requests: {{cpu: 10m, memory: 16Mi}}
            limits: {{cpu: 100m, memory: 32Mi}}
"#
    ))
    .unwrap();
    let policy: HealingPolicy = serde_yaml_ng::from_str(&format!(
        r#"
apiVersion: kubeskippy.io/v1alpha1
kind: HealingPolicy
metadata: {{name: crash-loops, namespace: {namespace}}}
spec:
  mode: {mode}
  selector: {{namespaces: [{namespace}]}}
  triggers:
    - name: crash-loop
      condition: {{states: [CrashLoopBackOff]}}
  actions:
    - name: restart
      type: restart
      triggers: [crash-loop]
  safety:
    minHealthyPercent: 0
    verificationWindow: 30s
"#
    ))
    .unwrap();
    (deployment, policy)
}

/// Drives the controller until a HealingAction of the namespace is finished.
async fn heal(client: &Client, namespace: &str) -> HealingAction {
    let (cache, collection) = ClusterCache::start(
        client.clone(),
        &[namespace.to_string()],
        Duration::from_secs(15),
        None,
    );
    let collector = tokio::spawn(collection);
    cache.wait_ready().await.unwrap();
    let analyzer = Analyzer::new(&Config::default(), &PluginFiles::default(), None).unwrap();
    let context = kubeskippy::operator::lifecycle::Context::new(
        client.clone(),
        "kubeskippy-e2e",
        kubeskippy::core::provenance::SigningKey::generate(),
        kubeskippy::operator::leader::Fence::unfenced(),
        (30, 10),
    );
    let mut controller = Controller::new(cache, context);
    let actions: Api<HealingAction> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no HealingAction finished within 5 minutes"
        );
        controller.evaluate(&analyzer).await.unwrap();
        controller.reconcile_due(|| true).await;
        let finished = actions
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|action| {
                action.status.as_ref().is_some_and(|status| {
                    matches!(
                        status.phase,
                        Phase::Succeeded | Phase::Failed | Phase::RolledBack | Phase::Cancelled
                    )
                })
            });
        if let Some(action) = finished {
            collector.abort();
            return action;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn with_namespace(client: &Client, mode: &str, check: impl AsyncFnOnce(&str, HealingAction)) {
    install_crds(client).await;
    let namespace = namespace_name() + "-" + mode;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .unwrap();
    let (deployment, policy) = manifests(&namespace, mode);
    Api::<Deployment>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    Api::<HealingPolicy>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let action = heal(client, &namespace).await;
    check(&namespace, action).await;
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .unwrap();
}

/// Whether the crasher's pod template carries a rollout restart's annotation.
async fn restarted(client: &Client, namespace: &str) -> bool {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get("crasher")
        .await
        .unwrap();
    deployment
        .spec
        .template
        .metadata
        .and_then(|metadata| metadata.annotations)
        .is_some_and(|annotations| annotations.contains_key("kubectl.kubernetes.io/restartedAt"))
}

#[tokio::test]
async fn a_crash_loop_is_restarted_and_judged() {
    let Some(client) = client().await else {
        return;
    };
    with_namespace(&client, "automatic", async |namespace, action| {
        assert_eq!(
            serde_json::to_value(action.spec.action.kind).unwrap(),
            "restart"
        );
        let status = action.status.unwrap();
        // The container keeps exiting, so verification must not call it healed.
        assert!(
            matches!(status.phase, Phase::Failed),
            "phase {:?}: {:?}",
            status.phase,
            status.message
        );
        assert!(
            restarted(&client, namespace).await,
            "the rollout restart reached the Deployment"
        );
    })
    .await;
}

#[tokio::test]
async fn dry_run_records_what_would_change_and_changes_nothing() {
    let Some(client) = client().await else {
        return;
    };
    with_namespace(&client, "dryrun", async |namespace, action| {
        let status = action.status.unwrap();
        assert_eq!(status.phase, Phase::Succeeded, "{:?}", status.message);
        assert!(status.dry_run_result.is_some());
        assert!(!restarted(&client, namespace).await);
    })
    .await;
}
