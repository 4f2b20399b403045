//! `kubeskippy run`: the live operator. Collects cluster facts into reflector
//! caches, evaluates policies on a fixed interval, sends each incident through
//! the same analysis pipeline as `analyze`, records HealingActions, and walks
//! each one through its lifecycle — only while this replica holds the leader
//! lease.

pub mod controller;
pub mod health;
pub(crate) mod reload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::watch;

use crate::analyze::llm;
use crate::analyze::pipeline::{Analyzer, PluginFiles};
use crate::core::config::Config;
use crate::operator::collect::ClusterCache;
use crate::operator::events::EventRecorder;
use crate::operator::leader::{self, Fence, LeaseLock};
use crate::operator::lifecycle;
use crate::operator::plugins::watch::{PluginWatch, Reporting, Settings};
use crate::telemetry::metrics::metrics;

use controller::Controller;
use health::Health;

/// How often the loop wakes to reconcile actions that are due.
const TICK: Duration = Duration::from_secs(1);
/// How often mounted config and plugin files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(10);
/// How long readiness waits for the plugin ConfigMaps to be loaded.
const PLUGIN_SYNC_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    pub namespaces: Vec<String>,
    pub health_addr: SocketAddr,
    pub leader_elect: bool,
    pub lease_name: String,

    pub identity: String,
    pub lease_duration: Duration,
    pub evaluation_interval: Duration,
    pub metrics_interval: Duration,
    pub cluster_actions_per_hour: u32,
    pub namespace_actions_per_hour: u32,
    pub plugin_dir: Option<PathBuf>,
    /// Watch plugin ConfigMaps (labelled `kubeskippy.io/plugin`) here;
    /// `None`: the daemon's namespace.
    pub plugin_namespace: Option<String>,
    /// Whether plugins are taken from ConfigMaps at all.
    pub plugin_configmaps: bool,
    /// How long a plugin version may miss chunks before it is refused.
    pub plugin_chunk_grace: Duration,
    /// The Secret holding the key the daemon signs its HealingActions with,
    /// in `daemon_namespace`; made on first start.
    pub signing_key_secret: String,
    /// The daemon's own namespace (the release namespace).
    pub daemon_namespace: Option<String>,
}

/// Why the daemon cannot start (or reload). Each keeps its cause as its
/// source, so `kubeskippy run` prints the whole chain on one line.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no Kubernetes client configuration (in-cluster config or kubeconfig)")]
    ClientConfig(#[source] kube::config::InferConfigError),
    #[error("no Kubernetes client (in-cluster config or kubeconfig)")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Config(#[from] crate::core::config::ConfigError),
    #[error("the model provider")]
    Model(#[from] crate::analyze::llm::ModelError),
    #[error("the plugins")]
    Plugins(#[from] crate::analyze::pipeline::AnalyzeError),
    #[error("prometheus")]
    Prometheus(#[from] crate::operator::prometheus::PrometheusError),
    #[error("cannot serve health probes on {addr}")]
    Health {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon's namespace is unknown: set --lease-namespace or POD_NAMESPACE")]
    DaemonNamespace,
    #[error(transparent)]
    SigningKey(#[from] crate::operator::signing_key::SigningKeyError),
}

/// Builds the analyzer the way `analyze` does, reading an API key from a
/// Secret through `client` when the config asks for one; on a reload, from
/// the `previous` one, whose plugin host and reply cache it keeps.
async fn build_analyzer(
    client: &kube::Client,
    config: &Config,
    plugin_dir: Option<&PathBuf>,
    previous: Option<&Analyzer>,
) -> Result<Analyzer, RunError> {
    let model = llm::from_config_reading_secret(&config.ai, Some(client.clone())).await?;
    let mut files = PluginFiles::from_config(config);
    files.plugin_dir = plugin_dir.cloned();
    Ok(match previous {
        Some(previous) => previous.reloaded(config, &files, model)?,
        None => Analyzer::new(config, &files, model)?,
    })
}

/// Runs until SIGTERM or Ctrl-C. Shutdown waits for the transition in hand
/// to be written, then gives the leader lease up.
pub async fn run(options: RunOptions) -> Result<(), RunError> {
    let client_config = kube::Config::infer()
        .await
        .map_err(RunError::ClientConfig)?;
    let client = kube::Client::try_from(client_config.clone()).map_err(RunError::Client)?;
    // See lifecycle::Context::evictions: a PodDisruptionBudget's 429 is an
    // answer, not throttling.
    let mut eviction_config = client_config;
    eviction_config.default_retry = false;
    let evictions = kube::Client::try_from(eviction_config).map_err(RunError::Client)?;
    let config = Config::load(options.config.as_deref(), std::env::vars())?;
    let health = Health::new(options.evaluation_interval * 4 + Duration::from_secs(60));
    let listener = tokio::net::TcpListener::bind(options.health_addr)
        .await
        .map_err(|source| RunError::Health {
            addr: options.health_addr,
            source,
        })?;
    tokio::spawn(health.clone().serve(listener));

    health.not_ready("loading plugins");
    let mut analyzer =
        Arc::new(build_analyzer(&client, &config, options.plugin_dir.as_ref(), None).await?);
    let mut config = config;
    let mut watched = reload::Watched::new(options.config.as_deref(), &config);
    if let Some(dir) = &options.plugin_dir {
        watched.watch_dir(dir);
    }

    let prometheus = config
        .prometheus
        .as_ref()
        .map(crate::operator::prometheus::Prometheus::new)
        .transpose()?;
    let daemon_namespace = options
        .daemon_namespace
        .clone()
        .ok_or(RunError::DaemonNamespace)?;
    health.set_plugins(analyzer.catalog().clone());
    let (plugin_settings, plugin_settings_rx) =
        watch::channel(plugin_settings_of(&analyzer, options.plugin_chunk_grace));
    let mut plugins_synced = watch::channel(true).1;
    if options.plugin_configmaps {
        let namespace = options
            .plugin_namespace
            .as_deref()
            .unwrap_or(&daemon_namespace);
        let (plugin_watch, synced) = PluginWatch::new(
            client.clone(),
            namespace,
            analyzer.catalog().clone(),
            analyzer.runner().clone(),
            plugin_settings_rx,
            Reporting {
                events: Some(EventRecorder::new(client.clone(), &options.identity)),
            },
        );
        plugins_synced = synced;
        let watching = tokio::spawn(plugin_watch.run());
        tokio::spawn(async move {
            if let Err(error) = watching.await {
                tracing::error!(%error, "the plugin ConfigMap watch stopped; plugins are no longer reloaded");
            }
        });
    }
    health.not_ready("reading the signing key");
    let key = crate::operator::signing_key::load_or_create_key_patiently(
        &client,
        &daemon_namespace,
        &options.signing_key_secret,
    )
    .await?;
    let (cache, collection) = ClusterCache::start(
        client.clone(),
        &options.namespaces,
        options.metrics_interval,
        prometheus,
    );
    tokio::spawn(collection);

    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down after the step in hand");
        shutdown_tx.send_replace(true);
    });

    let (leading_tx, leading) = watch::channel(!options.leader_elect);
    let fence = if options.leader_elect {
        Fence::closed()
    } else {
        Fence::unfenced()
    };
    let election = if options.leader_elect {
        let api: Api<Lease> = Api::namespaced(client.clone(), &daemon_namespace);
        let lock = LeaseLock::new(
            api,
            &options.lease_name,
            &options.identity,
            options.lease_duration,
        );
        let timing = leader::Timing {
            retry_period: options.lease_duration / 3,
            renew_deadline: options.lease_duration * 2 / 3,
        };
        Some(tokio::spawn(leader::elect(
            lock,
            timing,
            leading_tx,
            fence.clone(),
            shutdown.clone(),
        )))
    } else {
        None
    };

    let mut context = lifecycle::Context::new(
        client.clone(),
        &options.identity,
        key,
        fence,
        (
            options.cluster_actions_per_hour,
            options.namespace_actions_per_hour,
        ),
    );
    context.evictions = evictions;
    let mut controller = Controller::new(cache.clone(), context);
    controller.set_floor(floor_of(&config));
    let started = tokio::time::Instant::now();
    let mut plugin_wait_over = false;
    let mut next_evaluation = tokio::time::Instant::now();
    let mut next_reload_check = tokio::time::Instant::now() + RELOAD_CHECK;
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        health.tick();
        metrics().set_leader(*leading.borrow());
        let sync_state = cache.sync_state();
        for (kind, synced) in &sync_state {
            metrics().set_cache_synced(kind, *synced);
        }
        if !sync_state.iter().all(|(_, synced)| *synced) {
            health.not_ready("caches not synced yet");
            continue;
        }
        // A plugin nothing serves yet has a safe stand-in (the default
        // prompt or parser; a validator denies), so a watch that cannot
        // list (RBAC, an unreachable server) holds the daemon back only so long.
        if !*plugins_synced.borrow() {
            if started.elapsed() < PLUGIN_SYNC_WAIT {
                health.not_ready("plugin ConfigMaps not loaded yet");
                continue;
            }
            if !plugin_wait_over {
                plugin_wait_over = true;
                tracing::warn!(
                    "plugin ConfigMaps not loaded after {}s; going on without them until they are",
                    PLUGIN_SYNC_WAIT.as_secs()
                );
            }
        }
        health.ready();
        let now = tokio::time::Instant::now();
        if now >= next_reload_check {
            next_reload_check = now + RELOAD_CHECK;
            if watched.changed(&config) {
                match reload(&client, &watched, options.plugin_dir.as_ref(), &analyzer).await {
                    Ok((new_config, new_analyzer)) => {
                        tracing::info!("config or plugins changed; reloaded");
                        metrics().plugin_reload("config", true);
                        new_analyzer.catalog().set_reload_failure(None);
                        config = new_config;
                        analyzer = Arc::new(new_analyzer);
                        controller.set_floor(floor_of(&config));
                        plugin_settings.send_if_modified(|settings| {
                            let next = plugin_settings_of(&analyzer, options.plugin_chunk_grace);
                            let changed = *settings != next;
                            *settings = next;
                            changed
                        });
                    }
                    Err(error) => {
                        let why = crate::core::text::with_causes(&error);
                        tracing::error!(
                            error = %why,
                            "config or plugins changed but do not load; keeping the previous ones"
                        );
                        metrics().plugin_reload("config", false);
                        analyzer.catalog().set_reload_failure(Some(format!(
                            "{} {}",
                            chrono::Utc::now().to_rfc3339(),
                            crate::core::untrusted::clean(&why, 1024)
                        )));
                    }
                }
                watched.settle(&config);
            }
        }
        if !*leading.borrow() {
            continue;
        }
        if now >= next_evaluation {
            next_evaluation = now + options.evaluation_interval;
            match controller.evaluate(&analyzer).await {
                Ok(evaluated) if evaluated.incidents > 0 => {
                    tracing::info!(?evaluated, "evaluation pass");
                }
                Ok(_) => {}
                Err(error) => tracing::error!(
                    error = %crate::core::text::with_causes(&error),
                    "evaluation pass failed"
                ),
            }
        }
        let keep_going = || *leading.borrow() && !*shutdown.borrow();
        controller.reconcile_due(keep_going).await;
    }
    if let Some(election) = election {
        // The election loop sees the same shutdown signal and releases the lease.
        let _ = election.await;
    }
    Ok(())
}

fn plugin_settings_of(analyzer: &Analyzer, chunk_grace: Duration) -> Settings {
    let (limits, config) = analyzer.plugin_settings();
    Settings {
        limits,
        config,
        chunk_grace,
        fixed_names: analyzer.catalog().fixed_names(),
    }
}

fn floor_of(config: &Config) -> crate::core::safety::SafetyFloor {
    crate::core::safety::SafetyFloor::from_config(&config.safety)
}

async fn reload(
    client: &kube::Client,
    watched: &reload::Watched,
    plugin_dir: Option<&PathBuf>,
    previous: &Analyzer,
) -> Result<(Config, Analyzer), RunError> {
    let config = Config::load(watched.config_path(), std::env::vars())?;
    let analyzer = build_analyzer(client, &config, plugin_dir, Some(previous)).await?;
    Ok((config, analyzer))
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
