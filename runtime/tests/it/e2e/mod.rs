//! End to end against a real control plane: kube-apiserver,
//! kube-controller-manager, kube-scheduler, etcd and kwok on loopback
//! (`scripts/cluster start DIR`), the chart installed by real Helm, and the
//! daemon as a separate `kubeskippy run` process holding the chart's
//! ServiceAccount token from the TokenRequest API.
//!
//! Runs when `KUBESKIPPY_E2E_CLUSTER` names such a folder (`scripts/test`
//! starts one and sets it); otherwise every test here skips with a note. Each
//! test works in namespaces of its own, so they run side by side.

mod faults;
mod guards;
mod incidents;
mod install;
mod plugins;
mod trust;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubeskippy::core::crd::healing_action::{HealingAction, Phase};
use serde::Deserialize;

/// The chart's release, as `tests/cluster/install-chart.py` installed it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub status: String,
    pub service_account: String,
    pub kinds: Vec<String>,
}

pub struct RealCluster {
    pub dir: PathBuf,
    pub release: Release,
}

const RELEASE_NAMESPACE: &str = "kubeskippy-system";

/// The control plane, with the chart installed on first use; `None` (and a
/// note) when no control plane was given. Tests take it through [`shared`]
/// or [`exclusive`].
fn cluster() -> Option<&'static RealCluster> {
    static CLUSTER: OnceLock<Option<RealCluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            let Some(dir) = std::env::var_os("KUBESKIPPY_E2E_CLUSTER") else {
                eprintln!(
                    "skipped: set KUBESKIPPY_E2E_CLUSTER to a folder from `scripts/cluster start` to run the e2e suite"
                );
                return None;
            };
            let dir = PathBuf::from(dir);
            let release = install_chart(&dir);
            Some(RealCluster { dir, release })
        })
        .as_ref()
}

/// Most tests share the control plane; one that restarts a piece of it runs
/// alone.
static RUNNING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub async fn shared() -> Option<(
    &'static RealCluster,
    tokio::sync::RwLockReadGuard<'static, ()>,
)> {
    let cluster = cluster()?;
    admission_in_force(cluster).await;
    Some((cluster, RUNNING.read().await))
}

pub async fn exclusive() -> Option<(
    &'static RealCluster,
    tokio::sync::RwLockWriteGuard<'static, ()>,
)> {
    let cluster = cluster()?;
    admission_in_force(cluster).await;
    Some((cluster, RUNNING.write().await))
}

/// The API server compiles admission policies from a watch, a moment after
/// Helm wrote them: until a dry-run creation by an admin is refused, a test
/// could see a change the chart forbids go through.
async fn admission_in_force(cluster: &RealCluster) {
    static IN_FORCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    IN_FORCE
        .get_or_init(async || {
            let api: Api<HealingAction> = Api::namespaced(cluster.client("admin").await, "default");
            let action = trust::hand_written_action("default", "default");
            eventually(
                Duration::from_secs(30),
                "the chart's admission policies to be in force",
                async || match api
                    .create(
                        &PostParams {
                            dry_run: true,
                            ..PostParams::default()
                        },
                        &action,
                    )
                    .await
                {
                    Err(kube::Error::Api(status)) if status.code == 403 => Some(()),
                    _ => None,
                },
            )
            .await
        })
        .await;
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn install_chart(dir: &Path) -> Release {
    let python = std::env::var_os("KUBESKIPPY_CHART_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("target/chart-venv/bin/python"));
    let output = Command::new(&python)
        .arg(repository().join("tests/cluster/install-chart.py"))
        .arg(dir)
        .arg(RELEASE_NAMESPACE)
        .arg("kubeskippy")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {} (scripts/check-chart makes that venv): {error}",
                python.display()
            )
        });
    assert!(
        output.status.success(),
        "installing the chart failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("install-chart.py prints the release as JSON")
}

impl RealCluster {
    /// The kubeconfig of a token user: `admin`, `daemon` (the chart's
    /// ServiceAccount), `approver`, `nobody`, `tenant-a` or `tenant-b`.
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        match user {
            "admin" => self.dir.join("kubeconfig"),
            user => self.dir.join(format!("kubeconfig-{user}")),
        }
    }

    pub async fn client(&self, user: &str) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig(user)).expect("a kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("the kubeconfig has a current context");
        Client::try_from(config).expect("a client")
    }

    /// A fresh namespace, made by the admin; its name starts with `prefix`.
    pub async fn namespace(&self, prefix: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let namespaces: Api<Namespace> = Api::all(self.client("admin").await);
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap_or_else(|error| panic!("creating namespace {name}: {error}"));
        name
    }

    /// Applies YAML documents as the admin (server-side apply), in order.
    pub async fn apply(&self, user: &str, yaml: &str) -> Result<(), kube::Error> {
        let client = self.client(user).await;
        for document in serde_yaml_ng::Deserializer::from_str(yaml) {
            let object: kube::api::DynamicObject =
                serde::Deserialize::deserialize(document).expect("a Kubernetes object");
            apply_object(&client, &object).await?;
        }
        Ok(())
    }

    /// Starts `kubeskippy run` as the chart's ServiceAccount, watching
    /// `namespaces`, evaluating every second.
    pub fn daemon(&self, name: &str, namespaces: &[&str], extra: &[&str]) -> Daemon {
        let health = free_port();
        let log = self.dir.join(format!("daemon-{name}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_kubeskippy"));
        command
            .arg("run")
            .args(
                namespaces
                    .iter()
                    .map(|namespace| format!("--namespace={namespace}")),
            )
            .arg(format!("--health-addr=127.0.0.1:{health}"))
            .arg(format!("--lease-namespace={}", self.release.namespace))
            .arg(format!("--identity={name}"))
            .arg("--evaluation-interval=1s")
            .arg(format!(
                "--signing-key-secret={}-signing-key",
                self.release.name
            ))
            // Each test's daemon acts alone on its namespaces; only the
            // failover test elects a leader.
            .args(
                (!extra.iter().any(|arg| arg.starts_with("--leader-elect")))
                    .then_some("--leader-elect=false"),
            )
            .args(extra)
            .env("KUBECONFIG", self.kubeconfig("daemon"))
            .env("KUBESKIPPY_LOG", "info,kubeskippy=debug")
            .env_remove("KUBESKIPPY_CONFIG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ));
        let child = command.spawn().expect("kubeskippy run starts");
        Daemon {
            child: Some(child),
            log,
            health,
        }
    }
}

async fn apply_object(
    client: &Client,
    object: &kube::api::DynamicObject,
) -> Result<(), kube::Error> {
    let types = object.types.clone().expect("apiVersion and kind");
    let (group, version) = match types.api_version.split_once('/') {
        Some((group, version)) => (group.to_string(), version.to_string()),
        None => (String::new(), types.api_version.clone()),
    };
    let gvk = kube::api::GroupVersionKind::gvk(&group, &version, &types.kind);
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<kube::api::DynamicObject> = match (capabilities.scope, &object.metadata.namespace)
    {
        (kube::discovery::Scope::Namespaced, Some(namespace)) => {
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        _ => Api::all_with(client.clone(), &resource),
    };
    let name = object.metadata.name.clone().expect("a name");
    api.patch(
        &name,
        &kube::api::PatchParams::apply("kubeskippy-e2e").force(),
        &kube::api::Patch::Apply(object),
    )
    .await?;
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `kubeskippy run` process; killed when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
    health: u16,
}

impl Daemon {
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            file.read_to_string(&mut text).ok();
        }
        text
    }

    /// Waits for /readyz.
    pub async fn ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.health);
        let client = reqwest::Client::new();
        eventually(
            Duration::from_secs(60),
            "the daemon's /readyz",
            async || {
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|child| child.try_wait().unwrap())
                {
                    panic!("kubeskippy run exited ({status}): {}", self.log_text());
                }
                let reply = client.get(&url).send().await.ok()?;
                reply.status().is_success().then_some(())
            },
        )
        .await;
    }

    /// Where it serves /readyz and /plugins.
    pub fn health_port(&self) -> u16 {
        self.health
    }

    /// Its `/metrics` page, parsed: each sample line (`name{labels}`) to its value.
    pub async fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.health);
        let text = reqwest::get(&url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|error| panic!("GET {url}: {error}"))
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (sample, value) = line.rsplit_once(' ').expect("`sample value`");
                (sample.to_string(), value.parse().expect("a number"))
            })
            .collect()
    }

    /// Kills it with SIGKILL, as a node failure would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Stops it and fails the test if the API server ever refused it: the
    /// chart's RBAC must cover everything the daemon does.
    pub fn stop_and_check_rbac(self) -> String {
        self.stop_and_check_rbac_outside(None)
    }

    /// As [`Daemon::stop_and_check_rbac`], forgiving refusals stamped within
    /// `window`: a restarted API server answers before its RBAC caches have
    /// filled, and refuses everyone but the superusers for a moment.
    pub fn stop_and_check_rbac_outside(
        mut self,
        window: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
    ) -> String {
        self.kill();
        let log = self.log_text();
        for line in log.lines() {
            let plain = strip_ansi(line);
            if !(plain.contains("403") && plain.to_ascii_lowercase().contains("forbidden")) {
                continue;
            }
            let stamp = plain
                .split_whitespace()
                .next()
                .and_then(|stamp| chrono::DateTime::parse_from_rfc3339(stamp).ok())
                .map(|stamp| stamp.with_timezone(&chrono::Utc));
            let forgiven =
                matches!((window, stamp), (Some((from, to)), Some(at)) if from <= at && at <= to);
            assert!(
                forgiven,
                "the daemon was refused by RBAC (log {}): {plain}",
                self.log.display()
            );
        }
        log
    }
}

fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An SGR sequence: ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        // scripts/test deletes the control plane's folder, logs and all, when
        // the run ends: a failing test shows the daemon's last words here.
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ---", self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A one-replica Deployment `shop` whose pods kwok puts into `fault`, with a
/// memory limit of `memory`.
pub fn app(namespace: &str, fault: &str, memory: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: shop, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: shop}}}}
  template:
    metadata: {{labels: {{app: shop, kubeskippy.test/fault: {fault}}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: app
        image: registry.example/shop:1.0
        resources:
          requests: {{cpu: 10m, memory: 16Mi}}
          limits: {{cpu: 100m, memory: {memory}}}
"#
    )
}

/// The namespace's HealingActions.
pub async fn actions(client: &Client, namespace: &str) -> Vec<HealingAction> {
    Api::<HealingAction>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

/// The namespace's one HealingAction once it has settled: a finished phase,
/// and no rollback pending (a failed change is Failed with RollbackPending
/// until the next reconcile restores it). More than one action fails the
/// test: one incident, one HealingAction.
pub async fn settled(client: &Client, namespace: &str, within: Duration) -> HealingAction {
    eventually(within, "a settled HealingAction", async || {
        let all = actions(client, namespace).await;
        assert!(all.len() <= 1, "one incident, one HealingAction: {all:#?}");
        let action = all.into_iter().next()?;
        let status = action.status.as_ref()?;
        let done = matches!(
            status.phase,
            Phase::Succeeded | Phase::Failed | Phase::RolledBack | Phase::Cancelled
        ) && !status
            .conditions
            .iter()
            .any(|c| c.type_ == "RollbackPending" && c.status == "True");
        done.then_some(action)
    })
    .await
}

/// Whether the Deployment `shop`'s pod template carries a rollout restart's
/// annotation.
pub async fn restarted(client: &Client, namespace: &str) -> bool {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get("shop")
        .await
        .unwrap();
    deployment
        .spec
        .template
        .metadata
        .and_then(|metadata| metadata.annotations)
        .is_some_and(|annotations| annotations.contains_key("kubectl.kubernetes.io/restartedAt"))
}

/// Polls `probe` every half second until it gives a value; fails the test
/// naming `what` after `timeout`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
