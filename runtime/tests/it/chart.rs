//! The Helm chart agrees with the binary: its CRDs are what `kubeskippy crds`
//! prints, the config its values render is one the daemon accepts, and its
//! Grafana dashboard queries only metrics the daemon exports.
//! (scripts/check-chart lints and renders the chart itself.)

use std::path::Path;

fn chart() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubeskippy")
}

#[test]
fn the_charts_crds_are_the_binarys() {
    let shipped = std::fs::read_to_string(chart().join("crds/kubeskippy.io.yaml")).unwrap();
    assert!(
        shipped == kubeskippy::core::crd::crds_yaml(),
        "deploy/kubeskippy/crds/kubeskippy.io.yaml is stale: regenerate it with \
         `cargo run -q -- crds > deploy/kubeskippy/crds/kubeskippy.io.yaml`"
    );
}

#[test]
fn the_default_values_render_a_config_the_daemon_accepts() {
    let values: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let config = serde_yaml_ng::to_string(&values["config"]).unwrap();
    let parsed = kubeskippy::core::config::Config::parse(&config)
        .unwrap_or_else(|error| panic!("values.yaml config: {error}"));
    assert_eq!(parsed.ai.model, "llama2:7b");
    assert_eq!(parsed.ai.min_confidence, 0.7);
}

#[test]
fn the_example_policy_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/shop-healing.yaml");
    let policy: kubeskippy::core::crd::policy::HealingPolicy =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(policy.validate(), Ok(()));
    assert_eq!(policy.spec.triggers.len(), 7);

    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/cluster-latency.yaml");
    let cluster: kubeskippy::core::crd::policy::ClusterHealingPolicy =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cluster = kubeskippy::core::crd::policy::HealingPolicy::from(cluster);
    assert_eq!(cluster.validate(), Ok(()));
    // The same trigger in a namespace's own policy is refused.
    let mut namespaced = cluster.clone();
    namespaced.metadata.namespace = Some("shop".into());
    namespaced.spec.selector.namespaces.clear();
    assert!(
        namespaced
            .validate()
            .unwrap_err()
            .contains("prometheus triggers belong in a ClusterHealingPolicy")
    );
}

/// PromQL words that are not metric names: aggregations (which may be
/// followed by a grouping clause rather than a parenthesis), binary
/// operators and modifiers.
const PROMQL_KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
];
/// Clauses whose parenthesised list names labels, not metrics.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression reads: every identifier outside
/// strings, label matchers, ranges and label lists that is not a function,
/// a keyword, a number or a Grafana variable.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_to = |mut i: usize, close: char| {
        while i < chars.len() && chars[i] != close {
            if chars[i] == '"' || chars[i] == '\'' {
                let quote = chars[i];
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        i + 1
    };
    let next_non_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        (i, chars.get(i).copied())
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_to(i + 1, c),
            '{' => i = skip_to(i + 1, '}'),
            '[' => i = skip_to(i + 1, ']'),
            '$' | '0'..='9' | '.' => {
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_.".contains(chars[i]))
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i]))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let (after, next) = next_non_space(i);
                if LABEL_LISTS.contains(&word.as_str()) {
                    if next == Some('(') {
                        i = skip_to(after + 1, ')');
                    }
                } else if next != Some('(') && !PROMQL_KEYWORDS.contains(&word.as_str()) {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every query in a Grafana dashboard: panel targets (rows' panels too) and
/// template variables (`label_values(SELECTOR, LABEL)` reads SELECTOR).
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    fn panels(list: &serde_json::Value, out: &mut Vec<String>) {
        for panel in list.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push(
                    target["expr"]
                        .as_str()
                        .expect("a target with an expr")
                        .to_string(),
                );
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .expect("a query variable with a query");
        let selector = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|args| args.rsplit_once(','))
            .map(|(selector, _label)| selector);
        out.push(selector.unwrap_or(query).to_string());
    }
    out
}

#[test]
fn metric_names_are_read_from_promql_as_prometheus_reads_them() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le, model) (rate(kubeskippy_model_request_duration_seconds_bucket{namespace=~"$namespace",a="x{y}"}[$__rate_interval])))"#
        ),
        ["kubeskippy_model_request_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names(
            "sum(rate(a_total[5m] offset 1h)) / on (pod) group_left (version) b_info > bool 0.5 or c"
        ),
        ["a_total", "b_info", "c"]
    );
    let exported = kubeskippy::telemetry::metrics::exported_sample_names();
    // A histogram is read through its series; a counter only with _total.
    for wrong in [
        "kubeskippy_evaluation_duration_seconds",
        "kubeskippy_incidents",
        "kubeskippy_leader_total",
        "kubeskippy_incidents_total_bucket",
    ] {
        assert!(!exported.contains(wrong), "{wrong}");
    }
}

#[test]
fn the_dashboard_queries_only_metrics_the_daemon_exports() {
    use kubeskippy::telemetry::metrics::{DECLARED, exported_sample_names};
    let path = chart().join("dashboards/kubeskippy.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let exported = exported_sample_names();
    let queries = dashboard_queries(&dashboard);
    assert!(
        queries.len() >= 20,
        "{} queries in {}",
        queries.len(),
        path.display()
    );
    let mut charted = std::collections::BTreeSet::new();
    let mut unknown = Vec::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "the query {query:?} reads no metric");
        for name in names {
            if exported.contains(&name) {
                charted.insert(name);
            } else {
                unknown.push(format!("{name} (in {query})"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "{} queries metrics the daemon does not export: {unknown:#?}",
        path.display()
    );
    // And every family the daemon exports has a panel.
    let missing: Vec<&str> = DECLARED
        .iter()
        .filter(|(family, histogram)| {
            let series: Vec<String> = if *histogram {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|suffix| format!("{family}{suffix}"))
                    .collect()
            } else {
                vec![family.to_string()]
            };
            !series.iter().any(|name| charted.contains(name))
        })
        .map(|(family, _)| *family)
        .collect();
    assert!(missing.is_empty(), "no panel reads {missing:?}");
}
