//! The OpenAI-compatible provider against a local stub following the
//! `/v1/chat/completions` exchange: request shape with a JSON-schema
//! response_format, the API key from the environment, and clear errors.

use crate::common;

use std::time::Duration;

use common::{Recorded, Reply, example, serve};
use kubeskippy::analyze::llm::{ModelError, ModelProvider, OpenAi};
use kubeskippy::analyze::pipeline::{Analyzer, PluginFiles};
use kubeskippy::core::config::Config;
use kubeskippy::core::plan::Source;
use kubeskippy::core::snapshot::Snapshot;
use kubeskippy::core::wit::Prompt;
use serde_json::{Value, json};

const CONTENT: &str = r#"{"summary": "Memory pressure", "issues": [], "recommendations": [
  {"action": "patch", "target": "Deployment/app", "container": "app", "memory_limit": "2Gi", "reason": "usage exceeds limit", "risk": "low", "confidence": 0.85}]}"#;

fn completion(content: &str) -> String {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_790_000_000,
        "model": "gemma-3-270m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 60, "total_tokens": 960}
    })
    .to_string()
}

fn server(chat: Reply) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |request| {
        match request.path.as_str() {
        "/v1/models" => Reply::Json {
            status: 200,
            body: json!({"object": "list", "data": [{"id": "gemma-3-270m", "object": "model", "meta": {"n_ctx_train": 32768}}]}).to_string(),
        },
        _ => chat.clone(),
    }
    }
}

fn prompt() -> Prompt {
    Prompt {
        system: "system".into(),
        user: "user".into(),
        json_schema: Some(json!({"type": "object"}).to_string()),
        temperature: Some(0.2),
    }
}

#[tokio::test]
async fn the_request_asks_for_json_schema_output_with_the_key() {
    let stub = serve(server(Reply::Json {
        status: 200,
        body: completion(CONTENT),
    }))
    .await;
    let model = OpenAi::new(
        &format!("{}/v1", stub.endpoint()),
        "gemma-3-270m",
        Duration::from_secs(5),
        Some("sk-test".into()),
        Some(7),
    )
    .unwrap();
    let reply = model.complete(&prompt()).await.unwrap();
    assert_eq!(reply.text, CONTENT);
    assert_eq!(
        (reply.prompt_tokens, reply.reply_tokens),
        (Some(900), Some(60))
    );
    let request = &stub.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["model"], "gemma-3-270m");
    assert_eq!(body["seed"], 7);
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(
        body["response_format"]["json_schema"]["schema"],
        json!({"type": "object"})
    );
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "system"})
    );
    let info = model.inspect().await.unwrap();
    assert_eq!(info.context_length, Some(32768));
}

#[tokio::test]
async fn no_key_sends_no_authorization() {
    let stub = serve(server(Reply::Json {
        status: 200,
        body: completion(CONTENT),
    }))
    .await;
    let model = OpenAi::new(
        &format!("{}/v1", stub.endpoint()),
        "m",
        Duration::from_secs(5),
        None,
        None,
    )
    .unwrap();
    model.complete(&prompt()).await.unwrap();
    assert_eq!(stub.requests()[0].header("authorization"), None);
}

#[tokio::test]
async fn a_rejected_key_is_an_error_not_an_available_model() {
    let body = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}).to_string();
    let stub = serve(server(Reply::Json { status: 401, body })).await;
    let model = OpenAi::new(
        &format!("{}/v1", stub.endpoint()),
        "m",
        Duration::from_secs(5),
        Some("bad".into()),
        None,
    )
    .unwrap();
    let error = model.complete(&prompt()).await.unwrap_err();
    assert!(
        matches!(error, ModelError::Http { status: 401, .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("HTTP 401: Incorrect API key provided"),
        "{error}"
    );
    assert!(!error.is_transient(), "a bad key is not retried");
}

#[tokio::test]
async fn a_wrong_base_url_says_to_check_it() {
    let stub = serve(|_: &Recorded| Reply::Json {
        status: 404,
        body: "{}".into(),
    })
    .await;
    // The base URL lacks /v1.
    let model = OpenAi::new(&stub.endpoint(), "m", Duration::from_secs(5), None, None).unwrap();
    let error = model.complete(&prompt()).await.unwrap_err().to_string();
    assert!(
        error.contains("check that the base URL ends in /v1"),
        "{error}"
    );
    let error = model.inspect().await.unwrap_err().to_string();
    assert!(error.contains("HTTP 404"), "{error}");
}

#[tokio::test]
async fn analyze_runs_through_the_openai_provider() {
    let stub = serve(server(Reply::Json {
        status: 200,
        body: completion(CONTENT),
    }))
    .await;
    let config = Config::parse(&format!(
        "ai:\n  provider: openai\n  endpoint: {}/v1\n  model: gemma-3-270m\n  apiKeyEnv: KUBESKIPPY_TEST_KEY_THAT_IS_UNSET\n  replyTokens: 700\n",
        stub.endpoint()
    ))
    .unwrap();
    let model = kubeskippy::analyze::llm::from_config(&config.ai).unwrap();
    let analyzer = Analyzer::new(&config, &PluginFiles::default(), model).unwrap();
    let report = analyzer
        .analyze(&Snapshot::load(&example("oom-crashloop.yaml")).unwrap())
        .await
        .unwrap();
    let incident = &report.incidents[0];
    assert_eq!(
        incident.source,
        Source::Llm,
        "{:?}",
        incident.fallback_reason
    );
    assert_eq!(incident.actions.len(), 1);
    assert_eq!(
        incident.actions[0]
            .metadata
            .name
            .as_deref()
            .unwrap()
            .split('-')
            .next(),
        Some("ai")
    );
    let chat = stub
        .requests()
        .into_iter()
        .find(|request| request.path == "/v1/chat/completions")
        .expect("a chat completion");
    let body: Value = serde_json::from_str(&chat.body).unwrap();
    assert_eq!(body["max_tokens"], 700, "ai.replyTokens caps the reply");
    let call = incident.model_call.as_ref().unwrap();
    assert_eq!(
        (call.prompt_tokens, call.reply_tokens),
        (Some(900), Some(60))
    );
}

#[test]
fn a_key_in_the_config_file_is_refused() {
    let error = Config::parse("ai:\n  provider: openai\n  apiKey: sk-live-123\n").unwrap_err();
    assert!(error.contains("ai.apiKey is not accepted"), "{error}");
    assert!(
        !error.contains("sk-live-123"),
        "the key is not echoed: {error}"
    );
}

#[test]
fn environment_overrides_name_the_variable() {
    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let config = Config::parse_with_env(
        "ai:\n  model: llama2\n",
        env(&[
            ("KUBESKIPPY_AI_PROVIDER", "openai"),
            ("KUBESKIPPY_AI_MIN_CONFIDENCE", "0.9"),
            ("KUBESKIPPY_AI_MODEL", "1234"),
            ("KUBESKIPPY_AI_ANONYMIZE", "true"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.ai.provider,
        kubeskippy::core::config::Provider::Openai
    );
    assert_eq!(config.ai.min_confidence, 0.9);
    assert_eq!(config.ai.model, "1234");
    assert!(config.ai.anonymize);
    let error =
        Config::parse_with_env("", env(&[("KUBESKIPPY_AI_MIN_CONFIDENCE", "high")])).unwrap_err();
    assert!(
        error.contains("ai.minConfidence") && error.contains("KUBESKIPPY_AI_MIN_CONFIDENCE"),
        "{error}"
    );
    let error = Config::parse_with_env("", env(&[("KUBESKIPPY_AI_BOGUS", "1")])).unwrap_err();
    assert!(
        error.contains("unknown field `bogus`") && error.contains("KUBESKIPPY_AI_BOGUS"),
        "{error}"
    );
}
