//! What a plugin must pass before it serves, beyond compiling: it imports
//! only what a plugin may import, and one call on a built-in fixture incident
//! finishes within its deadline and memory cap. A plugin may refuse the
//! fixture (a JVM-only prompt may not care for it); trapping, running out of
//! time or memory is what keeps it out.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::{Plugin, PluginError, PluginHost, PluginKind, WIT_PACKAGE};
use crate::core::wit;

/// Interfaces a plugin may import, by package and interface prefix; the
/// version is checked apart. WASI is there because every wasip2 standard
/// library (Rust's, CPython's, StarlingMonkey's) imports some of it; the host
/// links it with nothing behind it: no files, environment, clocks beyond
/// the wall clock, or network.
const ALLOWED_WASI: [&str; 6] = [
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Refuses a component that imports anything outside the plugin contract
/// and WASI 0.2, naming every such import.
pub(super) fn check_imports(engine: &Engine, component: &Component) -> Result<(), String> {
    let forbidden: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .filter(|name| !import_allowed(name))
        .collect();
    if forbidden.is_empty() {
        return Ok(());
    }
    Err(format!(
        "imports {}, which a plugin may not import (allowed: {WIT_PACKAGE}/host and /types at 0.1.x, and WASI 0.2 io, clocks, random, cli, filesystem and sockets, which the host leaves empty)",
        forbidden.join(", ")
    ))
}

fn import_allowed(name: &str) -> bool {
    let Some((path, version)) = name.split_once('@') else {
        return false;
    };
    if let Some(interface) = path
        .strip_prefix(WIT_PACKAGE)
        .and_then(|p| p.strip_prefix('/'))
    {
        return matches!(interface, "host" | "types") && super::load::compatible_version(version);
    }
    ALLOWED_WASI.iter().any(|prefix| path.starts_with(prefix)) && version.starts_with("0.2.")
}

impl PluginHost {
    /// Calls `plugin` once on the fixture incident, as it would be called
    /// when serving.
    pub fn try_out(&self, plugin: &Plugin) -> Result<(), PluginError> {
        let incident: wit::Incident =
            wit::from_guest(&kubeskippy_plugin_sdk::sample::oom_crashloop_incident());
        let outcome = match plugin.kind() {
            PluginKind::Prompt => self.build_prompt(plugin, &incident).map(drop),
            PluginKind::Parser => self
                .parse_response(
                    plugin,
                    &kubeskippy_plugin_sdk::sample::realistic_reply(),
                    &incident,
                )
                .map(drop),
            PluginKind::Validator => {
                let recommendation = wit::Recommendation {
                    action: wit::Action::Scale(3),
                    target: incident.target.clone(),
                    reason: "fixture: more replicas".into(),
                    risk: "fixture".into(),
                    confidence: 0.8,
                };
                let context = wit::ReviewContext {
                    rank: 0,
                    allowed_so_far: 0,
                };
                self.validate(plugin, &recommendation, &incident, context)
                    .and_then(|_| self.requires_approval(plugin, &recommendation, &incident))
                    .map(drop)
            }
        };
        match outcome {
            Err(PluginError::Refused { .. }) | Ok(()) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::import_allowed;

    #[test]
    fn only_the_contract_and_wasi_0_2_may_be_imported() {
        for allowed in [
            "kubeskippy:plugin/host@0.1.0",
            "kubeskippy:plugin/types@0.1.0",
            "wasi:io/streams@0.2.9",
            "wasi:cli/environment@0.2.12",
            "wasi:sockets/tcp@0.2.0",
        ] {
            assert!(import_allowed(allowed), "{allowed}");
        }
        for refused in [
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:io/streams@0.3.0",
            "kubeskippy:plugin/host@0.2.0",
            "kubeskippy:plugin/prompt-builder@0.1.0",
            "acme:secrets/vault@1.0.0",
            "log",
        ] {
            assert!(!import_allowed(refused), "{refused}");
        }
    }
}
