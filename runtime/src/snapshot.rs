//! Reading a cluster snapshot: plain Kubernetes objects as `kubectl get -o yaml`
//! prints them, in multi-document YAML or `List`s (any `*List` kind, such as the
//! `PodMetricsList` of `kubectl get --raw /apis/metrics.k8s.io/...`).
//!
//! Only the kinds the pipeline reasons about are kept. Secrets, ConfigMaps and
//! every other kind are counted and dropped here, unread, so nothing in them can
//! reach a prompt.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use serde::Deserialize;
use serde_json::Value;

use crate::collect::{
    CachedDaemonSet, CachedDeployment, CachedEvent, CachedPod, CachedReplicaSet, CachedStatefulSet,
    CpuMemory, null_as_default,
};
use crate::facts::ClusterObjects;
use crate::policy::HealingPolicy;

/// metrics.k8s.io/v1beta1 PodMetrics (k8s-openapi has no type for it), read
/// down to which pod it is and each container's CPU and memory: the daemon
/// holds one per pod.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PodMetrics {
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: MetricsIdentity,
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<ContainerMetrics>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct MetricsIdentity {
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ContainerMetrics {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub usage: CpuMemory,
}

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

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read snapshot {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
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
        let text = std::fs::read_to_string(path).map_err(|source| SnapshotError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Snapshot::parse(&text, &path.display().to_string())
    }

    /// Parses every document; the first bad object fails the whole snapshot so a
    /// half-read cluster is never analysed as if it were whole.
    pub fn parse(text: &str, source_name: &str) -> Result<Snapshot, SnapshotError> {
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
                .add(value)
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
    fn add(&mut self, value: Value) -> Result<(), (String, String)> {
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
            let Some(Value::Array(items)) = value.get("items").cloned() else {
                return Err((kind, "`items` must be a list".into()));
            };
            for item in items {
                self.add(with_kind_from_list(item, &kind, &api_version))?;
            }
            return Ok(());
        }
        let group = api_version
            .split_once('/')
            .map(|(group, _)| group)
            .unwrap_or("");
        match (group, kind.as_str()) {
            ("", "Pod") => self.pods.push(kept::<Pod, _>(value, &kind)?),
            ("", "Event") => self.events.push(kept::<Event, _>(value, &kind)?),
            ("apps", "Deployment") => self.deployments.push(kept::<Deployment, _>(value, &kind)?),
            ("apps", "ReplicaSet") => self.replica_sets.push(kept::<ReplicaSet, _>(value, &kind)?),
            ("apps", "StatefulSet") => self
                .stateful_sets
                .push(kept::<StatefulSet, _>(value, &kind)?),
            ("apps", "DaemonSet") => self.daemon_sets.push(kept::<DaemonSet, _>(value, &kind)?),
            ("metrics.k8s.io", "PodMetrics") => self.pod_metrics.push(typed(value, &kind)?),
            ("kubeskippy.io", "HealingPolicy") => {
                let policy: HealingPolicy = typed(value, &kind)?;
                policy.validate().map_err(|message| {
                    (
                        format!(
                            "HealingPolicy {}",
                            policy.metadata.name.as_deref().unwrap_or("?")
                        ),
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

fn describe(value: &Value, kind: &str) -> String {
    let metadata = value.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    match metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Library errors (YAML, serde) span lines; ours are one line each.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
