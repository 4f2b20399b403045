//! `plugin bench`: what a plugin costs the daemon — compiling it, loading
//! it back from the compiled-code cache, and each call on the fixture
//! incident (latency and the linear memory it grows to).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::{ToolkitError, load_any};
use crate::host::{PluginHost, last_call_memory_bytes};

#[derive(Debug, Clone)]
pub struct Figures {
    pub size: usize,
    /// Compiling with no cache.
    pub compile: Duration,
    /// Loading what an earlier run compiled.
    pub cached_load: Duration,
    pub calls: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub peak_memory: usize,
}

pub fn run(name: &str, bytes: &[u8], calls: usize) -> Result<Figures, ToolkitError> {
    let host_with = |cache_dir: Option<std::path::PathBuf>| {
        PluginHost::with_cache_dir(cache_dir)
            .map_err(|error| ToolkitError::Plugin(error.to_string()))
    };
    let started = Instant::now();
    load_any(&host_with(None)?, name, bytes, BTreeMap::new())?;
    let compile = started.elapsed();

    let cache = tempfile::tempdir().map_err(|source| ToolkitError::Read {
        path: "a temporary cache directory".into(),
        source,
    })?;
    let cache_dir = Some(cache.path().to_path_buf());
    load_any(&host_with(cache_dir.clone())?, name, bytes, BTreeMap::new())?;
    let host = host_with(cache_dir)?;
    let started = Instant::now();
    let (_, plugin) = load_any(&host, name, bytes, BTreeMap::new())?;
    let cached_load = started.elapsed();

    let mut latencies = Vec::with_capacity(calls);
    let mut peak_memory = 0;
    for _ in 0..calls.max(1) {
        let started = Instant::now();
        host.try_out(&plugin)
            .map_err(|error| ToolkitError::Plugin(error.to_string()))?;
        latencies.push(started.elapsed());
        peak_memory = peak_memory.max(last_call_memory_bytes());
    }
    latencies.sort();
    let at = |quantile: f64| {
        let index = ((latencies.len() as f64 - 1.0) * quantile).round() as usize;
        latencies[index.min(latencies.len() - 1)]
    };
    Ok(Figures {
        size: bytes.len(),
        compile,
        cached_load,
        calls: latencies.len(),
        p50: at(0.5),
        p99: at(0.99),
        peak_memory,
    })
}

pub fn render(name: &str, figures: &Figures) -> String {
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    let mut out = String::new();
    let _ = writeln!(out, "{name}: {}", super::check::bytes(figures.size));
    let _ = writeln!(
        out,
        "  compile (no cache):  {:>9.1} ms",
        ms(figures.compile)
    );
    let _ = writeln!(
        out,
        "  load from the cache: {:>9.1} ms",
        ms(figures.cached_load)
    );
    let _ = writeln!(
        out,
        "  call, fresh instance, {} calls: p50 {:.3} ms, p99 {:.3} ms",
        figures.calls,
        ms(figures.p50),
        ms(figures.p99)
    );
    let _ = writeln!(
        out,
        "  peak linear memory per call: {}",
        super::check::bytes(figures.peak_memory)
    );
    out
}
