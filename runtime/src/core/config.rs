//! Configuration: the seed document's `ai:` block, plus plugin files and
//! sandbox limits. Read from a YAML file that is either the config itself or a
//! ConfigMap carrying it under `data."config.yaml"`. Unknown keys and bad values
//! are errors that name the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::text::{one_line, parse_duration};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub ai: AiConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub safety: SafetyConfig,
    /// Where `prometheus` metric triggers send their PromQL queries.
    #[serde(default)]
    pub prometheus: Option<PrometheusConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusConfig {
    /// The server's base URL, such as http://prometheus.monitoring:9090.
    pub url: String,
    #[serde(default = "default_prometheus_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

fn default_prometheus_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Ollama's native API (`/api/chat`).
    #[default]
    Ollama,
    /// Any OpenAI-compatible server (`/v1/chat/completions`).
    Openai,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AiConfig {
    #[serde(default)]
    pub provider: Provider,
    /// No endpoint means no model: analysis is rule-based.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_model")]
    pub model: String,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f64,
    #[serde(default = "crate::core::yes")]
    pub validate_responses: bool,
    #[serde(default = "default_max_recommendations")]
    pub max_recommendations: u32,
    #[serde(default)]
    pub custom_prompts: BTreeMap<String, String>,
    /// The environment variable holding the API key (OpenAI-compatible servers).
    /// A key never goes in this file: the file may be a ConfigMap.
    #[serde(default = "default_api_key_env")]
    pub api_key_env: String,
    /// A Secret holding the API key, read through the Kubernetes API at start
    /// (in-cluster credentials or the kubeconfig); takes precedence over
    /// `apiKeyEnv`.
    #[serde(default)]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    #[serde(default)]
    pub seed: Option<i64>,
    /// The model's context window in tokens; when unset, what the server
    /// reports, else 4096.
    #[serde(default)]
    pub context_window: Option<u64>,
    /// Tokens kept free for the reply when fitting the prompt.
    #[serde(default = "default_reply_tokens")]
    pub reply_tokens: u64,
    /// Ollama's keep_alive: how long the server keeps the model loaded.
    #[serde(default)]
    pub keep_alive: Option<String>,
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default)]
    pub circuit_breaker: BreakerConfig,
    /// One model call per incident fingerprint within this window.
    #[serde(default = "default_cache_ttl", deserialize_with = "duration")]
    pub cache_ttl: Duration,
    #[serde(default = "crate::core::yes")]
    pub cache_enabled: bool,
    /// Replace object names with placeholders before anything reaches the model.
    #[serde(default)]
    pub anonymize: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Defaults to the client's namespace (the pod's own, in a cluster).
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakerConfig {
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_cool_off", deserialize_with = "duration")]
    pub cool_off: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: default_failure_threshold(),
            cool_off: default_cool_off(),
        }
    }
}

impl Default for AiConfig {
    fn default() -> Self {
        AiConfig {
            provider: Provider::Ollama,
            endpoint: None,
            model: default_model(),
            temperature: None,
            timeout: default_timeout(),
            min_confidence: default_min_confidence(),
            validate_responses: true,
            max_recommendations: default_max_recommendations(),
            custom_prompts: BTreeMap::new(),
            api_key_env: default_api_key_env(),
            api_key_secret_ref: None,
            seed: None,
            context_window: None,
            reply_tokens: default_reply_tokens(),
            keep_alive: None,
            max_retries: default_max_retries(),
            circuit_breaker: BreakerConfig::default(),
            cache_ttl: default_cache_ttl(),
            cache_enabled: true,
            anonymize: false,
        }
    }
}

fn default_api_key_env() -> String {
    "OPENAI_API_KEY".into()
}
fn default_reply_tokens() -> u64 {
    1024
}
fn default_max_retries() -> u32 {
    2
}
fn default_failure_threshold() -> u32 {
    5
}
fn default_cool_off() -> Duration {
    Duration::from_secs(30)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(600)
}

fn default_model() -> String {
    "llama2".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_min_confidence() -> f64 {
    0.7
}
/// The most recommendations of one reply that are reviewed and may be
/// planned; a policy's `maxRecommendations` has the same ceiling.
pub const MAX_RECOMMENDATIONS: u32 = 20;

fn default_max_recommendations() -> u32 {
    3
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginsConfig {
    /// Replace the embedded default plugins.
    #[serde(default)]
    pub prompt: Option<PathBuf>,
    #[serde(default)]
    pub parser: Option<PathBuf>,
    /// Validators chain in order; the embedded default runs first unless
    /// `replaceDefaultValidator` is set.
    #[serde(default)]
    pub validators: Vec<PathBuf>,
    #[serde(default)]
    pub replace_default_validator: bool,
    #[serde(default = "default_plugin_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_plugin_memory", deserialize_with = "memory")]
    pub memory_limit: usize,
    /// Extra configuration keys handed to every plugin, beside the ai block.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Plugins a HealingPolicy can pick by name (`spec.ai.promptPlugin`, ...).
    #[serde(default)]
    pub named: BTreeMap<String, NamedPlugin>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedPlugin {
    pub kind: PluginRole,
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PluginRole {
    Prompt,
    Parser,
    Validator,
}

impl PluginRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginRole::Prompt => "prompt",
            PluginRole::Parser => "parser",
            PluginRole::Validator => "validator",
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            prompt: None,
            parser: None,
            validators: Vec::new(),
            replace_default_validator: false,
            timeout: default_plugin_timeout(),
            memory_limit: default_plugin_memory(),
            config: BTreeMap::new(),
            named: BTreeMap::new(),
        }
    }
}

fn default_plugin_timeout() -> Duration {
    Duration::from_millis(100)
}
fn default_plugin_memory() -> usize {
    64 << 20
}

/// The host's own limits, which no policy, plugin or HealingAction loosens:
/// decided by whoever installs the daemon.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SafetyConfig {
    /// Protected in addition to kube-system, kube-public and kube-node-lease.
    #[serde(default)]
    pub protected_namespaces: Vec<String>,
    /// Raw strategic-merge patches from a model or a plugin; even then they
    /// may touch only container CPU and memory and allowed annotations.
    #[serde(default)]
    pub allow_raw_patches: bool,
    /// Annotation keys a raw patch may set begin with one of these.
    #[serde(default)]
    pub annotation_prefixes: Vec<String>,
    #[serde(default = "default_max_replicas")]
    pub max_replicas: u32,
    /// The largest CPU limit or request a change may set, in millicores.
    #[serde(default = "default_max_cpu", deserialize_with = "cpu")]
    pub max_cpu_limit: u64,
    /// The largest memory limit or request a change may set, in bytes.
    #[serde(default = "default_max_memory", deserialize_with = "memory_bytes")]
    pub max_memory_limit: u64,
    /// A plan that has not started running this long after it was made is
    /// refused as stale (its evidence is old).
    #[serde(default = "default_max_plan_age", deserialize_with = "duration")]
    pub max_plan_age: Duration,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            protected_namespaces: Vec::new(),
            allow_raw_patches: false,
            annotation_prefixes: Vec::new(),
            max_replicas: default_max_replicas(),
            max_cpu_limit: default_max_cpu(),
            max_memory_limit: default_max_memory(),
            max_plan_age: default_max_plan_age(),
        }
    }
}

fn default_max_replicas() -> u32 {
    20
}
fn default_max_cpu() -> u64 {
    16_000
}
fn default_max_memory() -> u64 {
    32 << 30
}
fn default_max_plan_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn cpu<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = quantity_text(deserializer)?;
    kubeskippy_plugin_sdk::quantity::cpu_millicores(&text).map_err(serde::de::Error::custom)
}

fn memory_bytes<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = quantity_text(deserializer)?;
    kubeskippy_plugin_sdk::quantity::memory_bytes(&text).map_err(serde::de::Error::custom)
}

/// A quantity written as a string or, in YAML, a bare number (`maxCpuLimit: 8`).
fn quantity_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        String(String),
        Number(serde_json::Number),
    }
    Ok(match Text::deserialize(deserializer)? {
        Text::String(text) => text,
        Text::Number(number) => number.to_string(),
    })
}

fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn memory<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let text = String::deserialize(deserializer)?;
    kubeskippy_plugin_sdk::quantity::memory_bytes(&text)
        .map(|bytes| bytes as usize)
        .map_err(serde::de::Error::custom)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// The config file, if any, with `KUBESKIPPY_AI_*` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Config::parse_with_env("{}", env).map_err(|message| ConfigError::Invalid {
                path: "(environment)".into(),
                message,
            });
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse_with_env(&text, env).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        Config::parse_with_env(text, std::iter::empty())
    }

    /// Parses `text`, then applies `KUBESKIPPY_AI_*` overrides from `env`
    /// (`KUBESKIPPY_AI_MIN_CONFIDENCE=0.9` sets `ai.minConfidence`), so a
    /// container can be configured without a file. Overrides are checked like
    /// file values and errors name the variable.
    pub fn parse_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, String> {
        let value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|error| one_line(&error.to_string()))?;
        let (mut value, prefix) = match value.get("kind").and_then(|kind| kind.as_str()) {
            Some("ConfigMap") => {
                let embedded = value
                    .get("data")
                    .and_then(|data| data.get("config.yaml"))
                    .and_then(|text| text.as_str())
                    .ok_or("the ConfigMap has no data.\"config.yaml\"")?;
                let inner = serde_yaml_ng::from_str(embedded).map_err(|error| {
                    format!("data.\"config.yaml\": {}", one_line(&error.to_string()))
                })?;
                (inner, "data.\"config.yaml\".")
            }
            _ => (value, ""),
        };
        if value.is_null() {
            value = serde_yaml_ng::Value::Mapping(Default::default());
        }
        if value.get("ai").and_then(|ai| ai.get("apiKey")).is_some() {
            return Err(format!(
                "{prefix}ai.apiKey is not accepted: a key in this file would sit in a ConfigMap; put it in a Secret, expose it as an environment variable and name that variable in ai.apiKeyEnv"
            ));
        }
        let mut overridden: Vec<(String, String)> = Vec::new();
        for (name, text) in env {
            let Some(suffix) = name.strip_prefix("KUBESKIPPY_AI_") else {
                continue;
            };
            let key = camel_case(suffix);
            let scalar: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
                .unwrap_or(serde_yaml_ng::Value::String(text.clone()));
            // Endpoints, models and durations stay text even when they look numeric.
            let scalar = match key.as_str() {
                "endpoint" | "model" | "provider" | "apiKeyEnv" | "keepAlive" | "timeout"
                | "cacheTtl" => serde_yaml_ng::Value::String(text),
                _ => scalar,
            };
            let mapping = value
                .as_mapping_mut()
                .ok_or("the config must be a mapping")?;
            let ai = mapping
                .entry("ai".into())
                .or_insert_with(|| serde_yaml_ng::Value::Mapping(Default::default()));
            ai.as_mapping_mut()
                .ok_or("ai must be a mapping")?
                .insert(key.clone().into(), scalar);
            overridden.push((format!("ai.{key}"), name));
        }
        let name_override = |message: String| match overridden
            .iter()
            .find(|(key, _)| message.contains(key.as_str()))
        {
            Some((_, variable)) => format!("{message} (set by {variable})"),
            None => message,
        };
        let config: Config = serde_path_to_error::deserialize(value).map_err(|error| {
            let path = error.path().to_string();
            let message = one_line(&error.inner().to_string());
            if path == "." {
                format!("{prefix}{message}")
            } else {
                name_override(format!("{prefix}{path}: {message}"))
            }
        })?;
        config
            .check()
            .map_err(|message| name_override(format!("{prefix}{message}")))?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let ai = &self.ai;
        if !(0.0..=1.0).contains(&ai.min_confidence) {
            return Err(format!(
                "ai.minConfidence must be from 0 to 1, got {}",
                ai.min_confidence
            ));
        }
        if let Some(temperature) = ai.temperature
            && !(0.0..=2.0).contains(&temperature)
        {
            return Err(format!(
                "ai.temperature must be from 0 to 2, got {temperature}"
            ));
        }
        if !(1..=MAX_RECOMMENDATIONS).contains(&ai.max_recommendations) {
            return Err(format!(
                "ai.maxRecommendations must be from 1 to {MAX_RECOMMENDATIONS}, got {}",
                ai.max_recommendations
            ));
        }
        if let Some(endpoint) = &ai.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "ai.endpoint must be an http:// or https:// URL, got {endpoint:?}"
            ));
        }
        if ai.model.trim().is_empty() {
            return Err("ai.model is empty".into());
        }
        if let Some(window) = ai.context_window
            && window <= ai.reply_tokens
        {
            return Err(format!(
                "ai.contextWindow ({window}) must be larger than ai.replyTokens ({})",
                ai.reply_tokens
            ));
        }
        if ai.circuit_breaker.failure_threshold == 0 {
            return Err("ai.circuitBreaker.failureThreshold must be at least 1".into());
        }
        if ai.max_retries > 10 {
            return Err(format!(
                "ai.maxRetries must be at most 10, got {}",
                ai.max_retries
            ));
        }
        if let Some(prometheus) = &self.prometheus
            && !(prometheus.url.starts_with("http://") || prometheus.url.starts_with("https://"))
        {
            return Err(format!(
                "prometheus.url must be an http:// or https:// URL, got {:?}",
                prometheus.url
            ));
        }
        let safety = &self.safety;
        if safety.max_replicas == 0 {
            return Err("safety.maxReplicas must be at least 1".into());
        }
        if safety.max_cpu_limit == 0 || safety.max_memory_limit == 0 {
            return Err("safety.maxCpuLimit and safety.maxMemoryLimit must be above zero".into());
        }
        if safety
            .annotation_prefixes
            .iter()
            .any(|prefix| prefix.trim().is_empty())
        {
            return Err(
                "safety.annotationPrefixes: an empty prefix would let a patch set any annotation"
                    .into(),
            );
        }
        if self.plugins.memory_limit < 1 << 20 {
            return Err("plugins.memoryLimit must be at least 1Mi".into());
        }
        Ok(())
    }

    /// Every plugin file the config refers to: the daemon reloads when one
    /// of them, or the config file itself, changes.
    pub fn plugin_files(&self) -> Vec<PathBuf> {
        let plugins = &self.plugins;
        plugins
            .prompt
            .iter()
            .chain(&plugins.parser)
            .chain(&plugins.validators)
            .chain(plugins.named.values().map(|named| &named.file))
            .cloned()
            .collect()
    }

    /// The configuration keys every plugin can read through the host import.
    pub fn plugin_config(&self) -> BTreeMap<String, String> {
        let ai = &self.ai;
        let mut config = self.plugins.config.clone();
        config.insert("minConfidence".into(), ai.min_confidence.to_string());
        config.insert(
            "maxRecommendations".into(),
            ai.max_recommendations.to_string(),
        );
        if let Some(temperature) = ai.temperature {
            config.insert("temperature".into(), temperature.to_string());
        }
        for (name, text) in &ai.custom_prompts {
            config.insert(format!("customPrompts.{name}"), text.clone());
        }
        config
    }
}

/// `MIN_CONFIDENCE` → `minConfidence`.
fn camel_case(screaming: &str) -> String {
    let mut out = String::new();
    for (index, word) in screaming.split('_').filter(|w| !w.is_empty()).enumerate() {
        let lower = word.to_ascii_lowercase();
        if index == 0 {
            out.push_str(&lower);
        } else {
            let mut chars = lower.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.extend(chars);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
