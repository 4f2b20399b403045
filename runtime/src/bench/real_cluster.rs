//! The daemon's costs against a real API server (`bench --real-cluster DIR`,
//! DIR from `scripts/cluster start`): Deployments whose pods kwok runs are
//! created through the API; then the caches' sync time, the process's memory
//! once synced, the evaluation pass, and detection latency from a pod's
//! status write to the HealingAction's creation, seen through a watch. The
//! controller is the one `kubeskippy run` drives, run in this process so its
//! passes can be timed; no model.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde_json::json;

use super::{micros, peak_rss_mib};
use crate::analyze::pipeline::{Analyzer, PluginFiles};
use crate::core::config::Config;
use crate::core::crd::healing_action::HealingAction;
use crate::core::crd::policy::HealingPolicy;
use crate::operator::collect::ClusterCache;
use crate::operator::daemon::controller::Controller;

const NAMESPACES: usize = 10;
const PASSES: usize = 50;
const EVALUATION_INTERVAL: Duration = Duration::from_secs(1);

pub(super) fn run(
    dir: &Path,
    deployments: usize,
    replicas: usize,
    incidents: usize,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(measure(dir, deployments, replicas, incidents))
}

fn team(i: usize) -> String {
    format!("team-{}", i % NAMESPACES)
}

async fn measure(
    dir: &Path,
    deployments: usize,
    replicas: usize,
    incidents: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        incidents <= deployments,
        "--incidents must not exceed --deployments"
    );
    let kubeconfig = Kubeconfig::read_from(dir.join("kubeconfig"))
        .with_context(|| format!("no admin kubeconfig in {}", dir.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.default_retry = false;
    let client = kube::Client::try_from(config)?;
    let pods_wanted = deployments * replicas;
    println!(
        "real API server: {deployments} Deployments × {replicas} replicas on kwok, {NAMESPACES} namespaces"
    );

    install(&client, deployments, replicas).await?;
    let started = Instant::now();
    wait_running(&client, pods_wanted).await?;
    println!(
        "  {pods_wanted} pods Running in {:.0} s (created through the API; scheduled and run by kwok)",
        started.elapsed().as_secs_f64()
    );

    let namespaces: Vec<String> = (0..NAMESPACES).map(team).collect();
    let syncing = Instant::now();
    let (cache, collection) =
        ClusterCache::start(client.clone(), &namespaces, Duration::from_secs(30), None);
    let collector = tokio::spawn(collection);
    cache.wait_ready().await?;
    println!(
        "  caches synced in {:.2} s; process RSS {:.0} MiB",
        syncing.elapsed().as_secs_f64(),
        rss_mib().unwrap_or(f64::NAN)
    );

    let analyzer = Analyzer::new(&Config::default(), &PluginFiles::default(), None)?;
    let context = crate::operator::lifecycle::Context::new(
        client.clone(),
        "kubeskippy-bench",
        crate::core::provenance::SigningKey::generate(),
        crate::operator::leader::Fence::unfenced(),
        (100_000, 100_000),
    );
    let mut controller = Controller::new(cache.clone(), context);
    // The first pass fills the trigger memory; then one pass a second, as the
    // daemon runs them, beside the control plane's own work on the same cores.
    controller.evaluate(&analyzer).await?;
    let mut passes = Vec::with_capacity(PASSES);
    let mut next = tokio::time::Instant::now();
    for _ in 0..PASSES {
        next += EVALUATION_INTERVAL;
        tokio::time::sleep_until(next).await;
        let started = Instant::now();
        controller.evaluate(&analyzer).await?;
        passes.push(started.elapsed());
    }
    passes.sort();
    println!(
        "  evaluation pass (no incident, one a second): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms over {PASSES} passes",
        micros(passes[PASSES / 2]) / 1000.0,
        micros(passes[PASSES * 95 / 100]) / 1000.0,
        micros(passes[PASSES - 1]) / 1000.0,
    );
    println!(
        "  this process (the caches and controller, plus the bench's own client work): RSS {:.0} MiB, peak {:.0} MiB",
        rss_mib().unwrap_or(f64::NAN),
        peak_rss_mib().unwrap_or(f64::NAN)
    );

    detection(&client, &mut controller, &analyzer, deployments, incidents).await?;
    collector.abort();
    daemon_process(dir, &namespaces).await
}

/// `kubeskippy run` itself, as a separate process on the same namespaces:
/// the time from its start to /readyz (its caches synced), and its memory
/// after ten passes.
async fn daemon_process(dir: &Path, namespaces: &[String]) -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let mut daemon = KilledOnDrop(
        std::process::Command::new(std::env::current_exe()?)
            .arg("run")
            .args(
                namespaces
                    .iter()
                    .map(|namespace| format!("--namespace={namespace}")),
            )
            .args([
                "--leader-elect=false",
                "--lease-namespace=default",
                "--evaluation-interval=1s",
            ])
            .arg("--signing-key-secret=kubeskippy-bench-signing-key")
            .arg(format!("--health-addr=127.0.0.1:{port}"))
            .env("KUBECONFIG", dir.join("kubeconfig"))
            .env("KUBESKIPPY_LOG", "error")
            .env_remove("KUBESKIPPY_CONFIG")
            .spawn()?,
    );
    let pid = daemon.0.id();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let http = reqwest::Client::new();
    loop {
        if let Some(status) = daemon.0.try_wait()? {
            anyhow::bail!("kubeskippy run exited ({status}) before it was ready");
        }
        if http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|reply| reply.status().is_success())
        {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "kubeskippy run not ready within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let synced = started.elapsed();
    let synced_rss = process_memory(pid, "VmRSS:");
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!(
        "  kubeskippy run: ready (caches synced) {:.2} s after start; RSS {:.0} MiB then, {:.0} MiB after 10 passes, peak {:.0} MiB",
        synced.as_secs_f64(),
        synced_rss.unwrap_or(f64::NAN),
        process_memory(pid, "VmRSS:").unwrap_or(f64::NAN),
        process_memory(pid, "VmHWM:").unwrap_or(f64::NAN)
    );
    Ok(())
}

struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn process_memory(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn rss_mib() -> Option<f64> {
    process_memory(std::process::id(), "VmRSS:")
}

/// The CRDs, the namespaces, two policies per namespace (the built-in
/// default, in dryrun) and the Deployments.
async fn install(client: &kube::Client, deployments: usize, replicas: usize) -> anyhow::Result<()> {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in crate::core::crd::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply("kubeskippy-bench").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        )
        .await?;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in 0..NAMESPACES {
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": team(n)}}))?;
        namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
        for (i, name) in ["default", "strict"].into_iter().enumerate() {
            let mut policy = HealingPolicy::builtin_default();
            policy.metadata.name = Some(name.into());
            policy.metadata.namespace = Some(team(n));
            policy.spec.selector.namespaces = vec![team(n)];
            policy.spec.safety.max_actions_per_hour = 1000;
            if i == 1 {
                policy.spec.safety.cooldown = "1m".into();
            }
            Api::<HealingPolicy>::namespaced(client.clone(), &team(n))
                .create(&PostParams::default(), &policy)
                .await?;
        }
    }
    futures::stream::iter(0..deployments)
        .map(|i| {
            let client = client.clone();
            async move {
                let deployment: Deployment = serde_json::from_value(json!({
                    "metadata": {"name": format!("app-{i:04}"), "namespace": team(i), "labels": {"app": format!("app-{i:04}")}},
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": {"app": format!("app-{i:04}")}},
                        "template": {
                            "metadata": {"labels": {"app": format!("app-{i:04}"), "tier": if i % 2 == 0 { "web" } else { "worker" }}},
                            "spec": {"containers": [{
                                "name": "app", "image": "registry.example/app:1.0",
                                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}}
                            }]}
                        }
                    }
                }))?;
                Api::<Deployment>::namespaced(client, &team(i))
                    .create(&PostParams::default(), &deployment)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
}

async fn wait_running(client: &kube::Client, wanted: usize) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30 * 60);
    loop {
        let ready: usize = deployments
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter_map(|d| d.status.as_ref()?.ready_replicas)
            .map(|ready| ready as usize)
            .sum();
        if ready >= wanted {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {ready} of {wanted} pods ready after 30 minutes"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Puts one pod of each of `incidents` Deployments into a crash loop (a
/// status write, as the kubelet's would be), while the controller evaluates
/// every second, and times each until a watch sees its HealingAction.
async fn detection(
    client: &kube::Client,
    controller: &mut Controller,
    analyzer: &Analyzer,
    deployments: usize,
    incidents: usize,
) -> anyhow::Result<()> {
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = tokio::spawn({
        let seen = seen.clone();
        let actions: Api<HealingAction> = Api::all(client.clone());
        async move {
            let mut events = std::pin::pin!(
                watcher::watcher(actions, watcher::Config::default()).default_backoff()
            );
            while let Some(Ok(event)) = events.next().await {
                if let watcher::Event::Apply(action) | watcher::Event::InitApply(action) = event {
                    seen.lock()
                        .expect("not poisoned")
                        .entry(action.spec.target.name.clone())
                        .or_insert_with(Instant::now);
                }
            }
        }
    });

    let mut broken: HashMap<String, Instant> = HashMap::new();
    let step = deployments / incidents.max(1);
    let mut next_pass = tokio::time::Instant::now();
    for k in 0..incidents {
        let i = k * step;
        let name = format!("app-{i:04}");
        let pods: Api<Pod> = Api::namespaced(client.clone(), &team(i));
        let pod = pods
            .list(
                &ListParams::default()
                    .labels(&format!("app={name}"))
                    .limit(1),
            )
            .await?
            .items
            .into_iter()
            .next()
            .with_context(|| format!("no pod of {name}"))?;
        let crashing = json!({"status": {"containerStatuses": [{
            "name": "app", "image": "registry.example/app:1.0", "imageID": "", "ready": false,
            "started": false, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container=app"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        }]}});
        pods.patch_status(
            pod.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(crashing),
        )
        .await?;
        broken.insert(name, Instant::now());
        // The daemon's loop, at one evaluation a second.
        if tokio::time::Instant::now() >= next_pass {
            next_pass += EVALUATION_INTERVAL;
            controller.evaluate(analyzer).await?;
            controller.reconcile_due(|| true).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().expect("not poisoned").len() < incidents && Instant::now() < deadline {
        tokio::time::sleep_until(next_pass).await;
        next_pass += EVALUATION_INTERVAL;
        controller.evaluate(analyzer).await?;
        controller.reconcile_due(|| true).await;
    }
    watch.abort();
    let seen = seen.lock().expect("not poisoned");
    let mut latencies: Vec<Duration> = broken
        .iter()
        .filter_map(|(name, at)| Some(seen.get(name)?.saturating_duration_since(*at)))
        .collect();
    anyhow::ensure!(
        latencies.len() == incidents,
        "only {} of {incidents} incidents got a HealingAction within 2 minutes",
        latencies.len()
    );
    latencies.sort();
    println!(
        "  detection, pod status write → HealingAction seen by a watch ({incidents} incidents, evaluation every {:?}): p50 {:.2} s, p99 {:.2} s",
        EVALUATION_INTERVAL,
        latencies[incidents / 2].as_secs_f64(),
        latencies[(incidents * 99 / 100).min(incidents - 1)].as_secs_f64()
    );
    Ok(())
}
