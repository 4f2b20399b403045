//! The engine every plugin shares: its configuration, the instance pool where
//! the kernel makes resetting it cheap, the slots calls take from the pool,
//! and the thread that advances the epoch deadlines run against.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PluginError;

/// How often the epoch ticks. Deadlines are rounded up to whole ticks, so a
/// deadline is accurate to about this much.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(2);

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

/// A counting semaphore over the pool's slots: the pool refuses an instance
/// beyond its capacity, and a plugin call should wait rather than fail.
pub(super) struct Slots {
    capacity: u32,
    free: Mutex<u32>,
    freed: Condvar,
}

/// A taken slot, given back when dropped.
pub(super) struct Slot<'a>(&'a Slots);

impl Slots {
    pub(super) fn new(count: u32) -> Slots {
        Slots {
            capacity: count,
            free: Mutex::new(count),
            freed: Condvar::new(),
        }
    }

    pub(super) fn capacity(&self) -> u32 {
        self.capacity
    }

    pub(super) fn take(&self) -> Slot<'_> {
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
pub(super) fn new_engine() -> Result<(Engine, Option<u32>), PluginError> {
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

/// Starts the thread that advances `engine`'s epoch every [`EPOCH_TICK`];
/// setting the returned flag (or dropping the engine) stops it.
pub(super) fn start_epoch_ticker(engine: &Engine) -> Result<Arc<AtomicBool>, PluginError> {
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
    Ok(ticker_stop)
}
