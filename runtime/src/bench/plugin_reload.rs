//! `bench --plugin-reload --real-cluster DIR`: from a plugin ConfigMap's
//! update to the new version serving, through the real API server's watch.
//! The daemon's plugin watch runs in this process so the moment the new
//! version is swapped in can be seen; each update ships a new version (the
//! plugin with a different custom section), so every one is compiled and
//! tried like a real new release, and none is a cache hit.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::watch;

use crate::analyze::pipeline::defaults;
use crate::host::catalog::Catalog;
use crate::host::{Limits, PluginKind, PluginRunner, with_custom_section};
use crate::operator::plugins::package;
use crate::operator::plugins::watch::{PluginWatch, Reporting, Settings};

pub(super) fn run(dir: &Path, plugin: Option<&Path>, updates: usize) -> anyhow::Result<()> {
    let component = match plugin {
        Some(path) => std::fs::read(path).with_context(|| path.display().to_string())?,
        None => defaults::VALIDATOR.to_vec(),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(measure(dir, component, updates.max(1)))
}

async fn measure(dir: &Path, component: Vec<u8>, updates: usize) -> anyhow::Result<()> {
    let kubeconfig = Kubeconfig::read_from(dir.join("kubeconfig"))?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?,
    )?;
    let runner = PluginRunner::shared()?;
    let kind = runner
        .host()
        .identify(&component)
        .map_err(|why| anyhow::anyhow!("the plugin: {why}"))?
        .kind;
    let namespace = format!("bench-plugins-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))?,
        )
        .await?;
    let measured = updates_to_serving(&client, &namespace, runner, &component, kind, updates).await;
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .ok();
    let mut samples = measured?;
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "plugin reload through the real API server: {:.2} MB ({}, a {kind}, {} ConfigMap(s)), {} updates",
        component.len() as f64 / 1e6,
        if component.as_slice() == defaults::VALIDATOR {
            "the default validator"
        } else {
            "the given"
        },
        package::configmaps("bench", kind, None, None, &component)
            .map_err(|why| anyhow::anyhow!(why))?
            .len(),
        samples.len()
    );
    println!(
        "  ConfigMap update to the new version serving: p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms (target: under 2000 ms)",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0))
    );
    Ok(())
}

async fn updates_to_serving(
    client: &kube::Client,
    namespace: &str,
    runner: PluginRunner,
    component: &[u8],
    kind: PluginKind,
    updates: usize,
) -> anyhow::Result<Vec<Duration>> {
    let catalog = Catalog::new();
    let (_settings_tx, settings) = watch::channel(Settings {
        limits: Limits::default(),
        config: Default::default(),
        chunk_grace: Duration::from_secs(30),
        fixed_names: Vec::new(),
    });
    let (plugin_watch, mut synced) = PluginWatch::new(
        client.clone(),
        namespace,
        catalog.clone(),
        runner,
        settings,
        Reporting { events: None },
    );
    let watching = tokio::spawn(plugin_watch.run());
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut samples = Vec::with_capacity(updates);
    // Version 0 warms the watch up and is not counted.
    for version in 0..=updates {
        let wasm = with_custom_section(component, "bench-version", &version.to_le_bytes());
        let digest = package::sha256_hex(&wasm);
        let configmaps = package::configmaps("bench", kind, None, Some(namespace), &wasm)
            .map_err(|why| anyhow::anyhow!(why))?;
        let started = Instant::now();
        for configmap in &configmaps {
            let name = configmap.metadata.name.clone().expect("named");
            let mut value = serde_json::to_value(configmap)?;
            value["apiVersion"] = "v1".into();
            value["kind"] = "ConfigMap".into();
            api.patch(
                &name,
                &PatchParams::apply("kubeskippy-bench").force(),
                &Patch::Apply(&value),
            )
            .await?;
        }
        let served = wait_serving(&catalog, &digest, Duration::from_secs(120)).await;
        anyhow::ensure!(served, "version {version} did not serve within 120 s");
        if version > 0 {
            samples.push(started.elapsed());
        }
        if version == 0 {
            synced.wait_for(|synced| *synced).await.ok();
        }
    }
    watching.abort();
    Ok(samples)
}

async fn wait_serving(catalog: &Arc<Catalog>, digest: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if catalog
            .current()
            .get("bench")
            .is_some_and(|plugin| plugin.digest() == digest)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}
