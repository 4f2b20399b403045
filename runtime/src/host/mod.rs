//! The Wasm host: loads prompt, parser and validator components (a validator
//! possibly with an approval gate) and calls them in a sandbox.
//!
//! One `Engine` per process, each plugin compiled once and pre-instantiated,
//! and a fresh `Store` for every call, so one call can never see another's
//! state. A plugin gets WASI with nothing in it (no files, environment, arguments,
//! network or stdio; what it prints goes to tracing under its name) plus the
//! `kubeskippy:plugin/host` interface. Each call runs under an epoch deadline and
//! a memory cap; a trap, a timeout or a limit becomes a [`PluginError`] naming the
//! plugin, and the host serves the next call as if nothing happened.
//!
//! The parts, by job: [`engine`] (the engine, its instance pool and epoch
//! ticker), [`code_cache`] (compiled components kept between runs), [`load`]
//! (loading and checking components), [`call`] (one call in a fresh store),
//! and [`PluginRunner`], through which async code calls plugins on tokio's
//! blocking pool, so a slow plugin never holds a runtime worker.

pub(crate) mod budget;
mod call;
pub mod catalog;
mod code_cache;
mod engine;
mod load;
pub(crate) mod review;
mod runner;
mod trial;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::core::wit;

pub use call::{CallState, last_call_memory_bytes};
pub use code_cache::default_cache_dir;
pub use load::{Identity, WIT_PACKAGE, WIT_VERSION, with_custom_section};
pub use runner::PluginRunner;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Prompt,
    Parser,
    Validator,
}

impl PluginKind {
    /// The kind as configs, annotations and `plugin check` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Prompt => "prompt",
            PluginKind::Parser => "parser",
            PluginKind::Validator => "validator",
        }
    }

    pub fn parse(text: &str) -> Option<PluginKind> {
        PluginKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    fn interface(self) -> &'static str {
        match self {
            PluginKind::Prompt => "prompt-builder",
            PluginKind::Parser => "response-parser",
            PluginKind::Validator => "safety-validator",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            PluginKind::Prompt => "prompt plugin",
            PluginKind::Parser => "parser plugin",
            PluginKind::Validator => "validator plugin",
        }
    }

    const ALL: [PluginKind; 3] = [
        PluginKind::Prompt,
        PluginKind::Parser,
        PluginKind::Validator,
    ];
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.noun())
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PluginError {
    #[error("plugin {plugin}: cannot load: {reason}")]
    Load { plugin: String, reason: String },
    #[error("plugin {plugin}: timed out after {limit_ms} ms")]
    Timeout { plugin: String, limit_ms: u64 },
    #[error("plugin {plugin}: exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { plugin: String, limit_bytes: u64 },
    #[error("plugin {plugin}: trapped: {message}")]
    Trap { plugin: String, message: String },
    #[error("plugin {plugin}: {message}")]
    Refused { plugin: String, message: String },
}

/// Per-plugin sandbox limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub deadline: Duration,
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(100),
            memory_bytes: 64 << 20,
        }
    }
}

/// The engine and linker every plugin shares. Dropping it stops the epoch ticker.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<CallState>,
    /// Free pool slots; `None` when instances are allocated on demand.
    slots: Option<Arc<engine::Slots>>,
    ticker_stop: Arc<AtomicBool>,
    /// Where compiled plugins are kept between runs; none when no private,
    /// writable directory could be had.
    cache_dir: Option<PathBuf>,
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A compiled, pre-instantiated plugin of a known kind.
#[derive(Clone)]
pub struct Plugin {
    name: Arc<str>,
    /// sha256 of the component, so caches can tell two versions apart.
    digest: Arc<str>,
    kind: PluginKind,
    pre: PluginPre,
    /// The approval gate of a validator that exports one (added in 0.1.1).
    gate: Option<wit::gating::GatingValidatorPluginPre<CallState>>,
    limits: Limits,
    config: Arc<BTreeMap<String, String>>,
}

#[derive(Clone)]
enum PluginPre {
    Prompt(wit::prompt::PromptPluginPre<CallState>),
    Parser(wit::parser::ParserPluginPre<CallState>),
    Validator(wit::validator::ValidatorPluginPre<CallState>),
}

impl PluginHost {
    /// A host that keeps compiled plugins in the user's cache directory.
    pub fn new() -> Result<PluginHost, PluginError> {
        PluginHost::with_cache_dir(default_cache_dir())
    }

    /// A host that keeps compiled plugins in `cache_dir`, or compiles every
    /// time when `None`. Instances come from a pool where the kernel supports
    /// resetting it cheaply (see [`engine_config`]), else are allocated on demand.
    pub fn with_cache_dir(cache_dir: Option<PathBuf>) -> Result<PluginHost, PluginError> {
        let (engine, pool_slots) = engine::new_engine()?;
        PluginHost::with_engine(cache_dir, engine, pool_slots)
    }

    fn with_engine(
        cache_dir: Option<PathBuf>,
        engine: Engine,
        pool_slots: Option<u32>,
    ) -> Result<PluginHost, PluginError> {
        let mut linker = Linker::new(&engine);
        let link_error = |error: wasmtime::Error| PluginError::Load {
            plugin: "(linker)".into(),
            reason: error.to_string(),
        };
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_error)?;
        wit::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(link_error)?;
        wit::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(link_error)?;

        let ticker_stop = engine::start_epoch_ticker(&engine)?;
        Ok(PluginHost {
            engine,
            linker,
            slots: pool_slots.map(|count| Arc::new(engine::Slots::new(count))),
            ticker_stop,
            cache_dir,
        })
    }

    /// The host of this process, made on first use: one engine, instance
    /// pool and epoch ticker however often the config and plugins are
    /// reloaded.
    pub fn shared() -> Result<Arc<PluginHost>, PluginError> {
        static SHARED: OnceLock<Arc<PluginHost>> = OnceLock::new();
        if let Some(host) = SHARED.get() {
            return Ok(host.clone());
        }
        let host = Arc::new(PluginHost::new()?);
        Ok(SHARED.get_or_init(|| host).clone())
    }

    /// How many calls may hold an instance at once, when instances come from
    /// a pool.
    pub fn slots(&self) -> Option<u32> {
        self.slots.as_ref().map(|slots| slots.capacity())
    }
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The digest's first 12 hex digits: which build of a plugin answered,
    /// short enough for a metric label.
    pub fn version(&self) -> &str {
        let digest = self.digest.strip_prefix("sha256:").unwrap_or(&self.digest);
        digest.get(..12).unwrap_or(digest)
    }

    /// Whether this validator also exports an approval gate.
    pub fn has_approval_gate(&self) -> bool {
        self.gate.is_some()
    }
}
