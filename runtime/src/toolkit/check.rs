//! `plugin check` and `plugin configmap`: what a component is, whether the
//! daemon would take it, and the ConfigMaps that ship it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;

use super::ToolkitError;
use crate::host::{Identity, Limits, PluginHost};
use crate::operator::plugins::package;
use crate::operator::plugins::watch::MAX_PLUGIN_BYTES;

#[derive(Debug, Clone)]
pub struct Checked {
    pub identity: Identity,
    pub size: usize,
    pub gzipped: usize,
    /// ConfigMaps `plugin configmap` makes of it.
    pub configmaps: usize,
    /// Compiling (or loading the compiled code from the cache) and the
    /// fixture run.
    pub load_time: Duration,
    pub trial_time: Duration,
}

/// Runs every check the daemon runs before a plugin serves.
pub fn check(host: &PluginHost, name: &str, bytes: &[u8]) -> Result<Checked, ToolkitError> {
    let fail = |why: String| ToolkitError::Plugin(format!("{name}: {why}"));
    if bytes.len() > MAX_PLUGIN_BYTES {
        return Err(fail(format!(
            "is {} bytes; the daemon takes components up to {MAX_PLUGIN_BYTES} bytes",
            bytes.len()
        )));
    }
    let started = Instant::now();
    let (identity, plugin) = super::load_any(host, name, bytes, BTreeMap::new())?;
    let load_time = started.elapsed();
    let started = Instant::now();
    host.try_out(&plugin)
        .map_err(|error| fail(format!("the fixture run failed: {error}")))?;
    let trial_time = started.elapsed();
    let configmaps =
        package::configmaps("check", identity.kind, None, None, bytes).map_err(fail)?;
    let gzipped = configmaps
        .iter()
        .filter_map(|configmap| configmap.binary_data.as_ref())
        .flat_map(|data| data.values())
        .map(|chunk| chunk.0.len())
        .sum();
    Ok(Checked {
        identity,
        size: bytes.len(),
        gzipped,
        configmaps: configmaps.len(),
        load_time,
        trial_time,
    })
}

pub fn render(name: &str, checked: &Checked) -> String {
    let mut out = String::new();
    let identity = &checked.identity;
    let _ = writeln!(
        out,
        "{name}: {}, built for {}@{} (this host: {})",
        identity.kind,
        crate::host::WIT_PACKAGE,
        identity.wit_version,
        crate::host::WIT_VERSION
    );
    let _ = writeln!(
        out,
        "  size: {} ({} gzipped): {}",
        bytes(checked.size),
        bytes(checked.gzipped),
        if checked.configmaps == 1 {
            "fits one ConfigMap".to_string()
        } else {
            format!("ships as {} chunked ConfigMaps", checked.configmaps)
        }
    );
    let _ = writeln!(out, "  imports: {}", join_or_none(&identity.imports));
    let _ = writeln!(out, "  exports: {}", join_or_none(&identity.exports));
    let _ = writeln!(
        out,
        "  load: {:.1} ms; fixture run: {:.2} ms, within the default limits ({} ms, {} MiB)",
        checked.load_time.as_secs_f64() * 1e3,
        checked.trial_time.as_secs_f64() * 1e3,
        Limits::default().deadline.as_millis(),
        Limits::default().memory_bytes >> 20
    );
    out
}

fn join_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

pub fn bytes(count: usize) -> String {
    if count >= 1 << 20 {
        format!("{:.1} MiB", count as f64 / (1 << 20) as f64)
    } else {
        format!("{:.0} KiB", count as f64 / 1024.0)
    }
}

/// The ConfigMaps that ship the plugin, as one multi-document YAML.
pub fn configmaps_yaml(
    host: &PluginHost,
    name: &str,
    namespace: Option<&str>,
    version: Option<&str>,
    bytes: &[u8],
) -> Result<String, ToolkitError> {
    let checked = check(host, name, bytes)?;
    let configmaps: Vec<ConfigMap> =
        package::configmaps(name, checked.identity.kind, version, namespace, bytes)
            .map_err(ToolkitError::Plugin)?;
    let mut out = String::new();
    for configmap in configmaps {
        let mut value = serde_json::to_value(&configmap).expect("a ConfigMap serialises");
        let object = value.as_object_mut().expect("an object");
        object.insert("apiVersion".into(), "v1".into());
        object.insert("kind".into(), "ConfigMap".into());
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&value).expect("JSON values are YAML"));
    }
    Ok(out)
}
