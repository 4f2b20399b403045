//! One plugin call: a fresh store with an empty WASI context, the call's
//! memory cap and epoch deadline, the plugin's output forwarded to tracing,
//! and every failure turned into a [`PluginError`] naming the plugin.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::engine::{EPOCH_TICK, Slots};
use super::{Plugin, PluginError, PluginHost, PluginKind, PluginPre};
use crate::core::wit;
use crate::core::wit::{
    Analysis, Incident, Prompt, Recommendation, ReviewContext, Verdict, host::LogLevel,
};
use crate::telemetry::metrics::{CallOutcome, metrics};

/// What a plugin may print per call before its writes fail.
const OUTPUT_CAPACITY: usize = 64 * 1024;
/// Longest log message kept from a plugin, so a chatty plugin cannot flood logs.
const MAX_LOG_MESSAGE: usize = 4096;

thread_local! {
    /// Linear memory the last call on this thread grew to, for `plugin
    /// bench`; kept aside so no call's result type carries it.
    static LAST_CALL_MEMORY: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The bytes of linear memory the last plugin call on this thread held at
/// its peak (memories only grow, so the end of a call is its peak).
pub fn last_call_memory_bytes() -> usize {
    LAST_CALL_MEMORY.get()
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
/// and not as the generic trap the guest turns it into. The cap is on all of
/// an instance's memories together: a component may have several.
struct MemoryLimiter {
    cap: usize,
    used: usize,
    exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.cap {
            self.exceeded = true;
            return Err(wasmtime::format_err!(
                "memory growth to {total} bytes in all exceeds the cap of {} bytes",
                self.cap
            ));
        }
        self.used = total;
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

impl PluginHost {
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
                used: 0,
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
    /// `refusal` tells whether what the plugin returned is its own error,
    /// which the metrics count apart from an answer.
    fn call<R>(
        &self,
        plugin: &Plugin,
        body: impl FnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
        refusal: impl FnOnce(&R) -> bool,
    ) -> Result<R, PluginError> {
        // Declared before the store, so the slot is given back only after the
        // store, and with it the instance, is gone.
        let _slot = self.slots.as_deref().map(Slots::take);
        // After the wait for a slot: the latency is the plugin's, not the queue's.
        let started = std::time::Instant::now();
        let (mut store, stdout, stderr) = self.new_store(plugin);
        let outcome = body(&mut store);
        LAST_CALL_MEMORY.set(store.data().limiter.used);
        forward_output(&plugin.name, "stdout", &stdout);
        forward_output(&plugin.name, "stderr", &stderr);
        let outcome = outcome.map_err(|error| classify(plugin, &store, error));
        let counted = match &outcome {
            Ok(reply) if refusal(reply) => CallOutcome::Error,
            Ok(_) => CallOutcome::Ok,
            Err(PluginError::Timeout { .. }) => CallOutcome::Timeout,
            Err(PluginError::MemoryLimit { .. }) => CallOutcome::Memory,
            Err(_) => CallOutcome::Trap,
        };
        metrics().plugin_call(
            &plugin.name,
            &plugin.kind.to_string(),
            plugin.version(),
            counted,
            started.elapsed(),
        );
        outcome
    }

    pub fn build_prompt(
        &self,
        plugin: &Plugin,
        incident: &Incident,
    ) -> Result<Prompt, PluginError> {
        expect_kind(plugin, PluginKind::Prompt)?;
        let reply = self.call(
            plugin,
            |store| match &plugin.pre {
                PluginPre::Prompt(pre) => pre
                    .instantiate(&mut *store)?
                    .kubeskippy_plugin_prompt_builder()
                    .call_build_prompt(&mut *store, incident),
                _ => unreachable!("kind checked above"),
            },
            Result::is_err,
        )?;
        reply.map_err(|message| refused(plugin, message))
    }

    pub fn parse_response(
        &self,
        plugin: &Plugin,
        reply: &str,
        incident: &Incident,
    ) -> Result<Analysis, PluginError> {
        expect_kind(plugin, PluginKind::Parser)?;
        let parsed = self.call(
            plugin,
            |store| match &plugin.pre {
                PluginPre::Parser(pre) => pre
                    .instantiate(&mut *store)?
                    .kubeskippy_plugin_response_parser()
                    .call_parse_response(&mut *store, reply, incident),
                _ => unreachable!("kind checked above"),
            },
            Result::is_err,
        )?;
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
        self.call(
            plugin,
            |store| match &plugin.pre {
                PluginPre::Validator(pre) => pre
                    .instantiate(&mut *store)?
                    .kubeskippy_plugin_safety_validator()
                    .call_validate(&mut *store, recommendation, incident, context),
                _ => unreachable!("kind checked above"),
            },
            |_| false,
        )
    }

    /// Why `plugin`'s approval gate wants a person to approve `recommendation`
    /// before it runs; a validator without a gate never asks.
    pub fn requires_approval(
        &self,
        plugin: &Plugin,
        recommendation: &Recommendation,
        incident: &Incident,
    ) -> Result<Option<String>, PluginError> {
        expect_kind(plugin, PluginKind::Validator)?;
        let Some(gate) = &plugin.gate else {
            return Ok(None);
        };
        self.call(
            plugin,
            |store| {
                gate.instantiate(&mut *store)?
                    .kubeskippy_plugin_approval_gate()
                    .call_requires_approval(&mut *store, recommendation, incident)
            },
            |_| false,
        )
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
        // The chain names functions from the component's own name section:
        // text its author chose, so one bounded, printable line.
        message: crate::core::untrusted::clean(&format!("{error:#}"), MAX_LOG_MESSAGE),
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

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    #[test]
    fn the_memory_cap_holds_for_all_of_an_instances_memories_together() {
        let mut limiter = super::MemoryLimiter {
            cap: 16 << 20,
            used: 0,
            exceeded: false,
        };
        assert!(limiter.memory_growing(0, 10 << 20, None).is_ok());
        assert!(limiter.memory_growing(10 << 20, 12 << 20, None).is_ok());
        // A second memory would fit the cap on its own, not next to the first.
        assert!(limiter.memory_growing(0, 8 << 20, None).is_err());
        assert!(limiter.exceeded);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(crate::core::untrusted::cut("héllo", 2), "h");
        assert_eq!(crate::core::untrusted::cut("abc", 10), "abc");
    }
}
