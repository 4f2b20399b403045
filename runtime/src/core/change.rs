//! What a HealingAction changes, as the host types it: a rollout restart, an
//! eviction, a replica count, or container resources and allowed annotations.
//! Every action — the daemon's own typed plans and raw strategic-merge patches
//! alike — is parsed into a [`Change`] before anything runs, and the executors
//! write only what the `Change` holds, so a patch can never carry an image, a
//! command, an environment variable, a volume, a security context, a service
//! account, a host namespace, a sidecar or an init container to the API server.
//!
//! [`Bounds`] are the host's limits on the values (replicas, CPU, memory),
//! tightened by the governing policy's; [`WrittenField`]s are what a change
//! wrote, field by field, with the value each field had before.

use std::collections::BTreeMap;

use kubeskippy_plugin_sdk::quantity;
use serde_json::{Map, Value, json};

use crate::core::config::SafetyConfig;
use crate::core::crd::ActionKind;
use crate::core::crd::PROTECTED_KEY;
use crate::core::crd::healing_action::{
    ActionSpec, Field, PatchType, Resource, Section, WrittenField,
};
use crate::core::wit::ResourceAmounts;

/// A patch document larger than this is refused unread; the CRD allows 16 KiB.
const MAX_PATCH_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `kubectl rollout restart`: a new `restartedAt` in the pod template.
    RolloutRestart,
    /// One pod, through the Eviction API.
    Evict,
    Scale {
        replicas: u32,
    },
    Resources(ResourceChange),
}

/// Container CPU and memory, and annotations, merged into the target.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceChange {
    pub containers: Vec<ContainerResources>,
    /// On the pod template: rolls the pods, as a restart does.
    pub template_annotations: BTreeMap<String, String>,
    /// On the object itself.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerResources {
    pub name: String,
    pub limits: ResourceAmounts,
    pub requests: ResourceAmounts,
}

/// What raw patches may do beyond container resources, as the cluster
/// administrator configured it (`safety` in the daemon's config).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatchRules {
    /// Annotation keys a patch may set start with one of these; none by
    /// default, and never `kubeskippy.io/protected`.
    pub annotation_prefixes: Vec<String>,
}

/// Inclusive limits on the values a change writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub max_cpu_millicores: u64,
    pub max_memory_bytes: u64,
}

/// The host's bounds when the config sets none (`safety:` defaults).
impl Default for Bounds {
    fn default() -> Self {
        let safety = SafetyConfig::default();
        Bounds {
            min_replicas: 1,
            max_replicas: safety.max_replicas,
            max_cpu_millicores: safety.max_cpu_limit,
            max_memory_bytes: safety.max_memory_limit,
        }
    }
}

impl Bounds {
    /// The tighter of two bounds.
    pub fn within(self, other: Bounds) -> Bounds {
        Bounds {
            min_replicas: self.min_replicas.max(other.min_replicas),
            max_replicas: self.max_replicas.min(other.max_replicas),
            max_cpu_millicores: self.max_cpu_millicores.min(other.max_cpu_millicores),
            max_memory_bytes: self.max_memory_bytes.min(other.max_memory_bytes),
        }
    }
}

/// Pod-template kinds; a bare pod's spec cannot change in place.
fn has_template(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
    )
}

impl Change {
    /// The change a HealingAction's action block asks for on a target of
    /// `kind`, or why it is not one the host runs.
    pub fn of_action(
        action: &ActionSpec,
        kind: &str,
        rules: &PatchRules,
    ) -> Result<Change, String> {
        let missing = |block: &str| format!("{block} is required for this action type");
        match action.kind {
            ActionKind::Restart => {
                let strategy = action
                    .restart_action
                    .as_ref()
                    .map(|restart| restart.strategy.as_str());
                match (kind, strategy) {
                    ("Pod", Some("evict") | None) => Ok(Change::Evict),
                    ("Deployment" | "StatefulSet" | "DaemonSet", Some("rollout") | None) => {
                        Ok(Change::RolloutRestart)
                    }
                    ("ReplicaSet", _) => Err(
                        "a ReplicaSet is restarted through its Deployment, not by itself".into(),
                    ),
                    (_, Some(strategy)) => Err(format!(
                        "restart strategy {strategy:?} does not apply to a {kind}"
                    )),
                    _ => Err(format!("a {kind} cannot be restarted")),
                }
            }
            ActionKind::Scale => {
                let scale = action
                    .scale_action
                    .as_ref()
                    .ok_or_else(|| missing("scaleAction"))?;
                if !matches!(kind, "Deployment" | "StatefulSet" | "ReplicaSet") {
                    return Err(format!("a {kind} has no replica count to scale"));
                }
                Ok(Change::Scale {
                    replicas: scale.replicas,
                })
            }
            ActionKind::Patch => {
                let patch = action
                    .patch_action
                    .as_ref()
                    .ok_or_else(|| missing("patchAction"))?;
                match patch.patch_type {
                    PatchType::Strategic => {
                        parse_patch(&patch.patch, kind, rules).map(Change::Resources)
                    }
                }
            }
            ActionKind::DeletePod => {
                action
                    .delete_pod_action
                    .as_ref()
                    .ok_or_else(|| missing("deletePodAction"))?;
                if kind != "Pod" {
                    return Err(format!("delete-pod needs a Pod target, not a {kind}"));
                }
                Ok(Change::Evict)
            }
        }
    }

    /// Why a value the change writes is outside `bounds`.
    pub fn out_of_bounds(&self, bounds: &Bounds) -> Option<String> {
        match self {
            Change::Scale { replicas } => {
                (!(bounds.min_replicas..=bounds.max_replicas).contains(replicas)).then(|| {
                    format!(
                        "{replicas} replicas is outside the allowed range {}..={}",
                        bounds.min_replicas, bounds.max_replicas
                    )
                })
            }
            Change::Resources(change) => change.out_of_bounds(bounds),
            Change::RolloutRestart | Change::Evict => None,
        }
    }
}

impl ResourceChange {
    fn out_of_bounds(&self, bounds: &Bounds) -> Option<String> {
        for container in &self.containers {
            for (section, amounts) in [
                ("limit", &container.limits),
                ("request", &container.requests),
            ] {
                if let Some(cpu) = amounts.cpu_millicores {
                    if cpu == 0 {
                        return Some(format!("CPU {section} 0 for container {}", container.name));
                    }
                    if cpu > bounds.max_cpu_millicores {
                        return Some(format!(
                            "CPU {section} {} for container {} exceeds the maximum {}",
                            quantity::format_cpu(cpu),
                            container.name,
                            quantity::format_cpu(bounds.max_cpu_millicores)
                        ));
                    }
                }
                if let Some(memory) = amounts.memory_bytes {
                    if memory == 0 {
                        return Some(format!(
                            "memory {section} 0 for container {}",
                            container.name
                        ));
                    }
                    if memory > bounds.max_memory_bytes {
                        return Some(format!(
                            "memory {section} {} for container {} exceeds the maximum {}",
                            quantity::format_memory(memory),
                            container.name,
                            quantity::format_memory(bounds.max_memory_bytes)
                        ));
                    }
                }
            }
            for (resource, request, limit) in [
                (
                    "CPU",
                    container.requests.cpu_millicores,
                    container.limits.cpu_millicores,
                ),
                (
                    "memory",
                    container.requests.memory_bytes,
                    container.limits.memory_bytes,
                ),
            ] {
                if let (Some(request), Some(limit)) = (request, limit)
                    && request > limit
                {
                    return Some(format!(
                        "{resource} request above the {resource} limit for container {}",
                        container.name
                    ));
                }
            }
        }
        None
    }

    /// The strategic-merge patch that writes exactly this change, guarded by
    /// `resource_version` so it applies only to the object that was checked.
    pub fn patch_document(&self, kind: &str, resource_version: Option<&str>) -> Value {
        let mut document = Map::new();
        let mut metadata = Map::new();
        if let Some(version) = resource_version {
            metadata.insert("resourceVersion".into(), json!(version));
        }
        if !self.annotations.is_empty() {
            metadata.insert("annotations".into(), json!(self.annotations));
        }
        if !metadata.is_empty() {
            document.insert("metadata".into(), Value::Object(metadata));
        }
        if has_template(kind)
            && !(self.containers.is_empty() && self.template_annotations.is_empty())
        {
            let mut template = Map::new();
            if !self.template_annotations.is_empty() {
                template.insert(
                    "metadata".into(),
                    json!({ "annotations": self.template_annotations }),
                );
            }
            if !self.containers.is_empty() {
                let containers: Vec<Value> = self
                    .containers
                    .iter()
                    .map(|container| {
                        json!({ "name": container.name, "resources": resources_json(container) })
                    })
                    .collect();
                template.insert("spec".into(), json!({ "containers": containers }));
            }
            document.insert("spec".into(), json!({ "template": template }));
        }
        Value::Object(document)
    }

    /// The fields this change writes, with their values in `current` (the
    /// live object). Every container it names must be one of the object's
    /// regular containers: a patch cannot add one.
    pub fn record(&self, current: &Value, kind: &str) -> Result<Vec<WrittenField>, String> {
        let mut fields = Vec::new();
        for container in &self.containers {
            if find_container(current, kind, &container.name).is_none() {
                return Err(format!(
                    "container {} is not one of the {kind}'s containers",
                    container.name
                ));
            }
            for (section, amounts) in [
                (Section::Limits, &container.limits),
                (Section::Requests, &container.requests),
            ] {
                for (resource, value) in [
                    (
                        Resource::Cpu,
                        amounts.cpu_millicores.map(quantity::format_cpu),
                    ),
                    (
                        Resource::Memory,
                        amounts.memory_bytes.map(quantity::format_memory),
                    ),
                ] {
                    if let Some(wrote) = value {
                        let field = Field::Resource {
                            container: container.name.clone(),
                            section,
                            resource,
                        };
                        fields.push(WrittenField {
                            previous: field.read(current, kind),
                            field,
                            wrote,
                        });
                    }
                }
            }
        }
        for (key, value) in &self.template_annotations {
            let field = Field::TemplateAnnotation { key: key.clone() };
            fields.push(WrittenField {
                previous: field.read(current, kind),
                field,
                wrote: value.clone(),
            });
        }
        for (key, value) in &self.annotations {
            let field = Field::Annotation { key: key.clone() };
            fields.push(WrittenField {
                previous: field.read(current, kind),
                field,
                wrote: value.clone(),
            });
        }
        Ok(fields)
    }
}

fn resources_json(container: &ContainerResources) -> Value {
    let mut resources = Map::new();
    for (section, amounts) in [
        ("limits", &container.limits),
        ("requests", &container.requests),
    ] {
        let mut values = Map::new();
        if let Some(cpu) = amounts.cpu_millicores {
            values.insert("cpu".into(), json!(quantity::format_cpu(cpu)));
        }
        if let Some(memory) = amounts.memory_bytes {
            values.insert("memory".into(), json!(quantity::format_memory(memory)));
        }
        if !values.is_empty() {
            resources.insert(section.into(), Value::Object(values));
        }
    }
    Value::Object(resources)
}

/// The object's regular container called `name` (init and ephemeral
/// containers are never patched).
pub(crate) fn find_container<'a>(object: &'a Value, kind: &str, name: &str) -> Option<&'a Value> {
    let pointer = if kind == "Pod" {
        "/spec/containers"
    } else {
        "/spec/template/spec/containers"
    };
    object
        .pointer(pointer)?
        .as_array()?
        .iter()
        .find(|container| container["name"].as_str() == Some(name))
}

/// Reads a strategic-merge patch as a [`ResourceChange`], refusing, with the
/// path it names, anything but container CPU and memory and allowed
/// annotations.
pub fn parse_patch(
    document: &str,
    kind: &str,
    rules: &PatchRules,
) -> Result<ResourceChange, String> {
    if document.len() > MAX_PATCH_BYTES {
        return Err(format!(
            "the patch is {} bytes, over the {MAX_PATCH_BYTES} a patch may have",
            document.len()
        ));
    }
    let value: Value = serde_yaml_ng::from_str(document).map_err(|error| {
        format!(
            "the patch does not parse: {}",
            crate::core::text::one_line(&error.to_string())
        )
    })?;
    let top = mapping(&value, "the patch")?;
    let mut change = ResourceChange::default();
    for (key, value) in top {
        match key.as_str() {
            "metadata" => {
                change.annotations = annotations(value, "metadata", rules)?;
            }
            "spec" if has_template(kind) => {
                for (key, value) in mapping(value, "spec")? {
                    match key.as_str() {
                        "template" => template(value, rules, &mut change)?,
                        other => return Err(refused(&format!("spec.{other}"))),
                    }
                }
            }
            other => return Err(refused(other)),
        }
    }
    if change.containers.is_empty()
        && change.template_annotations.is_empty()
        && change.annotations.is_empty()
    {
        return Err("the patch changes nothing".into());
    }
    Ok(change)
}

fn template(value: &Value, rules: &PatchRules, change: &mut ResourceChange) -> Result<(), String> {
    for (key, value) in mapping(value, "spec.template")? {
        match key.as_str() {
            "metadata" => {
                change.template_annotations = annotations(value, "spec.template.metadata", rules)?;
            }
            "spec" => {
                for (key, value) in mapping(value, "spec.template.spec")? {
                    match key.as_str() {
                        "containers" => change.containers = containers(value)?,
                        other => return Err(refused(&format!("spec.template.spec.{other}"))),
                    }
                }
            }
            other => return Err(refused(&format!("spec.template.{other}"))),
        }
    }
    Ok(())
}

fn containers(value: &Value) -> Result<Vec<ContainerResources>, String> {
    let path = "spec.template.spec.containers";
    let list = value
        .as_array()
        .ok_or_else(|| format!("{path} must be a list"))?;
    let mut containers: Vec<ContainerResources> = Vec::new();
    for (index, item) in list.iter().enumerate() {
        let at = format!("{path}[{index}]");
        let mut name = None;
        let mut limits = empty_amounts();
        let mut requests = empty_amounts();
        for (key, value) in mapping(item, &at)? {
            match key.as_str() {
                "name" => {
                    name = Some(
                        value
                            .as_str()
                            .ok_or_else(|| format!("{at}.name must be a string"))?
                            .to_string(),
                    );
                }
                "resources" => {
                    for (key, value) in mapping(value, &format!("{at}.resources"))? {
                        let amounts = match key.as_str() {
                            "limits" => &mut limits,
                            "requests" => &mut requests,
                            other => return Err(refused(&format!("{at}.resources.{other}"))),
                        };
                        *amounts = resource_amounts(value, &format!("{at}.resources.{key}"))?;
                    }
                }
                other => return Err(refused(&format!("{at}.{other}"))),
            }
        }
        let name = name.ok_or_else(|| format!("{at}.name is required to say which container"))?;
        if containers.iter().any(|c| c.name == name) {
            return Err(format!("{at}: container {name} is named twice"));
        }
        containers.push(ContainerResources {
            name,
            limits,
            requests,
        });
    }
    Ok(containers)
}

fn empty_amounts() -> ResourceAmounts {
    ResourceAmounts {
        cpu_millicores: None,
        memory_bytes: None,
    }
}

fn resource_amounts(value: &Value, path: &str) -> Result<ResourceAmounts, String> {
    let mut amounts = empty_amounts();
    for (key, value) in mapping(value, path)? {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Null => {
                return Err(format!(
                    "{path}.{key}: removing a {key} value is not allowed"
                ));
            }
            _ => return Err(format!("{path}.{key} must be a quantity")),
        };
        match key.as_str() {
            "cpu" => {
                amounts.cpu_millicores = Some(
                    quantity::cpu_millicores(&text).map_err(|why| format!("{path}.cpu: {why}"))?,
                );
            }
            "memory" => {
                amounts.memory_bytes = Some(
                    quantity::memory_bytes(&text).map_err(|why| format!("{path}.memory: {why}"))?,
                );
            }
            other => return Err(refused(&format!("{path}.{other}"))),
        }
    }
    Ok(amounts)
}

fn annotations(
    value: &Value,
    path: &str,
    rules: &PatchRules,
) -> Result<BTreeMap<String, String>, String> {
    let mut annotations = BTreeMap::new();
    for (key, value) in mapping(value, path)? {
        if key != "annotations" {
            return Err(refused(&format!("{path}.{key}")));
        }
        for (name, value) in mapping(value, &format!("{path}.annotations"))? {
            let at = format!("{path}.annotations[{name}]");
            let allowed = name != PROTECTED_KEY
                && rules
                    .annotation_prefixes
                    .iter()
                    .any(|prefix| !prefix.is_empty() && name.starts_with(prefix.as_str()));
            if !allowed {
                return Err(format!(
                    "{at}: this annotation is not one a HealingAction may set (safety.annotationPrefixes)"
                ));
            }
            let text = value
                .as_str()
                .ok_or_else(|| format!("{at} must be a string (removing one is not allowed)"))?;
            annotations.insert(name.clone(), text.to_string());
        }
    }
    Ok(annotations)
}

fn mapping<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{path} must be a mapping"))
}

fn refused(path: &str) -> String {
    format!(
        "the patch sets {path}, which a HealingAction may not change: only container CPU and memory and allowed annotations"
    )
}

// What a field is and how it is read and written; the record itself is the
// HealingAction status's (`status.rollback`).
impl Field {
    /// The field's value in `object`; replicas are read from a Scale.
    pub fn read(&self, object: &Value, kind: &str) -> Option<String> {
        let text = |value: &Value| match value {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        };
        match self {
            Field::Replicas => text(&object["spec"]["replicas"]).or(Some("0".into())),
            Field::Resource {
                container,
                section,
                resource,
            } => {
                let found = find_container(object, kind, container)?;
                text(&found["resources"][section.key()][resource.key()])
            }
            Field::TemplateAnnotation { key } => {
                text(&object["spec"]["template"]["metadata"]["annotations"][key])
            }
            Field::Annotation { key } => text(&object["metadata"]["annotations"][key]),
        }
    }

    /// Whether two values of this field are the same: quantities compare by
    /// amount, since the API server may write `1024Mi` back as `1Gi`.
    pub fn same(&self, a: Option<&str>, b: Option<&str>) -> bool {
        match (self, a, b) {
            (Field::Resource { resource, .. }, Some(a), Some(b)) => {
                let amount = |text: &str| match resource {
                    Resource::Cpu => quantity::cpu_millicores(text).ok(),
                    Resource::Memory => quantity::memory_bytes(text).ok(),
                };
                match (amount(a), amount(b)) {
                    (Some(a), Some(b)) => a == b,
                    _ => a == b,
                }
            }
            _ => a == b,
        }
    }

    /// `limits.memory of container app`: how messages name the field.
    pub fn describe(&self) -> String {
        match self {
            Field::Replicas => "replicas".into(),
            Field::Resource {
                container,
                section,
                resource,
            } => format!(
                "{}.{} of container {container}",
                section.key(),
                resource.key()
            ),
            Field::TemplateAnnotation { key } => format!("pod-template annotation {key}"),
            Field::Annotation { key } => format!("annotation {key}"),
        }
    }
}

impl Section {
    fn key(self) -> &'static str {
        match self {
            Section::Limits => "limits",
            Section::Requests => "requests",
        }
    }
}

impl Resource {
    fn key(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }
}

/// The strategic-merge patch that sets each field to `value` (`None` removes
/// it), guarded by `resource_version`. Replicas are not part of it: they go
/// through the Scale subresource.
pub fn restore_document(
    fields: &[(&Field, Option<&str>)],
    kind: &str,
    resource_version: Option<&str>,
) -> Value {
    let mut document = json!({});
    if let Some(version) = resource_version {
        document["metadata"]["resourceVersion"] = json!(version);
    }
    let mut containers: BTreeMap<&str, Value> = BTreeMap::new();
    for (field, value) in fields {
        let value = value.map_or(Value::Null, |text| json!(text));
        match field {
            Field::Replicas => {}
            Field::Resource {
                container,
                section,
                resource,
            } => {
                let entry = containers
                    .entry(container.as_str())
                    .or_insert_with(|| json!({ "name": container, "resources": {} }));
                entry["resources"][section.key()][resource.key()] = value;
            }
            Field::TemplateAnnotation { key } => {
                document["spec"]["template"]["metadata"]["annotations"][key.as_str()] = value;
            }
            Field::Annotation { key } => {
                document["metadata"]["annotations"][key.as_str()] = value;
            }
        }
    }
    if !containers.is_empty() {
        let list: Vec<Value> = containers.into_values().collect();
        let pointer = if kind == "Pod" {
            &mut document["spec"]["containers"]
        } else {
            &mut document["spec"]["template"]["spec"]["containers"]
        };
        *pointer = Value::Array(list);
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> PatchRules {
        PatchRules {
            annotation_prefixes: vec!["example.com/".into()],
        }
    }

    #[test]
    fn resource_patches_parse_into_typed_changes() {
        let change = parse_patch(
            "spec:\n  template:\n    spec:\n      containers:\n      - name: app\n        resources:\n          limits: {memory: 1Gi, cpu: 1500m}\n          requests: {memory: 512Mi}\n",
            "Deployment",
            &PatchRules::default(),
        )
        .unwrap();
        assert_eq!(
            change.containers,
            [ContainerResources {
                name: "app".into(),
                limits: ResourceAmounts {
                    cpu_millicores: Some(1500),
                    memory_bytes: Some(1 << 30)
                },
                requests: ResourceAmounts {
                    cpu_millicores: None,
                    memory_bytes: Some(512 << 20)
                },
            }]
        );
        assert_eq!(
            change.patch_document("Deployment", Some("42")),
            json!({
                "metadata": {"resourceVersion": "42"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "app", "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}, "requests": {"memory": "512Mi"}}}
                ]}}}
            })
        );
    }

    #[test]
    fn a_patch_touching_anything_else_is_refused_with_the_path() {
        let cases = [
            (
                "spec: {template: {spec: {containers: [{name: app, image: evil:latest}]}}}",
                "spec.template.spec.containers[0].image",
            ),
            (
                "spec: {template: {spec: {containers: [{name: app, command: [sh]}]}}}",
                "spec.template.spec.containers[0].command",
            ),
            (
                "spec: {template: {spec: {containers: [{name: app, env: [{name: A, value: b}]}]}}}",
                "spec.template.spec.containers[0].env",
            ),
            (
                "spec: {template: {spec: {containers: [{name: app, envFrom: [{secretRef: {name: db}}]}]}}}",
                "spec.template.spec.containers[0].envFrom",
            ),
            (
                "spec: {template: {spec: {containers: [{name: app, securityContext: {privileged: true}}]}}}",
                "spec.template.spec.containers[0].securityContext",
            ),
            (
                "spec: {template: {spec: {hostPID: true}}}",
                "spec.template.spec.hostPID",
            ),
            (
                "spec: {template: {spec: {serviceAccountName: admin}}}",
                "spec.template.spec.serviceAccountName",
            ),
            (
                "spec: {template: {spec: {volumes: [{name: root, hostPath: {path: /}}]}}}",
                "spec.template.spec.volumes",
            ),
            (
                "spec: {template: {spec: {initContainers: [{name: x, image: y}]}}}",
                "spec.template.spec.initContainers",
            ),
            ("spec: {replicas: 0}", "spec.replicas"),
            (
                "spec: {template: {spec: {containers: [{name: app, resources: {limits: {nvidia.com/gpu: 8}}}]}}}",
                "spec.template.spec.containers[0].resources.limits.nvidia.com/gpu",
            ),
            (
                "spec: {template: {spec: {$setElementOrder/containers: [{name: app}]}}}",
                "spec.template.spec.$setElementOrder/containers",
            ),
            (
                "spec: {template: {spec: {containers: [{name: app, $patch: replace}]}}}",
                "spec.template.spec.containers[0].$patch",
            ),
            ("status: {replicas: 3}", "status"),
            (
                "metadata: {labels: {kubeskippy.io/protected: 'false'}}",
                "metadata.labels",
            ),
        ];
        for (document, path) in cases {
            let error = parse_patch(document, "Deployment", &rules()).unwrap_err();
            assert!(
                error.contains(&format!("sets {path},")),
                "{document}: {error}"
            );
        }
    }

    #[test]
    fn annotations_need_an_allowed_prefix_and_never_unprotect() {
        let change = parse_patch(
            "spec: {template: {metadata: {annotations: {example.com/heap-dump: 'true'}}}}",
            "Deployment",
            &rules(),
        )
        .unwrap();
        assert_eq!(change.template_annotations["example.com/heap-dump"], "true");
        for document in [
            "spec: {template: {metadata: {annotations: {vault.hashicorp.com/agent-inject: 'true'}}}}",
            "metadata: {annotations: {kubeskippy.io/protected: 'false'}}",
            "metadata: {annotations: {example.com/x: null}}",
        ] {
            let error = parse_patch(document, "Deployment", &rules()).unwrap_err();
            assert!(error.contains("annotation"), "{document}: {error}");
        }
        let error = parse_patch(
            "metadata: {annotations: {kubeskippy.io/protected: 'false'}}",
            "Deployment",
            &PatchRules {
                annotation_prefixes: vec!["kubeskippy.io/".into()],
            },
        )
        .unwrap_err();
        assert!(error.contains("not one a HealingAction may set"), "{error}");
    }

    #[test]
    fn removing_a_limit_or_naming_a_container_twice_is_refused() {
        for (document, expected) in [
            (
                "spec: {template: {spec: {containers: [{name: app, resources: {limits: {memory: null}}}]}}}",
                "removing",
            ),
            (
                "spec: {template: {spec: {containers: [{name: app}, {name: app}]}}}",
                "named twice",
            ),
            (
                "spec: {template: {spec: {containers: [{resources: {limits: {memory: 1Gi}}}]}}}",
                "name is required",
            ),
            ("[1, 2]", "must be a mapping"),
            ("{}", "changes nothing"),
            (
                "spec: {template: {spec: {containers: [{name: app, resources: {limits: {memory: lots}}}]}}}",
                "memory",
            ),
        ] {
            let error = parse_patch(document, "Deployment", &rules()).unwrap_err();
            assert!(error.contains(expected), "{document}: {error}");
        }
        let error = parse_patch(
            "spec: {containers: [{name: app, resources: {limits: {memory: 1Gi}}}]}",
            "Pod",
            &rules(),
        )
        .unwrap_err();
        assert!(error.contains("sets spec,"), "{error}");
    }

    #[test]
    fn bounds_refuse_zero_huge_and_inverted_values() {
        let bounds = Bounds::default();
        let one = |limits: ResourceAmounts, requests: ResourceAmounts| {
            Change::Resources(ResourceChange {
                containers: vec![ContainerResources {
                    name: "app".into(),
                    limits,
                    requests,
                }],
                ..ResourceChange::default()
            })
        };
        let amounts = |cpu, memory| ResourceAmounts {
            cpu_millicores: cpu,
            memory_bytes: memory,
        };
        for (change, expected) in [
            (
                Change::Scale { replicas: 0 },
                "outside the allowed range 1..=20",
            ),
            (Change::Scale { replicas: 21 }, "outside the allowed range"),
            (
                one(amounts(Some(100_000_000), None), amounts(None, None)),
                "CPU limit 100000 for container app exceeds the maximum 16",
            ),
            (
                one(amounts(None, Some(1 << 60)), amounts(None, None)),
                "exceeds the maximum 32Gi",
            ),
            (
                one(amounts(Some(0), None), amounts(None, None)),
                "CPU limit 0",
            ),
            (
                one(amounts(None, Some(1 << 30)), amounts(None, Some(2 << 30))),
                "memory request above the memory limit",
            ),
        ] {
            let why = change.out_of_bounds(&bounds).expect("refused");
            assert!(why.contains(expected), "{change:?}: {why}");
        }
        assert_eq!(Change::Scale { replicas: 3 }.out_of_bounds(&bounds), None);
    }

    #[test]
    fn records_read_the_values_before_and_restores_only_name_the_fields() {
        let current = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "resources": {"limits": {"memory": "512Mi"}}},
            {"name": "sidecar"}
        ]}}}});
        let change = parse_patch(
            "spec: {template: {spec: {containers: [{name: app, resources: {limits: {memory: 1Gi, cpu: '1'}}}]}}}",
            "Deployment",
            &PatchRules::default(),
        )
        .unwrap();
        let fields = change.record(&current, "Deployment").unwrap();
        assert_eq!(fields.len(), 2);
        let memory = fields.iter().find(|f| f.wrote == "1Gi").unwrap();
        assert_eq!(memory.previous.as_deref(), Some("512Mi"));
        let cpu = fields.iter().find(|f| f.wrote == "1").unwrap();
        assert_eq!(cpu.previous, None);
        assert!(memory.field.same(Some("1024Mi"), Some("1Gi")));
        let restore = restore_document(
            &[(&memory.field, Some("512Mi")), (&cpu.field, None)],
            "Deployment",
            Some("7"),
        );
        assert_eq!(
            restore,
            json!({"metadata": {"resourceVersion": "7"}, "spec": {"template": {"spec": {"containers": [
                {"name": "app", "resources": {"limits": {"memory": "512Mi", "cpu": null}}}
            ]}}}})
        );
        let unknown = parse_patch(
            "spec: {template: {spec: {containers: [{name: injected, resources: {limits: {memory: 1Gi}}}]}}}",
            "Deployment",
            &PatchRules::default(),
        )
        .unwrap();
        assert!(
            unknown
                .record(&current, "Deployment")
                .unwrap_err()
                .contains("not one of the Deployment's containers")
        );
    }
}
