//! Compiled plugins kept between runs: compiling takes most of a plugin's
//! load time, so a second start, and each CLI run after the first, skip it.

use std::path::PathBuf;

use wasmtime::component::Component;

use super::PluginHost;

/// `$KUBESKIPPY_CACHE_DIR`, else `$XDG_CACHE_HOME/kubeskippy`, else
/// `~/.cache/kubeskippy`; created with mode 0700. `KUBESKIPPY_CACHE_DIR=off`
/// turns the cache off.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("KUBESKIPPY_CACHE_DIR") {
        Some(dir) if dir == "off" => return None,
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?
            .join("kubeskippy"),
    };
    let dir = base.join("plugins");
    std::fs::create_dir_all(&dir).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).ok()?;
    }
    Some(dir)
}

/// `$KUBESKIPPY_CACHE_MAX_MIB`, else 192 MiB: every new version of a plugin
/// adds an entry (a JS plugin's is about 37 MB), and the cache lives on a
/// volume with a size limit (the chart's `cacheSizeLimit`, 256Mi) past which
/// the kubelet evicts the pod.
fn max_cache_bytes() -> u64 {
    std::env::var("KUBESKIPPY_CACHE_MAX_MIB")
        .ok()
        .and_then(|mib| mib.parse::<u64>().ok())
        .unwrap_or(192)
        << 20
}

/// Deletes the least recently used entries until the cache holds at most
/// `max_bytes`, never `keep` (the entry just written).
fn prune(dir: &std::path::Path, keep: &std::path::Path, max_bytes: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
        .filter_map(|entry| {
            let metadata = entry.metadata().ok()?;
            Some((metadata.modified().ok()?, metadata.len(), entry.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= max_bytes {
            break;
        }
        if path != keep && std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

impl PluginHost {
    /// Compiles a component, or loads what an earlier run compiled from it.
    /// Compiling takes most of a plugin's load time; the cache makes a second
    /// start, and each CLI run after the first, skip it.
    pub(super) fn compile(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes);
        };
        let key = {
            use sha2::Digest;
            use std::hash::{Hash, Hasher};
            let mut engine_hasher = std::collections::hash_map::DefaultHasher::new();
            self.engine
                .precompile_compatibility_hash()
                .hash(&mut engine_hasher);
            let mut hasher = sha2::Sha256::new();
            hasher.update(bytes);
            hasher.update(engine_hasher.finish().to_le_bytes());
            hex::encode(hasher.finalize())
        };
        let path = dir.join(format!("{key}.cwasm"));
        if path.exists() {
            // The entry's age is its last use: pruning drops the least used.
            if let Ok(file) = std::fs::File::options().append(true).open(&path) {
                let _ = file.set_modified(std::time::SystemTime::now());
            }
            // SAFETY: files in the cache directory are written only by
            // `compile` below, from bytes this engine produced, named by the
            // hash of their source and the engine's configuration; the
            // directory is created private to this user.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "discarding an unusable compiled plugin");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let compiled = self.engine.precompile_component(bytes)?;
        // A temporary file of its own: two threads compiling the same bytes
        // must not write one file; a failed write leaves nothing behind.
        if let Ok(mut temporary) = tempfile::NamedTempFile::new_in(dir) {
            use std::io::Write as _;
            if temporary.write_all(&compiled).is_ok() {
                let _ = temporary.persist(&path);
            }
        }
        prune(dir, &path, max_cache_bytes());
        // SAFETY: `compiled` was just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pruning_drops_the_least_recently_used_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, age_seconds: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![0u8; 1000]).unwrap();
            let file = std::fs::File::options().append(true).open(&path).unwrap();
            file.set_modified(
                std::time::SystemTime::now() - std::time::Duration::from_secs(age_seconds),
            )
            .unwrap();
            path
        };
        write("old.cwasm", 300);
        write("used.cwasm", 100);
        let newest = write("new.cwasm", 0);
        write("notes.txt", 500);
        super::prune(dir.path(), &newest, 2000);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["new.cwasm", "notes.txt", "used.cwasm"]);
        super::prune(dir.path(), &newest, 10);
        assert!(newest.exists(), "the entry just written is never pruned");
    }
}
