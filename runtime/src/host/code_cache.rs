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
        let temporary = dir.join(format!("{key}.{}.tmp", std::process::id()));
        if std::fs::write(&temporary, &compiled)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .is_err()
        {
            let _ = std::fs::remove_file(&temporary);
        }
        // SAFETY: `compiled` was just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }
    }
}
