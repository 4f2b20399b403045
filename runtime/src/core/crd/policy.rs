//! HealingPolicy and ClusterHealingPolicy (`kubeskippy.io/v1alpha1`): which
//! workloads to watch, what counts as trouble (triggers), and which rule-based
//! actions answer which trigger. When a snapshot holds no policy,
//! [`HealingPolicy::builtin_default`] applies.
//!
//! Namespaces are boundaries. A HealingPolicy governs workloads in its own
//! namespace only, so whoever may write policies in one namespace decides
//! nothing about another. Governance across namespaces takes a
//! ClusterHealingPolicy, which only someone with cluster-wide rights can
//! create. Both share one spec; inside the daemon a cluster policy is a
//! [`HealingPolicy`] without a namespace.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ActionKind, PolicyDuration};

#[derive(CustomResource, Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[kube(
    group = "kubeskippy.io",
    version = "v1alpha1",
    kind = "HealingPolicy",
    namespaced,
    status = "HealingPolicyStatus",
    shortname = "hp",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Last evaluation","type":"date","jsonPath":".status.lastEvaluation"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealingPolicySpec {
    #[serde(default)]
    pub selector: PolicySelector,
    #[schemars(length(min = 1, max = 64))]
    pub triggers: Vec<Trigger>,
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub actions: Vec<PolicyAction>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub ai: PolicyAi,
    #[serde(default)]
    pub safety: SafetyRules,
}

/// The cluster-scoped twin of [`HealingPolicy`]: the same spec, governing
/// every namespace its selector covers.
#[derive(CustomResource, Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[kube(
    group = "kubeskippy.io",
    version = "v1alpha1",
    kind = "ClusterHealingPolicy",
    status = "HealingPolicyStatus",
    shortname = "chp",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Last evaluation","type":"date","jsonPath":".status.lastEvaluation"}"#
)]
pub struct ClusterHealingPolicySpec {
    #[serde(flatten)]
    pub policy: HealingPolicySpec,
}

impl From<ClusterHealingPolicy> for HealingPolicy {
    fn from(cluster: ClusterHealingPolicy) -> HealingPolicy {
        let mut metadata = cluster.metadata;
        metadata.namespace = None;
        HealingPolicy {
            metadata,
            spec: cluster.spec.policy,
            status: cluster.status,
        }
    }
}

/// What the controller last saw; written by KubeSkippy, not by users.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealingPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluation: Option<String>,
    /// `trigger/Kind/name` of every trigger firing at the last evaluation.
    #[serde(default)]
    pub active_triggers: Vec<String>,
    #[serde(default)]
    pub actions_taken: u64,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Per-policy model settings; unset fields fall back to the `ai:` config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyAi {
    #[serde(default = "crate::core::yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 20))]
    pub max_recommendations: Option<u32>,
    /// Names of plugins configured in the host's plugin list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_plugin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parser_plugin: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validator_plugins: Vec<String>,
}

impl Default for PolicyAi {
    fn default() -> Self {
        PolicyAi {
            enabled: true,
            min_confidence: None,
            max_recommendations: None,
            prompt_plugin: None,
            parser_plugin: None,
            validator_plugins: Vec::new(),
        }
    }
}

/// Limits on what the policy may do, counted from HealingAction objects so they
/// hold across restarts and replicas.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SafetyRules {
    #[serde(default = "default_actions_per_hour")]
    #[schemars(range(max = 1000))]
    pub max_actions_per_hour: u32,
    /// Quiet time per (trigger, target) after an action, e.g. `10m`.
    #[serde(default = "default_cooldown")]
    pub cooldown: PolicyDuration,
    /// HealingActions of this policy in progress at once.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub max_concurrent: u32,
    /// Never act when it would leave fewer than this percentage of a
    /// workload's desired replicas available.
    #[serde(default = "default_min_healthy")]
    #[schemars(range(max = 100))]
    pub min_healthy_percent: u32,
    #[serde(default)]
    pub require_approval: bool,
    /// Objects this policy must never touch, beyond the host's own floor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected_resources: Vec<ProtectedResource>,
    /// How long the target is watched after a change before it counts as
    /// healed, e.g. `2m`.
    #[serde(default = "default_verification_window")]
    pub verification_window: PolicyDuration,
    /// This many failed actions in a row pause the policy.
    #[serde(default = "default_breaker_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub breaker_threshold: u32,
    /// How long a paused policy stays paused after its last failure, unless
    /// `kubeskippy resume` lifts the pause sooner.
    #[serde(default = "default_breaker_cool_off")]
    pub breaker_cool_off: PolicyDuration,
}

impl Default for SafetyRules {
    fn default() -> Self {
        SafetyRules {
            max_actions_per_hour: default_actions_per_hour(),
            cooldown: default_cooldown(),
            max_concurrent: 1,
            min_healthy_percent: default_min_healthy(),
            require_approval: false,
            protected_resources: Vec::new(),
            verification_window: default_verification_window(),
            breaker_threshold: default_breaker_threshold(),
            breaker_cool_off: default_breaker_cool_off(),
        }
    }
}

fn default_actions_per_hour() -> u32 {
    10
}
fn default_cooldown() -> PolicyDuration {
    PolicyDuration::parse("10m")
}
fn default_min_healthy() -> u32 {
    50
}
fn default_verification_window() -> PolicyDuration {
    PolicyDuration::parse("2m")
}
fn default_breaker_threshold() -> u32 {
    3
}
fn default_breaker_cool_off() -> PolicyDuration {
    PolicyDuration::parse("30m")
}

impl SafetyRules {
    /// The policy's durations. Validation checked them, and nothing acts
    /// under a policy that failed it; such a policy reads the defaults here.
    pub fn cooldown(&self) -> std::time::Duration {
        self.cooldown
            .get()
            .or_else(|| default_cooldown().get())
            .unwrap_or_default()
    }

    pub fn verification_window(&self) -> std::time::Duration {
        self.verification_window
            .get()
            .or_else(|| default_verification_window().get())
            .unwrap_or_default()
    }

    pub fn breaker_cool_off(&self) -> std::time::Duration {
        self.breaker_cool_off
            .get()
            .or_else(|| default_breaker_cool_off().get())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtectedResource {
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySelector {
    /// Namespaces the policy covers; empty means every namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Matched against the workload's labels (the pod's, for a bare pod).
    #[serde(default)]
    pub label_selector: Option<LabelSelector>,
    /// Workload kinds the policy covers; empty means all.
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub exclude_names: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Monitor,
    #[default]
    Dryrun,
    Manual,
    Automatic,
}

/// A trigger names exactly one of `metric`, `event` or `condition`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<MetricTrigger>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventTrigger>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionTrigger>,
}

/// A metric at or above a threshold: per pod, or per workload for
/// `errorEventRate`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricTrigger {
    pub name: Metric,
    /// A number: a percentage for `*PercentOfLimit`, restarts for
    /// `restartCount`, Warning events per minute for `errorEventRate`, the
    /// query's value for `prometheus`. `cpuMillicores` and `memoryBytes` also
    /// take a quantity such as `500m` or `1.5Gi`.
    #[schemars(schema_with = "number_or_quantity")]
    pub threshold: Threshold,
    /// `errorEventRate` only: the window the rate is measured over (default
    /// 5m), ending at the evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<PolicyDuration>,
    /// `prometheus` only: an instant PromQL query; each sample of its vector
    /// result is matched to a pod by its `namespace` and `pod` labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// How long the metric must stay at or above the threshold, on every
    /// evaluation, before the trigger fires. `kubeskippy analyze` sees one
    /// instant and cannot observe a duration: there the trigger fires on what
    /// the snapshot shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<PolicyDuration>,
}

/// A threshold as written: a number, or a Kubernetes quantity for the
/// absolute usage metrics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Threshold {
    Number(f64),
    Quantity(String),
}

/// A number or a string: a structural schema has no type for that pair, so
/// the API server keeps the value as sent and [`HealingPolicy::validate`]
/// checks it.
fn number_or_quantity(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
        "description": "A number, or for cpuMillicores and memoryBytes a quantity such as 500m or 1.5Gi.",
    })
}

/// The window `errorEventRate` measures over when none is given.
pub const DEFAULT_RATE_WINDOW: &str = "5m";

impl MetricTrigger {
    /// The threshold in the metric's unit: millicores, bytes, a percentage, a
    /// count or a rate.
    pub fn threshold_value(&self) -> Result<f64, String> {
        let value = match &self.threshold {
            Threshold::Number(number) => *number,
            Threshold::Quantity(text) => match self.name {
                Metric::CpuMillicores => {
                    kubeskippy_plugin_sdk::quantity::cpu_millicores(text)? as f64
                }
                Metric::MemoryBytes => kubeskippy_plugin_sdk::quantity::memory_bytes(text)? as f64,
                _ => text
                    .trim()
                    .parse()
                    .map_err(|_| format!("{text:?} is not a number"))?,
            },
        };
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err("must be a number >= 0".into())
        }
    }

    /// The rate window of `errorEventRate`.
    pub fn rate_window(&self) -> Result<std::time::Duration, String> {
        match &self.window {
            Some(window) => window.checked(),
            None => crate::core::text::parse_duration(DEFAULT_RATE_WINDOW),
        }
    }
}

/// Compiled reason patterns are kept small: a policy is written by whoever
/// may write policies in a namespace, and each of its patterns is compiled on
/// every pass. Event reasons are short CamelCase words, so a pattern that
/// needs more than this (Unicode classes repeated many times) is refused.
const REASON_PATTERN_BYTES: usize = 16 * 1024;
const REASON_MAX_LENGTH: usize = 256;

/// An event trigger's `reason`, anchored, within the size limits.
pub fn reason_pattern(reason: &str) -> Result<regex::Regex, String> {
    if reason.len() > REASON_MAX_LENGTH {
        return Err(format!(
            "is {} characters long; at most {REASON_MAX_LENGTH}",
            reason.len()
        ));
    }
    regex::RegexBuilder::new(&format!("^(?:{reason})$"))
        .size_limit(REASON_PATTERN_BYTES)
        .dfa_size_limit(REASON_PATTERN_BYTES)
        .build()
        .map_err(|error| {
            format!(
                "is not a valid regex within {} KiB: {}",
                REASON_PATTERN_BYTES / 1024,
                error.to_string().lines().last().unwrap_or_default()
            )
        })
}

/// Events whose reason matches `reason` (a regex, anchored) with a summed count
/// of at least `minCount`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTrigger {
    #[schemars(length(min = 1, max = 256))]
    pub reason: String,
    #[serde(default = "warning", rename = "type")]
    pub event_type: String,
    #[serde(default = "one")]
    pub min_count: u32,
    /// Only events whose last occurrence (lastTimestamp, eventTime or
    /// series.lastObservedTime) falls within this window before the
    /// evaluation count. `kubeskippy analyze` has no clock of the cluster: there
    /// the window ends at the newest event in the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<PolicyDuration>,
}

/// A container or pod in one of these states: a waiting reason
/// (CrashLoopBackOff, ImagePullBackOff, CreateContainerConfigError, ...), a last
/// termination reason (OOMKilled, Error), or Unschedulable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionTrigger {
    pub states: Vec<String>,
    /// How long a pod must be seen in one of the states, on every evaluation,
    /// before the trigger fires. `kubeskippy analyze` sees one instant and
    /// cannot observe a duration: there the trigger fires on what the snapshot
    /// shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<PolicyDuration>,
}

/// The one condition a valid trigger has.
pub enum TriggerCondition<'t> {
    Metric(&'t MetricTrigger),
    Event(&'t EventTrigger),
    Condition(&'t ConditionTrigger),
}

impl Trigger {
    /// Valid triggers (see [`HealingPolicy::validate`]) have exactly one condition.
    pub fn condition(&self) -> Option<TriggerCondition<'_>> {
        match (&self.metric, &self.event, &self.condition) {
            (Some(metric), None, None) => Some(TriggerCondition::Metric(metric)),
            (None, Some(event), None) => Some(TriggerCondition::Event(event)),
            (None, None, Some(condition)) => Some(TriggerCondition::Condition(condition)),
            _ => None,
        }
    }

    /// How long the trigger's condition must hold before it fires.
    pub fn duration(&self) -> Option<&PolicyDuration> {
        match self.condition()? {
            TriggerCondition::Metric(metric) => metric.duration.as_ref(),
            TriggerCondition::Condition(condition) => condition.duration.as_ref(),
            TriggerCondition::Event(_) => None,
        }
    }
}

fn warning() -> String {
    "Warning".into()
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Metric {
    RestartCount,
    CpuPercentOfLimit,
    MemoryPercentOfLimit,
    /// The pod's CPU usage (all containers), in millicores.
    CpuMillicores,
    /// The pod's memory usage (all containers), in bytes.
    MemoryBytes,
    /// Warning events about the workload and its pods, per minute over `window`.
    ErrorEventRate,
    /// The value of `query` for the pod, from the configured Prometheus.
    Prometheus,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyAction {
    pub name: String,
    #[serde(rename = "type")]
    pub action_type: ActionKind,
    /// The triggers this action answers; empty means any.
    #[serde(default)]
    pub triggers: Vec<String>,
    /// The confidence the rule-based recommendation carries.
    #[serde(default = "rule_confidence")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence: f64,
    #[serde(default)]
    pub scale: Option<ScaleBounds>,
    #[serde(default)]
    pub patch: Option<ResourceRule>,
}

fn rule_confidence() -> f64 {
    0.8
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleBounds {
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub step: u32,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: u32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: u32,
}

/// How a rule raises a container's memory limit: by `memoryLimitFactor` over the
/// current limit, and at least `headroomOverUsage` over the peak usage seen,
/// never above `maxMemoryLimit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRule {
    #[serde(default = "two")]
    pub memory_limit_factor: f64,
    #[serde(default = "headroom")]
    pub headroom_over_usage: f64,
    pub max_memory_limit: String,
}

fn two() -> f64 {
    2.0
}

fn headroom() -> f64 {
    1.25
}

fn validate_metric(index: usize, metric: &MetricTrigger, cluster_wide: bool) -> Result<(), String> {
    let at = format!("spec.triggers[{index}].metric");
    metric
        .threshold_value()
        .map_err(|why| format!("{at}.threshold: {why}"))?;
    if metric.window.is_some() && metric.name != Metric::ErrorEventRate {
        return Err(format!("{at}.window applies to errorEventRate only"));
    }
    metric
        .rate_window()
        .map_err(|why| format!("{at}.window: {why}"))?;
    match (&metric.query, metric.name) {
        (_, Metric::Prometheus) if !cluster_wide => {
            return Err(format!(
                "{at}: prometheus triggers belong in a ClusterHealingPolicy: a query runs with the daemon's access to Prometheus, across every namespace"
            ));
        }
        (None, Metric::Prometheus) => {
            return Err(format!("{at}.query is required for the prometheus metric"));
        }
        (Some(query), Metric::Prometheus) if query.trim().is_empty() => {
            return Err(format!("{at}.query is empty"));
        }
        (Some(_), name) if name != Metric::Prometheus => {
            return Err(format!("{at}.query applies to the prometheus metric only"));
        }
        _ => {}
    }
    if let Some(duration) = &metric.duration {
        duration
            .checked()
            .map_err(|why| format!("{at}.duration: {why}"))?;
    }
    Ok(())
}

impl HealingPolicy {
    /// Checks what serde cannot: names unique and referenced, numbers in range,
    /// regexes that compile. The message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let spec = &self.spec;
        if let Some(own) = &self.metadata.namespace
            && let Some(other) = spec
                .selector
                .namespaces
                .iter()
                .find(|listed| *listed != own)
        {
            return Err(format!(
                "spec.selector.namespaces names {other:?}, but a HealingPolicy governs only its own namespace ({own}); use a ClusterHealingPolicy to cover others"
            ));
        }
        if spec.triggers.is_empty() {
            return Err("spec.triggers must name at least one trigger".into());
        }
        for (index, trigger) in spec.triggers.iter().enumerate() {
            if trigger.name.trim().is_empty() {
                return Err(format!("spec.triggers[{index}].name is empty"));
            }
            if spec.triggers[..index]
                .iter()
                .any(|other| other.name == trigger.name)
            {
                return Err(format!(
                    "spec.triggers[{index}].name {:?} is used twice",
                    trigger.name
                ));
            }
            let condition = trigger.condition().ok_or_else(|| {
                format!(
                    "spec.triggers[{index}] must have exactly one of metric, event or condition"
                )
            })?;
            match condition {
                TriggerCondition::Metric(metric) => {
                    validate_metric(index, metric, self.is_cluster_wide())?
                }
                TriggerCondition::Event(event) => {
                    if let Some(window) = &event.window {
                        window
                            .checked()
                            .map_err(|why| format!("spec.triggers[{index}].event.window: {why}"))?;
                    }
                    reason_pattern(&event.reason)
                        .map_err(|why| format!("spec.triggers[{index}].event.reason {why}"))?;
                }
                TriggerCondition::Condition(condition) => {
                    if condition.states.is_empty() {
                        return Err(format!(
                            "spec.triggers[{index}].condition.states must list at least one state"
                        ));
                    }
                    if let Some(duration) = &condition.duration {
                        duration.checked().map_err(|why| {
                            format!("spec.triggers[{index}].condition.duration: {why}")
                        })?;
                    }
                }
            }
        }
        spec.safety
            .cooldown
            .checked()
            .map_err(|why| format!("spec.safety.cooldown: {why}"))?;
        if spec.safety.min_healthy_percent > 100 {
            return Err("spec.safety.minHealthyPercent must be at most 100".into());
        }
        spec.safety
            .verification_window
            .checked()
            .map_err(|why| format!("spec.safety.verificationWindow: {why}"))?;
        spec.safety
            .breaker_cool_off
            .checked()
            .map_err(|why| format!("spec.safety.breakerCoolOff: {why}"))?;
        if spec.safety.breaker_threshold == 0 {
            return Err("spec.safety.breakerThreshold must be at least 1".into());
        }
        if let Some(confidence) = spec.ai.min_confidence
            && !(0.0..=1.0).contains(&confidence)
        {
            return Err("spec.ai.minConfidence must be from 0 to 1".into());
        }
        for (index, action) in spec.actions.iter().enumerate() {
            if let Some(unknown) = action
                .triggers
                .iter()
                .find(|name| !spec.triggers.iter().any(|trigger| &trigger.name == *name))
            {
                return Err(format!(
                    "spec.actions[{index}].triggers names unknown trigger {unknown:?}"
                ));
            }
            if !(0.0..=1.0).contains(&action.confidence) {
                return Err(format!(
                    "spec.actions[{index}].confidence must be from 0 to 1"
                ));
            }
            match action.action_type {
                ActionKind::Scale => {
                    let bounds = action.scale.as_ref().ok_or_else(|| {
                        format!("spec.actions[{index}].scale is required for a scale action")
                    })?;
                    if bounds.step == 0 || bounds.min_replicas > bounds.max_replicas {
                        return Err(format!(
                            "spec.actions[{index}].scale needs step >= 1 and minReplicas <= maxReplicas"
                        ));
                    }
                }
                ActionKind::Patch => {
                    let rule = action.patch.as_ref().ok_or_else(|| {
                        format!("spec.actions[{index}].patch is required for a patch action")
                    })?;
                    kubeskippy_plugin_sdk::quantity::memory_bytes(&rule.max_memory_limit).map_err(
                        |why| format!("spec.actions[{index}].patch.maxMemoryLimit: {why}"),
                    )?;
                    if !(rule.memory_limit_factor >= 1.0 && rule.headroom_over_usage >= 1.0) {
                        return Err(format!(
                            "spec.actions[{index}].patch factors must be at least 1"
                        ));
                    }
                }
                ActionKind::Restart | ActionKind::DeletePod => {}
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("unnamed")
    }

    /// A ClusterHealingPolicy (or `analyze`'s built-in default), as opposed
    /// to a namespaced HealingPolicy.
    pub fn is_cluster_wide(&self) -> bool {
        self.metadata.namespace.is_none()
    }

    /// Whether the policy may govern workloads in `namespace`: a namespaced
    /// policy only its own, a cluster policy those its selector lists (all
    /// when it lists none).
    pub fn covers_namespace(&self, namespace: &str) -> bool {
        let listed = &self.spec.selector.namespaces;
        let selected = listed.is_empty() || listed.iter().any(|listed| listed == namespace);
        match &self.metadata.namespace {
            Some(own) => own == namespace && selected,
            None => selected,
        }
    }

    /// The policy used when a snapshot holds none: the common failure modes,
    /// with conservative rule-based answers.
    pub fn builtin_default() -> HealingPolicy {
        let yaml = include_str!("default-policy.yaml");
        let policy: HealingPolicy =
            serde_yaml_ng::from_str(yaml).expect("the built-in policy parses");
        debug_assert_eq!(policy.validate(), Ok(()));
        policy
    }
}
