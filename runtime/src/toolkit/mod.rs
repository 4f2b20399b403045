//! `kubeskippy plugin …`: what a plugin author needs between an idea and a
//! plugin serving in the cluster — check a component, test it against
//! fixtures, measure it, pack it into ConfigMaps, scaffold a new one, and
//! list what a running daemon serves.

pub mod bench;
pub mod check;
pub mod cli;
pub mod fixtures;
pub mod list;
pub mod scaffold;

use std::path::Path;

use crate::host::{Identity, Limits, Plugin, PluginHost};

/// Why a toolkit command failed, in one line.
#[derive(Debug, thiserror::Error)]
pub enum ToolkitError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Plugin(String),
    #[error("{0}")]
    Fixtures(String),
    #[error("{0}")]
    Daemon(String),
}

pub fn read_wasm(path: &Path) -> Result<Vec<u8>, ToolkitError> {
    std::fs::read(path).map_err(|source| ToolkitError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Loads `bytes` as whichever plugin it is, with the default limits and
/// `config` as its configuration.
pub fn load_any(
    host: &PluginHost,
    name: &str,
    bytes: &[u8],
    config: std::collections::BTreeMap<String, String>,
) -> Result<(Identity, Plugin), ToolkitError> {
    let identity = host
        .identify(bytes)
        .map_err(|why| ToolkitError::Plugin(format!("{name}: {why}")))?;
    let plugin = host
        .load(name, bytes, identity.kind, Limits::default(), config)
        .map_err(|error| ToolkitError::Plugin(error.to_string()))?;
    Ok((identity, plugin))
}
