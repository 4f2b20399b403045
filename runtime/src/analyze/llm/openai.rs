//! Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp's server, LocalAI,
//! Ollama's `/v1`): `POST {base}/chat/completions` with `response_format`
//! `json_schema`. The base URL includes `/v1`, as OpenAI SDKs take it. The API
//! key comes from an environment variable, never from a config file.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::HttpModel;
use super::{InfoFuture, ModelError, ModelFuture, ModelInfo, ModelProvider, ModelReply};
use crate::core::wit::Prompt;

pub struct OpenAi {
    http: HttpModel,
    model: String,
    api_key: Option<String>,
    seed: Option<i64>,
    max_reply_tokens: Option<u64>,
}

impl OpenAi {
    pub fn new(
        base_url: &str,
        model: &str,
        timeout: Duration,
        api_key: Option<String>,
        seed: Option<i64>,
    ) -> Result<OpenAi, ModelError> {
        Ok(OpenAi {
            http: HttpModel::new(base_url, timeout)?,
            model: model.to_string(),
            api_key: api_key.filter(|key| !key.is_empty()),
            seed,
            max_reply_tokens: None,
        })
    }

    /// Caps the reply (`max_tokens`) at what the prompt was fitted to leave
    /// room for (`ai.replyTokens`).
    pub fn with_max_reply_tokens(mut self, tokens: u64) -> OpenAi {
        self.max_reply_tokens = Some(tokens);
        self
    }

    /// The request body, separate from sending so its shape can be tested.
    pub fn request_body(&self, prompt: &Prompt) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": [
                { "role": "system", "content": prompt.system },
                { "role": "user", "content": prompt.user },
            ],
        });
        if let Some(temperature) = prompt.temperature {
            body["temperature"] = json!(temperature);
        }
        if let Some(seed) = self.seed {
            body["seed"] = json!(seed);
        }
        if let Some(tokens) = self.max_reply_tokens {
            body["max_tokens"] = json!(tokens);
        }
        body["response_format"] = match prompt
            .json_schema
            .as_deref()
            .map(serde_json::from_str::<Value>)
        {
            Some(Ok(schema)) => json!({
                "type": "json_schema",
                "json_schema": { "name": "kubeskippy_analysis", "schema": schema, "strict": true },
            }),
            _ => json!({ "type": "json_object" }),
        };
        body
    }

    fn missing(&self, hint: String) -> ModelError {
        ModelError::ModelMissing {
            endpoint: self.http.endpoint.clone(),
            model: self.model.clone(),
            hint,
        }
    }

    async fn inspect_model(&self) -> Result<ModelInfo, ModelError> {
        let answer = self.http.get("/models", self.api_key.as_deref()).await?;
        if answer.status != 200 {
            return Err(self.http.http_error(&answer));
        }
        let models = answer
            .json
            .as_ref()
            .and_then(|value| value.get("data"))
            .and_then(Value::as_array)
            .ok_or_else(|| {
                self.http.bad_reply(
                    "/models has no data list: is the base URL right (it usually ends in /v1)?",
                )
            })?;
        let ids: Vec<&str> = models
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str))
            .collect();
        let ours = models
            .iter()
            .find(|m| m.get("id").and_then(Value::as_str) == Some(self.model.as_str()));
        // Single-model servers (llama.cpp) answer to any model name.
        let entry = match (ours, models.as_slice()) {
            (Some(entry), _) => entry,
            (None, [only]) => only,
            (None, _) => return Err(self.missing(format!("the server lists: {}", ids.join(", ")))),
        };
        let context_length = entry
            .pointer("/meta/n_ctx_train")
            .or_else(|| entry.get("context_length"))
            .or_else(|| entry.get("max_model_len"))
            .and_then(Value::as_u64);
        Ok(ModelInfo { context_length })
    }

    async fn chat(&self, prompt: &Prompt) -> Result<ModelReply, ModelError> {
        let started = Instant::now();
        let answer = self
            .http
            .post(
                "/chat/completions",
                &self.request_body(prompt),
                self.api_key.as_deref(),
            )
            .await?;
        if answer.status == 404 {
            return Err(self.missing(format!(
                "{}/chat/completions answered 404: check that the base URL ends in /v1 and the model name is right ({})",
                self.http.endpoint,
                answer.error_text().unwrap_or_default()
            )));
        }
        if answer.status != 200 {
            return Err(self.http.http_error(&answer));
        }
        let parsed = answer.json.as_ref().ok_or_else(|| {
            self.http
                .bad_reply(format!("not JSON: {}", answer.body_snippet()))
        })?;
        if let Some(error) = answer.error_text() {
            return Err(self.http.bad_reply(error));
        }
        let choice = parsed
            .pointer("/choices/0")
            .ok_or_else(|| self.http.bad_reply("no choices in the reply"))?;
        let text = choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                self.http
                    .bad_reply("no choices[0].message.content in the reply")
            })?;
        if choice.get("finish_reason").and_then(Value::as_str) == Some("length") {
            tracing::warn!(model = self.model, "the reply was cut at the token limit");
        }
        Ok(ModelReply {
            text: text.to_string(),
            model: parsed
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&self.model)
                .to_string(),
            elapsed: started.elapsed(),
            prompt_tokens: parsed
                .pointer("/usage/prompt_tokens")
                .and_then(Value::as_u64),
            reply_tokens: parsed
                .pointer("/usage/completion_tokens")
                .and_then(Value::as_u64),
        })
    }
}

impl ModelProvider for OpenAi {
    fn describe(&self) -> String {
        format!("openai {}@{}", self.model, self.http.endpoint)
    }

    fn labels(&self) -> (&'static str, &str) {
        ("openai", &self.model)
    }

    fn inspect(&self) -> InfoFuture<'_> {
        Box::pin(self.inspect_model())
    }

    fn complete<'a>(&'a self, prompt: &'a Prompt) -> ModelFuture<'a> {
        Box::pin(self.chat(prompt))
    }
}
