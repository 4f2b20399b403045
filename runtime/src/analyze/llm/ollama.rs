//! Ollama's native API: `POST /api/chat` with the prompt's JSON schema as
//! `format` and sampling parameters under `options` (Ollama ignores a top-level
//! `temperature`); `/api/tags` to check the model is there and `/api/show` to
//! learn its context length. Models are never pulled automatically: a missing
//! model is an error naming the `ollama pull` to run.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::HttpModel;
use super::{InfoFuture, ModelError, ModelFuture, ModelInfo, ModelProvider, ModelReply};
use crate::core::wit::Prompt;

/// The context window asked of Ollama when the config sets none: its own
/// default (2048 to 4096 tokens by version) truncates incident prompts silently.
pub const DEFAULT_NUM_CTX: u64 = 8192;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct OllamaOptions {
    pub seed: Option<i64>,
    /// The context window to ask for; Ollama's default is far below most models'.
    pub num_ctx: Option<u64>,
    /// How long the server keeps the model loaded after a request (`5m`, `-1`).
    pub keep_alive: Option<String>,
    /// The most tokens to generate (`ai.replyTokens`): the prompt was fitted
    /// to leave that room, and without it a model's own default (the
    /// Modelfile's `num_predict`) cuts replies short or lets one run on.
    pub num_predict: Option<u64>,
}

pub struct Ollama {
    http: HttpModel,
    model: String,
    options: OllamaOptions,
}

impl Ollama {
    pub fn new(endpoint: &str, model: &str, timeout: Duration) -> Result<Ollama, ModelError> {
        Ollama::with_options(endpoint, model, timeout, OllamaOptions::default())
    }

    pub fn with_options(
        endpoint: &str,
        model: &str,
        timeout: Duration,
        options: OllamaOptions,
    ) -> Result<Ollama, ModelError> {
        Ok(Ollama {
            http: HttpModel::new(endpoint, timeout)?,
            model: model.to_string(),
            options,
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
        if let Some(seed) = self.options.seed {
            options["seed"] = json!(seed);
        }
        if let Some(num_ctx) = self.options.num_ctx {
            options["num_ctx"] = json!(num_ctx);
        }
        if let Some(num_predict) = self.options.num_predict {
            options["num_predict"] = json!(num_predict);
        }
        let mut body = json!({
            "model": self.model,
            "messages": [
                { "role": "system", "content": prompt.system },
                { "role": "user", "content": prompt.user },
            ],
            "format": format,
            "options": options,
            "stream": false,
        });
        if let Some(keep_alive) = &self.options.keep_alive {
            body["keep_alive"] = keep_alive
                .parse::<i64>()
                .map(|seconds| json!(seconds))
                .unwrap_or_else(|_| json!(keep_alive));
        }
        body
    }

    fn missing(&self) -> ModelError {
        ModelError::ModelMissing {
            endpoint: self.http.endpoint.clone(),
            model: self.model.clone(),
            hint: format!(
                "run `ollama pull {}` on that server (KubeSkippy never pulls models itself)",
                self.model
            ),
        }
    }

    /// `llama2` names `llama2:latest`; a tag given explicitly must match.
    fn names_our_model(&self, listed: &str) -> bool {
        listed == self.model
            || (!self.model.contains(':') && listed == format!("{}:latest", self.model))
    }

    async fn inspect_model(&self) -> Result<ModelInfo, ModelError> {
        let tags = self.http.get("/api/tags", None).await?;
        if tags.status != 200 {
            return Err(self.http.http_error(&tags));
        }
        let models = tags
            .json
            .as_ref()
            .and_then(|value| value.get("models"))
            .and_then(Value::as_array)
            .ok_or_else(|| self.http.bad_reply("/api/tags has no models list"))?;
        let present = models.iter().any(|entry| {
            ["name", "model"]
                .iter()
                .filter_map(|key| entry.get(*key).and_then(Value::as_str))
                .any(|name| self.names_our_model(name))
        });
        if !present {
            return Err(self.missing());
        }
        let show = self
            .http
            .post("/api/show", &json!({ "model": self.model }), None)
            .await?;
        if show.status == 404 {
            return Err(self.missing());
        }
        if show.status != 200 {
            return Err(self.http.http_error(&show));
        }
        // model_info keys are prefixed by the architecture: "llama.context_length".
        let context_length = show
            .json
            .as_ref()
            .and_then(|value| value.get("model_info"))
            .and_then(Value::as_object)
            .and_then(|info| {
                info.iter()
                    .find(|(key, _)| key.ends_with(".context_length"))
            })
            .and_then(|(_, value)| value.as_u64());
        Ok(ModelInfo { context_length })
    }

    async fn chat(&self, prompt: &Prompt) -> Result<ModelReply, ModelError> {
        let started = Instant::now();
        let answer = self
            .http
            .post("/api/chat", &self.request_body(prompt), None)
            .await?;
        let error_text = answer.error_text();
        if answer.status == 404
            || error_text
                .as_deref()
                .is_some_and(|e| e.contains("not found"))
        {
            return Err(self.missing());
        }
        // Ollama can answer 200 with an error object.
        if answer.status != 200 || error_text.is_some() {
            return Err(self.http.http_error(&answer));
        }
        let parsed = answer.json.as_ref().ok_or_else(|| {
            self.http
                .bad_reply(format!("not JSON: {}", answer.body_snippet()))
        })?;
        let text = parsed
            .pointer("/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| self.http.bad_reply("no message.content in the reply"))?;
        if parsed.get("done_reason").and_then(Value::as_str) == Some("length") {
            tracing::warn!(model = self.model, "the reply was cut at the token limit");
        }
        Ok(ModelReply {
            text: text.to_string(),
            model: self.model.clone(),
            elapsed: started.elapsed(),
            prompt_tokens: parsed.get("prompt_eval_count").and_then(Value::as_u64),
            reply_tokens: parsed.get("eval_count").and_then(Value::as_u64),
        })
    }
}

impl ModelProvider for Ollama {
    fn describe(&self) -> String {
        format!("ollama {}@{}", self.model, self.http.endpoint)
    }

    fn labels(&self) -> (&'static str, &str) {
        ("ollama", &self.model)
    }

    fn inspect(&self) -> InfoFuture<'_> {
        Box::pin(self.inspect_model())
    }

    fn complete<'a>(&'a self, prompt: &'a Prompt) -> ModelFuture<'a> {
        Box::pin(self.chat(prompt))
    }
}
