//! `plugin list`: what a running daemon serves, from its `/plugins`
//! endpoint (on the probe port; in a cluster, through `kubectl port-forward`).

use std::fmt::Write as _;
use std::time::Duration;

use super::ToolkitError;
use crate::host::catalog::PluginStatus;

pub async fn fetch(daemon: &str) -> Result<Vec<PluginStatus>, ToolkitError> {
    let url = format!("{}/plugins", daemon.trim_end_matches('/'));
    let failed = |why: String| ToolkitError::Daemon(format!("{url}: {why}"));
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| failed(e.to_string()))?
        .get(&url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| failed(e.to_string()))?;
    if !status.is_success() {
        return Err(failed(format!(
            "{status}: {}",
            crate::core::untrusted::clean(&body, 200)
        )));
    }
    serde_json::from_str::<Vec<serde_json::Value>>(&body)
        .map_err(|e| failed(format!("not a plugin list: {e}")))?
        .into_iter()
        .map(|value| {
            serde_json::from_value(value).map_err(|e| failed(format!("not a plugin list: {e}")))
        })
        .collect()
}

/// The daemon's answer is printed to a terminal: every field one bounded,
/// printable line, whatever the daemon (or whoever answers in its place) sent.
pub fn render(plugins: &[PluginStatus]) -> String {
    let shown = |text: &str| crate::core::untrusted::clean(text, 200);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<9} {:<10} {:<14} {:<26} {:<11} SOURCE",
        "NAME", "KIND", "VERSION", "DIGEST", "LOADED SINCE", "STATE"
    );
    for plugin in plugins {
        let _ = writeln!(
            out,
            "{:<24} {:<9} {:<10} {:<14} {:<26} {:<11} {}",
            shown(&plugin.name),
            shown(&plugin.kind),
            shown(plugin.version.as_deref().unwrap_or("-")),
            shown(
                plugin
                    .digest
                    .as_deref()
                    .map(crate::operator::plugins::package::short)
                    .unwrap_or("-")
            ),
            shown(plugin.loaded_since.as_deref().unwrap_or("-")),
            shown(&plugin.state),
            shown(&plugin.source)
        );
        if let Some(rejection) = &plugin.last_rejection {
            let _ = writeln!(
                out,
                "  last rejected: {}",
                crate::core::untrusted::clean(rejection, 1024)
            );
        }
    }
    out
}
