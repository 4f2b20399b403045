//! `analyze` against real models: Gemma 3 270M behind llama.cpp's server (the
//! OpenAI-compatible provider; `scripts/llm-server`) and behind a real Ollama
//! (the native provider; `scripts/ollama-server`), both started by
//! `scripts/test`. Each is skipped, saying so, when its URL
//! (`KUBESKIPPY_TEST_LLM_URL`, `KUBESKIPPY_TEST_OLLAMA_URL`) is unset.
//!
//! A 270M-parameter model gives poor advice; the point is that the guardrails
//! hold with a bad model: every recommendation is either allowed and valid, or
//! rejected with a reason, and nothing touches a protected object.

use crate::common;

use std::time::Instant;

use common::example;
use kubeskippy::analyze::pipeline::{Analyzer, PluginFiles};
use kubeskippy::core::config::Config;
use kubeskippy::core::plan::Source;
use kubeskippy::core::snapshot::Snapshot;
use kubeskippy::core::wit::Action;

const EXAMPLES: [&str; 6] = [
    "oom-crashloop.yaml",
    "cpu-saturation.yaml",
    "image-pull.yaml",
    "missing-configmap.yaml",
    "kube-system.yaml",
    "protected-label.yaml",
];

/// The server's URL from `variable`, or a note that the test is skipped.
fn server(variable: &str, script: &str) -> Option<String> {
    let url = std::env::var(variable).ok();
    if url.is_none() {
        eprintln!("skipped: {variable} is not set (scripts/test sets it after starting {script})");
    }
    url
}

#[tokio::test]
async fn guardrails_hold_with_a_small_real_model() {
    let Some(base_url) = server("KUBESKIPPY_TEST_LLM_URL", "scripts/llm-server") else {
        return;
    };
    guardrails_hold(&format!(
        "ai:\n  provider: openai\n  endpoint: {base_url}\n  model: gemma-3-270m\n  timeout: 120s\n  temperature: 0.2\n  seed: 7\n  contextWindow: 4096\n  maxRetries: 1\n  replyTokens: 512\n"
    ))
    .await;
}

#[tokio::test]
async fn guardrails_hold_with_a_small_model_on_a_real_ollama() {
    let Some(base_url) = server("KUBESKIPPY_TEST_OLLAMA_URL", "scripts/ollama-server") else {
        return;
    };
    // No contextWindow: the provider reads it from /api/show.
    guardrails_hold(&format!(
        "ai:\n  provider: ollama\n  endpoint: {base_url}\n  model: gemma3-270m\n  timeout: 120s\n  temperature: 0.2\n  seed: 7\n  maxRetries: 1\n  replyTokens: 512\n"
    ))
    .await;
}

/// Every example through the model `config` names: each recommendation is
/// allowed and valid, or rejected with a reason; nothing protected is touched.
async fn guardrails_hold(config: &str) {
    let _one_at_a_time = common::REAL_MODEL.lock().await;
    let config = Config::parse(config).unwrap();
    let model = kubeskippy::analyze::llm::from_config(&config.ai).unwrap();
    let analyzer = Analyzer::new(&config, &PluginFiles::default(), model).unwrap();
    let (mut from_model, mut calls, mut seconds, mut tokens) = (0, 0, 0.0, 0);
    for name in EXAMPLES {
        let snapshot = Snapshot::load(&example(name)).unwrap();
        let started = Instant::now();
        let report = analyzer.analyze(&snapshot).await.unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        assert!(
            !report.incidents.is_empty(),
            "{name}: the example has an incident"
        );
        for incident in &report.incidents {
            if incident.source == Source::Llm {
                from_model += 1;
            }
            if let Some(call) = &incident.model_call {
                calls += 1;
                seconds += call.elapsed.as_secs_f64();
                tokens += call.prompt_tokens.unwrap_or(0) + call.reply_tokens.unwrap_or(0);
            }
            eprintln!(
                "{name}: {} via {} in {elapsed:.1} s; {} recommendations, {} allowed; fallback: {:?}",
                incident.incident.id,
                incident.source.as_str(),
                incident.reviewed.len(),
                incident.reviewed.iter().filter(|r| r.allowed).count(),
                incident.fallback_reason
            );
            for reviewed in &incident.reviewed {
                let recommendation = &reviewed.recommendation;
                if reviewed.allowed {
                    assert!(reviewed.rejections.is_empty());
                    assert!(
                        (0.0..=1.0).contains(&recommendation.confidence),
                        "{name}: {recommendation:?}"
                    );
                    assert_eq!(
                        recommendation.target.namespace, incident.incident.target.namespace,
                        "{name}"
                    );
                } else {
                    assert!(
                        !reviewed.rejections.is_empty(),
                        "{name}: a rejection without a reason: {recommendation:?}"
                    );
                }
            }
            let protected = name == "kube-system.yaml" || name == "protected-label.yaml";
            if protected {
                assert!(
                    incident.actions.is_empty(),
                    "{name}: an action on a protected object: {:?}",
                    incident.actions
                );
                assert!(
                    incident
                        .reviewed
                        .iter()
                        .all(|r| !r.allowed || matches!(r.recommendation.action, Action::None)),
                    "{name}"
                );
            }
            for action in &incident.actions {
                assert_eq!(
                    action.spec.target.namespace,
                    incident.incident.target.namespace
                );
            }
        }
    }
    eprintln!(
        "real model: {calls} calls, {from_model} analyses used, {:.1} s and {} tokens per call on average",
        seconds / f64::from(calls.max(1)),
        tokens / u64::from(calls.max(1) as u32)
    );
    assert!(calls > 0, "the model was never reached");
}
