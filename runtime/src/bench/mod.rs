//! `kubeskippy bench`: per-call latency of each default plugin through the Wasm
//! host (fresh store + call) against the same logic called natively, and the
//! time and peak memory to analyse a large snapshot without a model.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kubeskippy_plugin_sdk::sample;
use kubeskippy_plugin_sdk::types as guest;

use crate::analyze::pipeline::{Analyzer, PluginFiles, defaults};
use crate::core::config::Config;
use crate::core::snapshot::Snapshot;
use crate::core::wit;
use crate::host::{Limits, PluginHost, PluginKind};

mod live;
mod plugin_reload;
mod real_cluster;
pub(crate) mod synthetic;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Calls per plugin measurement.
    #[arg(long, default_value_t = 2000)]
    pub iterations: usize,
    /// Pods in the synthetic snapshot.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Run only the live-evaluation sections (evaluation pass, cache memory,
    /// incident to HealingAction).
    #[arg(long)]
    pub evaluation_only: bool,
    /// Measure against the real control plane whose folder `scripts/cluster
    /// start` made, instead of the synthetic cluster.
    #[arg(long, value_name = "DIR")]
    pub real_cluster: Option<std::path::PathBuf>,
    /// With --real-cluster: Deployments to create.
    #[arg(long, default_value_t = 1000)]
    pub deployments: usize,
    /// With --real-cluster: replicas of each.
    #[arg(long, default_value_t = 10)]
    pub replicas: usize,
    /// With --real-cluster: pods put into a crash loop to time detection.
    #[arg(long, default_value_t = 60)]
    pub incidents: usize,
    /// With --real-cluster: time plugin ConfigMap updates until the new
    /// version serves, instead of the evaluation benchmarks.
    #[arg(long, requires = "real_cluster")]
    pub plugin_reload: bool,
    /// With --plugin-reload: the component to ship (default: the default validator).
    #[arg(long, value_name = "FILE")]
    pub plugin: Option<std::path::PathBuf>,
    /// With --plugin-reload: updates to time.
    #[arg(long, default_value_t = 20)]
    pub updates: usize,
    /// Internal: measure the cache's memory in this (child) process and exit.
    #[arg(long, hide = true)]
    pub cache_memory_child: bool,
}

struct Stats {
    p50: Duration,
    p95: Duration,
    p99: Duration,
}

fn measure(iterations: usize, mut call: impl FnMut()) -> Stats {
    for _ in 0..iterations.min(50) {
        call();
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let started = Instant::now();
            call();
            started.elapsed()
        })
        .collect();
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    Stats {
        p50: at(0.5),
        p95: at(0.95),
        p99: at(0.99),
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.iterations > 0, "--iterations must be at least 1");
    if args.cache_memory_child {
        return live::cache_memory_child(args.pods);
    }
    if let (Some(dir), true) = (&args.real_cluster, args.plugin_reload) {
        return plugin_reload::run(dir, args.plugin.as_deref(), args.updates);
    }
    if let Some(dir) = &args.real_cluster {
        return real_cluster::run(dir, args.deployments, args.replicas, args.incidents);
    }
    if args.evaluation_only {
        return live::run(args.pods);
    }
    let host = PluginHost::new()?;
    let config: BTreeMap<String, String> = Config::default().plugin_config();
    let limits = Limits::default();
    let prompt = host.load(
        "default-prompt",
        defaults::PROMPT,
        PluginKind::Prompt,
        limits,
        config.clone(),
    )?;
    let parser = host.load(
        "default-parser",
        defaults::PARSER,
        PluginKind::Parser,
        limits,
        config.clone(),
    )?;
    let validator = host.load(
        "default-validator",
        defaults::VALIDATOR,
        PluginKind::Validator,
        limits,
        config.clone(),
    )?;

    let guest_incident = sample::realistic_incident();
    let incident: wit::Incident = wit::from_guest(&guest_incident);
    let reply = sample::realistic_reply();
    let guest_analysis = kubeskippy_parser::parse_response(&reply, &guest_incident)
        .map_err(|e| anyhow::anyhow!("the benchmark reply does not parse: {e}"))?;
    let guest_recommendation = guest_analysis.recommendations[0].clone();
    let recommendation: wit::Recommendation = wit::from_guest(&guest_recommendation);
    let context = wit::ReviewContext {
        rank: 0,
        allowed_so_far: 0,
    };
    let guest_context = guest::ReviewContext {
        rank: 0,
        allowed_so_far: 0,
    };

    println!(
        "plugin calls ({} iterations each; incident: {} pods, {} events; reply: {} bytes)",
        args.iterations,
        incident.pods.len(),
        incident.events.len(),
        reply.len()
    );
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "plugin", "wasm p50 µs", "wasm p99 µs", "native p50", "native p99", "ratio"
    );
    let rows = [
        (
            "prompt",
            measure(args.iterations, || {
                host.build_prompt(&prompt, &incident)
                    .expect("prompt builds");
            }),
            measure(args.iterations, || {
                kubeskippy_prompt::build_prompt(&guest_incident, &config).expect("prompt builds");
            }),
        ),
        (
            "parser",
            measure(args.iterations, || {
                host.parse_response(&parser, &reply, &incident)
                    .expect("reply parses");
            }),
            measure(args.iterations, || {
                kubeskippy_parser::parse_response(&reply, &guest_incident).expect("reply parses");
            }),
        ),
        (
            "validator",
            measure(args.iterations, || {
                host.validate(&validator, &recommendation, &incident, context)
                    .expect("validator runs");
            }),
            measure(args.iterations, || {
                kubeskippy_validator::validate(
                    &guest_recommendation,
                    &guest_incident,
                    guest_context,
                    &config,
                );
            }),
        ),
    ];
    for (name, wasm, native) in rows {
        println!(
            "{name:<10} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>7.1}x",
            micros(wasm.p50),
            micros(wasm.p99),
            micros(native.p50),
            micros(native.p99),
            wasm.p50.as_secs_f64() / native.p50.as_secs_f64().max(1e-9)
        );
    }

    provider_overhead(args.iterations.min(1000), &guest_incident, &config)?;

    let yaml = synthetic::snapshot_yaml(args.pods);
    let analyzer = Analyzer::new(&Config::default(), &PluginFiles::default(), None)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let snapshot = Snapshot::parse(&yaml, "synthetic")?;
    let parsed = started.elapsed();
    let report = runtime.block_on(analyzer.analyze(&snapshot))?;
    let total = started.elapsed();
    let recommendations: usize = report.incidents.iter().map(|i| i.reviewed.len()).sum();
    println!(
        "\nsnapshot: {} pods, {} objects, {:.1} MiB of YAML",
        report.pods_seen,
        snapshot.object_count(),
        yaml.len() as f64 / (1 << 20) as f64
    );
    println!(
        "analyze without a model: {:.0} ms total ({:.0} ms parsing, {:.0} ms pipeline); {} incidents, {} recommendations reviewed",
        total.as_secs_f64() * 1e3,
        parsed.as_secs_f64() * 1e3,
        (total - parsed).as_secs_f64() * 1e3,
        report.incidents.len(),
        recommendations
    );
    match peak_rss_mib() {
        Some(mib) => println!("peak RSS of this process: {mib:.0} MiB"),
        None => println!("peak RSS: not available on this platform"),
    }
    live::run(args.pods)
}

/// The providers' own cost — building the request, HTTP over loopback, reading
/// and decoding the reply — against a local server that answers at once with a
/// canned reply, so the model's time is zero.
fn provider_overhead(
    iterations: usize,
    incident: &guest::Incident,
    config: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    use crate::analyze::llm::{ModelProvider, Ollama, OpenAi};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let prompt: wit::Prompt = wit::from_guest(
        &kubeskippy_prompt::build_prompt(incident, config).map_err(anyhow::Error::msg)?,
    );
    let content = sample::realistic_reply();
    let address = runtime.block_on(instant_model_server(content))?;
    let timeout = Duration::from_secs(5);
    let ollama = Ollama::new(&format!("http://{address}"), "bench", timeout)?;
    let openai = OpenAi::new(
        &format!("http://{address}/v1"),
        "bench",
        timeout,
        None,
        None,
    )?;
    println!("\nprovider overhead (loopback server answering at once; {iterations} calls each)");
    for (name, provider) in [
        ("ollama", &ollama as &dyn ModelProvider),
        ("openai", &openai),
    ] {
        let stats = measure(iterations, || {
            runtime
                .block_on(provider.complete(&prompt))
                .expect("the local server answers");
        });
        println!(
            "{name:<10} p50 {:>8.1} µs   p99 {:>8.1} µs",
            micros(stats.p50),
            micros(stats.p99)
        );
    }
    Ok(())
}

/// Answers every request with a reply in both Ollama's and OpenAI's shape
/// (each provider reads only its own fields).
async fn instant_model_server(content: String) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let body = serde_json::json!({
        "model": "bench",
        "message": { "role": "assistant", "content": content },
        "done": true,
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
    })
    .to_string();
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([("content-type", "application/json")], body) }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(address)
}
