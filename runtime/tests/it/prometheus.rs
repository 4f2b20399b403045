//! `prometheus` metric triggers against a local stub of the Prometheus HTTP
//! API: the instant-query request, matching vector samples to pods, and
//! failures that become one clear error and no firing.

use crate::common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Reply, serve};
use kubeskippy::core::config::{Config, PrometheusConfig};
use kubeskippy::core::crd::policy::HealingPolicy;
use kubeskippy::core::evaluation::{self, TriggerMemory};
use kubeskippy::core::objects::ClusterObjects;
use kubeskippy::core::objects::QueryResults;
use kubeskippy::core::snapshot::Snapshot;
use kubeskippy::core::triggers::queries_of;
use kubeskippy::operator::prometheus::Prometheus;

const QUERY: &str = r#"sum by (namespace, pod) (rate(http_requests_total{code=~"5.."}[5m]))"#;

fn vector(samples: &str) -> Reply {
    Reply::Json {
        status: 200,
        body: format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{samples}]}}}}"#
        ),
    }
}

fn client(endpoint: String) -> Prometheus {
    Prometheus::new(&PrometheusConfig {
        url: endpoint + "/",
        timeout: Duration::from_secs(2),
    })
    .unwrap()
}

#[tokio::test]
async fn an_instant_query_is_a_get_with_the_promql_url_encoded() {
    let stub = serve(|_| vector("")).await;
    client(stub.endpoint()).query(QUERY).await.unwrap();
    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    let (path, query) = requests[0].path.split_once('?').unwrap();
    assert_eq!(
        path, "/api/v1/query",
        "no double slash from the configured URL"
    );
    let sent: Vec<(String, String)> = url_pairs(query);
    assert_eq!(sent, [("query".to_string(), QUERY.to_string())]);
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            (decode(key), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn samples_are_matched_to_pods_by_namespace_and_pod_labels() {
    let stub = serve(|_| {
        vector(
            r#"{"metric":{"namespace":"shop","pod":"app-1"},"value":[1764147600.0,"0.9"]},
               {"metric":{"namespace":"shop","pod":"app-1","code":"503"},"value":[1764147600.0,"1.5"]},
               {"metric":{"namespace":"shop","pod":"app-2"},"value":[1764147600.0,"0.1"]},
               {"metric":{"namespace":"other","pod":"app-1"},"value":[1764147600.0,"7"]},
               {"metric":{"job":"no-pod"},"value":[1764147600.0,"99"]},
               {"metric":{"namespace":"shop","pod":"app-3"},"value":[1764147600.0,"NaN"]}"#,
        )
    })
    .await;
    let values = client(stub.endpoint()).query(QUERY).await.unwrap();
    let value = |namespace: &str, pod: &str| {
        values
            .get(&(namespace.to_string(), pod.to_string()))
            .copied()
    };
    assert_eq!(
        value("shop", "app-1"),
        Some(1.5),
        "the larger of two samples"
    );
    assert_eq!(value("shop", "app-2"), Some(0.1));
    assert_eq!(value("other", "app-1"), Some(7.0));
    assert_eq!(value("shop", "app-3"), None, "NaN is no value");
    assert_eq!(values.len(), 3, "a sample naming no pod is skipped");
}

fn policy() -> HealingPolicy {
    let policy: HealingPolicy = serde_yaml_ng::from_str(&format!(
        "apiVersion: kubeskippy.io/v1alpha1\nkind: HealingPolicy\nmetadata: {{name: errors}}\nspec:\n  triggers:\n  - name: http-errors\n    metric:\n      name: prometheus\n      threshold: 0.5\n      query: '{QUERY}'\n"
    ))
    .unwrap();
    policy.validate().unwrap();
    policy
}

fn snapshot() -> Snapshot {
    let pod = |name: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{containers: [{{name: app, image: app:1}}]}}\nstatus: {{phase: Running}}\n"
        )
    };
    Snapshot::parse(&(pod("app-1") + &pod("app-2")), "test").unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn a_prometheus_trigger_fires_for_the_pods_over_its_threshold() {
    let stub = serve(|_| {
        vector(
            r#"{"metric":{"namespace":"shop","pod":"app-1"},"value":[1764147600.0,"0.75"]},
               {"metric":{"namespace":"shop","pod":"app-2"},"value":[1764147600.0,"0.25"]}"#,
        )
    })
    .await;
    let policies = [policy()];
    let queries = queries_of(&policies);
    assert_eq!(queries.iter().collect::<Vec<_>>(), [QUERY]);
    let results = client(stub.endpoint()).query_all(queries).await;

    let snapshot = snapshot();
    let objects = ClusterObjects {
        queries: Some(&results),
        ..snapshot.objects()
    };
    let pass = evaluation::pass(&objects, &policies, &mut TriggerMemory::new(), [], now()).unwrap();
    assert_eq!(pass.incidents.len(), 1);
    let incident = &pass.incidents[0].incident;
    assert_eq!(
        (incident.target.kind.as_str(), incident.target.name.as_str()),
        ("Pod", "app-1"),
        "a bare pod is its own target"
    );
    let fired = &incident.findings;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].pod.as_deref(), Some("app-1"));
    assert_eq!(
        fired[0].detail,
        format!("Prometheus query {QUERY:?} is 0.75 for pod app-1 (threshold 0.5)")
    );
    assert!(pass.policies[0].errors.is_empty());
}

#[tokio::test]
async fn a_server_error_is_one_clear_error_and_the_trigger_does_not_fire() {
    let stub = serve(|_| Reply::Json {
        status: 400,
        body: r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:6: parse error:\n unexpected character"}"#.into(),
    })
    .await;
    let policies = [policy()];
    let results = client(stub.endpoint())
        .query_all(queries_of(&policies))
        .await;
    let error = results[QUERY].as_ref().unwrap_err();
    assert_eq!(
        *error,
        format!(
            "prometheus query {QUERY:?}: server answered HTTP 400: bad_data: invalid parameter \"query\": 1:6: parse error: unexpected character"
        )
    );

    let snapshot = snapshot();
    let objects = ClusterObjects {
        queries: Some(&results),
        ..snapshot.objects()
    };
    let pass = evaluation::pass(&objects, &policies, &mut TriggerMemory::new(), [], now()).unwrap();
    assert!(pass.incidents.is_empty());
    assert_eq!(pass.policies[0].errors, std::slice::from_ref(error));
}

#[tokio::test]
async fn unusable_replies_are_errors_that_say_why() {
    let cases = [
        (
            Reply::Json { status: 503, body: "upstream unavailable".into() },
            "server answered HTTP 503",
        ),
        (
            Reply::Json {
                status: 200,
                body: r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.into(),
            },
            "expected a vector result, got matrix",
        ),
        (
            Reply::Json {
                status: 200,
                body: r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"namespace":"a","pod":"b"},"value":[1,"lots"]}]}}"#.into(),
            },
            "sample value \"lots\" is not a number",
        ),
        (
            Reply::Slow { delay: Duration::from_secs(5), body: "{}".into() },
            "request to",
        ),
    ];
    for (reply, expected) in cases {
        let stub = serve(move |_| reply.clone()).await;
        let error = client(stub.endpoint())
            .query("up")
            .await
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("prometheus query \"up\": "), "{error}");
        assert!(error.contains(expected), "{error} lacks {expected:?}");
        assert!(!error.contains('\n'), "{error}");
    }
}

#[test]
fn without_results_a_prometheus_trigger_reports_why_and_does_not_fire() {
    let policies = [policy()];
    let snapshot = snapshot();
    let empty = QueryResults::new();
    for queries in [None, Some(&empty)] {
        let objects = ClusterObjects {
            queries,
            ..snapshot.objects()
        };
        let pass =
            evaluation::pass(&objects, &policies, &mut TriggerMemory::new(), [], now()).unwrap();
        assert!(pass.incidents.is_empty());
        assert_eq!(
            pass.policies[0].errors,
            [format!(
                "prometheus query {QUERY:?} has no result (is prometheus.url configured?)"
            )]
        );
    }
}

#[test]
fn the_prometheus_section_is_read_and_checked() {
    let config =
        Config::parse("prometheus: {url: http://prometheus.monitoring:9090, timeout: 3s}").unwrap();
    assert_eq!(
        config.prometheus,
        Some(PrometheusConfig {
            url: "http://prometheus.monitoring:9090".into(),
            timeout: Duration::from_secs(3),
        })
    );
    assert_eq!(
        Config::parse("prometheus: {url: http://p:9090}")
            .unwrap()
            .prometheus
            .unwrap()
            .timeout,
        Duration::from_secs(10)
    );
    assert_eq!(
        Config::parse("prometheus: {url: p:9090}").unwrap_err(),
        "prometheus.url must be an http:// or https:// URL, got \"p:9090\""
    );
    let unknown = Config::parse("prometheus: {url: http://p:9090, token: x}").unwrap_err();
    assert!(
        unknown.starts_with("prometheus.token: unknown field `token`"),
        "{unknown}"
    );
}

#[test]
fn a_prometheus_trigger_needs_a_query_and_only_it_takes_one() {
    let validate = |metric: &str| {
        let policy: HealingPolicy = serde_yaml_ng::from_str(&format!(
            "apiVersion: kubeskippy.io/v1alpha1\nkind: HealingPolicy\nmetadata: {{name: p}}\nspec:\n  triggers:\n  - name: t\n    metric: {metric}\n"
        ))
        .unwrap();
        policy.validate()
    };
    assert_eq!(
        validate("{name: prometheus, threshold: 1}"),
        Err("spec.triggers[0].metric.query is required for the prometheus metric".into())
    );
    assert_eq!(
        validate("{name: restartCount, threshold: 1, query: up}"),
        Err("spec.triggers[0].metric.query applies to the prometheus metric only".into())
    );
    assert_eq!(
        validate("{name: prometheus, threshold: 1, query: up}"),
        Ok(())
    );
}
