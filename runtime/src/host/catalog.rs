//! The plugins served by name, and what became of every version offered.
//!
//! Plugins delivered while the daemon runs (ConfigMaps) are swapped in here
//! one map at a time: an analysis takes the map once and makes all its calls
//! through it, so it runs entirely on one version of each plugin, and a
//! version swapped out finishes the calls that hold it. The status list is
//! what `kubeskippy plugin list` shows: every plugin the process serves,
//! where it came from, and the last version refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::Plugin;

/// Named plugins delivered at run time, by name.
pub type Served = BTreeMap<String, Plugin>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    pub name: String,
    /// prompt, parser or validator.
    pub kind: String,
    /// What the author called this version, when they did.
    pub version: Option<String>,
    /// sha256 of the component serving; none when nothing serves.
    pub digest: Option<String>,
    /// `built-in`, `file PATH`, or `configmap NS/NAME` (and its chunks).
    pub source: String,
    /// When the serving version was swapped in (RFC 3339).
    pub loaded_since: Option<String>,
    /// serving, rejected (nothing else serves under the name), waiting
    /// (chunks still arriving) or removed.
    pub state: String,
    /// The last version refused, and why: `sha256:… at TIME: reason`.
    pub last_rejection: Option<String>,
}

const MAX_STATUSES: usize = 256;

#[derive(Default)]
pub struct Catalog {
    served: RwLock<Arc<Served>>,
    /// Plugins loaded with the config (built-ins and files), by name: their
    /// names cannot be taken by a run-time plugin.
    fixed: Mutex<Vec<PluginStatus>>,
    delivered: Mutex<BTreeMap<String, PluginStatus>>,
    /// Why the last reload of the config and its plugin files failed,
    /// while the previous ones go on serving.
    reload_failure: Mutex<Option<String>>,
}

impl Catalog {
    pub fn new() -> Arc<Catalog> {
        Arc::new(Catalog::default())
    }

    /// The plugins serving now; later swaps do not change what it holds.
    pub fn current(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Serves `plugin` under its name, replacing any earlier version.
    pub fn serve(&self, plugin: Plugin) {
        self.update(|served| {
            served.insert(plugin.name().to_string(), plugin);
        });
    }

    /// Stops serving `name`; analyses already holding it finish with it.
    pub fn withdraw(&self, name: &str) -> Option<Plugin> {
        let mut removed = None;
        self.update(|served| removed = served.remove(name));
        removed
    }

    fn update(&self, change: impl FnOnce(&mut Served)) {
        let mut slot = self
            .served
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = Served::clone(&slot);
        change(&mut next);
        *slot = Arc::new(next);
    }

    /// Records the plugins that came with the config, replacing the last set.
    pub fn set_fixed(&self, fixed: Vec<PluginStatus>) {
        *self.fixed.lock().unwrap_or_else(|p| p.into_inner()) = fixed;
    }

    /// The names of the plugins that came with the config.
    pub fn fixed_names(&self) -> Vec<String> {
        self.fixed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|status| status.name.clone())
            .collect()
    }

    pub fn set_status(&self, status: PluginStatus) {
        let mut delivered = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        // Names come and go with ConfigMaps; past this many, those withdrawn
        // are forgotten rather than kept for ever.
        if delivered.len() >= MAX_STATUSES && !delivered.contains_key(&status.name) {
            delivered.retain(|_, known| known.state != "removed");
        }
        delivered.insert(status.name.clone(), status);
    }

    pub fn status(&self, name: &str) -> Option<PluginStatus> {
        self.delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Records that the config and plugin files failed to reload (`None`:
    /// the last reload worked).
    pub fn set_reload_failure(&self, failure: Option<String>) {
        *self
            .reload_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = failure;
    }

    /// Every plugin the process knows of: the config's first (and a failed
    /// reload of them), then those delivered at run time, by name.
    pub fn list(&self) -> Vec<PluginStatus> {
        let mut all = self.fixed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(failure) = self
            .reload_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            all.push(PluginStatus {
                name: "(config reload)".into(),
                kind: "-".into(),
                version: None,
                digest: None,
                source: "config file and plugin files".into(),
                loaded_since: None,
                state: "rejected".into(),
                last_rejection: Some(failure),
            });
        }
        all.extend(
            self.delivered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned(),
        );
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, state: &str) -> PluginStatus {
        PluginStatus {
            name: name.into(),
            kind: "validator".into(),
            version: None,
            digest: None,
            source: "configmap ops".into(),
            loaded_since: None,
            state: state.into(),
            last_rejection: None,
        }
    }

    #[test]
    fn a_failed_reload_is_listed_until_one_works() {
        let catalog = Catalog::new();
        catalog.set_fixed(vec![status("default-validator", "serving")]);
        catalog.set_reload_failure(Some("plugin strict.wasm: trapped".into()));
        let listed = catalog.list();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].state, "rejected");
        assert_eq!(
            listed[1].last_rejection.as_deref(),
            Some("plugin strict.wasm: trapped")
        );
        catalog.set_reload_failure(None);
        assert_eq!(catalog.list().len(), 1);
    }

    #[test]
    fn withdrawn_names_are_forgotten_before_the_list_grows_without_bound() {
        let catalog = Catalog::new();
        for i in 0..MAX_STATUSES {
            catalog.set_status(status(&format!("gone-{i}"), "removed"));
        }
        catalog.set_status(status("kept", "serving"));
        let listed = catalog.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "kept");
    }
}
