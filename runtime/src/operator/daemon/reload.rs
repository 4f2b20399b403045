//! Hot reload: the config file and every plugin file it names are mounted
//! from ConfigMaps, which the kubelet updates in place. A change is noticed by
//! content digest, so a touched but unchanged file does not reload.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::core::config::Config;

pub struct Watched {
    config_path: Option<PathBuf>,
    /// Plugin directories: every `.wasm` file in them, added or removed too.
    dirs: Vec<PathBuf>,
    fingerprint: String,
}

impl Watched {
    pub fn new(config_path: Option<&Path>, config: &Config) -> Watched {
        let mut watched = Watched {
            config_path: config_path.map(Path::to_path_buf),
            dirs: Vec::new(),
            fingerprint: String::new(),
        };
        watched.settle(config);
        watched
    }

    pub fn watch_dir(&mut self, dir: &Path) {
        self.dirs.push(dir.to_path_buf());
    }

    /// Whether the files differ from when [`Watched::settle`] last ran (or
    /// `new`). A file that cannot be read counts as a change, so the reload
    /// that follows reports the error.
    pub fn changed(&self, current: &Config) -> bool {
        self.fingerprint_of(current) != self.fingerprint
    }

    /// Records the files as they are now, after a reload attempt: `config` is
    /// the config now in force (the new one, or the old one when the new one
    /// failed to load), so a failed reload is retried only after the next edit.
    pub fn settle(&mut self, config: &Config) {
        self.fingerprint = self.fingerprint_of(config);
    }

    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }
}

impl Watched {
    /// The digest of the config file, of the plugin files `config` names and
    /// of the watched directories' plugins; the plugin list comes from the
    /// last config that loaded, and a change to the config file changes the
    /// digest by itself.
    fn fingerprint_of(&self, config: &Config) -> String {
        // Listed as the Analyzer loads them, so what is watched is what is loaded.
        let in_dirs = self.dirs.iter().flat_map(|dir| {
            crate::analyze::pipeline::plugin_dir_files(dir)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, path)| path)
        });
        let paths = self
            .config_path
            .clone()
            .into_iter()
            .chain(config.plugin_files())
            .chain(in_dirs);
        digest(paths)
    }
}

fn digest(paths: impl Iterator<Item = PathBuf>) -> String {
    let mut hasher = Sha256::new();
    for path in paths {
        hasher.update(path.display().to_string().as_bytes());
        match std::fs::read(&path) {
            Ok(bytes) => hasher.update(Sha256::digest(&bytes)),
            Err(error) => hasher.update(format!("unreadable: {error}").as_bytes()),
        }
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_changed_content_only() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.yaml");
        let plugin = dir.path().join("extra.wasm");
        std::fs::write(&plugin, b"one").unwrap();
        std::fs::write(
            &config_path,
            format!("plugins:\n  validators: [{}]\n", plugin.display()),
        )
        .unwrap();
        let config = Config::load(Some(&config_path), []).unwrap();
        let mut watched = Watched::new(Some(&config_path), &config);
        assert!(!watched.changed(&config));

        std::fs::write(&plugin, b"one").unwrap();
        assert!(!watched.changed(&config), "same bytes rewritten");
        std::fs::write(&plugin, b"two").unwrap();
        assert!(watched.changed(&config));
        watched.settle(&config);
        assert!(!watched.changed(&config), "settled");

        std::fs::remove_file(&plugin).unwrap();
        assert!(watched.changed(&config), "a vanished plugin is a change");
    }

    #[test]
    fn a_watched_directory_notices_added_and_removed_plugins() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default();
        let mut watched = Watched::new(None, &config);
        watched.watch_dir(dir.path());
        watched.settle(&config);
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        assert!(!watched.changed(&config));
        std::fs::write(dir.path().join("strict.wasm"), b"v1").unwrap();
        assert!(watched.changed(&config));
        watched.settle(&config);
        std::fs::remove_file(dir.path().join("strict.wasm")).unwrap();
        assert!(watched.changed(&config));
    }
}
