//! The daemon's watch on plugin ConfigMaps. On every change the labelled
//! ConfigMaps are grouped by plugin name and each plugin is put back
//! together; a version not seen before is loaded (size, world and version,
//! imports, compile through the code cache) and tried once on the fixture
//! incident, then swapped into the catalog. A version that fails is never
//! served: the one before it goes on serving, and the failure is written
//! where the person who applied it looks: a Warning Event on the ConfigMap
//! (`kubectl describe configmap`) and `plugin list`. The daemon only reads
//! ConfigMaps: it needs no right to change any.
//!
//! A plugin whose ConfigMaps are deleted stops serving: policies naming a
//! prompt or parser get the default one, policies naming a validator deny
//! (see `Analyzer::policy_validators`).
//!
//! Each replica watches and loads on its own, so replicas agree within one
//! watch delay plus a load.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use tokio::sync::watch;
use tokio::time::Instant;

use super::package::{self, Package, Problem};
use crate::host::catalog::{Catalog, PluginStatus};
use crate::host::{Limits, PluginHost, PluginKind, PluginRunner};
use crate::operator::events::EventRecorder;
use crate::telemetry::metrics::metrics;

/// The largest component, uncompressed, a ConfigMap may deliver: a JS or
/// Python plugin is 12–18 MB.
pub const MAX_PLUGIN_BYTES: usize = 48 << 20;

/// Changes that arrive together (the chunks of one apply) are taken together.
const SETTLE: Duration = Duration::from_millis(100);

/// Plugins one namespace may deliver; more is a mistake or an attack on
/// the daemon's memory, and the names past it are refused.
const MAX_PLUGINS: usize = 64;

/// A fixture run that times out is tried again this often before the
/// version is refused: a deadline missed once may be a busy node.
const TRIAL_ATTEMPTS: usize = 3;

/// What every plugin is loaded with; a config reload sends new settings and
/// every plugin is loaded again under them.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub limits: Limits,
    pub config: BTreeMap<String, String>,
    /// How long a version may miss chunks before that is a rejection.
    pub chunk_grace: Duration,
    /// Names the config's plugins hold, which no ConfigMap may take.
    pub fixed_names: Vec<String>,
}

/// Where the watch writes what it did, besides the catalog and the log.
#[derive(Clone)]
pub struct Reporting {
    pub events: Option<EventRecorder>,
}

pub struct PluginWatch {
    api: Api<ConfigMap>,
    namespace: String,
    catalog: Arc<Catalog>,
    runner: PluginRunner,
    settings: watch::Receiver<Settings>,
    reporting: Reporting,
    /// Per plugin name: the version serving and the last refused, so a
    /// version is loaded or reported once, not on every change.
    seen: HashMap<String, Seen>,
    /// Labelled ConfigMaps that name no valid plugin, and why (reported once).
    unclaimed: HashMap<String, String>,
    /// When each incomplete version was first seen.
    incomplete_since: HashMap<(String, String), Instant>,
    synced: watch::Sender<bool>,
}

#[derive(Debug, Clone, Default)]
struct Seen {
    /// The digest serving and the ConfigMap it came from.
    serving: Option<(String, ObjectReference)>,
    /// The last version refused: its digest, or the problem when the
    /// ConfigMaps made no version.
    refused: Option<String>,
    /// Chunks are still missing.
    waiting: bool,
    /// The ConfigMaps (name, resourceVersion) last looked at: unchanged,
    /// they need not be unpacked again.
    parts: Vec<(String, String)>,
}

impl PluginWatch {
    /// A watch on the labelled ConfigMaps of `namespace`; the receiver turns
    /// true once the ConfigMaps present at start have been loaded or refused.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        catalog: Arc<Catalog>,
        runner: PluginRunner,
        settings: watch::Receiver<Settings>,
        reporting: Reporting,
    ) -> (PluginWatch, watch::Receiver<bool>) {
        let (synced, synced_rx) = watch::channel(false);
        let watch = PluginWatch {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            catalog,
            runner,
            settings,
            reporting,
            seen: HashMap::new(),
            unclaimed: HashMap::new(),
            incomplete_since: HashMap::new(),
            synced,
        };
        (watch, synced_rx)
    }

    pub async fn run(mut self) {
        let (store, writer) = reflector::store();
        let config = watcher::Config::default().labels(package::LABEL);
        let mut events = watcher(self.api.clone(), config)
            .default_backoff()
            .reflect(writer)
            .boxed();
        // The first pass waits for the initial list, however empty; after
        // it, every change is one.
        let mut listed = false;
        loop {
            let waiting = self.seen.values().any(|seen| seen.waiting);
            let recheck = tokio::time::sleep(if waiting {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(3600)
            });
            tokio::select! {
                event = events.next() => match event {
                    None => return,
                    Some(Err(error)) => {
                        tracing::warn!(namespace = %self.namespace, %error, "plugin ConfigMap watch failed; retrying");
                        continue;
                    }
                    Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                    Some(Ok(watcher::Event::InitDone)) => listed = true,
                    Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) => {
                        // Take the rest of a multi-object apply in the same pass.
                        tokio::time::sleep(SETTLE).await;
                        while let Some(Some(_)) = futures::FutureExt::now_or_never(events.next()) {}
                    }
                },
                changed = self.settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // New limits or plugin config: load every version again.
                    for seen in self.seen.values_mut() {
                        seen.refused = None;
                        seen.parts.clear();
                        if let Some((digest, _)) = &mut seen.serving {
                            digest.clear();
                        }
                    }
                },
                () = recheck => {}
            }
            if listed {
                self.reconcile(&store).await;
                self.synced.send_replace(true);
            }
        }
    }

    async fn reconcile(&mut self, store: &Store<ConfigMap>) {
        let configmaps = store.state();
        let mut by_plugin: BTreeMap<String, Vec<Arc<ConfigMap>>> = BTreeMap::new();
        let mut unclaimed = HashMap::new();
        for configmap in &configmaps {
            match package::plugin_name(configmap) {
                Ok(name) => by_plugin
                    .entry(name.to_string())
                    .or_default()
                    .push(configmap.clone()),
                Err(why) => {
                    let configmap_name = configmap.metadata.name.clone().unwrap_or_default();
                    if self.unclaimed.get(&configmap_name) != Some(&why) {
                        self.report_refusal(
                            configmap,
                            &format!("ConfigMap {configmap_name} {why}"),
                        )
                        .await;
                    }
                    unclaimed.insert(configmap_name, why);
                }
            }
        }
        self.unclaimed = unclaimed;
        for (index, (name, parts)) in by_plugin.iter().enumerate() {
            if index >= MAX_PLUGINS {
                let why = format!(
                    "more than {MAX_PLUGINS} plugins in one namespace; plugin {name} is not read"
                );
                self.withdraw_shadowed(name);
                self.refuse(name, &why, &parts[0], &why).await;
                continue;
            }
            self.reconcile_plugin(name, parts).await;
        }
        let gone: Vec<String> = self
            .seen
            .keys()
            .filter(|name| !by_plugin.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.remove(&name).await;
        }
    }

    async fn reconcile_plugin(&mut self, name: &str, parts: &[Arc<ConfigMap>]) {
        let first = parts
            .iter()
            .min_by_key(|configmap| configmap.metadata.name.clone())
            .expect("a plugin has a ConfigMap");
        let mut versions: Vec<(String, String)> = parts
            .iter()
            .map(|configmap| {
                (
                    configmap.metadata.name.clone().unwrap_or_default(),
                    configmap
                        .metadata
                        .resource_version
                        .clone()
                        .unwrap_or_default(),
                )
            })
            .collect();
        versions.sort();
        let seen = self.seen.entry(name.to_string()).or_default();
        if seen.parts == versions && !seen.waiting {
            return;
        }
        seen.parts = versions;
        if self
            .settings
            .borrow()
            .fixed_names
            .iter()
            .any(|fixed| fixed == name)
        {
            let why = format!("plugin name {name:?} is taken by a plugin loaded with the config");
            self.withdraw_shadowed(name);
            self.refuse(name, &why, first, &why).await;
            return;
        }
        // Unpacking (gunzip and sha256 of up to 48 MiB) is blocking work.
        let assembled = {
            let (name, parts) = (name.to_string(), parts.to_vec());
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&ConfigMap> = parts.iter().map(|part| part.as_ref()).collect();
                package::assemble(&name, &refs, MAX_PLUGIN_BYTES)
            })
            .await
        };
        let assembled = match assembled {
            Ok(assembled) => assembled,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        };
        let package = match assembled {
            Ok(package) => package,
            Err(Problem::Invalid(why)) => {
                self.withdraw_if_stale(name);
                self.refuse(name, &why, first, &why).await;
                return;
            }
            Err(Problem::Incomplete(why)) => {
                let grace = self.settings.borrow().chunk_grace;
                let since = *self
                    .incomplete_since
                    .entry((name.to_string(), why.clone()))
                    .or_insert_with(Instant::now);
                let seen = self.seen.entry(name.to_string()).or_default();
                if since.elapsed() >= grace {
                    seen.waiting = false;
                    self.withdraw_if_stale(name);
                    let note = format!("{why} after {}s", grace.as_secs());
                    self.refuse(name, &why, first, &note).await;
                } else {
                    seen.waiting = true;
                    if seen.serving.is_none() {
                        self.set_state(name, &format!("waiting: {why}"), None);
                    }
                }
                return;
            }
        };
        self.incomplete_since
            .retain(|(plugin, _), _| plugin != name);
        let seen = self.seen.entry(name.to_string()).or_default();
        seen.waiting = false;
        let serving_this = seen
            .serving
            .as_ref()
            .is_some_and(|(digest, _)| *digest == package.digest);
        if serving_this || seen.refused.as_ref() == Some(&package.digest) {
            return;
        }
        let reference = reference_of(parts, &package);
        match self.load(&package).await {
            Ok(plugin) => {
                self.catalog.serve(plugin);
                let seen = self.seen.entry(name.to_string()).or_default();
                seen.serving = Some((package.digest.clone(), reference.clone()));
                seen.refused = None;
                let status = PluginStatus {
                    name: name.to_string(),
                    kind: package.kind.as_str().to_string(),
                    version: package.version.clone(),
                    digest: Some(package.digest.clone()),
                    source: source_of(&self.namespace, &package),
                    loaded_since: Some(chrono::Utc::now().to_rfc3339()),
                    state: "serving".into(),
                    last_rejection: self
                        .catalog
                        .status(name)
                        .and_then(|status| status.last_rejection),
                };
                self.catalog.set_status(status);
                let note = format!(
                    "serving {} plugin {name}{} sha256:{}",
                    package.kind.as_str(),
                    package
                        .version
                        .as_ref()
                        .map(|v| format!(" {v}"))
                        .unwrap_or_default(),
                    package::short(&package.digest)
                );
                tracing::info!(plugin = name, digest = %package.digest, "{note}");
                metrics().plugin_reload("configmap", true);
                self.publish(&reference, EventType::Normal, "PluginLoaded", &note)
                    .await;
            }
            Err(why) => {
                self.withdraw_if_stale(name);
                let note = format!(
                    "version sha256:{} refused: {why}",
                    package::short(&package.digest)
                );
                self.refuse(name, &package.digest, first, &note).await;
            }
        }
    }

    /// A version that was to be loaded again under new settings and could
    /// not be must not go on serving under the old ones.
    fn withdraw_if_stale(&mut self, name: &str) {
        let stale = self
            .seen
            .get(name)
            .and_then(|seen| seen.serving.as_ref())
            .is_some_and(|(digest, _)| digest.is_empty());
        if stale {
            self.withdraw_shadowed(name);
        }
    }

    /// Stops serving `name` while its ConfigMaps stay: the config took the
    /// name, the namespace has too many plugins, or the version fails under
    /// the config's new settings.
    fn withdraw_shadowed(&mut self, name: &str) {
        if let Some(seen) = self.seen.get_mut(name)
            && seen.serving.take().is_some()
        {
            self.catalog.withdraw(name);
            let mut status = self.status_of(name);
            status.digest = None;
            status.loaded_since = None;
            self.catalog.set_status(status);
        }
    }

    async fn load(&self, package: &Package) -> Result<crate::host::Plugin, String> {
        let settings = self.settings.borrow().clone();
        let package = package.clone();
        self.runner
            .run(move |host: &PluginHost| {
                let plugin = host
                    .load(
                        &package.name,
                        &package.wasm,
                        package.kind,
                        settings.limits,
                        settings.config,
                    )
                    .map_err(|error| error.to_string())?;
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match host.try_out(&plugin) {
                        Ok(()) => return Ok(plugin),
                        Err(crate::host::PluginError::Timeout { .. })
                            if attempts < TRIAL_ATTEMPTS => {}
                        Err(error) => return Err(format!("the fixture run failed: {error}")),
                    }
                }
            })
            .await
    }

    /// Records that the ConfigMaps of `name` did not make a servable version
    /// (`key` tells refusals apart), reporting it once.
    async fn refuse(&mut self, name: &str, key: &str, first: &ConfigMap, note: &str) {
        // A component's own strings (its name section, in a trap's
        // backtrace) end up in the reason: one bounded, printable line.
        let note = &crate::core::untrusted::clean(note, 900);
        let seen = self.seen.entry(name.to_string()).or_default();
        if seen.refused.as_deref() == Some(key) {
            return;
        }
        seen.refused = Some(key.to_string());
        let still_serving = seen.serving.is_some();
        let rejection = format!("{} {note}", chrono::Utc::now().to_rfc3339());
        let mut status = self.status_of(name);
        status.state = if still_serving { "serving" } else { "rejected" }.into();
        status.last_rejection = Some(rejection);
        self.catalog.set_status(status);
        let note = if still_serving {
            format!("{note}; the previous version goes on serving")
        } else {
            note.to_string()
        };
        tracing::warn!(plugin = name, "{note}");
        metrics().plugin_reload("configmap", false);
        self.report_refusal(first, &note).await;
    }

    async fn report_refusal(&self, configmap: &ConfigMap, note: &str) {
        let mut reference = configmap.object_ref(&());
        reference.resource_version = configmap.metadata.resource_version.clone();
        self.publish(&reference, EventType::Warning, "PluginRejected", note)
            .await;
    }

    fn status_of(&self, name: &str) -> PluginStatus {
        self.catalog.status(name).unwrap_or(PluginStatus {
            name: name.to_string(),
            kind: String::new(),
            version: None,
            digest: None,
            source: format!("configmap {}", self.namespace),
            loaded_since: None,
            state: String::new(),
            last_rejection: None,
        })
    }

    fn set_state(&self, name: &str, state: &str, rejection: Option<String>) {
        let mut status = self.status_of(name);
        status.state = state.to_string();
        if rejection.is_some() {
            status.last_rejection = rejection;
        }
        self.catalog.set_status(status);
    }

    /// The plugin's ConfigMaps are gone: it stops serving, and policies that
    /// name it get the default plugin of its kind.
    async fn remove(&mut self, name: &str) {
        let seen = self.seen.remove(name).unwrap_or_default();
        self.incomplete_since
            .retain(|(plugin, _), _| plugin != name);
        let Some(plugin) = self.catalog.withdraw(name) else {
            self.set_state(name, "removed", None);
            return;
        };
        let stand_in = match plugin.kind() {
            PluginKind::Validator => {
                "policies that name it deny every recommendation until it is back".to_string()
            }
            kind => format!("policies that name it get the default {kind}"),
        };
        let note = format!("plugin {name} removed with its ConfigMaps; {stand_in}");
        tracing::warn!(plugin = name, "{note}");
        if let Some(mut status) = self.catalog.status(name) {
            status.state = "removed".into();
            status.digest = None;
            status.loaded_since = None;
            self.catalog.set_status(status);
        }
        if let Some((_, reference)) = seen.serving {
            self.publish(&reference, EventType::Normal, "PluginRemoved", &note)
                .await;
        }
    }

    async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        if let Some(events) = &self.reporting.events {
            events.about_plugin(regarding, type_, reason, note).await;
        }
    }
}

fn reference_of(parts: &[Arc<ConfigMap>], package: &Package) -> ObjectReference {
    let first = parts
        .iter()
        .find(|configmap| {
            configmap.metadata.name.as_deref() == package.sources.first().map(String::as_str)
        })
        .unwrap_or(&parts[0]);
    let mut reference = first.object_ref(&());
    reference.resource_version = first.metadata.resource_version.clone();
    reference
}

fn source_of(namespace: &str, package: &Package) -> String {
    match package.sources.as_slice() {
        [only] => format!("configmap {namespace}/{only}"),
        [first, rest @ ..] => format!("configmap {namespace}/{first} (+{} chunks)", rest.len()),
        [] => format!("configmap {namespace}"),
    }
}
