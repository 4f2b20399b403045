//! The Ollama provider against a local stub that follows Ollama's documented
//! `/api/chat` exchange: request shape, a good reply flowing through parser and
//! validators, and every failure ending in rule-based recommendations.

mod common;

use std::time::{Duration, Instant};

use common::{Reply, example, serve};
use kubeskippy::actions::Source;
use kubeskippy::config::Config;
use kubeskippy::model::{ModelError, ModelProvider, Ollama};
use kubeskippy::pipeline::{Analyzer, PluginFiles, Report};
use kubeskippy::snapshot::Snapshot;
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

async fn analyze_with(endpoint: &str, timeout: Duration, snapshot: &str) -> Report {
    let model: Box<dyn ModelProvider> = Box::new(Ollama::new(endpoint, "llama2", timeout).unwrap());
    let analyzer = Analyzer::new(&Config::default(), &PluginFiles::default(), Some(model)).unwrap();
    let snapshot = Snapshot::load(&example(snapshot)).unwrap();
    analyzer.analyze(&snapshot).await.unwrap()
}

#[tokio::test]
async fn the_request_follows_ollamas_chat_api() {
    let stub = serve(|_| Reply::Json {
        status: 200,
        body: ollama_reply(MODEL_ANALYSIS),
    })
    .await;
    analyze_with(
        &stub.endpoint(),
        Duration::from_secs(5),
        "oom-crashloop.yaml",
    )
    .await;
    let requests = stub.requests();
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
    let stub = serve(|_| Reply::Json {
        status: 200,
        body: ollama_reply(MODEL_ANALYSIS),
    })
    .await;
    analyze_with(
        &stub.endpoint(),
        Duration::from_secs(5),
        "oom-crashloop.yaml",
    )
    .await;
    let body = &stub.requests()[0].body;
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
    let stub = serve(|_| Reply::Json {
        status: 200,
        body: ollama_reply(MODEL_ANALYSIS),
    })
    .await;
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
    let patch = &incident.actions[0];
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
        incident.actions[1]["spec"]["action"],
        json!({"type": "scale", "scaleAction": {"replicas": 3}})
    );
}

async fn assert_falls_back(reply: Reply, timeout: Duration, expected: &str) {
    let stub = serve(move |_| reply.clone()).await;
    let started = Instant::now();
    let report = analyze_with(&stub.endpoint(), timeout, "oom-crashloop.yaml").await;
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
    let huge = ollama_reply(&"x".repeat(5 << 20));
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
    let prompt = kubeskippy::wit::Prompt {
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
