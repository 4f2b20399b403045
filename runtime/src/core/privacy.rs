//! Anonymisation (`ai.anonymize: true`): before an incident reaches the prompt
//! plugin, every object name in it — namespace, workload, pods, containers,
//! nodes, other objects named by events — is replaced with a stable
//! placeholder, in the structured fields and inside event and status messages.
//! The parsed analysis is mapped back, so the model never sees a real name and
//! the HealingActions still name real objects.
//!
//! Text is replaced whole-name only (a name is delimited by characters that
//! cannot be part of a DNS label, dots included), so a container called `app`
//! does not rewrite the word `application`, while `app.shop.svc.cluster.local`
//! loses both names. Image references and other free text that is not an
//! object name are left as they are.

use crate::core::wit::{Action, Analysis, Incident, Patch};

pub struct Anonymized {
    pub incident: Incident,
    /// (real, placeholder), longest real name first.
    names: Vec<(String, String)>,
}

struct Namer {
    names: Vec<(String, String)>,
    /// (kind of name, real name) → placeholder, and placeholders per kind.
    given: std::collections::HashMap<(&'static str, String), String>,
    counts: std::collections::HashMap<&'static str, usize>,
}

impl Namer {
    fn placeholder(&mut self, real: &str, prefix: &'static str) -> String {
        if real.is_empty() {
            return String::new();
        }
        // Each kind of name gets its own placeholders, so a container and its
        // Deployment both called `app` become `container-1` and `workload-1`.
        if let Some(placeholder) = self.given.get(&(prefix, real.to_string())) {
            return placeholder.clone();
        }
        let count = self.counts.entry(prefix).or_default();
        *count += 1;
        let placeholder = format!("{prefix}-{count}");
        self.given
            .insert((prefix, real.to_string()), placeholder.clone());
        self.names.push((real.to_string(), placeholder.clone()));
        placeholder
    }
}

pub fn anonymize(incident: &Incident) -> Anonymized {
    let mut namer = Namer {
        names: Vec::new(),
        given: Default::default(),
        counts: Default::default(),
    };
    let mut anonymous = incident.clone();
    let rename_ref = |namer: &mut Namer, object: &mut crate::core::wit::ObjectRef| {
        object.namespace = namer.placeholder(&object.namespace, "namespace");
        let prefix = match object.kind.as_str() {
            "Pod" => "pod",
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "workload",
            _ => "object",
        };
        object.name = namer.placeholder(&object.name, prefix);
    };
    rename_ref(&mut namer, &mut anonymous.target);
    if let Some(workload) = &mut anonymous.workload {
        rename_ref(&mut namer, &mut workload.target);
        for container in &mut workload.containers {
            *container = namer.placeholder(container, "container");
        }
    }
    for pod in &mut anonymous.pods {
        pod.name = namer.placeholder(&pod.name, "pod");
        pod.namespace = namer.placeholder(&pod.namespace, "namespace");
        if let Some(owner) = &mut pod.owner {
            rename_ref(&mut namer, owner);
        }
        if let Some(node) = &mut pod.node {
            *node = namer.placeholder(node, "node");
        }
        for container in &mut pod.containers {
            container.name = namer.placeholder(&container.name, "container");
        }
    }
    for event in &mut anonymous.events {
        rename_ref(&mut namer, &mut event.involved);
    }
    for finding in &mut anonymous.findings {
        if let Some(pod) = &mut finding.pod {
            *pod = namer.placeholder(pod, "pod");
        }
    }
    // ReplicaSets and other generated names (`app-7d9f8b6c5d`) appear in
    // messages without appearing as objects; they keep their generated suffix
    // behind the workload's placeholder.
    let workloads: Vec<(String, String)> = namer
        .names
        .iter()
        .filter(|(_, placeholder)| placeholder.starts_with("workload-"))
        .cloned()
        .collect();
    let texts = anonymous
        .events
        .iter()
        .map(|e| e.message.as_str())
        .chain(
            anonymous
                .pods
                .iter()
                .flat_map(|p| &p.containers)
                .filter_map(|c| c.waiting_message.as_deref()),
        )
        .chain(anonymous.findings.iter().map(|f| f.detail.as_str()));
    let mut derived = Vec::new();
    for token in texts.flat_map(|text| text.split(|c: char| !is_label_char(c))) {
        for (real, placeholder) in &workloads {
            if let Some(suffix) = token
                .strip_prefix(real.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                && !suffix.is_empty()
                && !namer
                    .names
                    .iter()
                    .chain(&derived)
                    .any(|(name, _)| name == token)
            {
                derived.push((token.to_string(), format!("{placeholder}-{suffix}")));
            }
        }
    }
    namer.names.extend(derived);
    namer
        .names
        .sort_by_key(|(real, _)| std::cmp::Reverse(real.len()));
    // In free text a name shared by two objects becomes the first placeholder.
    let mut forward: Vec<(&str, &str)> = Vec::new();
    for (real, placeholder) in &namer.names {
        if !forward.iter().any(|(seen, _)| seen == real) {
            forward.push((real, placeholder));
        }
    }
    for event in &mut anonymous.events {
        event.message = replace_names(&event.message, &forward);
    }
    for pod in &mut anonymous.pods {
        for container in &mut pod.containers {
            if let Some(message) = &mut container.waiting_message {
                *message = replace_names(message, &forward);
            }
        }
    }
    for finding in &mut anonymous.findings {
        finding.detail = replace_names(&finding.detail, &forward);
    }
    // Incident ids are built from names; an opaque digest keeps them stable.
    anonymous.id = {
        use sha2::Digest;
        format!(
            "incident-{}",
            &hex::encode(sha2::Sha256::digest(incident.id.as_bytes()))[..12]
        )
    };
    Anonymized {
        incident: anonymous,
        names: namer.names,
    }
}

impl Anonymized {
    /// Maps placeholders in the model's analysis back to real names.
    pub fn restore(&self, mut analysis: Analysis) -> Analysis {
        let mut backward: Vec<(&str, &str)> = self
            .names
            .iter()
            .map(|(r, p)| (p.as_str(), r.as_str()))
            .collect();
        backward.sort_by_key(|(placeholder, _)| std::cmp::Reverse(placeholder.len()));
        let back = |text: &str| replace_names(text, &backward);
        analysis.summary = back(&analysis.summary);
        for issue in &mut analysis.issues {
            issue.title = back(&issue.title);
            issue.impact = back(&issue.impact);
            issue.root_cause = back(&issue.root_cause);
        }
        for recommendation in &mut analysis.recommendations {
            recommendation.target.namespace = back(&recommendation.target.namespace);
            recommendation.target.name = back(&recommendation.target.name);
            recommendation.reason = back(&recommendation.reason);
            recommendation.risk = back(&recommendation.risk);
            if let Action::Patch(Patch::Resources(patch)) = &mut recommendation.action {
                patch.container = back(&patch.container);
            }
            if let Action::Patch(Patch::StrategicMerge(document)) = &mut recommendation.action {
                *document = back(document);
            }
        }
        analysis
    }
}

/// What may continue a DNS label. A dot ends one: names meet other names at
/// dots (`pod.namespace.svc`), and a dot after a name may end a sentence.
fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// Replaces whole names: an occurrence counts only when the characters around
/// it could not continue a Kubernetes name. `pairs` are tried longest first.
pub fn replace_names(text: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut previous: Option<char> = None;
    'outer: while !rest.is_empty() {
        let at_boundary = previous.is_none_or(|c| !is_label_char(c));
        if at_boundary {
            for (from, to) in pairs {
                if from.is_empty() || !rest.starts_with(from) {
                    continue;
                }
                let after = rest[from.len()..].chars().next();
                if after.is_none_or(|c| !is_label_char(c)) {
                    out.push_str(to);
                    rest = &rest[from.len()..];
                    previous = from.chars().last();
                    continue 'outer;
                }
            }
        }
        let c = rest.chars().next().expect("rest is not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
        previous = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::wit::{ObjectRef, Recommendation, ResourcePatch};

    fn incident() -> Incident {
        crate::core::wit::from_guest(&kubeskippy_plugin_sdk::sample::oom_crashloop_incident())
    }

    #[test]
    fn whole_names_only() {
        let pairs = [("app-xyz", "pod-1"), ("app", "container-1")];
        assert_eq!(
            replace_names(
                "app-xyz runs app; the application restarted app-xyz_shop(1). app.",
                &pairs
            ),
            "pod-1 runs container-1; the application restarted pod-1_shop(1). container-1."
        );
        assert_eq!(replace_names("myapp app-xyzz", &pairs), "myapp app-xyzz");
        let pairs = [("app", "workload-1"), ("shop", "namespace-1")];
        assert_eq!(
            replace_names("lookup app.shop.svc.cluster.local: no such host", &pairs),
            "lookup workload-1.namespace-1.svc.cluster.local: no such host"
        );
    }

    #[test]
    fn no_real_name_survives() {
        let anonymized = anonymize(&incident());
        let text = serde_json::to_string(&anonymized.incident).unwrap();
        for real in ["shop", "app-xyz", "\"app\""] {
            assert!(!text.contains(real), "{real} survived in {text}");
        }
        assert_eq!(anonymized.incident.target.name, "workload-1");
        assert_eq!(anonymized.incident.target.namespace, "namespace-1");
        assert_eq!(anonymized.incident.pods[0].name, "pod-1");
        assert_eq!(
            anonymized.incident.findings[0].detail,
            "Pod pod-1 has restarted 5 times"
        );
    }

    #[test]
    fn the_analysis_maps_back() {
        let anonymized = anonymize(&incident());
        let analysis = Analysis {
            summary: "pod-1 of workload-1 leaks memory".into(),
            issues: vec![],
            recommendations: vec![Recommendation {
                action: Action::Patch(Patch::Resources(ResourcePatch {
                    container: "container-1".into(),
                    cpu_limit_millicores: None,
                    cpu_request_millicores: None,
                    memory_limit_bytes: Some(2 << 30),
                    memory_request_bytes: None,
                })),
                target: ObjectRef {
                    kind: "Deployment".into(),
                    namespace: "namespace-1".into(),
                    name: "workload-1".into(),
                },
                reason: "container-1 in pod-1 exceeds its limit".into(),
                risk: "none".into(),
                confidence: 0.8,
            }],
        };
        let restored = anonymized.restore(analysis);
        assert_eq!(restored.summary, "app-xyz of app leaks memory");
        let recommendation = &restored.recommendations[0];
        assert_eq!(
            recommendation.target,
            ObjectRef {
                kind: "Deployment".into(),
                namespace: "shop".into(),
                name: "app".into()
            }
        );
        assert_eq!(recommendation.reason, "app in app-xyz exceeds its limit");
        assert!(
            matches!(&recommendation.action, Action::Patch(Patch::Resources(p)) if p.container == "app")
        );
    }
}
