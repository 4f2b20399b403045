//! {{name}}: a KubeSkippy response parser (world `{{world}}`). It reads a
//! reply in the default prompt's JSON schema: the first `{` to the last `}`,
//! so markdown fences or prose around the object do no harm.

wit_bindgen::generate!({
    path: "{{wit_dir}}",
    world: "{{world}}",
});

use exports::kubeskippy::plugin::response_parser::Guest;
use kubeskippy::plugin::types::{
    Action, Analysis, Incident, Issue, ObjectRef, Patch, Recommendation, ResourcePatch, Severity,
};
use serde_json::{Map, Value};

struct Component;

impl Guest for Component {
    fn parse_response(reply: String, incident: Incident) -> Result<Analysis, String> {
        parse(&reply, &incident)
    }
}

export!(Component);

/// Plain Rust over the WIT types, so `cargo test` runs it natively.
pub fn parse(reply: &str, incident: &Incident) -> Result<Analysis, String> {
    let (Some(start), Some(end)) = (reply.find('{'), reply.rfind('}')) else {
        return Err("the reply has no JSON object".to_string());
    };
    let object = match serde_json::from_str::<Value>(&reply[start..=end.max(start)]) {
        Ok(Value::Object(object)) => object,
        _ => return Err("the reply is not valid JSON".to_string()),
    };
    let Some(summary) = object.get("summary").and_then(Value::as_str) else {
        return Err("the reply has no summary".to_string());
    };
    Ok(Analysis {
        summary: summary.to_string(),
        issues: items(&object, "issues").map(issue).collect(),
        recommendations: items(&object, "recommendations")
            .map(|item| recommendation(item, incident))
            .collect(),
    })
}

fn items<'a>(object: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a Map<String, Value>> {
    object
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn text(object: &Map<String, Value>, key: &str) -> String {
    object.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn issue(object: &Map<String, Value>) -> Issue {
    Issue {
        title: text(object, "title"),
        severity: match text(object, "severity").as_str() {
            "low" => Severity::Low,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => Severity::Medium,
        },
        impact: text(object, "impact"),
        root_cause: text(object, "root_cause"),
    }
}

fn recommendation(object: &Map<String, Value>, incident: &Incident) -> Recommendation {
    // "Kind/name" in the incident's namespace; anything else means the incident's target.
    let target = match text(object, "target").split_once('/') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => ObjectRef {
            kind: kind.to_string(),
            namespace: incident.target.namespace.clone(),
            name: name.to_string(),
        },
        _ => incident.target.clone(),
    };
    let action = match text(object, "action").as_str() {
        "restart" => Action::Restart,
        "delete-pod" => Action::DeletePod,
        "scale" => match object.get("replicas").and_then(Value::as_u64) {
            Some(replicas) if replicas <= u64::from(u32::MAX) => Action::Scale(replicas as u32),
            _ => Action::None,
        },
        "patch" => patch(object, incident),
        _ => Action::None,
    };
    Recommendation {
        action,
        target,
        reason: text(object, "reason"),
        risk: text(object, "risk"),
        confidence: object.get("confidence").and_then(Value::as_f64).unwrap_or(0.0),
    }
}

fn patch(object: &Map<String, Value>, incident: &Incident) -> Action {
    let container = match text(object, "container") {
        name if name.is_empty() => incident
            .workload
            .as_ref()
            .and_then(|workload| workload.containers.first().cloned())
            .unwrap_or_default(),
        name => name,
    };
    let patch = ResourcePatch {
        container,
        cpu_limit_millicores: cpu_millicores(&text(object, "cpu_limit")),
        cpu_request_millicores: cpu_millicores(&text(object, "cpu_request")),
        memory_limit_bytes: memory_bytes(&text(object, "memory_limit")),
        memory_request_bytes: memory_bytes(&text(object, "memory_request")),
    };
    let changes_something = patch.cpu_limit_millicores.is_some()
        || patch.cpu_request_millicores.is_some()
        || patch.memory_limit_bytes.is_some()
        || patch.memory_request_bytes.is_some();
    if changes_something {
        Action::Patch(Patch::Resources(patch))
    } else {
        Action::None
    }
}

/// A Kubernetes quantity: a number and an optional suffix.
fn quantity(text: &str, suffixes: &[(&str, f64)]) -> Option<u64> {
    let text = text.trim();
    let (number, scale) = suffixes
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|number| (number, *scale)))
        .unwrap_or((text, 1.0));
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0 && !number.is_empty()).then(|| (value * scale).round() as u64)
}

fn memory_bytes(text: &str) -> Option<u64> {
    const KI: f64 = 1024.0;
    quantity(
        text,
        &[("Ki", KI), ("Mi", KI * KI), ("Gi", KI * KI * KI), ("k", 1e3), ("M", 1e6), ("G", 1e9)],
    )
}

fn cpu_millicores(text: &str) -> Option<u64> {
    // "500m" is millicores; a bare number is cores.
    quantity(text, &[("m", 1.0), ("", 1000.0)])
}
