//! Recommendation targets: `Kind/name`, `Kind/namespace/name`, a bare name, a
//! bare kind, or a `{kind, name}` object, resolved against the incident.

use kubeskippy_plugin_sdk::types::{Incident, ObjectRef};

/// A target as the model wrote it.
#[derive(Default)]
pub(crate) enum Spec {
    #[default]
    Missing,
    Text(String),
    Parts {
        kind: String,
        namespace: String,
        name: String,
    },
}

pub(crate) fn resolve(spec: &Spec, incident: &Incident) -> ObjectRef {
    let (kind, namespace, name) = match spec {
        Spec::Missing => return incident.target.clone(),
        Spec::Text(text) => split(text, incident),
        // `{"name": "Deployment/app"}` puts the whole reference in the name.
        Spec::Parts {
            kind,
            namespace,
            name,
        } if clean(kind).is_empty() => {
            let (kind, split_namespace, name) = split(name, incident);
            let namespace = clean(namespace);
            let namespace = if namespace.is_empty() {
                split_namespace
            } else {
                namespace.to_string()
            };
            (kind, namespace, name)
        }
        Spec::Parts {
            kind,
            namespace,
            name,
        } => (
            clean(kind).to_string(),
            clean(namespace).to_string(),
            clean(name).to_string(),
        ),
    };
    if name.is_empty() {
        return if kind.is_empty() {
            incident.target.clone()
        } else {
            bare_kind(&kind, incident)
        };
    }
    let kind = if kind.is_empty() {
        kind_of_name(&name, incident)
    } else {
        canonical_kind(&kind)
    };
    // A namespace the model named is kept even when it is not the incident's,
    // so that the validator refuses the target instead of the parser moving it.
    let namespace = if namespace.is_empty() {
        incident.target.namespace.clone()
    } else {
        namespace
    };
    ObjectRef {
        kind,
        namespace,
        name,
    }
}

fn clean(text: &str) -> &str {
    text.trim_matches(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '`' | '"' | '\'' | '*' | ',' | ';' | ':' | '.' | '(' | ')'
            )
    })
}

/// Splits target text into kind, namespace and name, any of which may be empty.
fn split(text: &str, incident: &Incident) -> (String, String, String) {
    let mut words = text
        .split_whitespace()
        .map(clean)
        .filter(|word| !word.is_empty());
    let Some(first) = words.next() else {
        return Default::default();
    };
    if first.contains('/') {
        let mut parts = first.split('/');
        let kind = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        return match rest.as_slice() {
            [name] => (kind.to_string(), String::new(), name.to_string()),
            [namespace, name @ ..] => (kind.to_string(), namespace.to_string(), name.join("/")),
            [] => (kind.to_string(), String::new(), String::new()),
        };
    }
    if known_kind(first).is_some() {
        // "Pod app-xyz": the second word is the name only when it names
        // something in the incident; otherwise it is likely prose.
        let name = words
            .next()
            .filter(|word| {
                *word == incident.target.name || incident.pods.iter().any(|pod| pod.name == *word)
            })
            .unwrap_or_default();
        return (first.to_string(), String::new(), name.to_string());
    }
    (String::new(), String::new(), first.to_string())
}

/// Small models answer `"target": "pod"`: a kind with no name. It means the
/// incident's own target when the kind matches, or the only pod there is.
fn bare_kind(kind: &str, incident: &Incident) -> ObjectRef {
    let kind = canonical_kind(kind);
    if kind.eq_ignore_ascii_case(&incident.target.kind) {
        return incident.target.clone();
    }
    if kind == "Pod"
        && let [pod] = incident.pods.as_slice()
    {
        let namespace = if pod.namespace.is_empty() {
            &incident.target.namespace
        } else {
            &pod.namespace
        };
        return ObjectRef::new("Pod", namespace, &pod.name);
    }
    ObjectRef::new(&kind, &incident.target.namespace, "")
}

fn kind_of_name(name: &str, incident: &Incident) -> String {
    if name == incident.target.name {
        incident.target.kind.clone()
    } else if incident.pods.iter().any(|pod| pod.name == name) {
        "Pod".to_string()
    } else {
        String::new()
    }
}

/// The canonical spelling of a kind the model wrote in any case, plural, short
/// form or with its API group (`deployments`, `deploy`, `deployment.apps`).
/// Kinds it does not know are kept as written.
fn canonical_kind(kind: &str) -> String {
    known_kind(kind).map_or_else(|| kind.to_string(), str::to_string)
}

fn known_kind(kind: &str) -> Option<&'static str> {
    let base = kind.split('.').next().unwrap_or(kind);
    Some(match base.to_ascii_lowercase().as_str() {
        "pod" | "pods" | "po" => "Pod",
        "deployment" | "deployments" | "deploy" => "Deployment",
        "statefulset" | "statefulsets" | "sts" => "StatefulSet",
        "daemonset" | "daemonsets" | "ds" => "DaemonSet",
        "replicaset" | "replicasets" | "rs" => "ReplicaSet",
        "job" | "jobs" => "Job",
        "cronjob" | "cronjobs" | "cj" => "CronJob",
        _ => return None,
    })
}
