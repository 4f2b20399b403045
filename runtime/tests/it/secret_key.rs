//! `ai.apiKeySecretRef`: the API key is read from a Secret through the
//! Kubernetes API, here an in-memory one.

use crate::fake_api;

use fake_api::FakeApi;
use kubeskippy::analyze::llm::api_key_from_secret;
use kubeskippy::core::config::{Config, SecretKeyRef};
use serde_json::json;

fn fake_with_secret() -> FakeApi {
    let fake = FakeApi::new();
    fake.insert(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "llm", "namespace": "kubeskippy-system"},
        // base64 of "sk-test-123\n": keys copied from files often end in a newline.
        "data": {"api-key": "c2stdGVzdC0xMjMK"}
    }));
    fake
}

fn reference(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        namespace: Some("kubeskippy-system".into()),
        name: name.into(),
        key: key.into(),
    }
}

#[tokio::test]
async fn the_key_comes_from_the_secret() {
    let fake = fake_with_secret();
    let key = api_key_from_secret(fake.client(), &reference("llm", "api-key"))
        .await
        .unwrap();
    assert_eq!(key, "sk-test-123");
    assert_eq!(
        fake.request_lines(),
        ["GET /api/v1/namespaces/kubeskippy-system/secrets/llm"]
    );
}

#[tokio::test]
async fn a_missing_secret_or_key_is_a_clear_error() {
    let fake = fake_with_secret();
    let error = api_key_from_secret(fake.client(), &reference("nope", "api-key"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("ai.apiKeySecretRef: Secret kubeskippy-system/nope: cannot read it:"),
        "{error}"
    );
    let error = api_key_from_secret(fake.client(), &reference("llm", "token"))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "ai.apiKeySecretRef: Secret kubeskippy-system/llm has no key \"token\""
    );
}

#[test]
fn the_reference_is_configured_in_the_ai_block() {
    let config =
        Config::parse("ai:\n  provider: openai\n  apiKeySecretRef: {name: llm, key: api-key}\n")
            .unwrap();
    let reference = config.ai.api_key_secret_ref.unwrap();
    assert_eq!(
        (
            reference.namespace,
            reference.name.as_str(),
            reference.key.as_str()
        ),
        (None, "llm", "api-key")
    );
    let error = Config::parse("ai:\n  apiKeySecretRef: {name: llm}\n").unwrap_err();
    assert!(
        error.contains("ai.apiKeySecretRef: missing field `key`"),
        "{error}"
    );
}

const SIGNING_KEY: &str = "/api/v1/namespaces/kubeskippy/secrets/kubeskippy-signing-key";

fn reads_of_the_signing_key(fake: &FakeApi) -> usize {
    fake.requests()
        .iter()
        .filter(|request| request.method == "GET" && request.path == SIGNING_KEY)
        .count()
}

#[tokio::test(start_paused = true)]
async fn the_signing_key_is_read_again_while_the_api_server_fails_and_not_after_a_refusal() {
    use kubeskippy::operator::signing_key::{SigningKeyError, load_or_create_key_patiently};

    // A restarting API server: two 503s, then the Secret is missing and made.
    let fake = FakeApi::new();
    fake.fail_next("GET", SIGNING_KEY, 503, 2);
    load_or_create_key_patiently(&fake.client(), "kubeskippy", "kubeskippy-signing-key")
        .await
        .unwrap();
    assert_eq!(reads_of_the_signing_key(&fake), 3);
    assert!(fake.get(SIGNING_KEY).is_some(), "the key was created");

    // RBAC refuses: asking again would not help.
    let fake = FakeApi::new();
    fake.fail_next("GET", SIGNING_KEY, 403, 100);
    let error =
        load_or_create_key_patiently(&fake.client(), "kubeskippy", "kubeskippy-signing-key")
            .await
            .unwrap_err();
    assert!(matches!(error, SigningKeyError::Read { .. }), "{error}");
    assert_eq!(reads_of_the_signing_key(&fake), 1);
}
