//! The Ollama provider against a local stub that follows Ollama's documented
//! `/api/chat` exchange: request shape, a good reply flowing through parser and
//! validators, and every failure ending in rule-based recommendations.

use crate::common;

use std::time::{Duration, Instant};

use common::{Recorded, Reply, Stub, example, serve};
use kubeskippy::analyze::llm::{ModelError, ModelProvider, Ollama};
use kubeskippy::analyze::pipeline::{Analyzer, PluginFiles, Report};
use kubeskippy::core::config::Config;
use kubeskippy::core::plan::Source;
use kubeskippy::core::snapshot::Snapshot;
use serde_json::{Value, json};

const MODEL_ANALYSIS: &str = r#"{
  "summary": "The application is experiencing memory pressure leading to OOM kills and crash loops.",
  "issues": [{"title": "Memory leak in application", "severity": "high", "impact": "Service unavailability", "root_cause": "Likely memory leak"}],
  "recommendations": [
    {"action": "patch", "target": "Deployment/app", "container": "app", "memory_limit": "2Gi", "description": "Increase memory limit to 2Gi", "reason": "Current usage exceeds limit by 3x", "risk": "May mask underlying memory leak", "confidence": 0.85},
    {"action": "restart", "target": "Pod/app-xyz", "description": "Restart pod with heap dump enabled", "reason": "Collect diagnostic data", "risk": "Minimal", "confidence": 0.9},
    {"action": "delete-pod", "target": "Deployment/coredns", "reason": "hallucinated", "risk": "high", "confidence": 0.99},
    {"action": "scale", "target": "Deployment/app", "replicas": 3, "description": "Scale horizontally", "reason": "Reduce memory pressure per pod", "risk": "More resources", "confidence": 0.75}
  ]
}"#;

fn ollama_reply(content: &str) -> String {
    json!({
        "model": "llama2",
        "created_at": "2026-11-26T09:00:00.000000Z",
        "message": { "role": "assistant", "content": content },
        "done": true,
        "done_reason": "stop",
        "total_duration": 5_000_000_000u64,
        "prompt_eval_count": 812,
        "eval_count": 240
    })
    .to_string()
}

/// Answers `/api/tags` and `/api/show` as an Ollama server holding llama2 with
/// a 4096-token context, and `/api/chat` with `chat`.
fn ollama(
    chat: impl Fn() -> Reply + Send + Sync + 'static,
) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |request| {
        match request.path.as_str() {
        "/api/tags" => Reply::Json {
            status: 200,
            body: json!({"models": [{"name": "llama2:latest", "model": "llama2:latest", "size": 3826793677u64}]}).to_string(),
        },
        "/api/show" => Reply::Json {
            status: 200,
            body: json!({"model_info": {"general.architecture": "llama", "llama.context_length": 4096}}).to_string(),
        },
        _ => chat(),
    }
    }
}

fn good_reply() -> Reply {
    Reply::Json {
        status: 200,
        body: ollama_reply(MODEL_ANALYSIS),
    }
}

fn chat_calls(stub: &Stub) -> Vec<Recorded> {
    stub.requests()
        .into_iter()
        .filter(|r| r.path == "/api/chat")
        .collect()
}

fn analyzer(endpoint: &str, extra_config: &str) -> Analyzer {
    let config = Config::parse(&format!(
        "ai:\n  endpoint: {endpoint}\n  model: llama2\n{extra_config}"
    ))
    .unwrap();
    let model = kubeskippy::analyze::llm::from_config(&config.ai).unwrap();
    Analyzer::new(&config, &PluginFiles::default(), model).unwrap()
}

async fn analyze_with(endpoint: &str, timeout: Duration, snapshot: &str) -> Report {
    let analyzer = analyzer(
        endpoint,
        &format!("  timeout: {}ms\n  maxRetries: 0\n", timeout.as_millis()),
    );
    let snapshot = Snapshot::load(&example(snapshot)).unwrap();
    analyzer.analyze(&snapshot).await.unwrap()
}

#[tokio::test]
async fn the_request_follows_ollamas_chat_api() {
    let stub = serve(ollama(good_reply)).await;
    analyze_with(
        &stub.endpoint(),
        Duration::from_secs(5),
        "oom-crashloop.yaml",
    )
    .await;
    let requests = chat_calls(&stub);
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/api/chat")
    );
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["model"], "llama2");
    assert_eq!(body["stream"], false);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["role"], "user");
    assert!(
        body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("CLUSTER METRICS")
    );
    // The schema goes in `format` as an object, and temperature under options.
    assert_eq!(body["format"]["type"], "object");
    assert_eq!(
        body["format"]["required"],
        json!(["summary", "issues", "recommendations"])
    );
    assert_eq!(
        body["options"]["temperature"]
            .as_f64()
            .map(|t| (t * 100.0).round()),
        Some(20.0)
    );
    assert!(
        body.get("temperature").is_none(),
        "Ollama ignores a top-level temperature"
    );
}

#[tokio::test]
async fn nothing_secret_reaches_the_model() {
    let stub = serve(ollama(good_reply)).await;
    analyze_with(
        &stub.endpoint(),
        Duration::from_secs(5),
        "oom-crashloop.yaml",
    )
    .await;
    let body = &chat_calls(&stub)[0].body;
    // The snapshot holds a Secret, a ConfigMap and a container env token.
    for secret in [
        "hunter2",
        "c3VwZXJzZWNyZXQ=",
        "supersecret",
        "tok-12345-do-not-leak",
        "API_TOKEN",
        "DB_PASSWORD",
    ] {
        assert!(!body.contains(secret), "{secret} reached the model");
    }
}

#[tokio::test]
async fn a_good_reply_is_parsed_validated_and_planned() {
    let stub = serve(ollama(good_reply)).await;
    let report = analyze_with(
        &stub.endpoint(),
        Duration::from_secs(5),
        "oom-crashloop.yaml",
    )
    .await;
    let incident = &report.incidents[0];
    assert_eq!(incident.source, Source::Llm);
    assert!(
        incident
            .summary
            .starts_with("The application is experiencing memory pressure")
    );
    let verdicts: Vec<(bool, String)> = incident
        .reviewed
        .iter()
        .map(|r| (r.allowed, r.rejections.join("; ")))
        .collect();
    assert_eq!(verdicts.len(), 4);
    assert_eq!(
        verdicts[0],
        (true, String::new()),
        "the memory patch is allowed"
    );
    assert!(
        !verdicts[1].0 && verdicts[1].1.contains("restart targets the workload"),
        "{:?}",
        verdicts[1]
    );
    assert!(
        !verdicts[2].0
            && verdicts[2]
                .1
                .contains("neither the incident's workload nor one of its pods"),
        "{:?}",
        verdicts[2]
    );
    assert_eq!(verdicts[3], (true, String::new()), "the scale is allowed");
    assert_eq!(incident.actions.len(), 2);
    let patch = &serde_json::to_value(&incident.actions[0]).unwrap();
    assert_eq!(patch["metadata"]["annotations"]["ai.confidence"], "0.85");
    assert_eq!(
        patch["metadata"]["annotations"]["ai.reasoning"],
        "Current usage exceeds limit by 3x"
    );
    assert_eq!(patch["spec"]["action"]["type"], "patch");
    let document: Value = serde_yaml_ng::from_str(
        patch["spec"]["action"]["patchAction"]["patch"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        document,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": "2Gi"}}}]}}}})
    );
    assert_eq!(
        serde_json::to_value(&incident.actions[1]).unwrap()["spec"]["action"],
        json!({"type": "scale", "scaleAction": {"replicas": 3}})
    );
}

async fn assert_falls_back(reply: Reply, timeout: Duration, expected: &str) {
    let stub = serve(ollama(move || reply.clone())).await;
    let analyzer = analyzer(
        &stub.endpoint(),
        &format!("  timeout: {}ms\n  maxRetries: 0\n", timeout.as_millis()),
    );
    let snapshot = Snapshot::load(&example("oom-crashloop.yaml")).unwrap();
    let started = Instant::now();
    let report = analyzer.analyze(&snapshot).await.unwrap();
    let incident = &report.incidents[0];
    assert_eq!(incident.source, Source::Rules);
    let reason = incident.fallback_reason.as_deref().unwrap();
    assert!(
        reason.contains(expected),
        "expected {expected:?} in {reason:?}"
    );
    assert!(
        !incident.actions.is_empty(),
        "rule-based healing still plans actions"
    );
    assert!(
        started.elapsed() < timeout + Duration::from_secs(3),
        "fallback took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_missing_model_names_the_pull_to_run() {
    let body = json!({"error": "model 'llama2' not found"}).to_string();
    assert_falls_back(
        Reply::Json { status: 404, body },
        Duration::from_secs(5),
        "run `ollama pull llama2`",
    )
    .await;
}

#[tokio::test]
async fn a_server_error_falls_back() {
    let body = json!({"error": "server busy, please try again. maximum pending requests exceeded"})
        .to_string();
    assert_falls_back(
        Reply::Json { status: 503, body },
        Duration::from_secs(5),
        "HTTP 503: server busy",
    )
    .await;
}

#[tokio::test]
async fn an_error_object_with_status_200_falls_back() {
    let body = json!({"error": "an error was encountered while running the model"}).to_string();
    assert_falls_back(
        Reply::Json { status: 200, body },
        Duration::from_secs(5),
        "an error was encountered",
    )
    .await;
}

#[tokio::test]
async fn a_slow_model_times_out() {
    let reply = Reply::Slow {
        delay: Duration::from_secs(10),
        body: ollama_reply(MODEL_ANALYSIS),
    };
    assert_falls_back(reply, Duration::from_secs(1), "did not answer within 1 s").await;
}

#[tokio::test]
async fn a_dropped_connection_falls_back() {
    let reply = Reply::Truncated {
        body: ollama_reply(MODEL_ANALYSIS)[..40].to_string(),
    };
    assert_falls_back(reply, Duration::from_secs(5), "cannot reach the model").await;
}

#[tokio::test]
async fn an_unusable_reply_falls_back() {
    let reply = Reply::Json {
        status: 200,
        body: ollama_reply("I am sorry, I cannot help with Kubernetes."),
    };
    assert_falls_back(
        reply,
        Duration::from_secs(5),
        "the model's reply was unusable",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_reply_is_refused() {
    let huge = ollama_reply(&"x".repeat(20 << 20));
    assert_falls_back(
        Reply::Json {
            status: 200,
            body: huge,
        },
        Duration::from_secs(10),
        "reply larger than",
    )
    .await;
}

#[tokio::test]
async fn nothing_listening_falls_back() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let model = Ollama::new(
        &format!("http://127.0.0.1:{port}"),
        "llama2",
        Duration::from_secs(2),
    )
    .unwrap();
    let prompt = kubeskippy::core::wit::Prompt {
        system: "s".into(),
        user: "u".into(),
        json_schema: None,
        temperature: None,
    };
    match model.complete(&prompt).await {
        Err(ModelError::Unreachable { reason, .. }) => {
            assert!(reason.to_lowercase().contains("refused"), "{reason}")
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
}

async fn analyze_snapshot(analyzer: &Analyzer, name: &str) -> Report {
    analyzer
        .analyze(&Snapshot::load(&example(name)).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_model_missing_from_the_server_is_never_called() {
    let stub = serve(|request: &Recorded| match request.path.as_str() {
        "/api/tags" => Reply::Json {
            status: 200,
            body: json!({"models": [{"name": "mistral:latest"}]}).to_string(),
        },
        _ => good_reply(),
    })
    .await;
    let report = analyze_snapshot(&analyzer(&stub.endpoint(), ""), "oom-crashloop.yaml").await;
    let reason = report.incidents[0].fallback_reason.clone().unwrap();
    assert!(
        reason.contains("model llama2 is not available") && reason.contains("ollama pull llama2"),
        "{reason}"
    );
    assert!(
        chat_calls(&stub).is_empty(),
        "no pull and no chat for a missing model"
    );
}

#[tokio::test]
async fn configured_options_reach_the_request() {
    let stub = serve(ollama(good_reply)).await;
    let analyzer = analyzer(
        &stub.endpoint(),
        "  seed: 42\n  keepAlive: 10m\n  contextWindow: 16384\n  temperature: 0.3\n  replyTokens: 700\n",
    );
    analyze_snapshot(&analyzer, "oom-crashloop.yaml").await;
    let body: Value = serde_json::from_str(&chat_calls(&stub)[0].body).unwrap();
    assert_eq!(body["options"]["seed"], 42);
    assert_eq!(body["options"]["num_ctx"], 16384);
    assert_eq!(body["options"]["num_predict"], 700);
    assert_eq!(body["keep_alive"], "10m");
    assert_eq!(
        body["options"]["temperature"]
            .as_f64()
            .map(|t| (t * 10.0).round()),
        Some(3.0)
    );
}

#[tokio::test]
async fn a_small_context_window_leaves_evidence_out_and_says_so() {
    let stub = serve(ollama(good_reply)).await;
    let roomy = analyzer(&stub.endpoint(), "  contextWindow: 100000\n");
    let full = analyze_snapshot(&roomy, "cpu-saturation.yaml")
        .await
        .incidents[0]
        .model_call
        .clone()
        .unwrap();
    assert!(full.left_out.is_none());
    // A window a little too small for the whole prompt: some evidence must go.
    let available = full.estimated_prompt_tokens - 60;
    let window = available + 300;
    let analyzer = analyzer(
        &stub.endpoint(),
        &format!("  contextWindow: {window}\n  replyTokens: 300\n"),
    );
    let report = analyze_snapshot(&analyzer, "cpu-saturation.yaml").await;
    let call = report.incidents[0]
        .model_call
        .clone()
        .unwrap_or_else(|| panic!("{:?}", report.incidents[0].fallback_reason));
    let left_out = call.left_out.expect("evidence was left out");
    assert!(
        left_out.starts_with(&format!(
            "Left out to fit the model's {window}-token context:"
        )),
        "{left_out}"
    );
    assert!(
        call.estimated_prompt_tokens <= available,
        "{} > {available}",
        call.estimated_prompt_tokens
    );
    let body: Value = serde_json::from_str(&chat_calls(&stub)[1].body).unwrap();
    assert!(
        body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains(&left_out),
        "the prompt says what was left out"
    );
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let stub = serve(ollama(move || {
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            Reply::Json {
                status: 503,
                body: json!({"error": "busy"}).to_string(),
            }
        } else {
            good_reply()
        }
    }))
    .await;
    let report = analyze_snapshot(
        &analyzer(&stub.endpoint(), "  maxRetries: 2\n"),
        "oom-crashloop.yaml",
    )
    .await;
    assert_eq!(
        report.incidents[0].source,
        Source::Llm,
        "{:?}",
        report.incidents[0].fallback_reason
    );
    assert_eq!(chat_calls(&stub).len(), 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let stub = serve(ollama(move || {
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::WithHeaders {
                status: 429,
                body: json!({"error": "slow down"}).to_string(),
                headers: vec![("Retry-After".into(), "1".into())],
            }
        } else {
            good_reply()
        }
    }))
    .await;
    let started = Instant::now();
    let report = analyze_snapshot(
        &analyzer(&stub.endpoint(), "  maxRetries: 1\n"),
        "oom-crashloop.yaml",
    )
    .await;
    assert_eq!(report.incidents[0].source, Source::Llm);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_outage_opens_the_breaker_and_costs_no_more_calls() {
    let stub = serve(ollama(|| Reply::Json {
        status: 500,
        body: json!({"error": "boom"}).to_string(),
    }))
    .await;
    let analyzer = analyzer(
        &stub.endpoint(),
        "  maxRetries: 0\n  cacheEnabled: false\n  circuitBreaker: {failureThreshold: 2, coolOff: 60s}\n",
    );
    for _ in 0..2 {
        analyze_snapshot(&analyzer, "oom-crashloop.yaml").await;
    }
    assert_eq!(chat_calls(&stub).len(), 2);
    let started = Instant::now();
    let report = analyze_snapshot(&analyzer, "oom-crashloop.yaml").await;
    let reason = report.incidents[0].fallback_reason.clone().unwrap();
    assert!(
        reason.contains("paused after 2 consecutive failures"),
        "{reason}"
    );
    assert_eq!(chat_calls(&stub).len(), 2, "an open breaker makes no call");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "an open breaker costs no latency"
    );
    assert!(
        !report.incidents[0].actions.is_empty(),
        "rule-based healing goes on"
    );
}

#[tokio::test]
async fn a_flapping_pod_costs_one_model_call_per_window() {
    let stub = serve(ollama(good_reply)).await;
    let analyzer = analyzer(&stub.endpoint(), "  cacheTtl: 10m\n");
    let original = std::fs::read_to_string(example("oom-crashloop.yaml")).unwrap();
    for restarts in 5..15 {
        // The pod keeps restarting: counters climb, the facts stay the same.
        let text = original.replace("restartCount: 5", &format!("restartCount: {restarts}"));
        let snapshot = Snapshot::parse(&text, "flapping").unwrap();
        let report = analyzer.analyze(&snapshot).await.unwrap();
        assert_eq!(report.incidents[0].source, Source::Llm);
        assert_eq!(
            report.incidents[0].model_call.as_ref().unwrap().cached,
            restarts > 5
        );
    }
    assert_eq!(chat_calls(&stub).len(), 1);
    assert_eq!(analyzer.cache_counts(), Some((9, 1)));
}

#[tokio::test]
async fn anonymised_prompts_carry_no_names_and_actions_name_real_objects() {
    // The stub answers in placeholders, as a model that saw only placeholders would.
    let anonymous_reply = MODEL_ANALYSIS
        .replace("Deployment/app", "Deployment/workload-1")
        .replace("Pod/app-xyz", "Pod/pod-1")
        .replace("\"container\": \"app\"", "\"container\": \"container-1\"");
    let stub = serve(ollama(move || Reply::Json {
        status: 200,
        body: ollama_reply(&anonymous_reply),
    }))
    .await;
    let report = analyze_snapshot(
        &analyzer(&stub.endpoint(), "  anonymize: true\n"),
        "oom-crashloop.yaml",
    )
    .await;
    let body = &chat_calls(&stub)[0].body;
    for name in [
        "app-xyz",
        "\"shop\"",
        "shop/",
        "app-7d9f8b6c5d",
        "Deployment/app",
    ] {
        let at = body
            .find(name)
            .map(|i| &body[i.saturating_sub(120)..(i + 60).min(body.len())]);
        assert!(!body.contains(name), "{name} reached the model: {at:?}");
    }
    let incident = &report.incidents[0];
    assert_eq!(incident.source, Source::Llm);
    let patch = &serde_json::to_value(&incident.actions[0]).unwrap();
    assert_eq!(patch["spec"]["target"]["name"], "app");
    assert_eq!(patch["spec"]["target"]["namespace"], "shop");
    assert!(
        patch["spec"]["action"]["patchAction"]["patch"]
            .as_str()
            .unwrap()
            .contains("name: app\n")
    );
}

/// The seed scenario under the built-in policy with `edit` applied to it.
fn seed_snapshot_with_policy(
    edit: impl FnOnce(&mut kubeskippy::core::crd::policy::HealingPolicy),
) -> Snapshot {
    let mut snapshot = Snapshot::load(&example("oom-crashloop.yaml")).unwrap();
    let mut policy = kubeskippy::core::crd::policy::HealingPolicy::builtin_default();
    edit(&mut policy);
    policy.validate().unwrap();
    snapshot.policies.push(policy);
    snapshot
}

#[tokio::test]
async fn a_policy_can_turn_the_model_off() {
    let stub = serve(ollama(good_reply)).await;
    let snapshot = seed_snapshot_with_policy(|policy| policy.spec.ai.enabled = false);
    let report = analyzer(&stub.endpoint(), "")
        .analyze(&snapshot)
        .await
        .unwrap();
    let incident = &report.incidents[0];
    assert_eq!(incident.source, Source::Rules);
    assert_eq!(
        incident.fallback_reason.as_deref(),
        Some("policy builtin-default turns the model off")
    );
    assert!(chat_calls(&stub).is_empty(), "the model was asked anyway");
}

#[tokio::test]
async fn a_policy_only_tightens_confidence_and_count() {
    let stub = serve(ollama(good_reply)).await;
    let analyzer = analyzer(&stub.endpoint(), "");
    // Of the model's four, the default validator allows the patch (0.85) and
    // the scale (0.75); the restart of one pod and coredns are refused before.
    let verdicts = |report: &Report| -> Vec<(f64, bool, Vec<String>)> {
        report.incidents[0]
            .reviewed
            .iter()
            .filter(|r| r.rejections.iter().all(|why| why.starts_with("policy ")))
            .map(|r| (r.recommendation.confidence, r.allowed, r.rejections.clone()))
            .collect()
    };

    let stricter = seed_snapshot_with_policy(|policy| policy.spec.ai.min_confidence = Some(0.8));
    let report = analyzer.analyze(&stricter).await.unwrap();
    assert_eq!(
        verdicts(&report),
        [
            (0.85, true, vec![]),
            (
                0.75,
                false,
                vec![
                    "policy builtin-default: confidence 0.75 is below its minConfidence 0.80"
                        .to_string()
                ]
            )
        ]
    );

    let fewer = seed_snapshot_with_policy(|policy| policy.spec.ai.max_recommendations = Some(1));
    let report = analyzer.analyze(&fewer).await.unwrap();
    assert_eq!(
        verdicts(&report),
        [
            (0.85, true, vec![]),
            (
                0.75,
                false,
                vec!["policy builtin-default: already 1 recommendations allowed (its maxRecommendations)".to_string()]
            )
        ]
    );
    assert_eq!(report.incidents[0].actions.len(), 1);
}

#[tokio::test]
async fn a_policy_naming_a_validator_the_config_lacks_allows_nothing() {
    let stub = serve(ollama(good_reply)).await;
    let snapshot = seed_snapshot_with_policy(|policy| {
        policy.spec.ai.validator_plugins = vec!["strict".into()];
    });
    let report = analyzer(&stub.endpoint(), "")
        .analyze(&snapshot)
        .await
        .unwrap();
    let incident = &report.incidents[0];
    assert!(incident.actions.is_empty());
    for reviewed in &incident.reviewed {
        assert!(!reviewed.allowed);
        assert_eq!(
            reviewed.rejections,
            [
                "policy builtin-default names validator plugin \"strict\", which nothing serves (not in plugins.named, the plugin directory or a plugin ConfigMap) (denied because the validator could not run)"
            ]
        );
    }
}

#[tokio::test]
async fn named_plugins_are_picked_by_policy_and_checked_for_their_role() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra-validator.wasm");
    std::fs::write(&file, kubeskippy::analyze::pipeline::defaults::VALIDATOR).unwrap();
    let stub = serve(ollama(good_reply)).await;
    let named = format!(
        "plugins:\n  named:\n    extra: {{kind: validator, file: {}}}\n",
        file.display()
    );
    let snapshot = seed_snapshot_with_policy(|policy| {
        policy.spec.ai.validator_plugins = vec!["extra".into()];
    });
    let report = analyzer(&stub.endpoint(), &named)
        .analyze(&snapshot)
        .await
        .unwrap();
    assert_eq!(report.incidents[0].source, Source::Llm);
    assert!(report.incidents[0].reviewed.iter().any(|r| r.allowed));

    // The same file loaded as a prompt plugin is refused when the config loads.
    let wrong = Config::parse(&format!(
        "plugins:\n  named:\n    extra: {{kind: prompt, file: {}}}\n",
        file.display()
    ))
    .unwrap();
    let error = Analyzer::new(&wrong, &PluginFiles::default(), None)
        .err()
        .expect("a validator is not a prompt plugin")
        .to_string();
    assert!(error.contains("extra-validator.wasm"), "{error}");
    assert!(error.contains("prompt"), "{error}");
}

#[tokio::test]
async fn a_plugin_directory_offers_its_components_by_name_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("extra.wasm"),
        kubeskippy::analyze::pipeline::defaults::VALIDATOR,
    )
    .unwrap();
    std::fs::write(dir.path().join("README"), "not a plugin").unwrap();
    let stub = serve(ollama(good_reply)).await;
    let config = Config::parse(&format!("ai:\n  endpoint: {}\n", stub.endpoint())).unwrap();
    let files = PluginFiles {
        plugin_dir: Some(dir.path().to_path_buf()),
        ..PluginFiles::default()
    };
    let model = kubeskippy::analyze::llm::from_config(&config.ai).unwrap();
    let analyzer = Analyzer::new(&config, &files, model).unwrap();
    let snapshot = seed_snapshot_with_policy(|policy| {
        policy.spec.ai.validator_plugins = vec!["extra".into()];
    });
    let report = analyzer.analyze(&snapshot).await.unwrap();
    assert!(report.incidents[0].reviewed.iter().any(|r| r.allowed));

    // A policy asking for it as a prompt plugin gets the model skipped, with why.
    let snapshot = seed_snapshot_with_policy(|policy| {
        policy.spec.ai.prompt_plugin = Some("extra".into());
    });
    let report = analyzer.analyze(&snapshot).await.unwrap();
    assert_eq!(
        report.incidents[0].fallback_reason.as_deref(),
        Some(
            "policy builtin-default wants plugin \"extra\" as a prompt plugin, but it is a validator plugin"
        )
    );

    std::fs::write(dir.path().join("broken.wasm"), b"not wasm").unwrap();
    let error = Analyzer::new(&config, &files, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("broken.wasm is not a prompt, parser or validator plugin"),
        "{error}"
    );
}

#[tokio::test]
async fn a_policy_protected_resource_is_never_recommended_for() {
    let stub = serve(ollama(good_reply)).await;
    let snapshot = seed_snapshot_with_policy(|policy| {
        policy.spec.safety.protected_resources =
            vec![kubeskippy::core::crd::policy::ProtectedResource {
                kind: "Deployment".into(),
                name: "app".into(),
            }];
    });
    let report = analyzer(&stub.endpoint(), "")
        .analyze(&snapshot)
        .await
        .unwrap();
    let incident = &report.incidents[0];
    assert!(incident.actions.is_empty());
    for reviewed in &incident.reviewed {
        assert!(
            reviewed.rejections.contains(
                &"safety floor: policy builtin-default protects Deployment/app".to_string()
            ),
            "{:?}",
            reviewed.rejections
        );
    }
}
