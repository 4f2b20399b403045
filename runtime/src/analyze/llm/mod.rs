//! The model stage: a provider sends a prompt to an LLM server and returns its
//! reply text. Providers: Ollama's native chat API (the default) and any
//! OpenAI-compatible server. [`resilience`] wraps a provider with retries and a
//! circuit breaker; [`cache`] keeps one reply per incident fingerprint.

pub(crate) mod cache;
mod http;
pub(crate) mod ollama;
pub(crate) mod openai;
pub(crate) mod resilience;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::core::wit::Prompt;

pub use ollama::Ollama;
pub use openai::OpenAi;

/// Replies larger than this are refused; a runaway generation must not exhaust
/// the daemon's memory.
pub const MAX_REPLY_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelReply {
    pub text: String,
    pub model: String,
    pub elapsed: Duration,
    pub prompt_tokens: Option<u64>,
    pub reply_tokens: Option<u64>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ModelError {
    #[error("cannot reach the model at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("the model at {endpoint} did not answer within {seconds} s")]
    Timeout { endpoint: String, seconds: u64 },
    #[error("model {model} is not available at {endpoint}; {hint}")]
    ModelMissing {
        endpoint: String,
        model: String,
        hint: String,
    },
    #[error("the model at {endpoint} answered HTTP {status}: {body}")]
    Http {
        endpoint: String,
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("the model at {endpoint} returned an unusable reply: {reason}")]
    BadReply { endpoint: String, reason: String },
    #[error(
        "the model at {endpoint} is paused after {failures} consecutive failures; next try in {retry_in_seconds} s"
    )]
    CircuitOpen {
        endpoint: String,
        failures: u32,
        retry_in_seconds: u64,
    },
    #[error("{0}")]
    Config(String),
}

impl ModelError {
    /// The `reason` label of `kubeskippy_model_errors_total`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            ModelError::Unreachable { .. } => "unreachable",
            ModelError::Timeout { .. } => "timeout",
            ModelError::ModelMissing { .. } => "model_missing",
            ModelError::Http { .. } => "http",
            ModelError::BadReply { .. } => "bad_reply",
            ModelError::CircuitOpen { .. } => "circuit_open",
            ModelError::Config(_) => "config",
        }
    }

    /// Worth trying again soon: the server may answer next time.
    pub fn is_transient(&self) -> bool {
        match self {
            ModelError::Unreachable { .. } => true,
            ModelError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Says something about the endpoint's health (as opposed to our own
    /// configuration or an open breaker).
    pub fn counts_against_endpoint(&self) -> bool {
        !matches!(self, ModelError::CircuitOpen { .. } | ModelError::Config(_))
    }
}

pub type ModelFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ModelReply, ModelError>> + Send + 'a>>;
pub type InfoFuture<'a> = Pin<Box<dyn Future<Output = Result<ModelInfo, ModelError>> + Send + 'a>>;

/// What a provider can tell about its model before the first prompt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelInfo {
    /// Tokens the model can attend to, when the server says.
    pub context_length: Option<u64>,
}

/// Anything that turns a prompt into reply text.
pub trait ModelProvider: Send + Sync {
    /// `provider model@endpoint`, for reports and cache keys.
    fn describe(&self) -> String;
    /// `ollama` or `openai`, and the model's name: the metrics' labels.
    fn labels(&self) -> (&'static str, &str);
    /// Checks the model exists and learns what the server says about it.
    fn inspect(&self) -> InfoFuture<'_>;
    fn complete<'a>(&'a self, prompt: &'a Prompt) -> ModelFuture<'a>;
}

/// Reads the API key from the Secret `ai.apiKeySecretRef` names. The key never
/// passes through a config file, and is never logged.
pub async fn api_key_from_secret(
    client: kube::Client,
    reference: &crate::core::config::SecretKeyRef,
) -> Result<String, ModelError> {
    use k8s_openapi::api::core::v1::Secret;
    let namespace = reference
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let what = format!("ai.apiKeySecretRef: Secret {namespace}/{}", reference.name);
    let secret = kube::Api::<Secret>::namespaced(client, &namespace)
        .get(&reference.name)
        .await
        .map_err(|error| ModelError::Config(format!("{what}: cannot read it: {error}")))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(&reference.key))
        .map(|value| value.0.clone())
        .ok_or_else(|| ModelError::Config(format!("{what} has no key {:?}", reference.key)))?;
    let key = String::from_utf8(bytes).map_err(|_| {
        ModelError::Config(format!("{what}: key {:?} is not UTF-8 text", reference.key))
    })?;
    Ok(key.trim().to_string())
}

/// As [`from_config`], but when `ai.apiKeySecretRef` names a Secret the key is
/// read from it through `client`, or through the default client (in-cluster
/// credentials or the kubeconfig) when none is given.
pub async fn from_config_reading_secret(
    ai: &crate::core::config::AiConfig,
    client: Option<kube::Client>,
) -> Result<Option<Box<dyn ModelProvider>>, ModelError> {
    let (Some(reference), Some(_)) = (&ai.api_key_secret_ref, &ai.endpoint) else {
        return from_config(ai);
    };
    let client = match client {
        Some(client) => client,
        None => kube::Client::try_default().await.map_err(|error| {
            ModelError::Config(format!("ai.apiKeySecretRef: no Kubernetes client: {error}"))
        })?,
    };
    let key = api_key_from_secret(client, reference).await?;
    from_config_with_key(ai, Some(key))
}

/// The provider the `ai:` config describes, wrapped in retries and a circuit
/// breaker; `None` when no endpoint is configured. The API key, when the
/// provider needs one, is read from the variable `ai.apiKeyEnv` names.
pub fn from_config(
    ai: &crate::core::config::AiConfig,
) -> Result<Option<Box<dyn ModelProvider>>, ModelError> {
    from_config_with_key(ai, std::env::var(&ai.api_key_env).ok())
}

/// As [`from_config`], with the API key already resolved (from a Secret, say).
pub fn from_config_with_key(
    ai: &crate::core::config::AiConfig,
    api_key: Option<String>,
) -> Result<Option<Box<dyn ModelProvider>>, ModelError> {
    use crate::core::config::Provider;
    let Some(endpoint) = ai.endpoint.as_deref() else {
        return Ok(None);
    };
    let provider: Box<dyn ModelProvider> = match ai.provider {
        Provider::Ollama => Box::new(Ollama::with_options(
            endpoint,
            &ai.model,
            ai.timeout,
            ollama::OllamaOptions {
                seed: ai.seed,
                num_ctx: Some(ai.context_window.unwrap_or(ollama::DEFAULT_NUM_CTX)),
                keep_alive: ai.keep_alive.clone(),
                num_predict: Some(ai.reply_tokens),
            },
        )?),
        Provider::Openai => Box::new(
            OpenAi::new(endpoint, &ai.model, ai.timeout, api_key, ai.seed)?
                .with_max_reply_tokens(ai.reply_tokens),
        ),
    };
    Ok(Some(Box::new(resilience::Resilient::new(
        provider,
        resilience::RetryPolicy {
            max_retries: ai.max_retries,
            ..resilience::RetryPolicy::default()
        },
        resilience::BreakerPolicy {
            failure_threshold: ai.circuit_breaker.failure_threshold,
            cool_off: ai.circuit_breaker.cool_off,
        },
    ))))
}
