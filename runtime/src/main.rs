//! The `kubeskippy` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use kubeskippy::analyze::llm;
use kubeskippy::analyze::pipeline::{Analyzer, PluginFiles};
use kubeskippy::analyze::report;
#[cfg(feature = "bench")]
use kubeskippy::bench;
use kubeskippy::core::config::{Config, Provider};
use kubeskippy::core::crd::healing_action::ApprovalDecision;
use kubeskippy::core::snapshot::Snapshot;
use kubeskippy::core::text::parse_duration;
use kubeskippy::operator::approval;
use kubeskippy::telemetry::logs::{self, LogFormat};

// An evaluation pass allocates and frees many small, short-lived objects;
// glibc's allocator spent close to half the pass in malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in the v2 header libmimalloc-sys 0.1.49 builds
/// (`c_src/mimalloc/v2/include/mimalloc.h`); the crate names no constant
/// for it, hence both crates pinned in Cargo.toml.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Pages freed go back to the OS at once. With mimalloc's default delay
/// (10 ms, acted on only when the freeing thread allocates again) what each
/// evaluation pass and watch page freed stayed resident: against 10 000 real
/// pods, 184 MiB instead of 141, for about 25 ms more CPU a second.
fn return_freed_memory_at_once() {
    // SAFETY: sets one integer option, before any thread but this one runs.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

#[derive(Parser)]
#[command(
    name = "kubeskippy",
    version,
    about = "Keeps Kubernetes workloads healthy with sandboxed, pluggable LLM analysis"
)]
struct Cli {
    /// `json`: one JSON object per line, with the incident, HealingAction,
    /// policy and target as fields.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "KUBESKIPPY_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse a snapshot of cluster objects offline and print the planned HealingActions.
    Analyze(AnalyzeArgs),
    /// Run the operator against the cluster (in-cluster config or kubeconfig).
    Run(RunArgs),
    /// Measure plugin call latency and whole-snapshot analysis time.
    #[cfg(feature = "bench")]
    Bench(bench::BenchArgs),
    /// Print the CustomResourceDefinitions (HealingPolicy, HealingAction) as YAML.
    Crds,
    /// Approve a HealingAction that waits for approval, as the identity the API server knows you by.
    Approve(DecisionArgs),
    /// Reject a HealingAction that waits for approval; it is cancelled.
    Reject(DecisionArgs),
    /// Lift a HealingPolicy's circuit breaker: earlier failures stop counting.
    Resume(ResumeArgs),
    /// Write, check, test, measure and ship plugins.
    #[command(subcommand)]
    Plugin(kubeskippy::toolkit::cli::PluginCommand),
}

#[derive(clap::Args)]
struct DecisionArgs {
    /// The HealingAction's name.
    name: String,
    /// Its namespace; default: the kubeconfig context's namespace.
    #[arg(short, long)]
    namespace: Option<String>,
    /// Why, recorded with the decision.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(clap::Args)]
struct ResumeArgs {
    /// The HealingPolicy's (or, with --cluster, the ClusterHealingPolicy's) name.
    policy: String,
    /// Its namespace; default: the kubeconfig context's namespace.
    #[arg(short, long, conflicts_with = "cluster")]
    namespace: Option<String>,
    /// The policy is a ClusterHealingPolicy.
    #[arg(long)]
    cluster: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
    Yaml,
}

#[derive(clap::Args)]
struct AnalyzeArgs {
    /// YAML of Kubernetes objects (multi-document or a List), as `kubectl get -o yaml` prints them.
    snapshot: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// The seed's config block (`ai:` …), or a ConfigMap carrying it in data."config.yaml".
    #[arg(long, env = "KUBESKIPPY_CONFIG")]
    config: Option<PathBuf>,
    /// ollama (native API) or openai (any OpenAI-compatible server); overrides ai.provider.
    #[arg(long, value_enum)]
    llm_provider: Option<Provider>,
    /// Ollama: http://HOST:11434. OpenAI-compatible: the base URL including /v1.
    /// Overrides ai.endpoint.
    #[arg(long)]
    llm_endpoint: Option<String>,
    /// Model name; overrides ai.model.
    #[arg(long)]
    model: Option<String>,
    /// How long to wait for the model (30s, 2m, or seconds); overrides ai.timeout.
    #[arg(long)]
    llm_timeout: Option<String>,
    /// Never call a model: rule-based recommendations only.
    #[arg(long)]
    no_llm: bool,
    #[arg(long)]
    prompt_plugin: Option<PathBuf>,
    #[arg(long)]
    parser_plugin: Option<PathBuf>,
    /// Repeatable; validators chain after the default one.
    #[arg(long)]
    validator_plugin: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The config file (ai/plugins/safety/prometheus), or a ConfigMap carrying it;
    /// reloaded when it changes.
    #[arg(long, env = "KUBESKIPPY_CONFIG")]
    config: Option<PathBuf>,
    /// Namespaces to watch (repeatable); none means all.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Where /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    health_addr: std::net::SocketAddr,
    /// Act only while holding the leader Lease, so replicas can stand by.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    #[arg(long, default_value = "kubeskippy-leader")]
    lease_name: String,
    /// The daemon's own namespace: where its Lease and signing key live.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's name in the Lease and on Events; defaults to POD_NAME, then the host name.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, default_value = "15s", value_parser = duration_arg)]
    lease_duration: std::time::Duration,
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    evaluation_interval: std::time::Duration,
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    metrics_interval: std::time::Duration,
    /// Executed HealingActions per hour across all policies.
    #[arg(long, default_value_t = 30)]
    cluster_actions_per_hour: u32,
    /// Executed HealingActions per hour in any one namespace.
    #[arg(long, default_value_t = 10)]
    namespace_actions_per_hour: u32,
    /// The Secret (in the daemon's namespace) with the key HealingActions are
    /// signed with; created on first start.
    #[arg(long, default_value = "kubeskippy-signing-key")]
    signing_key_secret: String,
    /// Each NAME.wasm here is a plugin policies can name; reloaded when files change.
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// Where plugin ConfigMaps (labelled kubeskippy.io/plugin) are watched;
    /// default: the daemon's namespace.
    #[arg(long, env = "KUBESKIPPY_PLUGIN_NAMESPACE")]
    plugin_namespace: Option<String>,
    /// Take plugins from ConfigMaps while running.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    plugin_configmaps: bool,
    /// How long a chunked plugin version may miss chunks before it is refused.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    plugin_chunk_grace: std::time::Duration,
}

fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text)
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let identity = match args.identity {
        Some(identity) => identity,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .unwrap_or_else(|_| format!("kubeskippy-{}", std::process::id())),
    };
    let options = kubeskippy::operator::daemon::RunOptions {
        config: args.config,
        namespaces: args.namespaces,
        health_addr: args.health_addr,
        leader_elect: args.leader_elect,
        lease_name: args.lease_name,
        daemon_namespace: args.lease_namespace,
        identity,
        lease_duration: args.lease_duration,
        evaluation_interval: args.evaluation_interval,
        metrics_interval: args.metrics_interval,
        cluster_actions_per_hour: args.cluster_actions_per_hour,
        namespace_actions_per_hour: args.namespace_actions_per_hour,
        signing_key_secret: args.signing_key_secret,
        plugin_dir: args.plugin_dir,
        plugin_namespace: args.plugin_namespace,
        plugin_configmaps: args.plugin_configmaps,
        plugin_chunk_grace: args.plugin_chunk_grace,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(kubeskippy::operator::daemon::run(options))?;
    Ok(())
}

fn main() -> ExitCode {
    return_freed_memory_at_once();
    let cli = Cli::parse();
    // The daemon's log is its record of what it did; the commands print
    // their results and log only problems.
    let default_level = match cli.command {
        Command::Run(_) => "info",
        _ => "warn",
    };
    logs::init(cli.log_format, default_level);
    let outcome = match cli.command {
        Command::Analyze(args) => analyze(args),
        Command::Run(args) => run(args),
        #[cfg(feature = "bench")]
        Command::Bench(args) => bench::run(&args),
        Command::Crds => {
            print!("{}", kubeskippy::core::crd::crds_yaml());
            Ok(())
        }
        Command::Approve(args) => decide(args, ApprovalDecision::Approved),
        Command::Reject(args) => decide(args, ApprovalDecision::Rejected),
        Command::Resume(args) => resume(args),
        Command::Plugin(command) => kubeskippy::toolkit::cli::run(command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", format!("{error:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` with a client from the kubeconfig or the in-cluster config.
fn with_client<T>(work: impl AsyncFnOnce(kube::Client) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|error| anyhow::anyhow!("no Kubernetes client: {error}"))?;
        work(client).await
    })
}

fn decide(args: DecisionArgs, decision: ApprovalDecision) -> anyhow::Result<()> {
    let approval = with_client(async |client| {
        let namespace = args
            .namespace
            .unwrap_or_else(|| client.default_namespace().to_string());
        Ok(approval::decide(
            &client,
            &namespace,
            &args.name,
            decision,
            args.reason.as_deref(),
            chrono::Utc::now(),
        )
        .await?)
    })?;
    let verb = match decision {
        ApprovalDecision::Approved => "approved",
        ApprovalDecision::Rejected => "rejected",
    };
    println!("{} {verb} by {}", args.name, approval.by);
    Ok(())
}

fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    with_client(async |client| {
        let namespace = (!args.cluster).then(|| {
            args.namespace
                .unwrap_or_else(|| client.default_namespace().to_string())
        });
        Ok(approval::resume(
            &client,
            namespace.as_deref(),
            &args.policy,
            chrono::Utc::now(),
        )
        .await?)
    })?;
    println!("policy {} resumed", args.policy);
    Ok(())
}

fn analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(provider) = args.llm_provider {
        config.ai.provider = provider;
    }
    if let Some(endpoint) = args.llm_endpoint {
        config.ai.endpoint = Some(endpoint);
    }
    if let Some(model) = args.model {
        config.ai.model = model;
    }
    if let Some(timeout) = &args.llm_timeout {
        config.ai.timeout =
            parse_duration(timeout).map_err(|why| anyhow::anyhow!("--llm-timeout: {why}"))?;
    }
    let snapshot = Snapshot::load(&args.snapshot)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let model = if args.no_llm {
        None
    } else {
        let model = runtime.block_on(llm::from_config_reading_secret(&config.ai, None))?;
        if model.is_none() {
            eprintln!(
                "note: no model configured (--llm-endpoint or ai.endpoint); using rule-based recommendations"
            );
        }
        model
    };
    let mut files = PluginFiles::from_config(&config);
    files.prompt = args.prompt_plugin.or(files.prompt);
    files.parser = args.parser_plugin.or(files.parser);
    files.validators.extend(args.validator_plugin);
    let analyzer = Analyzer::new(&config, &files, model)?;
    let report = runtime.block_on(analyzer.analyze(&snapshot))?;

    for incident in &report.incidents {
        if let (Some(reason), Some(_)) = (&incident.fallback_reason, &report.model) {
            eprintln!(
                "note: {}: {reason}; using rule-based recommendations",
                incident.incident.id
            );
        }
    }
    let rendered = match args.output {
        Output::Text => report::to_text(&report),
        Output::Json => serde_json::to_string_pretty(&report::to_json(&report))? + "\n",
        Output::Yaml => serde_yaml_ng::to_string(&report::to_json(&report))?,
    };
    print!("{rendered}");
    Ok(())
}
