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
use crate::host::review::{self, Reviewed};
use crate::host::{Limits, Plugin, PluginError, PluginHost, PluginKind, PluginRunner};

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

/// Loads a component as whichever plugin kind it implements.
fn load_any_kind(
    host: &PluginHost,
    path: &std::path::Path,
    limits: Limits,
    plugin_config: &BTreeMap<String, String>,
) -> Result<(PluginRole, Plugin), AnalyzeError> {
    let mut reasons = Vec::new();
    for (role, kind) in [
        (PluginRole::Prompt, PluginKind::Prompt),
        (PluginRole::Parser, PluginKind::Parser),
        (PluginRole::Validator, PluginKind::Validator),
    ] {
        match host.load_file(path, kind, limits, plugin_config.clone()) {
            Ok(plugin) => return Ok((role, plugin)),
            Err(error) => reasons.push(error.to_string()),
        }
    }
    Err(AnalyzeError::Config(format!(
        "{} is not a prompt, parser or validator plugin: {}",
        path.display(),
        reasons.join("; ")
    )))
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
            config,
            files,
            model,
        )
    }

    fn with(
        plugins: PluginRunner,
        cache: Arc<ReplyCache>,
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
        Ok(Analyzer {
            plugins,
            prompt,
            parser,
            validators,
            named,
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
        let asked = match self.policy_plugins(open.policy) {
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
        let mut reviewed = match self.policy_validators(open.policy) {
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
        }
    }

    fn named_plugin(
        &self,
        policy: &HealingPolicy,
        name: &str,
        role: PluginRole,
    ) -> Result<&Plugin, String> {
        match self.named.get(name) {
            Some((loaded_role, plugin)) if *loaded_role == role => Ok(plugin),
            Some((loaded_role, _)) => Err(format!(
                "policy {} wants plugin {name:?} as a {} plugin, but it is a {} plugin",
                policy.name(),
                role.as_str(),
                loaded_role.as_str()
            )),
            None => Err(format!(
                "policy {} names plugin {name:?}, which plugins.named in the config does not define",
                policy.name()
            )),
        }
    }

    fn policy_plugins(&self, policy: &HealingPolicy) -> Result<PolicyPlugins<'_>, String> {
        let ai = &policy.spec.ai;
        let pick = |name: &Option<String>, role, default| match name {
            Some(name) => self.named_plugin(policy, name, role),
            None => Ok(default),
        };
        Ok(PolicyPlugins {
            prompt: pick(&ai.prompt_plugin, PluginRole::Prompt, &self.prompt)?,
            parser: pick(&ai.parser_plugin, PluginRole::Parser, &self.parser)?,
        })
    }

    /// The configured chain, then the policy's own validators: a policy can
    /// add checks, never remove one.
    fn policy_validators(&self, policy: &HealingPolicy) -> Result<Vec<Plugin>, String> {
        let mut chain = self.validators.clone();
        for name in &policy.spec.ai.validator_plugins {
            chain.push(
                self.named_plugin(policy, name, PluginRole::Validator)?
                    .clone(),
            );
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
        let (text, prompt_tokens, reply_tokens) = match cached {
            Some(text) => (text, None, None),
            None => {
                let reply = model
                    .complete(&fitted.prompt)
                    .await
                    .map_err(|e| e.to_string())?;
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
