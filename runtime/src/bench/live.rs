//! The live daemon's costs, on synthetic stores fed directly: a full
//! evaluation pass, the memory of the cached cluster, and one incident from
//! trigger to a created HealingAction.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;

use super::{measure, micros};
use crate::analyze::pipeline::{Analyzer, PluginFiles};
use crate::bench::synthetic;
use crate::core::config::Config;
use crate::core::crd::healing_action::HealingAction;
use crate::core::crd::policy::HealingPolicy;
use crate::core::evaluation::{self, Pass, TriggerMemory};
use crate::core::objects::Lenient;
use crate::operator::collect::{self, CacheWriters, ClusterCache};

/// Policies in the evaluation benchmark, as the issue sets it.
const POLICIES: usize = 20;
const PASSES: usize = 20;

fn bench_now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T09:00:00Z")
        .expect("a valid timestamp")
        .with_timezone(&Utc)
}

pub(super) fn run(pods: usize) -> anyhow::Result<()> {
    evaluation_pass(pods)?;
    cache_memory(pods)?;
    incident_to_action()
}

/// Fills every store of a detached cache with the synthetic cluster.
fn filled_cache(pods: usize, policies: Vec<HealingPolicy>) -> (ClusterCache, CacheWriters) {
    let (cache, mut writers) = ClusterCache::detached();
    let cluster = synthetic::cluster(pods, bench_now());
    collect::fill(&mut writers.pods, cluster.pods);
    collect::fill(&mut writers.events, cluster.events);
    collect::fill(&mut writers.deployments, cluster.deployments);
    collect::fill(&mut writers.replica_sets, cluster.replica_sets);
    collect::fill(&mut writers.stateful_sets, []);
    collect::fill(&mut writers.daemon_sets, []);
    collect::fill(
        &mut writers.policies,
        policies.into_iter().map(Lenient::from),
    );
    collect::fill(&mut writers.cluster_policies, []);
    collect::fill(&mut writers.actions, []);
    writers.set_pod_metrics(cluster.pod_metrics);
    (cache, writers)
}

fn one_pass<'v>(
    view: &'v collect::CacheView,
    memory: &mut TriggerMemory,
    now: DateTime<Utc>,
) -> Pass<'v> {
    evaluation::pass(
        &view.objects(),
        view.policies(),
        memory,
        view.actions(),
        now,
    )
    .expect("the synthetic policies are valid")
}

fn evaluation_pass(pods: usize) -> anyhow::Result<()> {
    let now = bench_now();
    let (cache, _writers) = filled_cache(pods, synthetic::policies(POLICIES));
    let view = cache.view();
    let mut memory = TriggerMemory::new();
    let first = one_pass(&view, &mut memory, now);
    let suppressed: usize = first.policies.iter().map(|p| p.suppressed.len()).sum();
    println!(
        "\nevaluation pass from reflector stores: {} pods, {} events, {} Deployments, {} ReplicaSets, {POLICIES} policies",
        view.pods.len(),
        view.events.len(),
        view.deployments.len(),
        view.replica_sets.len()
    );
    println!(
        "  each pass: {} incidents, {suppressed} findings held back (duration pending), {} conditions timed",
        first.incidents.len(),
        memory.len()
    );
    drop(first);
    drop(view);
    let later = now + chrono::Duration::minutes(5);
    let stats = measure(PASSES, || {
        let view = cache.view();
        let pass = one_pass(&view, &mut memory, later);
        std::hint::black_box(pass.incidents.len());
    });
    println!(
        "  view + facts + triggers + gates + incidents, {PASSES} passes: p50 {:.1} ms, p95 {:.1} ms (target < 100 ms)",
        micros(stats.p50) / 1e3,
        micros(stats.p95) / 1e3
    );
    Ok(())
}

/// Runs the measurement in a child process, so nothing this process
/// allocated for other sections is counted.
fn cache_memory(pods: usize) -> anyhow::Result<()> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "--cache-memory-child", "--pods", &pods.to_string()])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "the cache-memory child failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    print!("{}", String::from_utf8_lossy(&output.stdout));
    Ok(())
}

fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The cache as the daemon holds it: objects arrive one Deployment at a time
/// as the API server's full JSON, are read into the cache's slim types and
/// stripped, and only that copy is kept.
pub(super) fn cache_memory_child(pods: usize) -> anyhow::Result<()> {
    let rss = || status_mib("VmRSS:").unwrap_or(f64::NAN);
    let start = rss();
    let (cache, mut writers) = ClusterCache::detached();
    macro_rules! each_writer {
        ($event:expr) => {
            writers.pods.apply_watcher_event(&$event);
            writers.events.apply_watcher_event(&$event);
            writers.deployments.apply_watcher_event(&$event);
            writers.replica_sets.apply_watcher_event(&$event);
            writers.stateful_sets.apply_watcher_event(&$event);
            writers.daemon_sets.apply_watcher_event(&$event);
            writers.actions.apply_watcher_event(&$event);
        };
    }
    each_writer!(watcher::Event::Init);
    let mut metrics = Vec::with_capacity(pods);
    for part in synthetic::cluster_parts(pods, bench_now()) {
        collect::apply_listed(&mut writers.pods, part.pods);
        collect::apply_listed(&mut writers.events, part.events);
        collect::apply_listed(&mut writers.deployments, part.deployments);
        collect::apply_listed(&mut writers.replica_sets, part.replica_sets);
        metrics.extend(part.pod_metrics);
    }
    each_writer!(watcher::Event::InitDone);
    collect::fill(
        &mut writers.policies,
        synthetic::policies(POLICIES).into_iter().map(Lenient::from),
    );
    collect::fill(&mut writers.cluster_policies, []);
    writers.set_pod_metrics(metrics);
    let view = cache.view();
    let (pods_cached, events_cached, replica_sets_cached) =
        (view.pods.len(), view.events.len(), view.replica_sets.len());
    drop(view);
    let stores = rss();

    let mut memory = TriggerMemory::new();
    let view = cache.view();
    std::hint::black_box(one_pass(&view, &mut memory, bench_now()).incidents.len());
    drop(view);
    let after_pass = rss();

    let analyzer = Analyzer::new(&Config::default(), &PluginFiles::default(), None)?;
    let with_plugins = rss();
    let peak = status_mib("VmHWM:").unwrap_or(f64::NAN);
    std::hint::black_box(&analyzer);
    println!(
        "\ncache memory (a fresh process; {pods_cached} pods, {events_cached} events, {replica_sets_cached} ReplicaSets, read from full API JSON and stripped as they arrive)"
    );
    println!(
        "  RSS at start {start:.0} MiB; holding the stores {stores:.0} MiB (+{:.0} MiB)",
        stores - start
    );
    println!(
        "  after one evaluation pass {after_pass:.0} MiB; with the default plugins loaded {with_plugins:.0} MiB; peak {peak:.0} MiB (target < 150 MiB)"
    );
    Ok(())
}

/// An in-process API server that accepts every create, as the API server
/// would answer it: the object back with a uid, resourceVersion and
/// creationTimestamp. No network.
fn in_process_client() -> kube::Client {
    let service = tower::service_fn(|request: http::Request<kube::client::Body>| async move {
        let body = request
            .into_body()
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        let mut object: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        object["metadata"]["uid"] = "bench-uid".into();
        object["metadata"]["resourceVersion"] = "1".into();
        object["metadata"]["creationTimestamp"] = Utc::now().to_rfc3339().into();
        let response = http::Response::builder()
            .status(201)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(object.to_string())))
            .expect("a valid response");
        Ok::<_, Infallible>(response)
    });
    kube::Client::new(service, "default")
}

fn incident_to_action() -> anyhow::Result<()> {
    let now = bench_now();
    let (cache, _writers) = filled_cache(10, vec![HealingPolicy::builtin_default()]);
    let analyzer = Analyzer::new(&Config::default(), &PluginFiles::default(), None)?;
    // The daemon's runtime: plugin calls leave the worker as they do there.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The client's buffer task is spawned on the runtime it is made in.
    let client = runtime.block_on(async { in_process_client() });
    let mut memory = TriggerMemory::new();
    let mut created = 0usize;
    let mut parts = [Duration::ZERO; 3];
    let iterations = 300;
    let stats = measure(iterations, || {
        runtime.block_on(async {
            let started = Instant::now();
            let view = cache.view();
            let pass = one_pass(&view, &mut memory, now);
            let evaluated = Instant::now();
            for open in &pass.incidents {
                let report = analyzer.analyze_incident(open).await;
                let analysed = Instant::now();
                for action in &report.actions {
                    let namespace = action.metadata.namespace.as_deref().unwrap_or("default");
                    Api::<HealingAction>::namespaced(client.clone(), namespace)
                        .create(&PostParams::default(), action)
                        .await
                        .expect("the in-process API accepts every create");
                    created += 1;
                }
                parts[1] += analysed - evaluated;
                parts[2] += analysed.elapsed();
            }
            parts[0] += evaluated - started;
        });
    });
    let runs = (iterations + iterations.min(50)) as u32;
    anyhow::ensure!(created > 0, "the benchmark incident planned no action");
    println!(
        "\none incident, trigger to created HealingAction, no model (one troubled Deployment of 10 pods; {} actions created per incident)",
        created / runs as usize
    );
    println!(
        "  p50 {:.0} µs, p95 {:.0} µs: evaluation {:.0} µs, rules + validator plugin + floor + plan {:.0} µs, create through kube::Client {:.0} µs (means)",
        micros(stats.p50),
        micros(stats.p95),
        micros(parts[0] / runs),
        micros(parts[1] / runs),
        micros(parts[2] / runs)
    );
    Ok(())
}
