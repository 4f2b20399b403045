//! PromQL for `prometheus` metric triggers: instant queries
//! (`GET /api/v1/query`) against the Prometheus named in the config's
//! `prometheus:` section, each vector sample matched to a pod by its
//! `namespace` and `pod` labels.

use std::collections::HashMap;

use serde::Deserialize;

use crate::core::config::PrometheusConfig;

use crate::core::objects::{PodValues, QueryResults};

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("prometheus.url {url:?} is not usable: {message}")]
    Config { url: String, message: String },
    #[error("prometheus query {query:?}: {message}")]
    Query { query: String, message: String },
}

pub struct Prometheus {
    client: reqwest::Client,
    endpoint: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    status: String,
    #[serde(default)]
    data: Option<ReplyData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplyData {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Sample {
    #[serde(default)]
    metric: HashMap<String, String>,
    /// `[unix seconds, "value"]`.
    value: (f64, String),
}

/// Replies larger than this are refused rather than read into memory.
const MAX_REPLY_BYTES: usize = 16 << 20;

impl Prometheus {
    pub fn new(config: &PrometheusConfig) -> Result<Prometheus, PrometheusError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|error| PrometheusError::Config {
                url: config.url.clone(),
                message: error.to_string(),
            })?;
        Ok(Prometheus {
            client,
            endpoint: format!("{}/api/v1/query", config.url.trim_end_matches('/')),
        })
    }

    /// The query's value per pod. Samples without both a `namespace` and a
    /// `pod` label name no pod and are skipped; when several samples name one
    /// pod the largest counts, since a threshold asks whether any is too high.
    pub async fn query(&self, query: &str) -> Result<PodValues, PrometheusError> {
        let failed = |message: String| PrometheusError::Query {
            query: query.to_string(),
            message,
        };
        let response = self
            .client
            .get(&self.endpoint)
            .query(&[("query", query)])
            .send()
            .await
            .map_err(|error| failed(format!("request to {} failed: {error}", self.endpoint)))?;
        let status = response.status();
        if response
            .content_length()
            .is_some_and(|length| length > MAX_REPLY_BYTES as u64)
        {
            return Err(failed(format!(
                "reply of {} bytes is over the {MAX_REPLY_BYTES}-byte limit",
                response.content_length().unwrap_or_default()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| failed(format!("reading the reply failed: {error}")))?;
        if body.len() > MAX_REPLY_BYTES {
            return Err(failed(format!(
                "reply of {} bytes is over the {MAX_REPLY_BYTES}-byte limit",
                body.len()
            )));
        }
        let reply: Reply = match serde_json::from_slice(&body) {
            Ok(reply) => reply,
            Err(_) if !status.is_success() => {
                return Err(failed(format!("server answered HTTP {}", status.as_u16())));
            }
            Err(error) => return Err(failed(format!("reply is not Prometheus JSON: {error}"))),
        };
        if reply.status != "success" || !status.is_success() {
            return Err(failed(format!(
                "server answered HTTP {}: {}: {}",
                status.as_u16(),
                reply.error_type.as_deref().unwrap_or("error"),
                crate::core::text::one_line(reply.error.as_deref().unwrap_or("no message"))
            )));
        }
        let data = reply
            .data
            .ok_or_else(|| failed("reply has no data".into()))?;
        if data.result_type != "vector" {
            return Err(failed(format!(
                "expected a vector result, got {}",
                data.result_type
            )));
        }
        let samples: Vec<Sample> = serde_json::from_value(data.result)
            .map_err(|error| failed(format!("vector result is malformed: {error}")))?;
        let mut values = PodValues::new();
        for sample in samples {
            let (Some(namespace), Some(pod)) =
                (sample.metric.get("namespace"), sample.metric.get("pod"))
            else {
                continue;
            };
            let value: f64 = sample.value.1.parse().map_err(|_| {
                failed(format!("sample value {:?} is not a number", sample.value.1))
            })?;
            if value.is_nan() {
                continue;
            }
            let entry = values
                .entry((namespace.clone(), pod.clone()))
                .or_insert(value);
            *entry = entry.max(value);
        }
        Ok(values)
    }

    /// Runs every query one after another, keeping each outcome.
    pub async fn query_all(&self, queries: impl IntoIterator<Item = String>) -> QueryResults {
        let mut results = QueryResults::new();
        for query in queries {
            let outcome = self.query(&query).await.map_err(|error| error.to_string());
            results.insert(query, outcome);
        }
        results
    }
}
