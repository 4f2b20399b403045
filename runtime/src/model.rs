//! The model: a provider sends a prompt to an LLM server and returns its reply
//! text. Ollama's native chat API is the default provider.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::wit::Prompt;

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
    #[error("model {model} is not available at {endpoint}; run `ollama pull {model}` there")]
    ModelMissing { endpoint: String, model: String },
    #[error("the model at {endpoint} answered HTTP {status}: {body}")]
    Http {
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("the model at {endpoint} returned an unusable reply: {reason}")]
    BadReply { endpoint: String, reason: String },
}

pub type ModelFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ModelReply, ModelError>> + Send + 'a>>;

/// Anything that turns a prompt into reply text.
pub trait ModelProvider: Send + Sync {
    /// `provider model@endpoint`, for reports.
    fn describe(&self) -> String;
    fn complete<'a>(&'a self, prompt: &'a Prompt) -> ModelFuture<'a>;
}

/// Ollama's native API: `POST /api/chat` with the prompt's JSON schema as
/// `format`, sampling parameters under `options` (Ollama ignores a top-level
/// `temperature`), and no streaming.
pub struct Ollama {
    endpoint: String,
    model: String,
    timeout: Duration,
    client: reqwest::Client,
}

impl Ollama {
    pub fn new(endpoint: &str, model: &str, timeout: Duration) -> Result<Ollama, ModelError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|error| ModelError::Unreachable {
                endpoint: endpoint.clone(),
                reason: error.to_string(),
            })?;
        Ok(Ollama {
            endpoint,
            model: model.to_string(),
            timeout,
            client,
        })
    }

    /// The request body, separate from sending so its shape can be tested.
    pub fn request_body(&self, prompt: &Prompt) -> Value {
        let format = match prompt
            .json_schema
            .as_deref()
            .map(serde_json::from_str::<Value>)
        {
            Some(Ok(schema)) => schema,
            // Without a usable schema, plain JSON mode still keeps the reply parseable.
            _ => json!("json"),
        };
        let mut options = json!({});
        if let Some(temperature) = prompt.temperature {
            options["temperature"] = json!(temperature);
        }
        json!({
            "model": self.model,
            "messages": [
                { "role": "system", "content": prompt.system },
                { "role": "user", "content": prompt.user },
            ],
            "format": format,
            "options": options,
            "stream": false,
        })
    }

    async fn chat(&self, prompt: &Prompt) -> Result<ModelReply, ModelError> {
        let url = format!("{}/api/chat", self.endpoint);
        let started = Instant::now();
        let response = self
            .client
            .post(&url)
            .json(&self.request_body(prompt))
            .send()
            .await
            .map_err(|error| self.transport_error(error))?;
        let status = response.status();
        let body = read_capped(response).await.map_err(|error| match error {
            CappedReadError::Transport(error) => self.transport_error(error),
            CappedReadError::TooLarge => ModelError::BadReply {
                endpoint: self.endpoint.clone(),
                reason: format!("reply larger than {MAX_REPLY_BYTES} bytes"),
            },
        })?;
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let error_text = parsed
            .as_ref()
            .and_then(|value| value.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if status.as_u16() == 404
            || error_text
                .as_deref()
                .is_some_and(|e| e.contains("not found"))
        {
            return Err(ModelError::ModelMissing {
                endpoint: self.endpoint.clone(),
                model: self.model.clone(),
            });
        }
        if !status.is_success() || error_text.is_some() {
            return Err(ModelError::Http {
                endpoint: self.endpoint.clone(),
                status: status.as_u16(),
                body: error_text.unwrap_or_else(|| snippet(&String::from_utf8_lossy(&body))),
            });
        }
        let parsed = parsed.ok_or_else(|| ModelError::BadReply {
            endpoint: self.endpoint.clone(),
            reason: format!("not JSON: {}", snippet(&String::from_utf8_lossy(&body))),
        })?;
        let text = parsed
            .pointer("/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| ModelError::BadReply {
                endpoint: self.endpoint.clone(),
                reason: "no message.content in the reply".into(),
            })?;
        Ok(ModelReply {
            text: text.to_string(),
            model: self.model.clone(),
            elapsed: started.elapsed(),
            prompt_tokens: parsed.get("prompt_eval_count").and_then(Value::as_u64),
            reply_tokens: parsed.get("eval_count").and_then(Value::as_u64),
        })
    }

    fn transport_error(&self, error: reqwest::Error) -> ModelError {
        if error.is_timeout() {
            ModelError::Timeout {
                endpoint: self.endpoint.clone(),
                seconds: self.timeout.as_secs().max(1),
            }
        } else {
            ModelError::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: root_cause(&error),
            }
        }
    }
}

impl ModelProvider for Ollama {
    fn describe(&self) -> String {
        format!("ollama {}@{}", self.model, self.endpoint)
    }

    fn complete<'a>(&'a self, prompt: &'a Prompt) -> ModelFuture<'a> {
        Box::pin(self.chat(prompt))
    }
}

enum CappedReadError {
    Transport(reqwest::Error),
    TooLarge,
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, CappedReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(CappedReadError::Transport)? {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(CappedReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's own message is "error sending request"; the useful part (connection
/// refused, DNS failure) is at the bottom of the source chain.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

fn snippet(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
