//! What every HTTP provider shares: a client with timeouts, a capped body
//! read, and errors that say what went wrong in one line.

use std::time::Duration;

use serde_json::Value;

use super::{MAX_REPLY_BYTES, ModelError};

pub struct HttpModel {
    pub endpoint: String,
    pub timeout: Duration,
    client: reqwest::Client,
}

/// A response read whole (within the cap), with the headers that matter.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub json: Option<Value>,
    pub retry_after: Option<Duration>,
}

impl Answer {
    /// The error text a server put in the body, in Ollama's (`{"error": "…"}`)
    /// or OpenAI's (`{"error": {"message": "…"}}`) shape.
    pub fn error_text(&self) -> Option<String> {
        let error = self.json.as_ref()?.get("error")?;
        error
            .as_str()
            .or_else(|| error.get("message").and_then(Value::as_str))
            .map(str::to_string)
    }

    pub fn body_snippet(&self) -> String {
        snippet(&String::from_utf8_lossy(&self.body))
    }
}

impl HttpModel {
    pub fn new(endpoint: &str, timeout: Duration) -> Result<HttpModel, ModelError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|error| ModelError::Config(format!("cannot build an HTTP client: {error}")))?;
        Ok(HttpModel {
            endpoint,
            timeout,
            client,
        })
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Result<Answer, ModelError> {
        let mut request = self.client.get(format!("{}{path}", self.endpoint));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        bearer: Option<&str>,
    ) -> Result<Answer, ModelError> {
        let mut request = self
            .client
            .post(format!("{}{path}", self.endpoint))
            .json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, ModelError> {
        let mut response = request
            .send()
            .await
            .map_err(|error| self.transport_error(error))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.transport_error(error))?
        {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(ModelError::BadReply {
                    endpoint: self.endpoint.clone(),
                    reason: format!("reply larger than {MAX_REPLY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let json = serde_json::from_slice(&body).ok();
        Ok(Answer {
            status,
            body,
            json,
            retry_after,
        })
    }

    pub fn transport_error(&self, error: reqwest::Error) -> ModelError {
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

    pub fn http_error(&self, answer: &Answer) -> ModelError {
        ModelError::Http {
            endpoint: self.endpoint.clone(),
            status: answer.status,
            body: answer.error_text().unwrap_or_else(|| answer.body_snippet()),
            retry_after: answer.retry_after,
        }
    }

    pub fn bad_reply(&self, reason: impl Into<String>) -> ModelError {
        ModelError::BadReply {
            endpoint: self.endpoint.clone(),
            reason: reason.into(),
        }
    }
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

pub fn snippet(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
