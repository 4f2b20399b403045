//! The shared half of every KubeSkippy plugin: the WIT types with serde derives,
//! the host imports, and small helpers. Plugin crates generate only their own
//! exports and reuse these types through wit-bindgen's `with` option, so a
//! plugin's logic can be written once against these types and run both as a
//! component and natively in tests.

wit_bindgen::generate!({
    path: "../../wit",
    world: "sdk",
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    generate_all,
});

pub use kubeskippy::plugin::{host, types};

pub mod arena;
pub mod quantity;
pub mod sample;

/// A plugin's configuration as the logic sees it. Components read it through the
/// host import; native callers (tests, benchmarks) pass a map.
pub trait ConfigSource {
    fn get(&self, key: &str) -> Option<String>;
}

/// A configuration value that must be a whole number above zero; the error
/// names the key, as every plugin's configuration errors do.
pub fn positive_integer(key: &str, text: &str) -> Result<u32, String> {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("config {key} must be a positive integer, got {text:?}"))
}

/// Configuration read from the host, for use inside a component.
pub struct HostConfig;

impl ConfigSource for HostConfig {
    fn get(&self, key: &str) -> Option<String> {
        host::config(key)
    }
}

impl ConfigSource for std::collections::BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        std::collections::BTreeMap::get(self, key).cloned()
    }
}

/// The host names objects `Kind/name`; comparing refs is a frequent need of
/// parsers and validators alike.
impl types::ObjectRef {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        types::ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for types::ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}
