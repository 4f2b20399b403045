//! The native Ollama provider against a real `ollama serve` on loopback
//! (`scripts/ollama-server`, built from the github.com/ollama/ollama module,
//! Gemma 3 270M imported from a local GGUF as `gemma3-270m`): what the stub
//! tests in `ollama.rs` check of the request, answered by the real server.
//! Skipped, saying so, when `KUBESKIPPY_TEST_OLLAMA_URL` is unset. Faults a
//! real server cannot be made to produce (503s, dropped and oversized
//! replies) stay with the stubs.

use kubeskippy::analyze::llm::{ModelError, ModelProvider};
use kubeskippy::core::config::Config;
use kubeskippy::core::wit::Prompt;
use serde_json::Value;

const MODEL: &str = "gemma3-270m";

fn server() -> Option<String> {
    let url = std::env::var("KUBESKIPPY_TEST_OLLAMA_URL").ok();
    if url.is_none() {
        eprintln!(
            "skipped: KUBESKIPPY_TEST_OLLAMA_URL is not set (scripts/test sets it after starting scripts/ollama-server)"
        );
    }
    url
}

fn prompt() -> Prompt {
    Prompt {
        system: "You are a Kubernetes assistant. Answer in JSON.".into(),
        user: "A pod was OOMKilled with a 64Mi memory limit. What should its new limit be?".into(),
        json_schema: Some(
            serde_json::json!({
                "type": "object",
                "properties": {
                    "memoryLimit": {"type": "string"},
                    "confidence": {"type": "number"}
                },
                "required": ["memoryLimit", "confidence"]
            })
            .to_string(),
        ),
        temperature: Some(0.0),
    }
}

/// The provider as the daemon builds it from the `ai:` config.
fn model(url: &str, name: &str, keep_alive: &str) -> Box<dyn ModelProvider> {
    let config = Config::parse(&format!(
        "ai:\n  provider: ollama\n  endpoint: {url}\n  model: {name}\n  timeout: 120s\n  seed: 7\n  contextWindow: 2048\n  keepAlive: {keep_alive}\n  maxRetries: 0\n  replyTokens: 512\n"
    ))
    .unwrap();
    kubeskippy::analyze::llm::from_config(&config.ai)
        .unwrap()
        .expect("an endpoint is configured")
}

#[tokio::test]
async fn the_native_provider_talks_to_a_real_ollama() {
    let Some(url) = server() else { return };
    let _one_at_a_time = crate::common::REAL_MODEL.lock().await;
    let ollama = model(&url, MODEL, "7m");

    // /api/tags names the model and /api/show gives its context length, read
    // from the GGUF's gemma3.context_length.
    let info = ollama.inspect().await.unwrap();
    assert_eq!(info.context_length, Some(32768), "{info:?}");

    // `format` set to the prompt's schema: even a 270M model answers with
    // JSON that has the required keys, because the server constrains it.
    let first = ollama.complete(&prompt()).await.unwrap();
    let answer: Value = serde_json::from_str(&first.text)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", first.text));
    for key in ["memoryLimit", "confidence"] {
        assert!(answer.get(key).is_some(), "{key} in {answer}");
    }
    assert!(first.model.starts_with(MODEL), "{}", first.model);
    assert!(first.prompt_tokens.unwrap_or(0) > 0, "{first:?}");
    assert!(first.reply_tokens.unwrap_or(0) > 0, "{first:?}");

    // options.seed and temperature 0: the same prompt gets the same answer.
    let second = ollama.complete(&prompt()).await.unwrap();
    assert_eq!(first.text, second.text);

    // keep_alive: the server keeps the model loaded for as long as asked.
    let loaded: Value = reqwest::get(format!("{url}/api/ps"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ours = loaded["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str().is_some_and(|n| n.starts_with(MODEL)))
        .unwrap_or_else(|| panic!("{MODEL} is loaded: {loaded}"));
    let expires = chrono::DateTime::parse_from_rfc3339(ours["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let left = (expires - chrono::Utc::now()).num_seconds();
    assert!(
        (6 * 60..=7 * 60 + 5).contains(&left),
        "{left} s left of a 7m keep_alive"
    );
}

#[tokio::test]
async fn a_model_that_is_not_on_the_server_names_the_pull_to_run() {
    let Some(url) = server() else { return };
    let missing = model(&url, "no-such-model:1b", "1m");
    let error = missing.inspect().await.unwrap_err();
    assert!(
        matches!(error, ModelError::ModelMissing { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("ollama pull no-such-model:1b"),
        "{error}"
    );
}

#[tokio::test]
async fn kubeskippy_analyze_runs_an_example_through_the_native_provider() {
    let Some(url) = server() else { return };
    let _one_at_a_time = crate::common::REAL_MODEL.lock().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kubeskippy"))
        .arg("analyze")
        .arg(crate::common::example("oom-crashloop.yaml"))
        .args(["--llm-provider", "ollama", "--llm-endpoint", &url])
        .args([
            "--model",
            MODEL,
            "--llm-timeout",
            "120s",
            "--output",
            "json",
        ])
        .env_remove("KUBESKIPPY_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let incident = &report["incidents"][0];
    // The model was asked (whether its advice was used or refused).
    assert!(incident["analysis"]["model"].is_object(), "{incident:#}");
}
