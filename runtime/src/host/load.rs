//! Loading a plugin: the component is checked for what it is (a component,
//! not a core module), which of the plugin interfaces it exports and at which
//! version, then compiled and pre-instantiated. A validator that also exports
//! the approval gate (0.1.1) is pre-instantiated for that too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use wasmtime::component::InstancePre;

use super::{CallState, Limits, Plugin, PluginError, PluginHost, PluginKind, PluginPre};
use crate::core::wit;

/// The WIT package this host implements, and its version, read from
/// `wit/plugin.wit` when the host is built. A plugin built against any 0.1.x
/// version of the package loads; 0.2 or 1.0 is a breaking change.
pub const WIT_PACKAGE: &str = "kubeskippy:plugin";
pub const WIT_VERSION: &str = env!("KUBESKIPPY_WIT_VERSION");

/// The interface a validator may export beside `safety-validator` (from 0.1.1).
const APPROVAL_GATE: &str = "approval-gate";

impl PluginHost {
    /// Loads a plugin from a file; its name is the file name.
    pub fn load_file(
        &self,
        path: &Path,
        expected: PluginKind,
        limits: Limits,
        config: BTreeMap<String, String>,
    ) -> Result<Plugin, PluginError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| PluginError::Load {
            plugin: name.clone(),
            reason: error.to_string(),
        })?;
        self.load(&name, &bytes, expected, limits, config)
    }

    /// Compiles and pre-instantiates a plugin, checking that it is a component
    /// that exports the interface of `expected` at a version this host speaks.
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        expected: PluginKind,
        limits: Limits,
        config: BTreeMap<String, String>,
    ) -> Result<Plugin, PluginError> {
        let load_error = |reason: String| PluginError::Load {
            plugin: name.to_string(),
            reason,
        };
        check_component_header(bytes).map_err(load_error)?;
        let component = self
            .compile(bytes)
            .map_err(|error| load_error(format!("not a valid component: {error}")))?;
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        check_exports(&exports, expected).map_err(load_error)?;
        super::trial::check_imports(&self.engine, &component).map_err(load_error)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|error| {
            load_error(format!("imports what the host does not offer: {error}"))
        })?;
        let gate = match expected {
            PluginKind::Validator => approval_gate(&exports, &instance_pre).map_err(load_error)?,
            PluginKind::Prompt | PluginKind::Parser => None,
        };
        let pre = match expected {
            PluginKind::Prompt => {
                wit::prompt::PromptPluginPre::new(instance_pre).map(PluginPre::Prompt)
            }
            PluginKind::Parser => {
                wit::parser::ParserPluginPre::new(instance_pre).map(PluginPre::Parser)
            }
            PluginKind::Validator => {
                wit::validator::ValidatorPluginPre::new(instance_pre).map(PluginPre::Validator)
            }
        }
        .map_err(|error| load_error(format!("does not match the {expected} world: {error}")))?;
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(bytes))
        };
        Ok(Plugin {
            name: Arc::from(name),
            digest: Arc::from(digest),
            kind: expected,
            pre,
            gate,
            limits,
            config: Arc::new(config),
        })
    }
}

/// What a component is, as `kubeskippy plugin check` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub kind: PluginKind,
    /// The contract version it was built against, from its export's name.
    pub wit_version: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl PluginHost {
    /// Compiles a component and says which plugin it is, refusing what
    /// [`PluginHost::load`] would refuse before instantiation.
    pub fn identify(&self, bytes: &[u8]) -> Result<Identity, String> {
        check_component_header(bytes)?;
        let component = self
            .compile(bytes)
            .map_err(|error| format!("not a valid component: {error}"))?;
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let found = PluginKind::ALL.into_iter().find_map(|kind| {
            let prefix = format!("{WIT_PACKAGE}/{}@", kind.interface());
            exports
                .iter()
                .find_map(|name| name.strip_prefix(&prefix))
                .map(|version| (kind, version.to_string()))
        });
        let Some((kind, wit_version)) = found else {
            return Err(exports_none(&exports));
        };
        check_exports(&exports, kind)?;
        super::trial::check_imports(&self.engine, &component)?;
        Ok(Identity {
            kind,
            wit_version,
            imports,
            exports,
        })
    }
}

/// `component` with a custom section appended: the same plugin to the
/// component model, another digest to everything that tells versions
/// apart. Benchmarks and tests make versions of one plugin this way.
pub fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::with_capacity(name.len() + payload.len() + 5);
    leb128(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = component.to_vec();
    out.push(0);
    leb128(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// A core module and a component share the `\0asm` magic and differ in the
/// version/layer word that follows; telling them apart up front gives a useful
/// message instead of a parse error deep inside the component.
fn check_component_header(bytes: &[u8]) -> Result<(), String> {
    match bytes.get(0..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00]) => Ok(()),
        Some([0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00]) => Err(
            "is a core WebAssembly module, not a component: build it for wasm32-wasip2 or wrap it with `wasm-tools component new`"
                .into(),
        ),
        Some([0, b'a', b's', b'm', ..]) => Err("is a WebAssembly binary of an unknown version or layer".into()),
        _ => Err("is not a WebAssembly component (no \\0asm header)".into()),
    }
}

/// Finds which of our interfaces the component exports and at which version,
/// so a wrong kind or an incompatible package version is named plainly.
fn check_exports(exports: &[String], expected: PluginKind) -> Result<(), String> {
    for kind in PluginKind::ALL {
        let prefix = format!("{WIT_PACKAGE}/{}@", kind.interface());
        let Some(version) = exports.iter().find_map(|name| name.strip_prefix(&prefix)) else {
            continue;
        };
        if kind != expected {
            return Err(format!("is a {kind}, not a {expected}"));
        }
        if !compatible_version(version) {
            return Err(format!(
                "was built for {WIT_PACKAGE}@{version}; this host implements {WIT_PACKAGE}@{WIT_VERSION} and loads 0.1.x plugins only"
            ));
        }
        return Ok(());
    }
    Err(exports_none(exports))
}

fn exports_none(exports: &[String]) -> String {
    format!(
        "exports none of the KubeSkippy plugin interfaces (it exports: {})",
        if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        }
    )
}

/// The gate of a validator that exports `approval-gate`; none for one that
/// does not, which loads exactly as a 0.1.0 validator. A gate this host cannot
/// call refuses the plugin instead of loading it without its gate: whoever
/// deployed it wants approvals asked for.
fn approval_gate(
    exports: &[String],
    instance_pre: &InstancePre<CallState>,
) -> Result<Option<wit::gating::GatingValidatorPluginPre<CallState>>, String> {
    let prefix = format!("{WIT_PACKAGE}/{APPROVAL_GATE}@");
    let Some(version) = exports.iter().find_map(|name| name.strip_prefix(&prefix)) else {
        return Ok(None);
    };
    if !compatible_version(version) {
        return Err(format!(
            "its {APPROVAL_GATE} was built for {WIT_PACKAGE}@{version}; this host implements {WIT_PACKAGE}@{WIT_VERSION} and loads 0.1.x plugins only"
        ));
    }
    wit::gating::GatingValidatorPluginPre::new(instance_pre.clone())
        .map(Some)
        .map_err(|error| format!("does not match the gating-validator-plugin world: {error}"))
}

/// Semver compatibility as the component linker applies it: for 0.x versions
/// the minor number is the breaking one.
pub(super) fn compatible_version(version: &str) -> bool {
    let mut ours = WIT_VERSION.split('.');
    let mut theirs = version.split(['.', '-', '+']);
    let (our_major, our_minor) = (ours.next(), ours.next());
    let (their_major, their_minor) = (theirs.next(), theirs.next());
    if our_major != their_major {
        return false;
    }
    our_major != Some("0") || our_minor == their_minor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_compatibility_follows_semver() {
        assert!(compatible_version("0.1.0"));
        assert!(compatible_version("0.1.7"));
        assert!(!compatible_version("0.2.0"));
        assert!(!compatible_version("1.0.0"));
    }

    #[test]
    fn headers_are_told_apart() {
        assert!(check_component_header(b"\0asm\x0d\x00\x01\x00rest").is_ok());
        assert!(
            check_component_header(b"\0asm\x01\x00\x00\x00rest")
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        assert!(
            check_component_header(b"hello world")
                .unwrap_err()
                .contains("no \\0asm")
        );
        assert!(
            check_component_header(b"")
                .unwrap_err()
                .contains("no \\0asm")
        );
    }
}
