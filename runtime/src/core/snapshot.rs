//! Reading a cluster snapshot: plain Kubernetes objects as `kubectl get -o yaml`
//! prints them, in multi-document YAML or `List`s (any `*List` kind, such as the
//! `PodMetricsList` of `kubectl get --raw /apis/metrics.k8s.io/...`).
//!
//! Only the kinds the pipeline reasons about are kept. Secrets, ConfigMaps and
//! every other kind are counted and dropped here, unread, so nothing in them can
//! reach a prompt.
//!
//! A snapshot is input from outside and is read with bounds: at most
//! [`MAX_SNAPSHOT_BYTES`], no YAML aliases (`kubectl` never writes them, and
//! each one replays a whole subtree), no `List` inside a `List`, object and
//! container names that Kubernetes itself would accept, and status texts
//! cleaned as the live cache cleans them.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use serde::Deserialize;
use serde_json::Value;

use crate::core::crd::policy::{ClusterHealingPolicy, HealingPolicy};
use crate::core::objects::{
    CachedDaemonSet, CachedDeployment, CachedEvent, CachedPod, CachedReplicaSet, CachedStatefulSet,
};
use crate::core::objects::{ClusterObjects, PodMetrics};
use crate::core::text::one_line;

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub pods: Vec<CachedPod>,
    pub events: Vec<CachedEvent>,
    pub deployments: Vec<CachedDeployment>,
    pub replica_sets: Vec<CachedReplicaSet>,
    pub stateful_sets: Vec<CachedStatefulSet>,
    pub daemon_sets: Vec<CachedDaemonSet>,
    pub pod_metrics: Vec<PodMetrics>,
    pub policies: Vec<HealingPolicy>,
    /// Objects of kinds the pipeline does not read, by kind.
    pub ignored: BTreeMap<String, usize>,
}

/// A snapshot of 100 000 pods with their events and workloads is about 100 MiB
/// of YAML.
pub const MAX_SNAPSHOT_BYTES: u64 = 128 << 20;
/// A `List` holding a `PodMetricsList`, as `kubectl get` writes it, and no deeper.
const MAX_LIST_NESTING: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read snapshot {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "snapshot {path} is {size} bytes, over the {MAX_SNAPSHOT_BYTES} bytes a snapshot may have"
    )]
    TooLarge { path: String, size: u64 },
    #[error("{source_name}: document {document} is not valid YAML: {message}")]
    Yaml {
        source_name: String,
        document: usize,
        message: String,
    },
    #[error("{source_name}: document {document}: {object}: {message}")]
    Object {
        source_name: String,
        document: usize,
        object: String,
        message: String,
    },
}

impl Snapshot {
    pub fn load(path: &Path) -> Result<Snapshot, SnapshotError> {
        let read_error = |source| SnapshotError::Read {
            path: path.display().to_string(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge {
                path: path.display().to_string(),
                size,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Snapshot::parse(&text, &path.display().to_string())
    }

    /// Parses every document; the first bad object fails the whole snapshot so a
    /// half-read cluster is never analysed as if it were whole.
    pub fn parse(text: &str, source_name: &str) -> Result<Snapshot, SnapshotError> {
        if text.len() as u64 > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge {
                path: source_name.to_string(),
                size: text.len() as u64,
            });
        }
        refuse_aliases(text, source_name)?;
        let mut snapshot = Snapshot::default();
        for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let number = index + 1;
            let value = Value::deserialize(document).map_err(|error| SnapshotError::Yaml {
                source_name: source_name.to_string(),
                document: number,
                message: one_line(&error.to_string()),
            })?;
            if value.is_null() {
                continue;
            }
            snapshot
                .add(value, 0)
                .map_err(|(object, message)| SnapshotError::Object {
                    source_name: source_name.to_string(),
                    document: number,
                    object,
                    message,
                })?;
        }
        Ok(snapshot)
    }

    /// Adds one object, or the items of a list; errors name the object.
    /// `lists` is how many lists enclose it: `kubectl get` nests a
    /// `PodMetricsList` in a `List` at most.
    fn add(&mut self, value: Value, lists: usize) -> Result<(), (String, String)> {
        let Value::Object(_) = &value else {
            return Err((
                "(top level)".into(),
                "expected a Kubernetes object (a mapping with apiVersion and kind)".into(),
            ));
        };
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if kind.is_empty() {
            return Err((
                describe(&value, "(unknown kind)"),
                "missing field `kind`".into(),
            ));
        }
        if kind.ends_with("List") && value.get("items").is_some() {
            let Value::Object(mut list) = value else {
                unreachable!("checked to be a mapping above")
            };
            let Some(Value::Array(items)) = list.remove("items") else {
                return Err((kind, "`items` must be a list".into()));
            };
            if lists >= MAX_LIST_NESTING {
                return Err((
                    kind,
                    format!(
                        "lies inside {lists} other lists; a snapshot may nest one list in another, no deeper"
                    ),
                ));
            }
            for item in items {
                self.add(with_kind_from_list(item, &kind, &api_version), lists + 1)?;
            }
            return Ok(());
        }
        let group = api_version
            .split_once('/')
            .map(|(group, _)| group)
            .unwrap_or("");
        match (group, kind.as_str()) {
            ("", "Pod") => {
                let mut pod: CachedPod = kept::<Pod, _>(value, &kind)?;
                pod.clean_text();
                self.pods.push(pod);
            }
            ("", "Event") => {
                let mut event: CachedEvent = kept::<Event, _>(value, &kind)?;
                event.clean_text();
                self.events.push(event);
            }
            ("apps", "Deployment") => self.deployments.push(kept::<Deployment, _>(value, &kind)?),
            ("apps", "ReplicaSet") => self.replica_sets.push(kept::<ReplicaSet, _>(value, &kind)?),
            ("apps", "StatefulSet") => self
                .stateful_sets
                .push(kept::<StatefulSet, _>(value, &kind)?),
            ("apps", "DaemonSet") => self.daemon_sets.push(kept::<DaemonSet, _>(value, &kind)?),
            ("metrics.k8s.io", "PodMetrics") => self.pod_metrics.push(typed(value, &kind)?),
            ("kubeskippy.io", "HealingPolicy" | "ClusterHealingPolicy") => {
                let policy: HealingPolicy = if kind == "HealingPolicy" {
                    typed(value, &kind)?
                } else {
                    typed::<ClusterHealingPolicy>(value, &kind)?.into()
                };
                policy.validate().map_err(|message| {
                    (
                        format!("{kind} {}", policy.metadata.name.as_deref().unwrap_or("?")),
                        message,
                    )
                })?;
                self.policies.push(policy);
            }
            _ => *self.ignored.entry(kind).or_default() += 1,
        }
        Ok(())
    }

    /// The snapshot's objects, borrowed, for building facts.
    pub fn objects(&self) -> ClusterObjects<'_> {
        ClusterObjects {
            pods: self.pods.iter().collect(),
            events: self.events.iter().collect(),
            deployments: self.deployments.iter().collect(),
            replica_sets: self.replica_sets.iter().collect(),
            stateful_sets: self.stateful_sets.iter().collect(),
            daemon_sets: self.daemon_sets.iter().collect(),
            pod_metrics: self.pod_metrics.iter().collect(),
            queries: None,
            infer_missing_replica_sets: true,
        }
    }

    pub fn object_count(&self) -> usize {
        self.pods.len()
            + self.events.len()
            + self.deployments.len()
            + self.replica_sets.len()
            + self.stateful_sets.len()
            + self.daemon_sets.len()
            + self.pod_metrics.len()
            + self.policies.len()
    }
}

/// Items of `kubectl get pods -o yaml` carry their own kind, but items of raw
/// API lists (PodMetricsList) may not: infer it from the list's kind.
fn with_kind_from_list(mut item: Value, list_kind: &str, list_api_version: &str) -> Value {
    if let Value::Object(map) = &mut item {
        if !map.contains_key("kind") && list_kind != "List" {
            map.insert(
                "kind".into(),
                Value::String(list_kind.trim_end_matches("List").to_string()),
            );
        }
        if !map.contains_key("apiVersion") && list_kind != "List" {
            map.insert(
                "apiVersion".into(),
                Value::String(list_api_version.to_string()),
            );
        }
    }
    item
}

/// Reads `value` whole as `Whole`, so that any malformed field is reported as
/// for any other object, then keeps it as the live cache would (`Kept`).
fn kept<Whole, Kept>(value: Value, kind: &str) -> Result<Kept, (String, String)>
where
    Whole: serde::de::DeserializeOwned,
    Kept: serde::de::DeserializeOwned,
{
    serde_path_to_error::deserialize::<_, Whole>(&value)
        .map_err(|error| path_error(describe(&value, kind), error))?;
    typed(value, kind)
}

fn typed<T: serde::de::DeserializeOwned>(value: Value, kind: &str) -> Result<T, (String, String)> {
    check_names(&value, kind)?;
    let object = describe(&value, kind);
    serde_path_to_error::deserialize(value).map_err(|error| path_error(object, error))
}

/// (the object, what is wrong with it and where).
fn path_error(
    object: String,
    error: serde_path_to_error::Error<serde_json::Error>,
) -> (String, String) {
    let path = error.path().to_string();
    let message = one_line(&error.inner().to_string());
    if path == "." {
        (object, message)
    } else {
        (object, format!("field `{path}`: {message}"))
    }
}

/// How an error names the object; its names are shown cleaned, because an
/// error about a bad name must not print the bad name raw.
fn describe(value: &Value, kind: &str) -> String {
    let metadata = value.get("metadata");
    let shown = |text: &str| crate::core::untrusted::clean(text, crate::core::untrusted::MAX_NAME);
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map_or_else(|| "(unnamed)".to_string(), shown);
    let kind = crate::core::untrusted::clean(kind, crate::core::untrusted::MAX_REASON);
    match metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(namespace) => format!("{kind} {}/{name}", shown(namespace)),
        None => format!("{kind} {name}"),
    }
}

/// Refuses YAML aliases before serde_yaml_ng expands them: each alias replays
/// its anchor's whole subtree, so a small file can stand for a huge one.
/// Only text that could hold one (an anchor `&` and an alias `*`) is scanned.
fn refuse_aliases(text: &str, source_name: &str) -> Result<(), SnapshotError> {
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
    use yaml_rust2::scanner::Marker;

    if !(text.contains('&') && text.contains('*')) {
        return Ok(());
    }
    #[derive(Default)]
    struct Aliases {
        document: usize,
        first: Option<(usize, usize, usize)>,
    }
    impl MarkedEventReceiver for Aliases {
        fn on_event(&mut self, event: Event, mark: Marker) {
            match event {
                Event::DocumentStart => self.document += 1,
                Event::Alias(_) if self.first.is_none() => {
                    self.first = Some((self.document.max(1), mark.line(), mark.col() + 1));
                }
                _ => {}
            }
        }
    }
    let mut aliases = Aliases::default();
    // A scan error is left for serde_yaml_ng to report, with its own position.
    let _ = Parser::new_from_str(text).load(&mut aliases, true);
    match aliases.first {
        Some((document, line, column)) => Err(SnapshotError::Yaml {
            source_name: source_name.to_string(),
            document,
            message: format!(
                "YAML alias at line {line} column {column}: snapshots are read as `kubectl get -o yaml` writes them, without anchors and aliases"
            ),
        }),
        None => Ok(()),
    }
}

/// Names Kubernetes would accept: a DNS-1123 subdomain for the object, a
/// DNS-1123 label for its namespace and its pod's containers. A snapshot is
/// often written by hand, and a name is copied into prompts and reports.
fn check_names(value: &Value, kind: &str) -> Result<(), (String, String)> {
    let metadata = value.get("metadata");
    let field = |name: &str| metadata.and_then(|m| m.get(name)).and_then(Value::as_str);
    if let Some(name) = field("name")
        && !dns_subdomain(name)
    {
        return Err((
            describe(value, kind),
            "field `metadata.name` is not a valid Kubernetes name (lower-case letters, digits, '-' and '.', at most 253)".into(),
        ));
    }
    if let Some(namespace) = field("namespace")
        && !dns_label(namespace)
    {
        return Err((
            describe(value, kind),
            "field `metadata.namespace` is not a valid namespace name (lower-case letters, digits and '-', at most 63)".into(),
        ));
    }
    if kind == "Pod" {
        let containers = value
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for (index, container) in containers.enumerate() {
            if let Some(name) = container.get("name").and_then(Value::as_str)
                && !dns_label(name)
            {
                return Err((
                    describe(value, kind),
                    format!("field `spec.containers[{index}].name` is not a valid container name"),
                ));
            }
        }
    }
    Ok(())
}

fn dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(dns_label)
}
