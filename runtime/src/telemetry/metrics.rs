//! The daemon's Prometheus metrics, served at `/metrics` in the Prometheus
//! text format (0.0.4).
//!
//! One registry per process, reached through [`metrics`]: the stages that
//! record (plugin calls, model calls, review, the lifecycle) run in every
//! layer, and threading a handle through each of them would make every
//! signature name a concern none of them acts on.
//!
//! Labels are low-cardinality by construction: no pod or action names. The
//! values that come from objects people write (policy and trigger names) are
//! reduced to a safe alphabet and capped at [`MAX_LABEL_VALUES`] distinct
//! values per label; later ones are counted under `other`, so a tenant who
//! creates ten thousand policies cannot make the daemon's own metrics
//! unscrapeable. Policies are also capped per namespace
//! ([`MAX_POLICY_VALUES_PER_NAMESPACE`], later ones as `NAMESPACE/other`), so
//! one tenant's policies cannot take the others' places under the cap.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` `/metrics` answers with.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Distinct values one capped label keeps before it says `other`.
pub const MAX_LABEL_VALUES: usize = 200;
/// Distinct policies one namespace keeps in the policy label.
pub const MAX_POLICY_VALUES_PER_NAMESPACE: usize = 20;
/// Longer label values are cut: a label is a key, not a message.
const MAX_LABEL_LENGTH: usize = 63;
const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IncidentLabels {
    trigger: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    provider: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelErrorLabels {
    provider: String,
    model: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    kind: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCallLabels {
    plugin: String,
    kind: String,
    version: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    source: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionPhaseLabels {
    action: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GateLabels {
    gate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// How a plugin call ended, as `kubeskippy_plugin_calls_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    /// The plugin answered with an error of its own (a refusal).
    Error,
    Trap,
    Timeout,
    Memory,
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Trap => "trap",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Memory => "memory",
        }
    }
}

type Seconds = Family<ModelLabels, Histogram, fn() -> Histogram>;
type PluginSeconds = Family<PluginLabels, Histogram, fn() -> Histogram>;

/// Buckets from 1 ms to about 65 s: plugin calls take microseconds to
/// milliseconds, a small model seconds, a large one a minute.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric the daemon exports. Methods record; the fields stay private
/// so a label can only be set through the cleaning and capping below.
pub struct Metrics {
    registry: Registry,
    incidents: Family<IncidentLabels, Counter>,
    evaluation_seconds: Histogram,
    model_requests: Family<ModelLabels, Counter>,
    model_request_seconds: Seconds,
    model_prompt_tokens: Family<ModelLabels, Counter>,
    model_reply_tokens: Family<ModelLabels, Counter>,
    model_errors: Family<ModelErrorLabels, Counter>,
    model_cache_hits: Family<ModelLabels, Counter>,
    model_circuit_open: Family<ModelLabels, Gauge>,
    plugin_calls: Family<PluginCallLabels, Counter>,
    plugin_call_seconds: PluginSeconds,
    plugin_reloads: Family<ReloadLabels, Counter>,
    recommendations: Family<DecisionLabels, Counter>,
    recommendation_rejections: Family<ReasonLabels, Counter>,
    healing_actions: Family<ActionPhaseLabels, Counter>,
    verifications: Family<ResultLabels, Counter>,
    rollbacks: Family<ActionLabels, Counter>,
    gate_holds: Family<GateLabels, Counter>,
    leader: Gauge,
    cache_synced: Family<KindLabels, Gauge>,
    watch_restarts: Family<KindLabels, Counter>,
    capped: Mutex<CappedLabels>,
}

#[derive(Default)]
struct CappedLabels {
    policies: HashSet<String>,
    policies_per_namespace: HashMap<String, usize>,
    triggers: HashSet<String>,
    plugins: HashSet<String>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kubeskippy");
        let metrics = Metrics {
            incidents: Family::default(),
            evaluation_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            model_requests: Family::default(),
            model_request_seconds: Family::new_with_constructor(latency_histogram),
            model_prompt_tokens: Family::default(),
            model_reply_tokens: Family::default(),
            model_errors: Family::default(),
            model_cache_hits: Family::default(),
            model_circuit_open: Family::default(),
            plugin_calls: Family::default(),
            plugin_call_seconds: Family::new_with_constructor(latency_histogram),
            plugin_reloads: Family::default(),
            recommendations: Family::default(),
            recommendation_rejections: Family::default(),
            healing_actions: Family::default(),
            verifications: Family::default(),
            rollbacks: Family::default(),
            gate_holds: Family::default(),
            leader: Gauge::default(),
            cache_synced: Family::default(),
            watch_restarts: Family::default(),
            capped: Mutex::new(CappedLabels::default()),
            registry: Registry::default(),
        };
        let m = &metrics;
        registry.register(
            "incidents",
            "Incidents raised, by the kind of their first finding and the policy that governs them",
            m.incidents.clone(),
        );
        registry.register_with_unit(
            "evaluation_duration",
            "Wall time of one evaluation pass over the cluster cache, analysis included",
            Unit::Seconds,
            m.evaluation_seconds.clone(),
        );
        registry.register(
            "model_requests",
            "Calls of a model, answered or failed, retries included (a cached reply is not one)",
            m.model_requests.clone(),
        );
        registry.register_with_unit(
            "model_request_duration",
            "Wall time of a model call, answered or failed, retries included",
            Unit::Seconds,
            m.model_request_seconds.clone(),
        );
        registry.register(
            "model_prompt_tokens",
            "Prompt tokens the model server reported",
            m.model_prompt_tokens.clone(),
        );
        registry.register(
            "model_reply_tokens",
            "Reply tokens the model server reported",
            m.model_reply_tokens.clone(),
        );
        registry.register(
            "model_errors",
            "Model requests that failed, by reason (unreachable, timeout, model_missing, http, bad_reply, circuit_open, config)",
            m.model_errors.clone(),
        );
        registry.register(
            "model_cache_hits",
            "Incidents answered from the reply cache instead of a model request",
            m.model_cache_hits.clone(),
        );
        registry.register(
            "model_circuit_open",
            "1 while the circuit breaker in front of the model refuses calls",
            m.model_circuit_open.clone(),
        );
        registry.register(
            "plugin_calls",
            "Plugin calls, by outcome: ok, error (the plugin refused), trap, timeout, memory (its memory cap was hit)",
            m.plugin_calls.clone(),
        );
        registry.register_with_unit(
            "plugin_call_duration",
            "Wall time of a plugin call, instantiation included",
            Unit::Seconds,
            m.plugin_call_seconds.clone(),
        );
        registry.register(
            "plugin_reloads",
            "Plugins offered at run time, accepted or rejected: source configmap (one plugin version) or config (a reload of the config file and the plugin directory)",
            m.plugin_reloads.clone(),
        );
        registry.register(
            "recommendations",
            "Recommendations reviewed, by decision: allowed or rejected",
            m.recommendations.clone(),
        );
        registry.register(
            "recommendation_rejections",
            "Rejected recommendations, by the first reason: safety_floor, validator, validator_error, duplicate, min_confidence, max_recommendations",
            m.recommendation_rejections.clone(),
        );
        registry.register(
            "healing_actions",
            "HealingActions that reached a final phase, by action type and phase",
            m.healing_actions.clone(),
        );
        registry.register(
            "verifications",
            "Verifications of executed actions, by result: passed or failed",
            m.verifications.clone(),
        );
        registry.register(
            "rollbacks",
            "Changes rolled back after a failure, by action type",
            m.rollbacks.clone(),
        );
        registry.register(
            "gate_holds",
            "Gate holds written to an action (again when the hold's reason changes): breaker, policy_rate, namespace_budget, cluster_budget, max_concurrent, min_healthy, approval",
            m.gate_holds.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and acts",
            m.leader.clone(),
        );
        registry.register(
            "cache_synced",
            "1 once the watch cache of a kind has synced",
            m.cache_synced.clone(),
        );
        registry.register(
            "watch_restarts",
            "Watches of a kind that failed and were started again",
            m.watch_restarts.clone(),
        );
        registry.register(
            "build",
            "The daemon's version",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The whole registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    pub fn incident(&self, trigger: &str, policy: &str) {
        let labels = {
            let mut capped = self.capped();
            let capped = &mut *capped;
            IncidentLabels {
                trigger: capped_value(&mut capped.triggers, trigger),
                policy: capped_policy(capped, policy),
            }
        };
        self.incidents.get_or_create(&labels).inc();
    }

    pub fn evaluation(&self, took: Duration) {
        self.evaluation_seconds.observe(took.as_secs_f64());
    }

    pub fn model_request(
        &self,
        provider: &str,
        model: &str,
        took: Duration,
        prompt_tokens: Option<u64>,
        reply_tokens: Option<u64>,
    ) {
        let labels = model_labels(provider, model);
        self.model_requests.get_or_create(&labels).inc();
        self.model_request_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(tokens) = prompt_tokens {
            self.model_prompt_tokens
                .get_or_create(&labels)
                .inc_by(tokens);
        }
        if let Some(tokens) = reply_tokens {
            self.model_reply_tokens
                .get_or_create(&labels)
                .inc_by(tokens);
        }
    }

    pub fn model_error(&self, provider: &str, model: &str, reason: &'static str) {
        let ModelLabels { provider, model } = model_labels(provider, model);
        self.model_errors
            .get_or_create(&ModelErrorLabels {
                provider,
                model,
                reason: reason.into(),
            })
            .inc();
    }

    pub fn model_cache_hit(&self, provider: &str, model: &str) {
        self.model_cache_hits
            .get_or_create(&model_labels(provider, model))
            .inc();
    }

    pub fn model_circuit(&self, provider: &str, model: &str, open: bool) {
        self.model_circuit_open
            .get_or_create(&model_labels(provider, model))
            .set(i64::from(open));
    }

    pub fn plugin_call(
        &self,
        plugin: &str,
        kind: &str,
        version: &str,
        outcome: CallOutcome,
        took: Duration,
    ) {
        let plugin = capped_value(&mut self.capped().plugins, plugin);
        let labels = PluginLabels {
            plugin,
            kind: kind.to_string(),
            version: label_value(version),
        };
        self.plugin_call_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        let PluginLabels {
            plugin,
            kind,
            version,
        } = labels;
        self.plugin_calls
            .get_or_create(&PluginCallLabels {
                plugin,
                kind,
                version,
                outcome: outcome.as_str().into(),
            })
            .inc();
    }

    /// `source`: `configmap` or `config`.
    pub fn plugin_reload(&self, source: &'static str, accepted: bool) {
        self.plugin_reloads
            .get_or_create(&ReloadLabels {
                source: source.into(),
                result: if accepted { "accepted" } else { "rejected" }.into(),
            })
            .inc();
    }

    /// `rejection`: the first reason, when it was rejected.
    pub fn recommendation(&self, rejection: Option<&'static str>) {
        let decision = if rejection.is_some() {
            "rejected"
        } else {
            "allowed"
        };
        self.recommendations
            .get_or_create(&DecisionLabels {
                decision: decision.into(),
            })
            .inc();
        if let Some(reason) = rejection {
            self.recommendation_rejections
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
        }
    }

    pub fn healing_action_finished(&self, action: &str, phase: &str) {
        self.healing_actions
            .get_or_create(&ActionPhaseLabels {
                action: label_value(action),
                phase: label_value(phase),
            })
            .inc();
    }

    pub fn verification(&self, passed: bool) {
        self.verifications
            .get_or_create(&ResultLabels {
                result: if passed { "passed" } else { "failed" }.into(),
            })
            .inc();
    }

    pub fn rollback(&self, action: &str) {
        self.rollbacks
            .get_or_create(&ActionLabels {
                action: label_value(action),
            })
            .inc();
    }

    pub fn gate_held(&self, gate: &'static str) {
        self.gate_holds
            .get_or_create(&GateLabels { gate: gate.into() })
            .inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn set_cache_synced(&self, kind: &str, synced: bool) {
        self.cache_synced
            .get_or_create(&KindLabels {
                kind: label_value(kind),
            })
            .set(i64::from(synced));
    }

    pub fn watch_restarted(&self, kind: &str) {
        self.watch_restarts
            .get_or_create(&KindLabels {
                kind: label_value(kind),
            })
            .inc();
    }

    fn capped(&self) -> std::sync::MutexGuard<'_, CappedLabels> {
        self.capped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn model_labels(provider: &str, model: &str) -> ModelLabels {
    ModelLabels {
        provider: label_value(provider),
        model: label_value(model),
    }
}

/// `value` in the alphabet of Kubernetes names and model tags, cut short.
fn label_value(value: &str) -> String {
    let mut cleaned: String = value
        .chars()
        .take(MAX_LABEL_LENGTH)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        cleaned.push('_');
    }
    cleaned
}

/// `value` cleaned, or `other` once `seen` holds [`MAX_LABEL_VALUES`] others.
fn capped_value(seen: &mut HashSet<String>, value: &str) -> String {
    let cleaned = label_value(value);
    if seen.contains(&cleaned) {
        return cleaned;
    }
    if seen.len() >= MAX_LABEL_VALUES {
        return OTHER.into();
    }
    seen.insert(cleaned.clone());
    cleaned
}

/// `policy` (`NAMESPACE/NAME`) cleaned, `NAMESPACE/other` once its namespace
/// has [`MAX_POLICY_VALUES_PER_NAMESPACE`] others, or `other` under the
/// global cap.
fn capped_policy(capped: &mut CappedLabels, policy: &str) -> String {
    let cleaned = label_value(policy);
    if capped.policies.contains(&cleaned) {
        return cleaned;
    }
    let namespace = policy
        .split_once('/')
        .map(|(namespace, _)| label_value(namespace));
    if let Some(namespace) = namespace {
        let count = capped
            .policies_per_namespace
            .entry(namespace.clone())
            .or_default();
        if *count >= MAX_POLICY_VALUES_PER_NAMESPACE {
            return capped_value(&mut capped.policies, &format!("{namespace}/{OTHER}"));
        }
        let kept = capped_value(&mut capped.policies, policy);
        if kept != OTHER {
            *count += 1;
        }
        return kept;
    }
    capped_value(&mut capped.policies, policy)
}

/// Every metric the registry declares, as its `# TYPE` line names it, and
/// whether it is a histogram. A family shows in a scrape only once it has a
/// sample; a test records one in each and checks this list against the scrape.
pub const DECLARED: &[(&str, bool)] = &[
    ("kubeskippy_incidents_total", false),
    ("kubeskippy_evaluation_duration_seconds", true),
    ("kubeskippy_model_requests_total", false),
    ("kubeskippy_model_request_duration_seconds", true),
    ("kubeskippy_model_prompt_tokens_total", false),
    ("kubeskippy_model_reply_tokens_total", false),
    ("kubeskippy_model_errors_total", false),
    ("kubeskippy_model_cache_hits_total", false),
    ("kubeskippy_model_circuit_open", false),
    ("kubeskippy_plugin_calls_total", false),
    ("kubeskippy_plugin_call_duration_seconds", true),
    ("kubeskippy_plugin_reloads_total", false),
    ("kubeskippy_recommendations_total", false),
    ("kubeskippy_recommendation_rejections_total", false),
    ("kubeskippy_healing_actions_total", false),
    ("kubeskippy_verifications_total", false),
    ("kubeskippy_rollbacks_total", false),
    ("kubeskippy_gate_holds_total", false),
    ("kubeskippy_leader", false),
    ("kubeskippy_cache_synced", false),
    ("kubeskippy_watch_restarts_total", false),
    ("kubeskippy_build_info", false),
];

/// The sample names a scrape can show: a histogram's `_bucket`, `_sum` and
/// `_count`, the others as declared. What a dashboard or an alert may query.
pub fn exported_sample_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (name, histogram) in DECLARED {
        if *histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_objects_are_cleaned_and_capped() {
        assert_eq!(label_value("shop/web-1"), "shop/web-1");
        assert_eq!(label_value("a\"b\nc} d"), "a_b_c__d");
        assert_eq!(label_value(""), "_");
        assert_eq!(label_value(&"x".repeat(500)).len(), MAX_LABEL_LENGTH);
        let mut seen = HashSet::new();
        for n in 0..MAX_LABEL_VALUES {
            assert_eq!(capped_value(&mut seen, &format!("p{n}")), format!("p{n}"));
        }
        assert_eq!(capped_value(&mut seen, "one-too-many"), OTHER);
        assert_eq!(capped_value(&mut seen, "p7"), "p7");
    }

    #[test]
    fn one_namespace_cannot_take_the_other_namespaces_policy_labels() {
        let mut capped = CappedLabels::default();
        for n in 0..MAX_POLICY_VALUES_PER_NAMESPACE {
            assert_eq!(
                capped_policy(&mut capped, &format!("a/p{n}")),
                format!("a/p{n}")
            );
        }
        for n in 0..1000 {
            assert_eq!(capped_policy(&mut capped, &format!("a/spam{n}")), "a/other");
        }
        assert_eq!(capped_policy(&mut capped, "a/p3"), "a/p3");
        assert_eq!(capped_policy(&mut capped, "b/web"), "b/web");
    }

    #[test]
    fn the_declared_list_is_what_the_registry_exports() {
        let m = metrics();
        m.incident("crash-loop", "declared-test");
        m.evaluation(Duration::from_millis(5));
        m.model_request("ollama", "m", Duration::from_secs(1), Some(1), Some(1));
        m.model_error("ollama", "m", "timeout");
        m.model_cache_hit("ollama", "m");
        m.model_circuit("ollama", "m", false);
        m.plugin_call("p", "prompt", "v", CallOutcome::Ok, Duration::ZERO);
        m.plugin_reload("config", true);
        m.recommendation(Some("duplicate"));
        m.healing_action_finished("Restart", "Succeeded");
        m.verification(true);
        m.rollback("Scale");
        m.gate_held("breaker");
        m.set_leader(false);
        m.set_cache_synced("Pod", true);
        m.watch_restarted("Pod");
        let typed: BTreeSet<(String, bool)> = m
            .encode()
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .map(|declared| {
                let (name, kind) = declared.split_once(' ').expect("name and type");
                (name.to_string(), kind == "histogram")
            })
            .collect();
        let declared: BTreeSet<(String, bool)> = DECLARED
            .iter()
            .map(|(name, histogram)| (name.to_string(), *histogram))
            .collect();
        assert_eq!(typed, declared);
        assert!(exported_sample_names().contains("kubeskippy_plugin_call_duration_seconds_bucket"));
    }

    #[test]
    fn a_recorded_call_shows_in_the_scrape() {
        let m = metrics();
        m.plugin_call(
            "scrape-test-plugin",
            "validator",
            "sha256-abc",
            CallOutcome::Trap,
            Duration::from_millis(3),
        );
        let text = m.encode();
        assert!(
            text.contains(
                "kubeskippy_plugin_calls_total{plugin=\"scrape-test-plugin\",kind=\"validator\",version=\"sha256-abc\",outcome=\"trap\"} 1"
            ),
            "{text}"
        );
    }
}
