//! The Wasm host: loads prompt, parser and validator components and calls them
//! in a sandbox.
//!
//! One `Engine` per process, each plugin compiled once and pre-instantiated,
//! and a fresh `Store` for every call, so one call can never see another's
//! state. A plugin gets WASI with nothing in it (no files, environment, arguments,
//! network or stdio; what it prints goes to tracing under its name) plus the
//! `kubeskippy:plugin/host` interface. Each call runs under an epoch deadline and
//! a memory cap; a trap, a timeout or a limit becomes a [`PluginError`] naming the
//! plugin, and the host serves the next call as if nothing happened.

pub mod budget;
pub mod review;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::core::wit;
use crate::core::wit::{
    Analysis, Incident, Prompt, Recommendation, ReviewContext, Verdict, host::LogLevel,
};

/// The WIT package version this host implements. A plugin built against any
/// 0.1.x version of the package loads; 0.2 or 1.0 is a breaking change.
pub const WIT_PACKAGE: &str = "kubeskippy:plugin";
pub const WIT_VERSION: &str = "0.1.0";

/// How often the epoch ticks. Deadlines are rounded up to whole ticks, so a
/// deadline is accurate to about this much.
const EPOCH_TICK: Duration = Duration::from_millis(2);
/// What a plugin may print per call before its writes fail.
const OUTPUT_CAPACITY: usize = 64 * 1024;
/// Longest log message kept from a plugin, so a chatty plugin cannot flood logs.
const MAX_LOG_MESSAGE: usize = 4096;

/// Plugin instances that may exist at once when instances come from the pool;
/// a call beyond that waits for a slot.
const POOL_SLOTS: u32 = 16;
/// What one plugin may contain, so that every instance fits its slot. Rust and
/// C plugins have 3 core instances, one memory and a few tables; componentized
/// interpreters have more.
const POOL_CORE_INSTANCES_PER_PLUGIN: u32 = 32;
const POOL_MEMORIES_PER_PLUGIN: u32 = 2;
const POOL_TABLES_PER_PLUGIN: u32 = 8;
const POOL_TABLE_ELEMENTS: usize = 100_000;
/// How much of a used memory is reset by copying rather than by handing pages
/// back to the kernel. A plugin call dirties some tens of KiB (stack top, data,
/// heap); resetting those in place keeps them mapped for the next call.
const POOL_KEEP_RESIDENT: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Prompt,
    Parser,
    Validator,
}

impl PluginKind {
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
    slots: Option<Arc<Slots>>,
    ticker_stop: Arc<AtomicBool>,
    /// Where compiled plugins are kept between runs; none when no private,
    /// writable directory could be had.
    cache_dir: Option<PathBuf>,
}

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
    limits: Limits,
    config: Arc<BTreeMap<String, String>>,
}

#[derive(Clone)]
enum PluginPre {
    Prompt(wit::prompt::PromptPluginPre<CallState>),
    Parser(wit::parser::ParserPluginPre<CallState>),
    Validator(wit::validator::ValidatorPluginPre<CallState>),
}

/// Everything one call owns; dropped with the call's store.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    plugin: Arc<str>,
    config: Arc<BTreeMap<String, String>>,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::host::Host for CallState {
    fn log(&mut self, level: LogLevel, message: String) {
        let message = crate::core::untrusted::cut(&message, MAX_LOG_MESSAGE);
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

impl wit::types::Host for CallState {}

/// Records that the cap was hit, so the failure is reported as a memory limit
/// and not as the generic trap the guest turns it into.
struct MemoryLimiter {
    cap: usize,
    exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.exceeded = true;
            return Err(wasmtime::format_err!(
                "memory growth to {desired} bytes exceeds the cap of {} bytes",
                self.cap
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real
        // plugin and keeps a hostile one from exhausting host memory through them.
        Ok(desired <= 1_000_000)
    }
}

/// A counting semaphore over the pool's slots: the pool refuses an instance
/// beyond its capacity, and a plugin call should wait rather than fail.
struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

/// A taken slot, given back when dropped.
struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(count: u32) -> Slots {
        Slots {
            free: Mutex::new(count),
            freed: Condvar::new(),
        }
    }

    fn take(&self) -> Slot<'_> {
        // A poisoned lock only means another caller panicked between two
        // integer updates; the count is still right.
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(|poison| poison.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self
            .0
            .free
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// The engine's configuration and, when instances come from a pool, its size.
///
/// Every call instantiates afresh, so what instantiation and teardown cost is
/// paid per call. On demand, that is an `mmap` of the linear memory, page
/// faults as the guest touches it and an `munmap` at the end — a third of a
/// small call's time. The pool keeps each slot's memory mapped and, with the
/// kernel's PAGEMAP_SCAN (Linux 6.7+), resets only the pages the call dirtied
/// by copying, so the next call finds them resident. Without PAGEMAP_SCAN the
/// pool would have to clear the whole kept region or give it back to the
/// kernel, which measured no faster than on-demand allocation, so the engine
/// allocates on demand there.
fn engine_config(pagemap_scan: bool) -> (Config, Option<u32>) {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if !pagemap_scan {
        return (config, None);
    }
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_SLOTS)
        .total_core_instances(POOL_SLOTS * POOL_CORE_INSTANCES_PER_PLUGIN)
        .max_core_instances_per_component(POOL_CORE_INSTANCES_PER_PLUGIN)
        .total_memories(POOL_SLOTS * POOL_MEMORIES_PER_PLUGIN)
        .max_memories_per_component(POOL_MEMORIES_PER_PLUGIN)
        .total_tables(POOL_SLOTS * POOL_TABLES_PER_PLUGIN)
        .max_tables_per_component(POOL_TABLES_PER_PLUGIN)
        .max_tables_per_module(POOL_TABLES_PER_PLUGIN)
        .table_elements(POOL_TABLE_ELEMENTS)
        .linear_memory_keep_resident(POOL_KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Yes);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    (config, Some(POOL_SLOTS))
}

/// The engine, pooled when the kernel allows. The pool reserves address space
/// for all its memories up front (some 130 GiB, never touched); where an
/// address-space limit refuses that, instances are allocated on demand.
fn new_engine() -> Result<(Engine, Option<u32>), PluginError> {
    let engine_error = |error: wasmtime::Error| PluginError::Load {
        plugin: "(engine)".into(),
        reason: error.to_string(),
    };
    let (config, pool_slots) = engine_config(PoolingAllocationConfig::is_pagemap_scan_available());
    match Engine::new(&config) {
        Ok(engine) => Ok((engine, pool_slots)),
        Err(error) if pool_slots.is_some() => {
            tracing::warn!(%error, "cannot reserve the plugin instance pool; allocating instances on demand");
            let (config, _) = engine_config(false);
            Ok((Engine::new(&config).map_err(engine_error)?, None))
        }
        Err(error) => Err(engine_error(error)),
    }
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
        let (engine, pool_slots) = new_engine()?;
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

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak_engine = engine.weak();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("kubeskippy-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|error| PluginError::Load {
                plugin: "(engine)".into(),
                reason: format!("cannot start the epoch ticker: {error}"),
            })?;
        Ok(PluginHost {
            engine,
            linker,
            slots: pool_slots.map(|count| Arc::new(Slots::new(count))),
            ticker_stop,
            cache_dir,
        })
    }

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
        check_exports(&self.engine, &component, expected).map_err(load_error)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|error| {
            load_error(format!("imports what the host does not offer: {error}"))
        })?;
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
            limits,
            config: Arc::new(config),
        })
    }

    /// Compiles a component, or loads what an earlier run compiled from it.
    /// Compiling takes most of a plugin's load time; the cache makes a second
    /// start, and each CLI run after the first, skip it.
    fn compile(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
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

    fn new_store(&self, plugin: &Plugin) -> (Store<CallState>, MemoryOutputPipe, MemoryOutputPipe) {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap: plugin.limits.memory_bytes,
                exceeded: false,
            },
            plugin: plugin.name.clone(),
            config: plugin.config.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let ticks = plugin
            .limits
            .deadline
            .as_micros()
            .div_ceil(EPOCH_TICK.as_micros())
            .max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        (store, stdout, stderr)
    }

    /// Runs `body` against a fresh instance of `plugin`, turning every failure
    /// into a typed error and forwarding what the plugin printed to tracing.
    fn call<R>(
        &self,
        plugin: &Plugin,
        body: impl FnOnce(&mut Store<CallState>, &PluginPre) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        // Declared before the store, so the slot is given back only after the
        // store, and with it the instance, is gone.
        let _slot = self.slots.as_deref().map(Slots::take);
        let (mut store, stdout, stderr) = self.new_store(plugin);
        let outcome = body(&mut store, &plugin.pre);
        forward_output(&plugin.name, "stdout", &stdout);
        forward_output(&plugin.name, "stderr", &stderr);
        outcome.map_err(|error| classify(plugin, &store, error))
    }

    pub fn build_prompt(
        &self,
        plugin: &Plugin,
        incident: &Incident,
    ) -> Result<Prompt, PluginError> {
        expect_kind(plugin, PluginKind::Prompt)?;
        let reply = self.call(plugin, |store, pre| match pre {
            PluginPre::Prompt(pre) => pre
                .instantiate(&mut *store)?
                .kubeskippy_plugin_prompt_builder()
                .call_build_prompt(&mut *store, incident),
            _ => unreachable!("kind checked above"),
        })?;
        reply.map_err(|message| refused(plugin, message))
    }

    pub fn parse_response(
        &self,
        plugin: &Plugin,
        reply: &str,
        incident: &Incident,
    ) -> Result<Analysis, PluginError> {
        expect_kind(plugin, PluginKind::Parser)?;
        let parsed = self.call(plugin, |store, pre| match pre {
            PluginPre::Parser(pre) => pre
                .instantiate(&mut *store)?
                .kubeskippy_plugin_response_parser()
                .call_parse_response(&mut *store, reply, incident),
            _ => unreachable!("kind checked above"),
        })?;
        parsed.map_err(|message| refused(plugin, message))
    }

    pub fn validate(
        &self,
        plugin: &Plugin,
        recommendation: &Recommendation,
        incident: &Incident,
        context: ReviewContext,
    ) -> Result<Verdict, PluginError> {
        expect_kind(plugin, PluginKind::Validator)?;
        self.call(plugin, |store, pre| match pre {
            PluginPre::Validator(pre) => pre
                .instantiate(&mut *store)?
                .kubeskippy_plugin_safety_validator()
                .call_validate(&mut *store, recommendation, incident, context),
            _ => unreachable!("kind checked above"),
        })
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
}

fn expect_kind(plugin: &Plugin, kind: PluginKind) -> Result<(), PluginError> {
    if plugin.kind == kind {
        Ok(())
    } else {
        Err(PluginError::Load {
            plugin: plugin.name.to_string(),
            reason: format!("is a {}, not a {kind}", plugin.kind),
        })
    }
}

fn refused(plugin: &Plugin, message: String) -> PluginError {
    PluginError::Refused {
        plugin: plugin.name.to_string(),
        message: crate::core::untrusted::cut(&message, MAX_LOG_MESSAGE).to_string(),
    }
}

fn classify(plugin: &Plugin, store: &Store<CallState>, error: wasmtime::Error) -> PluginError {
    let name = plugin.name.to_string();
    if store.data().limiter.exceeded {
        return PluginError::MemoryLimit {
            plugin: name,
            limit_bytes: plugin.limits.memory_bytes as u64,
        };
    }
    if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
        return PluginError::Timeout {
            plugin: name,
            limit_ms: plugin.limits.deadline.as_millis() as u64,
        };
    }
    PluginError::Trap {
        plugin: name,
        message: format!("{error:#}").replace('\n', " "),
    }
}

fn forward_output(plugin: &str, stream: &str, pipe: &MemoryOutputPipe) {
    let contents = pipe.contents();
    if contents.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(&contents);
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        tracing::info!(plugin, stream, "{line}");
    }
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
fn check_exports(
    engine: &Engine,
    component: &Component,
    expected: PluginKind,
) -> Result<(), String> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
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
    Err(format!(
        "exports none of the KubeSkippy plugin interfaces (it exports: {})",
        if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        }
    ))
}

/// Semver compatibility as the component linker applies it: for 0.x versions
/// the minor number is the breaking one.
fn compatible_version(version: &str) -> bool {
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

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(crate::core::untrusted::cut("héllo", 2), "h");
        assert_eq!(crate::core::untrusted::cut("abc", 10), "abc");
    }
}
