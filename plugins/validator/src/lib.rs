//! The default safety validator. It judges one recommendation at a time:
//!
//! - the target must be part of the incident's evidence (the workload or one of
//!   its pods, in the incident's namespace);
//! - confidence must be a number in 0..=1 and at least `minConfidence`;
//! - destructive or useless actions are denied: scaling to zero, deleting or
//!   restarting a pod nothing will recreate, lowering a memory limit below what
//!   the container uses, raw strategic-merge patches (unless `allowRawPatches`),
//!   and restart/scale/delete for image-pull failures, which they cannot fix;
//! - bounds are enforced by adjusting: replicas above `maxReplicas` and memory
//!   limits above `maxMemoryLimit` are lowered to the bound;
//! - at most `maxRecommendations` recommendations pass.
//!
//! Configuration keys: `minConfidence` (default 0.7), `maxRecommendations`
//! (default 3), `maxReplicas` (default 10), `maxMemoryLimit` (default 8Gi),
//! `allowRawPatches` (default false).

#[cfg(target_arch = "wasm32")]
mod component;

use kubeskippy_plugin_sdk::types::{
    Action, Adjustment, FindingKind, Incident, Patch, Recommendation, ReviewContext, Verdict,
};
use kubeskippy_plugin_sdk::{ConfigSource, quantity};

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub min_confidence: f64,
    pub max_recommendations: u32,
    pub max_replicas: u32,
    pub max_memory_limit_bytes: u64,
    pub allow_raw_patches: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_confidence: 0.7,
            max_recommendations: 3,
            max_replicas: 10,
            max_memory_limit_bytes: 8 << 30,
            allow_raw_patches: false,
        }
    }
}

impl Settings {
    pub fn from_config(config: &dyn ConfigSource) -> Result<Settings, String> {
        let mut settings = Settings::default();
        if let Some(text) = config.get("minConfidence") {
            settings.min_confidence = text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|c| (0.0..=1.0).contains(c))
                .ok_or_else(|| {
                    format!("config minConfidence must be a number from 0 to 1, got {text:?}")
                })?;
        }
        if let Some(text) = config.get("maxRecommendations") {
            settings.max_recommendations =
                kubeskippy_plugin_sdk::positive_integer("maxRecommendations", &text)?;
        }
        if let Some(text) = config.get("maxReplicas") {
            settings.max_replicas = kubeskippy_plugin_sdk::positive_integer("maxReplicas", &text)?;
        }
        if let Some(text) = config.get("maxMemoryLimit") {
            settings.max_memory_limit_bytes = quantity::memory_bytes(&text)
                .map_err(|why| format!("config maxMemoryLimit: {why}"))?;
        }
        if let Some(text) = config.get("allowRawPatches") {
            settings.allow_raw_patches = match text.trim() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(format!(
                        "config allowRawPatches must be true or false, got {text:?}"
                    ));
                }
            };
        }
        Ok(settings)
    }
}

/// Judges a recommendation with settings read from `config`. A configuration
/// error denies: a validator that cannot read its rules must not allow anything.
pub fn validate(
    recommendation: &Recommendation,
    incident: &Incident,
    context: ReviewContext,
    config: &dyn ConfigSource,
) -> Verdict {
    match Settings::from_config(config) {
        Ok(settings) => judge(recommendation, incident, context, &settings),
        Err(why) => Verdict::Deny(format!("validator misconfigured: {why}")),
    }
}

pub fn judge(
    recommendation: &Recommendation,
    incident: &Incident,
    context: ReviewContext,
    settings: &Settings,
) -> Verdict {
    if let Some(reason) = first_objection(recommendation, incident, context, settings) {
        return Verdict::Deny(reason);
    }
    match adjust_to_bounds(recommendation, settings) {
        // Lowering to a bound must not produce what would be denied if asked for
        // directly, such as a memory limit below the container's usage.
        Verdict::Adjust(adjustment) => {
            match first_objection(&adjustment.recommendation, incident, context, settings) {
                Some(reason) => Verdict::Deny(format!("{}, but then {reason}", adjustment.reason)),
                None => Verdict::Adjust(adjustment),
            }
        }
        verdict => verdict,
    }
}

fn first_objection(
    recommendation: &Recommendation,
    incident: &Incident,
    context: ReviewContext,
    settings: &Settings,
) -> Option<String> {
    let confidence = recommendation.confidence;
    if !(0.0..=1.0).contains(&confidence) {
        return Some(format!("confidence {confidence} is outside 0..1"));
    }
    if confidence < settings.min_confidence {
        return Some(format!(
            "confidence {confidence} is below the minimum {}",
            settings.min_confidence
        ));
    }
    if context.allowed_so_far >= settings.max_recommendations {
        return Some(format!(
            "{} recommendations already allowed; the limit is {}",
            context.allowed_so_far, settings.max_recommendations
        ));
    }
    let target = &recommendation.target;
    let is_workload = same_object(&target.kind, &target.name, incident);
    let pod = incident
        .pods
        .iter()
        .find(|pod| target.kind.eq_ignore_ascii_case("Pod") && pod.name == target.name);
    if target.namespace != incident.target.namespace || (!is_workload && pod.is_none()) {
        return Some(format!(
            "target {}/{} in namespace {:?} is not part of the incident's evidence",
            target.kind, target.name, target.namespace
        ));
    }
    let bare_pod = incident.target.kind.eq_ignore_ascii_case("Pod");
    let image_pull = incident
        .findings
        .iter()
        .any(|finding| finding.kind == FindingKind::ImagePull);

    match &recommendation.action {
        Action::None => None,
        Action::Restart | Action::Scale(_) | Action::DeletePod if image_pull => Some(
            "restarting, scaling or deleting pods cannot fix an image pull failure".to_string(),
        ),
        Action::Restart if bare_pod => {
            Some("restarting a bare pod deletes it and nothing recreates it".to_string())
        }
        Action::Restart if pod.is_some() && !is_workload => Some(
            "restart targets the workload, not one of its pods; use delete-pod for one pod"
                .to_string(),
        ),
        Action::Restart => None,
        Action::Scale(_) if !is_workload || target.kind.eq_ignore_ascii_case("Pod") => {
            Some(format!(
                "only a workload can be scaled, not {}/{}",
                target.kind, target.name
            ))
        }
        Action::Scale(_) if target.kind.eq_ignore_ascii_case("DaemonSet") => {
            Some("a DaemonSet has no replica count to scale".to_string())
        }
        Action::Scale(0) => Some("scaling to zero replicas takes the workload down".to_string()),
        Action::Scale(_) => None,
        Action::DeletePod if pod.is_none() => Some(format!(
            "delete-pod must name a pod, not {}/{}",
            target.kind, target.name
        )),
        Action::DeletePod if bare_pod => {
            Some("deleting a bare pod loses it: nothing recreates it".to_string())
        }
        Action::DeletePod => None,
        Action::Patch(Patch::StrategicMerge(_)) if !settings.allow_raw_patches => Some(
            "raw strategic-merge patches are not allowed (set allowRawPatches to permit them)"
                .to_string(),
        ),
        Action::Patch(Patch::StrategicMerge(_)) => None,
        Action::Patch(Patch::Resources(patch)) => resource_patch_objection(patch, incident),
    }
}

fn same_object(kind: &str, name: &str, incident: &Incident) -> bool {
    kind.eq_ignore_ascii_case(&incident.target.kind) && name == incident.target.name
}

fn resource_patch_objection(
    patch: &kubeskippy_plugin_sdk::types::ResourcePatch,
    incident: &Incident,
) -> Option<String> {
    let known_container = incident
        .workload
        .as_ref()
        .map(|workload| workload.containers.contains(&patch.container))
        .unwrap_or(false)
        || incident
            .pods
            .iter()
            .flat_map(|pod| &pod.containers)
            .any(|container| container.name == patch.container);
    if !known_container {
        return Some(format!(
            "container {:?} is not in the incident's workload",
            patch.container
        ));
    }
    if patch.cpu_limit_millicores.is_none()
        && patch.cpu_request_millicores.is_none()
        && patch.memory_limit_bytes.is_none()
        && patch.memory_request_bytes.is_none()
    {
        return Some("the resource patch changes nothing".to_string());
    }
    if let (Some(request), Some(limit)) = (patch.memory_request_bytes, patch.memory_limit_bytes)
        && request > limit
    {
        return Some("memory request above the memory limit".to_string());
    }
    if let (Some(request), Some(limit)) = (patch.cpu_request_millicores, patch.cpu_limit_millicores)
        && request > limit
    {
        return Some("CPU request above the CPU limit".to_string());
    }
    if let Some(limit) = patch.memory_limit_bytes {
        let peak_usage = incident
            .pods
            .iter()
            .flat_map(|pod| &pod.containers)
            .filter(|container| container.name == patch.container)
            .filter_map(|container| container.usage.memory_bytes)
            .max();
        if let Some(usage) = peak_usage
            && limit < usage
        {
            return Some(format!(
                "memory limit {} is below the container's current usage {}",
                quantity::format_memory(limit),
                quantity::format_memory(usage)
            ));
        }
    }
    None
}

fn adjust_to_bounds(recommendation: &Recommendation, settings: &Settings) -> Verdict {
    match &recommendation.action {
        Action::Scale(replicas) if *replicas > settings.max_replicas => {
            let mut adjusted = recommendation.clone();
            adjusted.action = Action::Scale(settings.max_replicas);
            Verdict::Adjust(Adjustment {
                recommendation: adjusted,
                reason: format!(
                    "replicas lowered from {replicas} to the maximum {}",
                    settings.max_replicas
                ),
            })
        }
        Action::Patch(Patch::Resources(patch))
            if patch
                .memory_limit_bytes
                .is_some_and(|limit| limit > settings.max_memory_limit_bytes) =>
        {
            let mut bounded = patch.clone();
            bounded.memory_limit_bytes = Some(settings.max_memory_limit_bytes);
            if let Some(request) = bounded.memory_request_bytes {
                bounded.memory_request_bytes = Some(request.min(settings.max_memory_limit_bytes));
            }
            let mut adjusted = recommendation.clone();
            adjusted.action = Action::Patch(Patch::Resources(bounded));
            Verdict::Adjust(Adjustment {
                recommendation: adjusted,
                reason: format!(
                    "memory limit lowered from {} to the maximum {}",
                    quantity::format_memory(patch.memory_limit_bytes.unwrap_or_default()),
                    quantity::format_memory(settings.max_memory_limit_bytes)
                ),
            })
        }
        _ => Verdict::Allow,
    }
}

#[cfg(test)]
mod tests;
