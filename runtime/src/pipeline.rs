//! The analysis pipeline, end to end: cluster facts → triggers → incidents →
//! prompt plugin → model → parser plugin → review (safety floor, validators) →
//! planned HealingActions. `kubeskippy analyze` runs it on a snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::actions::{self, Source};
use crate::config::Config;
use crate::facts::ClusterFacts;
use crate::incidents::{self, OpenIncident};
use crate::model::ModelProvider;
use crate::plugin_host::{Limits, Plugin, PluginError, PluginHost, PluginKind};
use crate::policy::HealingPolicy;
use crate::review::{self, Reviewed};
use crate::rules;
use crate::safety::SafetyFloor;
use crate::snapshot::Snapshot;
use crate::triggers;
use crate::wit::{Analysis, Incident, Issue};

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
    #[error("{0}")]
    Facts(#[from] crate::facts::FactsError),
    #[error("{0}")]
    Policy(String),
}

/// Which plugin files replace the embedded defaults.
#[derive(Debug, Clone, Default)]
pub struct PluginFiles {
    pub prompt: Option<PathBuf>,
    pub parser: Option<PathBuf>,
    pub validators: Vec<PathBuf>,
    pub replace_default_validator: bool,
}

pub struct Analyzer {
    host: PluginHost,
    prompt: Plugin,
    parser: Plugin,
    validators: Vec<Plugin>,
    model: Option<Box<dyn ModelProvider>>,
    floor: SafetyFloor,
}

#[derive(Debug)]
pub struct IncidentReport {
    pub incident: Incident,
    pub policy: String,
    pub source: Source,
    pub summary: String,
    pub issues: Vec<Issue>,
    /// Why the model's analysis was not used, when it was not.
    pub fallback_reason: Option<String>,
    pub reviewed: Vec<Reviewed>,
    pub actions: Vec<Value>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub incidents: Vec<IncidentReport>,
    pub pods_seen: usize,
    pub ignored: BTreeMap<String, usize>,
    pub model: Option<String>,
}

impl Analyzer {
    pub fn new(
        config: &Config,
        files: &PluginFiles,
        model: Option<Box<dyn ModelProvider>>,
    ) -> Result<Analyzer, AnalyzeError> {
        let host = PluginHost::new()?;
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
        Ok(Analyzer {
            host,
            prompt,
            parser,
            validators,
            model,
            floor: SafetyFloor::new(config.safety.protected_namespaces.iter().cloned()),
        })
    }

    pub fn host(&self) -> &PluginHost {
        &self.host
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
        let fired = triggers::evaluate(&facts, policies).map_err(AnalyzeError::Policy)?;
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

    async fn analyze_incident(&self, open: &OpenIncident<'_>) -> IncidentReport {
        let incident = &open.incident;
        let (analysis, source, fallback_reason) = match self.ask_model(incident).await {
            Ok(analysis) => (analysis, Source::Llm, None),
            Err(reason) => (
                rules::analyze(incident, open.policy),
                Source::Rules,
                Some(reason),
            ),
        };
        let reviewed = review::review(
            &self.host,
            &self.validators,
            &self.floor,
            open,
            analysis.recommendations,
        );
        let actions = reviewed
            .iter()
            .filter(|r| r.allowed)
            .filter_map(|r| actions::plan(open, &r.recommendation, source))
            .collect();
        IncidentReport {
            incident: incident.clone(),
            policy: open.policy.name().to_string(),
            source,
            summary: analysis.summary,
            issues: analysis.issues,
            fallback_reason,
            reviewed,
            actions,
        }
    }

    /// The model's analysis, or why there is none.
    async fn ask_model(&self, incident: &Incident) -> Result<Analysis, String> {
        let Some(model) = &self.model else {
            return Err("no model configured".into());
        };
        let prompt = self
            .host
            .build_prompt(&self.prompt, incident)
            .map_err(|e| e.to_string())?;
        let reply = model.complete(&prompt).await.map_err(|e| e.to_string())?;
        tracing::debug!(
            incident = incident.id,
            seconds = reply.elapsed.as_secs_f64(),
            prompt_tokens = reply.prompt_tokens,
            reply_tokens = reply.reply_tokens,
            "model replied"
        );
        self.host
            .parse_response(&self.parser, &reply.text, incident)
            .map_err(|e| format!("the model's reply was unusable: {e}"))
    }
}
