//! The analysis pipeline, end to end: cluster facts → triggers → incidents →
//! prompt plugin → model → parser plugin → review (safety floor, validators) →
//! planned HealingActions. `kubeskippy analyze` runs it on a snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::analyze::llm::cache::{self, ReplyCache};
use crate::analyze::llm::{ModelInfo, ModelProvider};
use crate::core::config::{Config, PluginRole};
use crate::core::crd::healing_action::HealingAction;
use crate::core::crd::policy::HealingPolicy;
use crate::core::facts::ClusterFacts;
use crate::core::incidents::{self, OpenIncident};
use crate::core::plan::{self, Source};
use crate::core::privacy;
use crate::core::rules;
use crate::core::safety::SafetyFloor;
use crate::core::snapshot::Snapshot;
use crate::core::triggers;
use crate::core::wit::{Analysis, Incident, Issue};
use crate::host::budget::{self, Budget};
use crate::host::catalog::{Catalog, PluginStatus, Served};
use crate::host::review::{self, Reviewed};
use crate::host::{Limits, Plugin, PluginError, PluginHost, PluginKind, PluginRunner};
use crate::telemetry::metrics::metrics;

/// The default plugins, built for wasm32-wasip2 by the build script.
pub mod defaults {
    pub const PROMPT: &[u8] = include_bytes!(env!("KUBESKIPPY_PLUGIN_PROMPT"));
    pub const PARSER: &[u8] = include_bytes!(env!("KUBESKIPPY_PLUGIN_PARSER"));
    pub const VALIDATOR: &[u8] = include_bytes!(env!("KUBESKIPPY_PLUGIN_VALIDATOR"));
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Facts(#[from] crate::core::facts::FactsError),
    /// A policy of the snapshot that cannot be evaluated, and why.
    #[error("{0}")]
    Policy(String),
    #[error("plugin directory {dir}")]
    PluginDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The plugin configuration contradicts itself, or a file is no plugin.
    #[error("{0}")]
    Config(String),
}

/// The `.wasm` files of a plugin directory by name, sorted. Kubernetes mounts
/// ConfigMap keys through `..data` symlinks; hidden entries are its plumbing.
pub(crate) fn plugin_dir_files(dir: &std::path::Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(dir)?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(".wasm")
            && !name.starts_with('.')
        {
            files.push((stem.to_string(), path.clone()));
        }
    }
    files.sort();
    Ok(files)
}

/// A plugin that came with the config, as `plugin list` shows it: built-ins
/// are named `default-*`, files by their path.
fn fixed_status(name: &str, plugin: &Plugin) -> PluginStatus {
    let source = if plugin.name().starts_with("default-") {
        "built-in".to_string()
    } else {
        format!("file {}", plugin.name())
    };
    PluginStatus {
        name: name.to_string(),
        kind: plugin.kind().as_str().to_string(),
        version: None,
        digest: Some(plugin.digest().to_string()),
        source,
        loaded_since: None,
        state: "serving".into(),
        last_rejection: None,
    }
}

/// Loads a component as whichever plugin kind it implements.
fn load_any_kind(
    host: &PluginHost,
    path: &std::path::Path,
    limits: Limits,
    plugin_config: &BTreeMap<String, String>,
) -> Result<(PluginRole, Plugin), AnalyzeError> {
    let not_a_plugin = |why: String| {
        AnalyzeError::Config(format!(
            "{} is not a prompt, parser or validator plugin: {why}",
            path.display()
        ))
    };
    let bytes = std::fs::read(path).map_err(|error| not_a_plugin(error.to_string()))?;
    let kind = host.identify(&bytes).map_err(not_a_plugin)?.kind;
    let plugin = host.load(
        &path.display().to_string(),
        &bytes,
        kind,
        limits,
        plugin_config.clone(),
    )?;
    Ok((role_of(kind), plugin))
}

/// Which plugin files replace the embedded defaults.
#[derive(Debug, Clone, Default)]
pub struct PluginFiles {
    pub prompt: Option<PathBuf>,
    pub parser: Option<PathBuf>,
    pub validators: Vec<PathBuf>,
    pub replace_default_validator: bool,
    /// Every `NAME.wasm` here becomes the named plugin NAME, of whichever
    /// kind it implements: how plugins mounted from a ConfigMap are offered
    /// to policies without listing each in the config.
    pub plugin_dir: Option<PathBuf>,
}

impl PluginFiles {
    /// The plugin files the config names.
    pub fn from_config(config: &Config) -> PluginFiles {
        PluginFiles {
            prompt: config.plugins.prompt.clone(),
            parser: config.plugins.parser.clone(),
            validators: config.plugins.validators.clone(),
            replace_default_validator: config.plugins.replace_default_validator,
            plugin_dir: None,
        }
    }
}

pub struct Analyzer {
    plugins: PluginRunner,
    prompt: Plugin,
    parser: Plugin,
    validators: Vec<Plugin>,
    /// Plugins policies pick by name, with the role each was loaded for.
    named: BTreeMap<String, (PluginRole, Plugin)>,
    /// Named plugins delivered while running, shared with the analyzers that
    /// replace this one on a reload.
    catalog: Arc<Catalog>,
    limits: Limits,
    plugin_config: Arc<BTreeMap<String, String>>,
    model: Option<Box<dyn ModelProvider>>,
    model_info: OnceCell<ModelInfo>,
    /// Shared with the analyzers that replace this one on a reload; used
    /// only when the config turns caching on.
    cache: Arc<ReplyCache>,
    ai: crate::core::config::AiConfig,
    floor: SafetyFloor,
}

/// How the model was asked about one incident.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCall {
    /// The reply came from the cache: no call was made.
    pub cached: bool,
    pub elapsed: Duration,
    pub prompt_tokens: Option<u64>,
    pub reply_tokens: Option<u64>,
    pub estimated_prompt_tokens: u64,
    /// Evidence left out to fit the context window.
    pub left_out: Option<String>,
}

struct PolicyPlugins<'a> {
    prompt: &'a Plugin,
    parser: &'a Plugin,
}

/// The role a plugin of `kind` is loaded for.
pub fn role_of(kind: PluginKind) -> PluginRole {
    match kind {
        PluginKind::Prompt => PluginRole::Prompt,
        PluginKind::Parser => PluginRole::Parser,
        PluginKind::Validator => PluginRole::Validator,
    }
}

/// Issues of one analysis kept for the report.
const MAX_ISSUES: usize = 20;

/// The context window assumed when neither the config nor the server says.
const DEFAULT_CONTEXT_TOKENS: u64 = 4096;

#[derive(Debug)]
pub struct IncidentReport {
    pub incident: Incident,
    pub policy: String,
    pub source: Source,
    pub summary: String,
    pub issues: Vec<Issue>,
    /// Why the model's analysis was not used, when it was not.
    pub fallback_reason: Option<String>,
    pub model_call: Option<ModelCall>,
    pub reviewed: Vec<Reviewed>,
    pub actions: Vec<HealingAction>,
    /// Named plugins the policy asked for that are not served, and what
    /// stood in for them.
    pub plugin_notes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub incidents: Vec<IncidentReport>,
    pub pods_seen: usize,
    pub ignored: BTreeMap<String, usize>,
    pub model: Option<String>,
}

/// The model's and the parser plugin's prose is untrusted text: one line,
/// bounded and redacted before it reaches a report, a HealingAction or an
/// Event. A target name that is not an object name fails review anyway. A
/// reply may hold thousands of recommendations; no more are reviewed (each
/// costs a call of every validator) than any limit could let through.
fn cleaned(mut analysis: Analysis) -> Analysis {
    use crate::core::config::MAX_RECOMMENDATIONS;
    use crate::core::untrusted::{MAX_NAME, MAX_PROSE, MAX_REASON, MAX_REASONING, clean};
    analysis
        .recommendations
        .truncate(MAX_RECOMMENDATIONS as usize);
    analysis.issues.truncate(MAX_ISSUES);
    analysis.summary = clean(&analysis.summary, MAX_PROSE);
    for issue in &mut analysis.issues {
        issue.title = clean(&issue.title, MAX_REASONING);
        issue.impact = clean(&issue.impact, MAX_PROSE);
        issue.root_cause = clean(&issue.root_cause, MAX_PROSE);
    }
    for recommendation in &mut analysis.recommendations {
        recommendation.reason = clean(&recommendation.reason, MAX_REASONING);
        recommendation.risk = clean(&recommendation.risk, MAX_REASONING);
        let target = &mut recommendation.target;
        target.kind = clean(&target.kind, MAX_REASON);
        target.namespace = clean(&target.namespace, MAX_NAME);
        target.name = clean(&target.name, MAX_NAME);
    }
    analysis
}

impl Analyzer {
    /// An analyzer on the process's plugin host, with a reply cache of its own.
    pub fn new(
        config: &Config,
        files: &PluginFiles,
        model: Option<Box<dyn ModelProvider>>,
    ) -> Result<Analyzer, AnalyzeError> {
        Analyzer::with(
            PluginRunner::shared()?,
            Arc::new(ReplyCache::new()),
            Catalog::new(),
            config,
            files,
            model,
        )
    }

    /// The analyzer for a reloaded config and plugins: the plugin host and
    /// the model's replies outlive the reload.
    pub fn reloaded(
        &self,
        config: &Config,
        files: &PluginFiles,
        model: Option<Box<dyn ModelProvider>>,
    ) -> Result<Analyzer, AnalyzeError> {
        Analyzer::with(
            self.plugins.clone(),
            self.cache.clone(),
            self.catalog.clone(),
            config,
            files,
            model,
        )
    }

    fn with(
        plugins: PluginRunner,
        cache: Arc<ReplyCache>,
        catalog: Arc<Catalog>,
        config: &Config,
        files: &PluginFiles,
        model: Option<Box<dyn ModelProvider>>,
    ) -> Result<Analyzer, AnalyzeError> {
        let host: &PluginHost = plugins.host();
        let limits = Limits {
            deadline: config.plugins.timeout,
            memory_bytes: config.plugins.memory_limit,
        };
        let plugin_config = config.plugin_config();
        let load = |file: &Option<PathBuf>, name: &str, bytes: &[u8], kind| match file {
            Some(path) => host.load_file(path, kind, limits, plugin_config.clone()),
            None => host.load(name, bytes, kind, limits, plugin_config.clone()),
        };
        let prompt = load(
            &files.prompt,
            "default-prompt",
            defaults::PROMPT,
            PluginKind::Prompt,
        )?;
        let parser = load(
            &files.parser,
            "default-parser",
            defaults::PARSER,
            PluginKind::Parser,
        )?;
        let mut validators = Vec::new();
        if config.ai.validate_responses && !files.replace_default_validator {
            validators.push(host.load(
                "default-validator",
                defaults::VALIDATOR,
                PluginKind::Validator,
                limits,
                plugin_config.clone(),
            )?);
        }
        for path in &files.validators {
            validators.push(host.load_file(
                path,
                PluginKind::Validator,
                limits,
                plugin_config.clone(),
            )?);
        }
        let mut named = BTreeMap::new();
        for (name, plugin) in &config.plugins.named {
            let kind = match plugin.kind {
                PluginRole::Prompt => PluginKind::Prompt,
                PluginRole::Parser => PluginKind::Parser,
                PluginRole::Validator => PluginKind::Validator,
            };
            let loaded = host.load_file(&plugin.file, kind, limits, plugin_config.clone())?;
            named.insert(name.clone(), (plugin.kind, loaded));
        }
        if let Some(dir) = &files.plugin_dir {
            let files = plugin_dir_files(dir).map_err(|error| AnalyzeError::PluginDir {
                dir: dir.clone(),
                source: error,
            })?;
            for (name, path) in files {
                if named.contains_key(&name) {
                    return Err(AnalyzeError::Config(format!(
                        "plugin {name:?} is both in plugins.named and {}",
                        path.display()
                    )));
                }
                let (role, plugin) = load_any_kind(host, &path, limits, &plugin_config)?;
                named.insert(name, (role, plugin));
            }
        }
        // Files get the checks a plugin from a ConfigMap gets: one call on
        // the fixture incident within their limits, before anything serves.
        let from_files = [&prompt, &parser]
            .into_iter()
            .chain(&validators)
            .chain(named.values().map(|(_, plugin)| plugin))
            .filter(|plugin| !plugin.name().starts_with("default-"));
        // On a thread of its own: a plugin that prints does a blocking write
        // through WASI, which must not happen on an async runtime's thread,
        // and this may be called from one (a daemon's reload).
        let from_files: Vec<&Plugin> = from_files.collect();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    from_files
                        .iter()
                        .try_for_each(|plugin| host.try_out(plugin))
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        let mut fixed = vec![
            fixed_status(prompt.name(), &prompt),
            fixed_status(parser.name(), &parser),
        ];
        fixed.extend(
            validators
                .iter()
                .map(|validator| fixed_status(validator.name(), validator)),
        );
        fixed.extend(
            named
                .iter()
                .map(|(name, (_, plugin))| fixed_status(name, plugin)),
        );
        catalog.set_fixed(fixed);
        Ok(Analyzer {
            plugins,
            prompt,
            parser,
            validators,
            named,
            catalog,
            limits,
            plugin_config: Arc::new(plugin_config),
            model,
            model_info: OnceCell::new(),
            cache,
            ai: config.ai.clone(),
            floor: SafetyFloor::from_config(&config.safety),
        })
    }

    pub fn host(&self) -> &PluginHost {
        self.plugins.host()
    }

    /// Plugin calls and loads off the async workers.
    pub fn runner(&self) -> &PluginRunner {
        &self.plugins
    }

    /// Where plugins delivered at run time are swapped in.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The limits and configuration every plugin of this config runs with.
    pub fn plugin_settings(&self) -> (Limits, BTreeMap<String, String>) {
        (self.limits, self.plugin_config.as_ref().clone())
    }

    pub async fn analyze(&self, snapshot: &Snapshot) -> Result<Report, AnalyzeError> {
        let facts = ClusterFacts::from_snapshot(snapshot)?;
        let default_policy;
        let policies: &[HealingPolicy] = if snapshot.policies.is_empty() {
            default_policy = [HealingPolicy::builtin_default()];
            &default_policy
        } else {
            &snapshot.policies
        };
        let fired = triggers::evaluate(&facts, policies, &triggers::Context::offline(&facts))
            .map_err(AnalyzeError::Policy)?;
        let mut report = Report {
            pods_seen: facts.pods.len(),
            ignored: snapshot.ignored.clone(),
            model: self.model.as_ref().map(|model| model.describe()),
            ..Report::default()
        };
        for open in incidents::open(&facts, fired) {
            report.incidents.push(self.analyze_incident(&open).await);
        }
        Ok(report)
    }

    /// Analyses one incident under its policy's `ai` settings: the policy may
    /// turn the model off, pick named prompt and parser plugins, add named
    /// validators after the configured chain, and tighten (never loosen) the
    /// minimum confidence and the number of recommendations allowed.
    pub async fn analyze_incident(&self, open: &OpenIncident<'_>) -> IncidentReport {
        let incident = &open.incident;
        let policy_ai = &open.policy.spec.ai;
        let mut model_call = None;
        // Taken once: every call of this analysis goes to one version of each plugin.
        let served = self.catalog.current();
        let mut plugin_notes = Vec::new();
        let asked = match self.policy_plugins(open.policy, &served, &mut plugin_notes) {
            Err(reason) => Err(reason),
            Ok(_) if !policy_ai.enabled => {
                Err(format!("policy {} turns the model off", open.policy.name()))
            }
            Ok(plugins) => {
                self.ask_model(incident, plugins.prompt, plugins.parser, &mut model_call)
                    .await
            }
        };
        let (analysis, source, fallback_reason) = match asked {
            Ok(analysis) => (cleaned(analysis), Source::Llm, None),
            // A plugin's or the server's error may quote the model's reply.
            Err(reason) => (
                rules::analyze(incident, open.policy),
                Source::Rules,
                Some(crate::core::untrusted::clean(
                    &reason,
                    crate::core::untrusted::MAX_PROSE,
                )),
            ),
        };
        let mut reviewed = match self.policy_validators(open.policy, &served) {
            // One blocking job for every validator call of the incident:
            // each hop to the blocking pool costs tens of µs, as much as a call.
            Ok(validators) => {
                let (floor, detached) = (self.floor.clone(), open.detach());
                let recommendations = analysis.recommendations;
                self.plugins
                    .run(move |host| {
                        review::review(host, &validators, &floor, &detached.open(), recommendations)
                    })
                    .await
            }
            Err(reason) => review::deny_all(analysis.recommendations, &reason),
        };
        review::refuse_repeats(&mut reviewed);
        review::apply_limits(&mut reviewed, open.policy, &self.ai);
        for outcome in &reviewed {
            metrics().recommendation(outcome.refusal.map(review::Refusal::as_str));
        }
        let actions = reviewed
            .iter()
            .filter(|r| r.allowed)
            .filter_map(|r| {
                plan::plan(
                    open,
                    &r.recommendation,
                    &r.approval_reasons,
                    source,
                    self.floor.patch_rules(),
                )
            })
            .collect();
        IncidentReport {
            incident: incident.clone(),
            policy: open.policy.name().to_string(),
            source,
            summary: analysis.summary,
            issues: analysis.issues,
            fallback_reason,
            model_call,
            reviewed,
            actions,
            plugin_notes,
        }
    }

    /// The plugin a policy names for `role`: one loaded with the config,
    /// else one delivered at run time; `None` when nothing serves the name
    /// (a ConfigMap deleted, not yet applied, or a typo).
    fn named_plugin<'a>(
        &'a self,
        policy: &HealingPolicy,
        name: &str,
        role: PluginRole,
        served: &'a Served,
    ) -> Result<Option<&'a Plugin>, String> {
        let found = self
            .named
            .get(name)
            .map(|(loaded_role, plugin)| (*loaded_role, plugin))
            .or_else(|| {
                served
                    .get(name)
                    .map(|plugin| (role_of(plugin.kind()), plugin))
            });
        match found {
            Some((loaded_role, plugin)) if loaded_role == role => Ok(Some(plugin)),
            Some((loaded_role, _)) => Err(format!(
                "policy {} wants plugin {name:?} as a {} plugin, but it is a {} plugin",
                policy.name(),
                role.as_str(),
                loaded_role.as_str()
            )),
            None => Ok(None),
        }
    }

    fn not_served(policy: &HealingPolicy, name: &str, role: PluginRole) -> String {
        format!(
            "policy {} names {} plugin {name:?}, which nothing serves (not in plugins.named, the plugin directory or a plugin ConfigMap)",
            policy.name(),
            role.as_str()
        )
    }

    fn policy_plugins<'a>(
        &'a self,
        policy: &HealingPolicy,
        served: &'a Served,
        notes: &mut Vec<String>,
    ) -> Result<PolicyPlugins<'a>, String> {
        let ai = &policy.spec.ai;
        // A prompt or parser nothing serves gets the default one: the
        // analysis goes on, and says so.
        let mut pick = |name: &Option<String>, role, default| match name {
            Some(name) => Ok(match self.named_plugin(policy, name, role, served)? {
                Some(plugin) => plugin,
                None => {
                    notes.push(format!(
                        "{}; the default {} plugin stood in",
                        Analyzer::not_served(policy, name, role),
                        role.as_str()
                    ));
                    default
                }
            }),
            None => Ok::<_, String>(default),
        };
        Ok(PolicyPlugins {
            prompt: pick(&ai.prompt_plugin, PluginRole::Prompt, &self.prompt)?,
            parser: pick(&ai.parser_plugin, PluginRole::Parser, &self.parser)?,
        })
    }

    /// The configured chain, then the policy's own validators: a policy can
    /// add checks, never remove one. A named validator nothing serves denies,
    /// as one that cannot run does: a default in its place would be the
    /// policy's check quietly gone.
    fn policy_validators(
        &self,
        policy: &HealingPolicy,
        served: &Served,
    ) -> Result<Vec<Plugin>, String> {
        let mut chain = self.validators.clone();
        for name in &policy.spec.ai.validator_plugins {
            match self.named_plugin(policy, name, PluginRole::Validator, served)? {
                Some(plugin) => chain.push(plugin.clone()),
                None => return Err(Analyzer::not_served(policy, name, PluginRole::Validator)),
            }
        }
        Ok(chain)
    }

    /// The reply cache's (hits, misses), when caching is on.
    pub fn cache_counts(&self) -> Option<(u64, u64)> {
        self.ai.cache_enabled.then(|| self.cache.counts())
    }

    async fn context_budget(&self, model: &dyn ModelProvider) -> Result<Budget, String> {
        let info = self
            .model_info
            .get_or_try_init(|| model.inspect())
            .await
            .map_err(|e| e.to_string())?;
        let ollama_window = matches!(self.ai.provider, crate::core::config::Provider::Ollama)
            .then_some(crate::analyze::llm::ollama::DEFAULT_NUM_CTX);
        let context_tokens = match (self.ai.context_window, info.context_length) {
            (Some(configured), _) => configured,
            (None, Some(reported)) => ollama_window.map_or(reported, |window| window.min(reported)),
            (None, None) => ollama_window.unwrap_or(DEFAULT_CONTEXT_TOKENS),
        };
        Ok(Budget {
            context_tokens,
            reply_tokens: self.ai.reply_tokens.min(context_tokens / 2),
        })
    }

    /// The model's analysis, or why there is none. Names are anonymised before
    /// the prompt plugin sees the incident when configured, the prompt is fitted
    /// to the context window, and a fresh cached reply stands in for a call.
    async fn ask_model(
        &self,
        incident: &Incident,
        prompt: &Plugin,
        parser: &Plugin,
        call: &mut Option<ModelCall>,
    ) -> Result<Analysis, String> {
        let Some(model) = &self.model else {
            return Err("no model configured".into());
        };
        let budget = self.context_budget(model.as_ref()).await?;
        let anonymized = self.ai.anonymize.then(|| privacy::anonymize(incident));
        let subject = anonymized.as_ref().map_or(incident, |a| &a.incident);
        let fitted = {
            let (prompt, subject) = (prompt.clone(), subject.clone());
            self.plugins
                .run(move |host| budget::fit(host, &prompt, &subject, budget))
                .await
                .map_err(|e| e.to_string())?
        };
        let key = cache::fingerprint(&model.describe(), prompt.digest(), incident);
        let started = Instant::now();
        let cache = self.ai.cache_enabled.then_some(self.cache.as_ref());
        let cached = cache.and_then(|cache| cache.get(&key, started, self.ai.cache_ttl));
        let was_cached = cached.is_some();
        let (provider, model_name) = model.labels();
        let (text, prompt_tokens, reply_tokens) = match cached {
            Some(text) => {
                metrics().model_cache_hit(provider, model_name);
                (text, None, None)
            }
            None => {
                let answered = model.complete(&fitted.prompt).await;
                let tokens = answered.as_ref().ok();
                metrics().model_request(
                    provider,
                    model_name,
                    started.elapsed(),
                    tokens.and_then(|reply| reply.prompt_tokens),
                    tokens.and_then(|reply| reply.reply_tokens),
                );
                let reply = answered.map_err(|error| {
                    metrics().model_error(provider, model_name, error.metric_reason());
                    error.to_string()
                })?;
                (reply.text, reply.prompt_tokens, reply.reply_tokens)
            }
        };
        *call = Some(ModelCall {
            cached: was_cached,
            elapsed: started.elapsed(),
            prompt_tokens,
            reply_tokens,
            estimated_prompt_tokens: fitted.estimated_tokens,
            left_out: fitted.left_out.clone(),
        });
        let analysis = self
            .plugins
            .parse_response(parser, &text, &fitted.incident)
            .await
            .map_err(|e| format!("the model's reply was unusable: {e}"))?;
        if let Some(cache) = cache {
            cache.put(key, text, Instant::now(), self.ai.cache_ttl);
        }
        Ok(match &anonymized {
            Some(anonymized) => anonymized.restore(analysis),
            None => analysis,
        })
    }
}
