//! An in-memory Kubernetes API server as a `tower::service_fn`, answering a
//! real `kube::Client`: GET/LIST/POST/PUT/PATCH/DELETE on namespaced objects,
//! LIST with an equality `labelSelector`, `/scale` for Deployments,
//! StatefulSets and ReplicaSets, `/status` (PUT and PATCH) for any object,
//! `pods/NAME/eviction` honouring seeded PodDisruptionBudgets and a uid
//! precondition, server-side
//! dry-run, a `metadata.resourceVersion` precondition on PUT and PATCH,
//! `authentication.k8s.io/v1` SelfSubjectReviews for a configured user,
//! injected failures, and a log of every request.
//!
//! Patches: JSON merge (RFC 7386) and JSON patch (RFC 6902) by the `json-patch`
//! crate, and strategic merge as merge plus list-merge-by-key for the lists our patches rely on
//! (`containers` by `name` and friends) and `$patch: delete` on list items.
//! ClusterHealingPolicies are served at their cluster-scoped path.
//! Not served: watch, set-based label selectors, field selectors, other
//! cluster-scoped paths, server-side apply, defaulting and schema validation.
//! The HealingAction CRD's CEL rules (`x-kubernetes-validations`, transition
//! rules included) are enforced on every write of one, as the API server
//! does, with the `kube-cel` crate.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use kube::client::Body;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    /// Exactly as sent; kube starts it with `&`.
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Logged {
    /// `METHOD /path?query`, the form tests assert on.
    pub fn line(&self) -> String {
        if self.query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, self.query)
        }
    }

    /// Server-side dry-run: `dryRun=All` in the query, or in the body's
    /// DeleteOptions, which is where kube puts it for DELETE.
    pub fn dry_run(&self) -> bool {
        self.query.split('&').any(|pair| pair == "dryRun=All")
            || self.body["dryRun"]
                .as_array()
                .is_some_and(|values| values.iter().any(|v| v == "All"))
    }

    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    resource_version: u64,
    log: Vec<Logged>,
    /// Who SelfSubjectReviews say the caller is; `None`: not served (404).
    user: Option<String>,
    failures: Vec<Failure>,
    hooks: Vec<Hook>,
}

/// Run after the server answered a request with this method and path, as
/// another client writing at that moment would.
struct Hook {
    method: String,
    path: String,
    run: Arc<dyn Fn(&FakeApi) + Send + Sync>,
}

/// Requests answered with an error instead of being served.
struct Failure {
    method: String,
    path: String,
    code: u16,
    remaining: usize,
}

const SELF_SUBJECT_REVIEWS: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

/// Lists the API server merges by key in a strategic-merge patch, as declared
/// by `patchMergeKey` in the core types.
const MERGE_KEYS: [(&str, &str); 8] = [
    ("containers", "name"),
    ("initContainers", "name"),
    ("ephemeralContainers", "name"),
    ("env", "name"),
    ("volumes", "name"),
    ("volumeMounts", "mountPath"),
    ("ports", "containerPort"),
    ("imagePullSecrets", "name"),
];

const SCALABLE: [&str; 3] = ["deployments", "statefulsets", "replicasets"];

/// Cluster-scoped resources the fake serves, at `/apis/GROUP/VERSION/RESOURCE`.
const CLUSTER_SCOPED: [&str; 1] = ["clusterhealingpolicies"];

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    /// A client whose every request this fake answers.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.service(), "default")
    }

    /// The same, retrying 429, 503 and 504 answers as a client built from a
    /// kubeconfig does by default (kube's server-aware policy: 15 retries
    /// over about two and a half minutes).
    pub fn client_with_retries(&self) -> kube::Client {
        let service = tower::ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(
                kube::client::retry::RetryPolicy::server_retry(),
            ))
            .service(self.service());
        kube::Client::new(service, "default")
    }

    fn service(
        &self,
    ) -> tower::util::BoxCloneService<Request<Body>, Response<Full<Bytes>>, tower::BoxError> {
        let fake = self.clone();
        tower::util::BoxCloneService::new(tower::service_fn(move |request: Request<Body>| {
            let fake = fake.clone();
            async move { Ok::<_, tower::BoxError>(fake.handle(request).await) }
        }))
    }

    /// Stores every document of a (multi-document) YAML stream.
    pub fn seed_yaml(&self, yaml: &str) {
        for document in serde_yaml_ng::Deserializer::from_str(yaml) {
            let object = Value::deserialize(document).expect("seed YAML parses");
            if !object.is_null() {
                self.insert(object);
            }
        }
    }

    /// Stores one object at the path its apiVersion, kind, namespace and
    /// name give it.
    pub fn insert(&self, object: Value) {
        let path = object_path(
            object["apiVersion"].as_str().expect("apiVersion"),
            object["kind"].as_str().expect("kind"),
            object["metadata"]["namespace"].as_str().unwrap_or_default(),
            object["metadata"]["name"].as_str().expect("name"),
        );
        self.store(&path, object);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Every stored object by path, to show that nothing changed.
    pub fn snapshot(&self) -> BTreeMap<String, Value> {
        self.state.lock().unwrap().objects.clone()
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn request_lines(&self) -> Vec<String> {
        self.requests().iter().map(Logged::line).collect()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Serve SelfSubjectReviews, answering that the caller is `user`.
    pub fn set_user(&self, user: &str) {
        self.state.lock().unwrap().user = Some(user.to_string());
    }

    /// Answer the next `times` requests with this method and exact path with
    /// a Status of `code`, as an overloaded or failing server would.
    pub fn fail_next(&self, method: &str, path: &str, code: u16, times: usize) {
        self.state.lock().unwrap().failures.push(Failure {
            method: method.to_string(),
            path: path.to_string(),
            code,
            remaining: times,
        });
    }

    /// After answering each request with this method and exact path, run
    /// `edit`: a concurrent writer acting between two of the client's
    /// requests.
    pub fn after(&self, method: &str, path: &str, edit: impl Fn(&FakeApi) + Send + Sync + 'static) {
        self.state.lock().unwrap().hooks.push(Hook {
            method: method.to_string(),
            path: path.to_string(),
            run: Arc::new(edit),
        });
    }

    fn injected_failure(&self, request: &Logged) -> Option<Response<Full<Bytes>>> {
        let mut state = self.state.lock().unwrap();
        let failure = state.failures.iter_mut().find(|failure| {
            failure.remaining > 0
                && failure.method == request.method
                && failure.path == request.path
        })?;
        failure.remaining -= 1;
        let code = failure.code;
        Some(status(
            code,
            "InternalError",
            &format!("injected failure {code}"),
        ))
    }

    fn self_subject_review(&self, request: &Logged) -> Response<Full<Bytes>> {
        let user = self.state.lock().unwrap().user.clone();
        match (request.method.as_str(), user) {
            ("POST", Some(user)) => {
                let mut review = request.body.clone();
                review["status"] =
                    json!({ "userInfo": { "username": user, "groups": ["system:authenticated"] } });
                respond_with(StatusCode::CREATED, &review)
            }
            _ => status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        }
    }

    fn store(&self, path: &str, mut object: Value) -> Value {
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        let version = state.resource_version;
        let metadata = &mut object["metadata"];
        metadata["resourceVersion"] = json!(version.to_string());
        if metadata["uid"].is_null() {
            metadata["uid"] = json!(format!("uid-{version}"));
        }
        state.objects.insert(path.to_string(), object.clone());
        object
    }

    fn remove(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.remove(path)
    }

    /// Answers one request, as `client` does for each it sends.
    pub async fn handle(&self, request: Request<Body>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(value) => value,
                Err(error) => return status(400, "BadRequest", &error.to_string()),
            }
        };
        let logged = Logged {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body,
        };
        self.state.lock().unwrap().log.push(logged.clone());
        if let Some(failure) = self.injected_failure(&logged) {
            return failure;
        }
        if logged.path == SELF_SUBJECT_REVIEWS {
            return self.self_subject_review(&logged);
        }
        let response = self.respond(&parts.method, &logged);
        let hooks: Vec<_> = self
            .state
            .lock()
            .unwrap()
            .hooks
            .iter()
            .filter(|hook| hook.method == logged.method && hook.path == logged.path)
            .map(|hook| hook.run.clone())
            .collect();
        for hook in hooks {
            hook(self);
        }
        response
    }

    fn respond(&self, method: &Method, request: &Logged) -> Response<Full<Bytes>> {
        let Some(route) = Route::parse(&request.path) else {
            return status(404, "NotFound", &format!("no route for {}", request.path));
        };
        let dry_run = request.dry_run();
        let key = route
            .name
            .as_ref()
            .map(|name| format!("{}/{name}", route.collection));
        let existing = key.as_deref().and_then(|key| self.get(key));
        let not_found = || {
            status(
                404,
                "NotFound",
                &format!(
                    "{} \"{}\" not found",
                    route.resource,
                    route.name.as_deref().unwrap_or_default()
                ),
            )
        };
        match (method.clone(), route.name.as_deref(), route.sub.as_deref()) {
            (Method::GET, None, None) => {
                let prefix = format!("{}/", route.collection);
                let selector = label_selector(&request.query);
                let state = self.state.lock().unwrap();
                let items: Vec<&Value> = state
                    .objects
                    .iter()
                    .filter(|(path, _)| {
                        path.strip_prefix(&prefix)
                            .is_some_and(|rest| !rest.contains('/'))
                    })
                    .map(|(_, object)| object)
                    .filter(|object| {
                        selector
                            .iter()
                            .all(|(key, value)| object["metadata"]["labels"][key] == *value)
                    })
                    .collect();
                ok(&json!({
                    "kind": "List",
                    "apiVersion": "v1",
                    "metadata": { "resourceVersion": state.resource_version.to_string() },
                    "items": items,
                }))
            }
            (Method::GET, Some(_), None) => existing.map_or_else(not_found, |object| ok(&object)),
            (Method::GET, Some(_), Some("scale")) if route.scalable() => {
                existing.map_or_else(not_found, |object| ok(&scale_of(&object)))
            }
            (Method::POST, None, None) => {
                let mut object = request.body.clone();
                // As the API server does for every kind with a status: status
                // is the controllers' to write, through /status.
                if let Some(fields) = object.as_object_mut() {
                    fields.remove("status");
                }
                let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
                    return status(422, "Invalid", "metadata.name: Required value");
                };
                let path = format!("{}/{name}", route.collection);
                if self.get(&path).is_some() {
                    return status(409, "AlreadyExists", &format!("\"{name}\" already exists"));
                }
                if !route.namespace.is_empty() {
                    object["metadata"]["namespace"] = json!(route.namespace);
                }
                if let Some(refusal) = crd_refusal(&route, &object, None) {
                    return refusal;
                }
                let object = if dry_run {
                    object
                } else {
                    self.store(&path, object)
                };
                respond_with(StatusCode::CREATED, &object)
            }
            (Method::POST, Some(_), Some("eviction")) if route.resource == "pods" => {
                let Some(pod) = existing else {
                    return not_found();
                };
                let precondition = &request.body["deleteOptions"]["preconditions"]["uid"];
                if precondition.is_string() && *precondition != pod["metadata"]["uid"] {
                    return status(
                        409,
                        "Conflict",
                        &format!(
                            "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                            precondition.as_str().unwrap_or_default(),
                            pod["metadata"]["uid"].as_str().unwrap_or_default()
                        ),
                    );
                }
                if let Some(refusal) = self.budget_refusal(&route.namespace, &pod) {
                    return refusal;
                }
                if !dry_run {
                    self.remove(key.as_deref().expect("named route"));
                }
                respond_with(
                    StatusCode::CREATED,
                    &json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "code": 201,
                    }),
                )
            }
            (Method::PUT, Some(name), sub @ (None | Some("status"))) => {
                let Some(current) = existing else {
                    return not_found();
                };
                if let Some(conflict) = stale(request, &current, &route.resource, name) {
                    return conflict;
                }
                // As for a kind with a status subresource: a PUT of the
                // object keeps its status, one of /status changes only that.
                let (mut object, status_from) = match sub {
                    None => (request.body.clone(), &current),
                    _ => (current.clone(), &request.body),
                };
                match status_from.get("status") {
                    Some(status) => object["status"] = status.clone(),
                    None => {
                        if let Some(fields) = object.as_object_mut() {
                            fields.remove("status");
                        }
                    }
                }
                if let Some(refusal) = crd_refusal(&route, &object, Some(&current)) {
                    return refusal;
                }
                let object = if dry_run {
                    object
                } else {
                    self.store(key.as_deref().expect("named route"), object)
                };
                ok(&object)
            }
            (Method::PATCH, Some(name), sub) => {
                let Some(mut object) = existing else {
                    return not_found();
                };
                let current = object.clone();
                if let Some(conflict) = stale(request, &object, &route.resource, name) {
                    return conflict;
                }
                match sub {
                    Some("scale") if route.scalable() => {
                        let mut scale = scale_of(&object);
                        if let Err((code, reason, message)) = apply_patch(&mut scale, request) {
                            return status(code, reason, &message);
                        }
                        object["spec"]["replicas"] = scale["spec"]["replicas"].clone();
                    }
                    None => {
                        if let Err((code, reason, message)) = apply_patch(&mut object, request) {
                            return status(code, reason, &message);
                        }
                    }
                    // Only status (and metadata) change through /status.
                    Some("status") => {
                        let before = object.clone();
                        if let Err((code, reason, message)) = apply_patch(&mut object, request) {
                            return status(code, reason, &message);
                        }
                        let status = object.get("status").cloned();
                        let metadata = object["metadata"].clone();
                        object = before;
                        object["metadata"] = metadata;
                        match status {
                            Some(status) => object["status"] = status,
                            None => {
                                object.as_object_mut().expect("objects").remove("status");
                            }
                        }
                    }
                    Some(_) => return not_found(),
                }
                if let Some(refusal) = crd_refusal(&route, &object, Some(&current)) {
                    return refusal;
                }
                let object = if dry_run {
                    object
                } else {
                    self.store(key.as_deref().expect("named route"), object)
                };
                ok(&if sub == Some("scale") {
                    scale_of(&object)
                } else {
                    object
                })
            }
            (Method::DELETE, Some(_), None) => {
                let Some(object) = existing else {
                    return not_found();
                };
                if !dry_run {
                    self.remove(key.as_deref().expect("named route"));
                }
                ok(&object)
            }
            _ => status(
                405,
                "MethodNotAllowed",
                &format!("{method} {} is not served", request.path),
            ),
        }
    }

    /// What the API server answers when a PodDisruptionBudget selecting the
    /// pod allows no disruption: 429 with a `DisruptionBudget` cause.
    fn budget_refusal(&self, namespace: &str, pod: &Value) -> Option<Response<Full<Bytes>>> {
        let prefix = format!("/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/");
        let labels = &pod["metadata"]["labels"];
        let state = self.state.lock().unwrap();
        let budget = state
            .objects
            .iter()
            .filter(|(path, _)| path.starts_with(&prefix))
            .map(|(_, budget)| budget)
            .find(|budget| {
                let selects = budget["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .map(|wanted| wanted.iter().all(|(key, value)| labels[key] == *value))
                    .unwrap_or(true);
                selects && budget["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) < 1
            })?;
        let message = format!(
            "The disruption budget {} needs {} healthy pods and has {} currently",
            budget["metadata"]["name"].as_str().unwrap_or_default(),
            budget["status"]["desiredHealthy"].as_i64().unwrap_or(0),
            budget["status"]["currentHealthy"].as_i64().unwrap_or(0),
        );
        Some(respond_with(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure",
                "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                "reason": "TooManyRequests",
                "details": { "causes": [{ "reason": "DisruptionBudget", "message": message }] },
                "code": 429,
            }),
        ))
    }
}

/// A namespaced request path: `/api/v1/namespaces/NS/RESOURCE[/NAME[/SUB]]` or
/// `/apis/GROUP/VERSION/namespaces/NS/RESOURCE[/NAME[/SUB]]`.
struct Route {
    collection: String,
    namespace: String,
    resource: String,
    name: Option<String>,
    sub: Option<String>,
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let base = match *segments.first()? {
            "api" => 2,
            "apis" => 3,
            _ => return None,
        };
        if let Some(resource) = segments.get(base)
            && CLUSTER_SCOPED.contains(resource)
        {
            if segments.len() > base + 3 {
                return None;
            }
            return Some(Route {
                collection: format!("/{}", segments[..base + 1].join("/")),
                namespace: String::new(),
                resource: resource.to_string(),
                name: segments.get(base + 1).map(|s| s.to_string()),
                sub: segments.get(base + 2).map(|s| s.to_string()),
            });
        }
        if segments.get(base) != Some(&"namespaces")
            || segments.len() < base + 3
            || segments.len() > base + 5
        {
            return None;
        }
        Some(Route {
            collection: format!("/{}", segments[..base + 3].join("/")),
            namespace: segments[base + 1].to_string(),
            resource: segments[base + 2].to_string(),
            name: segments.get(base + 3).map(|s| s.to_string()),
            sub: segments.get(base + 4).map(|s| s.to_string()),
        })
    }

    fn scalable(&self) -> bool {
        SCALABLE.contains(&self.resource.as_str())
    }
}

/// The API server's answer to a write whose body names a resourceVersion
/// other than the stored one: an optimistic lock lost.
fn stale(
    request: &Logged,
    current: &Value,
    resource: &str,
    name: &str,
) -> Option<Response<Full<Bytes>>> {
    let sent = &request.body["metadata"]["resourceVersion"];
    (sent.is_string() && *sent != current["metadata"]["resourceVersion"]).then(|| {
        status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified"
            ),
        )
    })
}

/// `key=value` pairs of the query's `labelSelector`.
fn label_selector(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("labelSelector="))
        .flat_map(|selector| {
            percent_decode(selector)
                .split(',')
                .filter_map(|term| {
                    let (key, value) = term.split_once('=')?;
                    Some((key.to_string(), value.to_string()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(if bytes[index] == b'+' {
                    b' '
                } else {
                    bytes[index]
                });
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The storage path of an object, pluralising kinds the way the API does for
/// the kinds tests seed.
pub fn object_path(api_version: &str, kind: &str, namespace: &str, name: &str) -> String {
    let lower = kind.to_lowercase();
    let plural = if lower.ends_with('y') {
        format!("{}ies", &lower[..lower.len() - 1])
    } else if lower.ends_with('s') || lower.ends_with('x') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    };
    let root = if api_version.contains('/') {
        "apis"
    } else {
        "api"
    };
    if namespace.is_empty() {
        format!("/{root}/{api_version}/{plural}/{name}")
    } else {
        format!("/{root}/{api_version}/namespaces/{namespace}/{plural}/{name}")
    }
}

/// Applies the request's patch by its content type; a failure is the
/// `(code, reason, message)` of the Status the server answers with.
fn apply_patch(object: &mut Value, request: &Logged) -> Result<(), (u16, &'static str, String)> {
    let content_type = request.content_type.as_str();
    if content_type.starts_with("application/json-patch+json") {
        let operations: json_patch::Patch = serde_json::from_value(request.body.clone())
            .map_err(|error| (422, "Invalid", format!("not a JSON patch: {error}")))?;
        // All or nothing, as RFC 6902 wants.
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &operations)
            .map_err(|error| (422, "Invalid", error.to_string()))?;
        *object = patched;
        Ok(())
    } else if content_type.starts_with("application/strategic-merge-patch+json") {
        strategic_merge(object, &request.body);
        drop_empty_resource_lists(object);
        Ok(())
    } else if content_type.starts_with("application/merge-patch+json") {
        json_patch::merge(object, &request.body);
        Ok(())
    } else {
        Err((
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json; got {content_type}"
            ),
        ))
    }
}

/// The API server stores a container's `limits` or `requests` left empty by
/// a patch as absent (Go's `omitempty` on a map).
fn drop_empty_resource_lists(object: &mut Value) {
    for pointer in ["/spec/containers", "/spec/template/spec/containers"] {
        let Some(Value::Array(containers)) = object.pointer_mut(pointer) else {
            continue;
        };
        for container in containers {
            if let Some(Value::Object(resources)) = container.get_mut("resources") {
                resources.retain(|_, list| list.as_object().is_none_or(|list| !list.is_empty()));
            }
        }
    }
}

/// Merge, except that the lists in [`MERGE_KEYS`] merge item by item on their
/// key, and an item `{"$patch": "delete", KEY: ...}` removes its match.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let fields = target.as_object_mut().expect("made an object");
    for (key, value) in patch {
        if value.is_null() {
            fields.remove(key);
            continue;
        }
        let merge_key = MERGE_KEYS
            .iter()
            .find(|(list, _)| list == key)
            .map(|(_, merge_key)| *merge_key);
        match (merge_key, value) {
            (Some(merge_key), Value::Array(items)) => {
                let slot = fields.entry(key.clone()).or_insert_with(|| json!([]));
                if !slot.is_array() {
                    *slot = json!([]);
                }
                merge_list(slot.as_array_mut().expect("made a list"), items, merge_key);
            }
            _ => strategic_merge(fields.entry(key.clone()).or_insert(Value::Null), value),
        }
    }
}

fn merge_list(current: &mut Vec<Value>, items: &[Value], merge_key: &str) {
    for item in items {
        let position = current
            .iter()
            .position(|existing| existing[merge_key] == item[merge_key]);
        if item["$patch"] == "delete" {
            if let Some(position) = position {
                current.remove(position);
            }
            continue;
        }
        match position {
            Some(position) => strategic_merge(&mut current[position], item),
            None => {
                let mut added = Value::Null;
                strategic_merge(&mut added, item);
                current.push(added);
            }
        }
    }
}

fn scale_of(object: &Value) -> Value {
    let mut spec = Map::new();
    // Like the API server, which serialises Scale.spec.replicas with omitempty.
    if let Some(replicas) = object["spec"]["replicas"].as_i64().filter(|r| *r != 0) {
        spec.insert("replicas".into(), json!(replicas));
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "uid": object["metadata"]["uid"],
            "resourceVersion": object["metadata"]["resourceVersion"],
        },
        "spec": spec,
        "status": { "replicas": object["status"]["replicas"].as_i64().unwrap_or(0) },
    })
}

/// The HealingAction CRD's schema, as the chart installs it.
fn healing_action_schema() -> &'static Value {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = serde_json::to_value(kubeskippy::core::crd::healing_action_crd()).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    })
}

/// A 422 naming the CRD rules a write of a HealingAction breaks, as the API
/// server answers it.
fn crd_refusal(route: &Route, new: &Value, old: Option<&Value>) -> Option<Response<Full<Bytes>>> {
    if route.resource != "healingactions" {
        return None;
    }
    let errors = kube_cel::Validator::new()
        .validate(healing_action_schema(), new, old)
        .err()?;
    let message = errors
        .into_vec()
        .iter()
        .map(|error| format!("{}: Invalid value: {}", error.field_path, error.message))
        .collect::<Vec<_>>()
        .join(", ");
    Some(status(422, "Invalid", &message))
}

fn ok(body: &Value) -> Response<Full<Bytes>> {
    respond_with(StatusCode::OK, body)
}

fn respond_with(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("JSON"),
        )))
        .expect("valid response")
}

fn status(code: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    respond_with(
        StatusCode::from_u16(code).expect("valid status code"),
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        }),
    )
}
