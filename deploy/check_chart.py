"""Lints, renders and validates the Helm chart in deploy/kubeskippy, offline.

Run by scripts/check-chart inside its venv (helm-python-sdk, kubernetes-validate,
jsonschema, PyYAML). Prints a line per value set; on the first failure prints
`check-chart: FAILED: <reason>` and exits 1.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import traceback
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "kubeskippy"
CRD_FILE = CHART / "crds" / "kubeskippy.io.yaml"
DASHBOARD = CHART / "dashboards" / "kubeskippy.json"
# prometheus-operator's own CRD, fetched by scripts/check-chart.
SERVICEMONITOR_CRD = Path(os.environ.get("KUBESKIPPY_SERVICEMONITOR_CRD", "/nonexistent"))
DEFAULT_ENDPOINT = "http://ollama.ollama.svc:11434"
KUBE_VERSION = os.environ.get("KUBESKIPPY_CHART_KUBE_VERSION", "1.37.0")
RELEASE = "kubeskippy"
NAMESPACE = "kubeskippy"
CONFIG_PATH = "/etc/kubeskippy/config.yaml"
PLUGIN_DIR = "/etc/kubeskippy/plugins"
CACHE_DIR = "/var/cache/kubeskippy"

# The daemon's command line (kubeskippy run); any other flag is a chart bug.
RUN_FLAGS = {
    "config", "namespace", "health-addr", "leader-elect", "lease-name",
    "lease-namespace", "identity", "evaluation-interval", "metrics-interval",
    "cluster-actions-per-hour", "namespace-actions-per-hour", "signing-key-secret",
    "plugin-dir", "plugin-configmaps", "plugin-namespace",
}

# Everything the daemon does to watched workloads, and nothing more. Pods are
# only ever evicted: no delete.
WORKLOAD_RULES = {
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/eviction"): {"create"},
    ("", "events"): {"list", "watch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    **{("apps", kind): {"get", "list", "watch", "patch"}
       for kind in ("deployments", "statefulsets", "daemonsets", "replicasets")},
    **{("apps", f"{kind}/scale"): {"get", "patch"}
       for kind in ("deployments", "statefulsets", "replicasets")},
    ("autoscaling", "horizontalpodautoscalers"): {"get", "list"},
    ("policy", "poddisruptionbudgets"): {"get", "list"},
    ("metrics.k8s.io", "pods"): {"get", "list"},
    ("kubeskippy.io", "healingpolicies"): {"get", "list", "watch"},
    ("kubeskippy.io", "healingpolicies/status"): {"get", "patch"},
    ("kubeskippy.io", "healingactions"): {"get", "list", "watch", "create"},
    ("kubeskippy.io", "healingactions/status"): {"get", "patch", "update"},
}
# Only a daemon watching every namespace reads cluster-wide policies.
CLUSTER_POLICY_RULES = {
    ("kubeskippy.io", "clusterhealingpolicies"): {"get", "list", "watch"},
    ("kubeskippy.io", "clusterhealingpolicies/status"): {"get", "patch"},
}
# Approvers decide on HealingActions and touch nothing else.
APPROVER_RULES = {
    ("kubeskippy.io", "healingactions", verb, None) for verb in ("get", "list", "watch", "patch")
} | {("authentication.k8s.io", "selfsubjectreviews", "create", None)}
POLICY_EDITOR_RULES = {
    ("kubeskippy.io", "healingpolicies", verb, None)
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete")
}
CRD_NAMES = ["clusterhealingpolicies.kubeskippy.io", "healingactions.kubeskippy.io",
             "healingpolicies.kubeskippy.io"]
# Kinds the chart renders whose CRD schemas carry no CEL rules; the
# HealingAction CRD's rules are evaluated by runtime/tests/crd_rules.rs.
RENDERED_CUSTOM_KINDS = {"HealingPolicy", "ClusterHealingPolicy", "ServiceMonitor"}
CUSTOM_GROUPS = {"kubeskippy.io", "monitoring.coreos.com"}


class Failed(Exception):
    pass


def check(condition: object, reason: str) -> None:
    if not condition:
        raise Failed(reason)


def flatten(rules: dict) -> set:
    return {(group, resource, verb, None)
            for (group, resource), verbs in rules.items() for verb in verbs}


def grants(rules: list, where: str) -> set:
    """(group, resource, verb, resourceName or None) for each rule, refusing wildcards."""
    out = set()
    for rule in rules or []:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            check(not any("*" in item for item in rule.get(field) or []),
                  f"{where}: wildcard in {field}: {rule.get(field)}")
        check(not rule.get("nonResourceURLs"), f"{where}: nonResourceURLs granted")
        names = rule.get("resourceNames") or [None]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in names:
                        out.add((group, resource, verb, name))
    return out


# --- custom resources against the CRDs' own schemas --------------------------

def strict_schema(node: object) -> object:
    """The CRD's structural schema as JSON Schema, with unknown fields refused
    (the daemon's types deny them, and `kubectl apply` warns or fails on them)
    and OpenAPI's `nullable` spelled as a null type."""
    if isinstance(node, list):
        return [strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict_schema(value) for key, value in node.items()}
    if isinstance(node.get("properties"), dict) and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("nullable") and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    return out


def crd_validators(crds: list) -> dict:
    validators = {}
    for crd in crds:
        spec = crd["spec"]
        for version in spec["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            if spec["names"]["kind"] in RENDERED_CUSTOM_KINDS:
                check("x-kubernetes-validations" not in yaml.safe_dump(schema),
                      f"{crd['metadata']['name']}: has CEL rules this check cannot evaluate; extend it")
            # The API server adds these to every CRD's schema; generated schemas omit them.
            schema = {**schema, "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "metadata": {"type": "object"}, **schema.get("properties", {})}}
            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
            validators[key] = jsonschema.Draft4Validator(strict_schema(schema))
    return validators


def validate_custom(doc: dict, validators: dict, where: str) -> None:
    validator = validators.get((doc["apiVersion"], doc["kind"]))
    check(validator, f"{where}: no CRD serves {doc['apiVersion']} {doc['kind']}")
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        path = ".".join(str(p) for p in errors[0].absolute_path)
        raise Failed(f"{where}: {path}: {errors[0].message}")
    check(doc.get("metadata", {}).get("name"), f"{where}: no metadata.name")


def validate_builtin(doc: dict, where: str) -> None:
    """kubernetes-validate --strict, except that a kind it has no schema for is a
    failure here (its CLI only warns)."""
    try:
        kv.validate(doc, KUBE_VERSION, strict=True)
    except kv.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        raise Failed(f"{where}: not valid for Kubernetes {error.version}: {path}: {error.message}")
    except kv.SchemaNotFoundError as error:
        raise Failed(f"{where}: {error.message}")


# --- the chart ----------------------------------------------------------------

def load_values(path: Path | None) -> dict | None:
    if path is None:
        return None
    return yaml.safe_load(path.read_text()) or {}


def render(values: dict | None) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def merged(values: dict | None) -> dict:
    with helm.Chart.load(CHART) as chart:
        return chart.merge_values(values)


def lint(values: dict | None, label: str) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{KUBE_VERSION}")
    for message in report.get("messages", []):
        check(message["severity"] < 2, f"helm lint ({label}): {message['path']}: {message['error']}")
    check(not report.get("errors"), f"helm lint ({label}): {report.get('errors')}")


def documents(manifests: dict[str, str]) -> list[tuple[str, dict]]:
    out = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((template.split("/", 1)[1], doc))
    return out


def one(docs: list[dict], kind: str, label: str, name: str | None = None) -> dict:
    found = [doc for doc in docs if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    check(len(found) == 1, f"{label}: expected one {kind} {name or ''}, rendered {len(found)}")
    return found[0]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def selects(selector: dict, labels: dict) -> bool:
    """matchLabels only: the chart writes no expressions."""
    return bool(selector) and selector.items() <= (labels or {}).items()


def check_rbac(docs: list[dict], values: dict, service_account: str, label: str) -> None:
    roles = {}
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole"):
            meta = doc["metadata"]
            where = f"{label}: {doc['kind']} {meta.get('namespace', '')}/{meta['name']}"
            roles[(doc["kind"], meta.get("namespace"), meta["name"])] = grants(doc.get("rules"), where)
            check("aggregationRule" not in doc, f"{where}: aggregationRule would pull in other roles' rules")

    cluster: set = set()
    namespaced: dict[str, set] = {}
    bound_roles = set()
    for doc in docs:
        if doc["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ref = doc["roleRef"]
        binding_ns = doc["metadata"].get("namespace")
        role_key = (ref["kind"], None if ref["kind"] == "ClusterRole" else binding_ns, ref["name"])
        check(role_key in roles, f"{label}: {doc['kind']} {doc['metadata']['name']} refers to "
              f"{ref['kind']} {ref['name']}, which the chart does not render")
        bound_roles.add(role_key)
        subjects = doc.get("subjects") or []
        check(subjects == [{"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}],
              f"{label}: {doc['kind']} {doc['metadata']['name']} binds {subjects}, not only the daemon")
        if doc["kind"] == "ClusterRoleBinding":
            cluster |= roles[role_key]
        else:
            namespaced.setdefault(binding_ns, set()).update(roles[role_key])

    watch = list(dict.fromkeys(values["watchNamespaces"] or []))
    workload = flatten(WORKLOAD_RULES)
    expected_ns: dict[str, set] = {}
    if watch:
        check(not cluster, f"{label}: watchNamespaces is set but the daemon is bound cluster-wide: {sorted(cluster)}")
        for namespace in watch:
            expected_ns.setdefault(namespace, set()).update(workload)
    else:
        want = workload | flatten(CLUSTER_POLICY_RULES)
        check(cluster == want, f"{label}: cluster-wide grants differ from what the daemon does: "
              f"extra {sorted(cluster - want)}, missing {sorted(want - cluster)}")
    signing_key = values["signingKey"]["secretName"] or f"{fullname(values)}-signing-key"
    expected_ns.setdefault(NAMESPACE, set()).update({
        ("", "secrets", "create", None),
        ("", "secrets", "get", signing_key),
    })
    if values["leaderElection"]["enabled"]:
        lease = values["leaderElection"]["leaseName"] or f"{fullname(values)}-leader"
        expected_ns.setdefault(NAMESPACE, set()).update({
            ("coordination.k8s.io", "leases", "create", None),
            ("coordination.k8s.io", "leases", "get", lease),
            ("coordination.k8s.io", "leases", "update", lease),
        })
    # Plugin ConfigMaps are only read; the Events on them are written.
    if values["pluginConfigMaps"]["enabled"]:
        expected_ns.setdefault(values["pluginConfigMaps"]["namespace"] or NAMESPACE, set()).update({
            ("", "configmaps", "list", None),
            ("", "configmaps", "watch", None),
            ("events.k8s.io", "events", "create", None),
            ("events.k8s.io", "events", "patch", None),
        })
    # Webhook URLs: get on those Secrets only.
    for webhook in values["notifications"]["webhooks"]:
        expected_ns.setdefault(NAMESPACE, set()).add(("", "secrets", "get", webhook["urlSecret"]["name"]))
    secret_ref = (values["config"].get("ai") or {}).get("apiKeySecretRef")
    if secret_ref:
        expected_ns.setdefault(secret_ref.get("namespace") or NAMESPACE, set()).add(
            ("", "secrets", "get", secret_ref["name"]))
    for namespace in sorted(set(expected_ns) | set(namespaced)):
        got, want = namespaced.get(namespace, set()), expected_ns.get(namespace, set())
        check(got == want, f"{label}: grants in namespace {namespace} differ from what the daemon does: "
              f"extra {sorted(got - want, key=str)}, missing {sorted(want - got, key=str)}")

    for suffix, key, rules in (("-approver", "approverRole", APPROVER_RULES),
                               ("-policy-editor", "policyEditorRole", POLICY_EDITOR_RULES)):
        found = [role for role in roles if role[0] == "ClusterRole" and role[2].endswith(suffix)]
        if values[key]["create"]:
            check(len(found) == 1, f"{label}: expected one {suffix[1:]} ClusterRole, found {found}")
            check(roles[found[0]] == rules,
                  f"{label}: {suffix[1:]} ClusterRole grants {sorted(roles[found[0]], key=str)}")
            check(found[0] not in bound_roles, f"{label}: the {suffix[1:]} ClusterRole is bound by the chart")
        else:
            check(not found, f"{label}: {key}.create is false but {found} rendered")


def fullname(values: dict) -> str:
    if values.get("fullnameOverride"):
        return values["fullnameOverride"]
    return RELEASE  # the release name contains the chart name


def check_deployment(docs: list[dict], manifests: dict[str, str], values: dict, label: str) -> None:
    deployment = one(docs, "Deployment", label, fullname(values))
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    check(len(spec["containers"]) == 1, f"{label}: expected one container")
    container = spec["containers"][0]

    args = container.get("args") or []
    check(args[:1] == ["run"], f"{label}: args must start with the run subcommand, got {args[:1]}")
    flags: dict[str, list[str]] = {}
    for arg in args[1:]:
        check(arg.startswith("--") and "=" in arg, f"{label}: argument {arg!r} is not --flag=value")
        name, value = arg[2:].split("=", 1)
        check(name in RUN_FLAGS, f"{label}: unknown flag --{name} (kubeskippy run takes {sorted(RUN_FLAGS)})")
        flags.setdefault(name, []).append(value)
    for name, values_seen in flags.items():
        check(name == "namespace" or len(values_seen) == 1, f"{label}: --{name} given {len(values_seen)} times")
    leader = values["leaderElection"]["enabled"]
    want = {
        "config": [CONFIG_PATH],
        "health-addr": ["0.0.0.0:8080"],
        "leader-elect": [str(leader).lower()],
        "evaluation-interval": [values["evaluationInterval"]],
        "metrics-interval": [values["metricsInterval"]],
        "cluster-actions-per-hour": [str(values["clusterActionsPerHour"])],
        "namespace-actions-per-hour": [str(values["namespaceActionsPerHour"])],
        "signing-key-secret": [values["signingKey"]["secretName"] or f"{fullname(values)}-signing-key"],
        "lease-namespace": [NAMESPACE],
    }
    if leader:
        want["lease-name"] = [values["leaderElection"]["leaseName"] or f"{fullname(values)}-leader"]
    if values["watchNamespaces"]:
        want["namespace"] = list(dict.fromkeys(values["watchNamespaces"]))
    if values["plugins"]:
        want["plugin-dir"] = [PLUGIN_DIR]
    plugin_configmaps = values["pluginConfigMaps"]
    want["plugin-configmaps"] = [str(plugin_configmaps["enabled"]).lower()]
    if plugin_configmaps["namespace"]:
        want["plugin-namespace"] = [plugin_configmaps["namespace"]]
    check(flags == want, f"{label}: run flags {flags} != expected {want}")

    ports = {port["name"]: port["containerPort"] for port in container.get("ports") or []}
    check(ports.get("health") == 8080, f"{label}: no container port named health on 8080: {ports}")
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        check(get.get("path") == path and get.get("port") == "health",
              f"{label}: {probe} must GET {path} on port health, got {get}")

    pod_security = spec.get("securityContext") or {}
    security = container.get("securityContext") or {}
    check(pod_security.get("runAsNonRoot") is True, f"{label}: pod securityContext.runAsNonRoot is not true")
    check(pod_security.get("runAsUser", 1) != 0, f"{label}: pod runs as uid 0")
    for context, where in ((pod_security, "pod"), (security, "container")):
        check((context.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
              f"{label}: {where} seccompProfile is not RuntimeDefault")
    check(security.get("runAsNonRoot") is True, f"{label}: container runAsNonRoot is not true")
    check(security.get("readOnlyRootFilesystem") is True, f"{label}: root filesystem is writable")
    check(security.get("allowPrivilegeEscalation") is False, f"{label}: privilege escalation allowed")
    check(not security.get("privileged"), f"{label}: privileged container")
    capabilities = security.get("capabilities") or {}
    check(capabilities.get("drop") == ["ALL"] and not capabilities.get("add"),
          f"{label}: capabilities must drop ALL and add none, got {capabilities}")
    check(not any(spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC")),
          f"{label}: pod shares a host namespace")
    check(not any("hostPath" in volume for volume in spec.get("volumes") or []),
          f"{label}: pod mounts a host path")

    configmap_text = manifests["kubeskippy/templates/configmap.yaml"]
    checksum = (pod.get("metadata", {}).get("annotations") or {}).get("checksum/config")
    check(checksum == hashlib.sha256(configmap_text.encode()).hexdigest(),
          f"{label}: checksum/config annotation missing or not the rendered ConfigMap's sha256")

    env = {item["name"]: item for item in container.get("env") or []}
    for name, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        got = ((env.get(name) or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        check(got == field, f"{label}: env {name} must come from the downward API ({field}), got {env.get(name)}")
    check((env.get("KUBESKIPPY_LOG") or {}).get("value") == values["logLevel"], f"{label}: KUBESKIPPY_LOG is not logLevel")
    check((env.get("KUBESKIPPY_CACHE_DIR") or {}).get("value") == CACHE_DIR,
          f"{label}: KUBESKIPPY_CACHE_DIR is not {CACHE_DIR}")

    volumes = {volume["name"]: volume for volume in spec.get("volumes") or []}
    mounts = {mount["mountPath"]: mount for mount in container.get("volumeMounts") or []}
    for path in ("/tmp", CACHE_DIR):
        mount = mounts.get(path)
        check(mount and "emptyDir" in volumes.get(mount["name"], {}) and not mount.get("readOnly"),
              f"{label}: {path} is not a writable emptyDir")
    # Mounted as a directory, so the kubelet's updates reach the file (a subPath
    # mount never changes) and the daemon's reload sees them.
    config_mount = mounts.get(os.path.dirname(CONFIG_PATH)) or {}
    config_volume = volumes.get(config_mount.get("name"), {}).get("configMap", {})
    configmap = one(docs, "ConfigMap", label, f"{fullname(values)}-config")
    check(config_volume.get("name") == configmap["metadata"]["name"] and not config_mount.get("subPath")
          and config_volume.get("items") == [{"key": "config.yaml", "path": os.path.basename(CONFIG_PATH)}]
          and config_mount.get("readOnly"),
          f"{label}: {CONFIG_PATH} is not the chart's ConfigMap, read-only and without subPath")
    plugin_mount = mounts.get(PLUGIN_DIR)
    if values["plugins"]:
        check(plugin_mount and plugin_mount.get("readOnly") and not plugin_mount.get("subPath"),
              f"{label}: {PLUGIN_DIR} must be a read-only mount without subPath (updates must reach it)")
        sources = volumes[plugin_mount["name"]].get("projected", {}).get("sources", [])
        names = [source.get("configMap", {}).get("name") for source in sources]
        check(names == list(dict.fromkeys(values["plugins"])) and not any(
            source["configMap"].get("items") for source in sources),
            f"{label}: plugin volume projects {names}, expected every key of {values['plugins']}")
    else:
        check(plugin_mount is None, f"{label}: a plugin directory is mounted without plugins")

    # The config file is exactly .Values.config, plus the env var name the chart wires.
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    want_config = copy.deepcopy(values["config"])
    check("apiKey" not in (config.get("ai") or {}), f"{label}: an API key in the ConfigMap")
    secret = values["apiKey"]["existingSecret"]
    if secret:
        key_env = (values["config"].get("ai") or {}).get("apiKeyEnv") or "KUBESKIPPY_API_KEY"
        want_config.setdefault("ai", {})["apiKeyEnv"] = key_env
        ref = ((env.get(key_env) or {}).get("valueFrom") or {}).get("secretKeyRef")
        check(ref == {"name": secret, "key": values["apiKey"]["key"]},
              f"{label}: env {key_env} must come from Secret {secret}, got {env.get(key_env)}")
    ai = want_config.get("ai") or {}
    if values["ollama"]["enabled"] and ai.get("endpoint") == DEFAULT_ENDPOINT:
        ai["endpoint"] = ollama_endpoint(values)
    if values["notifications"]["webhooks"]:
        want_config["notifications"] = {"webhooks": values["notifications"]["webhooks"]}
    check(config == want_config, f"{label}: config.yaml {config} is not .Values.config {want_config}")

    pdbs = [doc for doc in docs if doc["kind"] == "PodDisruptionBudget"]
    if values["replicaCount"] > 1:
        check(len(pdbs) == 1, f"{label}: {values['replicaCount']} replicas need a PodDisruptionBudget")
        selector = pdbs[0]["spec"]["selector"]["matchLabels"]
        check(selector.items() <= pod["metadata"]["labels"].items(),
              f"{label}: the PodDisruptionBudget does not select the daemon's pods")
    else:
        check(not pdbs, f"{label}: a PodDisruptionBudget for a single replica blocks node drains")

    service_accounts = [doc for doc in docs if doc["kind"] == "ServiceAccount"]
    check(len(service_accounts) == 1 and spec["serviceAccountName"] == service_accounts[0]["metadata"]["name"],
          f"{label}: the pod does not run as the chart's ServiceAccount")
    check_rbac(docs, values, spec["serviceAccountName"], label)


def check_policies(docs: list[dict], values: dict, label: str) -> None:
    policies = [doc for doc in docs if doc["kind"] == "HealingPolicy"]
    cluster_policies = [doc for doc in docs if doc["kind"] == "ClusterHealingPolicy"]
    wanted = values["defaultPolicy"]
    if not wanted["enabled"]:
        check(not policies and not cluster_policies,
              f"{label}: defaultPolicy is off but a policy rendered")
        return
    watch = list(dict.fromkeys(values["watchNamespaces"] or []))
    if watch:
        # A namespaced policy governs its own namespace only: one per watched namespace.
        check(not cluster_policies, f"{label}: a ClusterHealingPolicy for a namespaced daemon")
        namespaces = [policy["metadata"]["namespace"] for policy in policies]
        check(namespaces == watch, f"{label}: HealingPolicies in {namespaces}")
        for policy in policies:
            check(policy["spec"]["selector"].get("namespaces") == [policy["metadata"]["namespace"]],
                  f"{label}: the policy in {policy['metadata']['namespace']} covers other namespaces")
    else:
        check(not policies and len(cluster_policies) == 1,
              f"{label}: watching every namespace, the default policy must be one ClusterHealingPolicy")
        check("namespace" not in cluster_policies[0]["metadata"],
              f"{label}: a ClusterHealingPolicy with a namespace")
    for policy in policies + cluster_policies:
        check(policy["spec"]["mode"] == wanted["mode"], f"{label}: policy mode is not {wanted['mode']}")


def check_admission(docs: list[dict], values: dict, service_account: str, label: str) -> None:
    policies = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ValidatingAdmissionPolicy"}
    bindings = [doc for doc in docs if doc["kind"] == "ValidatingAdmissionPolicyBinding"]
    if not values["admissionPolicy"]["enabled"]:
        check(not policies and not bindings, f"{label}: admissionPolicy is off but rendered")
        return
    check(len(policies) == 2 and len(bindings) == 2,
          f"{label}: expected two ValidatingAdmissionPolicies and their bindings")
    for binding in bindings:
        check(binding["spec"]["policyName"] in policies
              and binding["spec"]["validationActions"] == ["Deny"],
              f"{label}: the binding {binding['metadata']['name']} does not deny through a policy")
    check(len({binding["spec"]["policyName"] for binding in bindings}) == 2,
          f"{label}: a ValidatingAdmissionPolicy without a binding")
    authorship = policies.get(f"{fullname(values)}-healingactions")
    check(authorship is not None, f"{label}: no {fullname(values)}-healingactions admission policy")
    rules = authorship["spec"]["matchConstraints"]["resourceRules"]
    check(rules == [{"apiGroups": ["kubeskippy.io"], "apiVersions": ["*"],
                     "operations": ["CREATE", "UPDATE"], "resources": ["healingactions"]}],
          f"{label}: the admission policy matches {rules}")
    expressions = " ".join(item["expression"] for item in authorship["spec"]["validations"])
    daemon = f"system:serviceaccount:{NAMESPACE}:{service_account}"
    check(f"'{daemon}'" in expressions, f"{label}: creation is not limited to {daemon}: {expressions}")
    check("object.spec.approval.by == request.userInfo.username" in expressions,
          f"{label}: an approval is not bound to its author")
    # The expressions themselves are evaluated by the real API server's
    # authorizer in the e2e suite; here, that they cover what they must.
    delegation = policies.get(f"{fullname(values)}-delegation")
    check(delegation is not None, f"{label}: no {fullname(values)}-delegation admission policy")
    covered = {(tuple(rule["resources"]), tuple(rule["operations"]))
               for rule in delegation["spec"]["matchConstraints"]["resourceRules"]}
    check(covered == {(("healingpolicies", "clusterhealingpolicies"), ("CREATE", "UPDATE")),
                      (("healingactions",), ("UPDATE",))},
          f"{label}: the delegation policy matches {covered}")
    asked = [item["expression"] for item in delegation["spec"]["validations"]]
    check(all(item.count("authorizer.") == 1 for item in asked),
          f"{label}: each delegation check must ask the authorizer once (CEL cost)")


# --- metrics, dashboard, NetworkPolicy, Ollama ----------------------------------

def ollama_name(values: dict) -> str:
    return f"{fullname(values)}-ollama"


def ollama_endpoint(values: dict) -> str:
    return f"http://{ollama_name(values)}.{NAMESPACE}.svc:11434"


def daemon_pod_labels(docs: list[dict], values: dict) -> dict:
    return one(docs, "Deployment", "daemon", fullname(values))["spec"]["template"]["metadata"]["labels"]


def other_pod_labels(docs: list[dict], values: dict) -> list[dict]:
    """The pod labels of every workload the chart renders besides the daemon."""
    out = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job") and doc["metadata"]["name"] != fullname(values):
            out.append(doc["spec"]["template"]["metadata"]["labels"])
    return out


def check_service(docs: list[dict], values: dict, label: str) -> None:
    pod_labels = daemon_pod_labels(docs, values)
    others = other_pod_labels(docs, values)
    services = [doc for doc in of_kind(docs, "Service") if doc["metadata"]["name"] == fullname(values)]
    if not values["service"]["enabled"]:
        check(not services, f"{label}: service.enabled is false but the Service rendered")
    else:
        check(len(services) == 1, f"{label}: no Service {fullname(values)} for the health port")
        service = services[0]
        selector = service["spec"]["selector"]
        check(selects(selector, pod_labels) and not any(selects(selector, other) for other in others),
              f"{label}: the Service selects {selector}, not only the daemon's pods")
        check(service["spec"]["ports"] == [{"name": "http", "port": values["service"]["port"],
                                            "targetPort": "health", "protocol": "TCP"}],
              f"{label}: the Service's ports are {service['spec']['ports']}")

    monitors = of_kind(docs, "ServiceMonitor")
    if not values["serviceMonitor"]["enabled"]:
        check(not monitors, f"{label}: serviceMonitor.enabled is false but a ServiceMonitor rendered")
    else:
        check(len(monitors) == 1, f"{label}: expected one ServiceMonitor")
        spec = monitors[0]["spec"]
        check(selects(spec["selector"]["matchLabels"], services[0]["metadata"]["labels"])
              and spec["namespaceSelector"] == {"matchNames": [NAMESPACE]},
              f"{label}: the ServiceMonitor does not select the daemon's Service")
        check([(e["port"], e["path"]) for e in spec["endpoints"]] == [("http", "/metrics")],
              f"{label}: the ServiceMonitor scrapes {spec['endpoints']}")
        check(values["serviceMonitor"]["labels"].items() <= monitors[0]["metadata"]["labels"].items(),
              f"{label}: the ServiceMonitor lacks serviceMonitor.labels")

    dashboards = [doc for doc in of_kind(docs, "ConfigMap") if doc["metadata"]["name"] == f"{fullname(values)}-dashboard"]
    if not values["dashboard"]["enabled"]:
        check(not dashboards, f"{label}: dashboard.enabled is false but the dashboard rendered")
    else:
        check(len(dashboards) == 1, f"{label}: no dashboard ConfigMap")
        dashboard = dashboards[0]
        check(dashboard["metadata"]["namespace"] == (values["dashboard"]["namespace"] or NAMESPACE),
              f"{label}: the dashboard is in namespace {dashboard['metadata']['namespace']}")
        check(values["dashboard"]["labels"].items() <= dashboard["metadata"]["labels"].items(),
              f"{label}: the dashboard ConfigMap lacks the labels {values['dashboard']['labels']}")
        check(json.loads(dashboard["data"]["kubeskippy.json"]) == json.loads(DASHBOARD.read_text()),
              f"{label}: the dashboard ConfigMap is not {DASHBOARD.name}")


def ports_of(rule: dict) -> set:
    return {(port["port"], port.get("protocol", "TCP")) for port in rule.get("ports") or []}


def check_network_policy(docs: list[dict], values: dict, label: str) -> None:
    policies = of_kind(docs, "NetworkPolicy")
    wanted = values["networkPolicy"]
    if not wanted["enabled"]:
        check(not policies, f"{label}: networkPolicy.enabled is false but a NetworkPolicy rendered")
        return
    check(len(policies) == 1, f"{label}: expected one NetworkPolicy")
    spec = policies[0]["spec"]
    check(selects(spec["podSelector"]["matchLabels"], daemon_pod_labels(docs, values))
          and not any(selects(spec["podSelector"]["matchLabels"], other) for other in other_pod_labels(docs, values)),
          f"{label}: the NetworkPolicy does not select exactly the daemon's pods")
    check(spec["policyTypes"] == ["Ingress", "Egress"], f"{label}: policyTypes {spec['policyTypes']}")
    # An empty `from`, `to` or `ports` would allow every peer or port.
    for direction, key in (("ingress", "from"), ("egress", "to")):
        for rule in spec[direction]:
            check(rule.get(key) and rule.get("ports"), f"{label}: {direction} rule {rule} allows too much")
    prometheus = wanted["prometheus"]
    check(spec["ingress"] == [{"from": [{"namespaceSelector": prometheus["namespaceSelector"],
                                         "podSelector": prometheus["podSelector"]}],
                               "ports": [{"port": "health", "protocol": "TCP"}]}],
          f"{label}: ingress is {spec['ingress']}, not the health port from Prometheus only")

    def cidrs(cidr_list: list, ports: list) -> tuple:
        return ("ip", frozenset(cidr_list), frozenset((port, "TCP") for port in ports))
    want = {cidrs(wanted["apiServer"]["cidrs"], wanted["apiServer"]["ports"]),
            ("selector", json.dumps(wanted["dns"], sort_keys=True), frozenset({(53, "UDP"), (53, "TCP")}))}
    if values["ollama"]["enabled"]:
        ollama = one(docs, "Deployment", label, ollama_name(values))["spec"]["template"]["metadata"]["labels"]
        want.add(("pods", json.dumps(ollama, sort_keys=True), frozenset({(11434, "TCP")})))
    elif wanted["model"]["cidrs"]:
        want.add(cidrs(wanted["model"]["cidrs"], wanted["model"]["ports"]))
    if wanted["webhooks"]["cidrs"]:
        want.add(cidrs(wanted["webhooks"]["cidrs"], wanted["webhooks"]["ports"]))
    got = set()
    for rule in spec["egress"]:
        peers = rule["to"]
        if all("ipBlock" in peer for peer in peers):
            check(not any(peer["ipBlock"].get("except") for peer in peers), f"{label}: ipBlock with except")
            got.add(("ip", frozenset(peer["ipBlock"]["cidr"] for peer in peers), frozenset(ports_of(rule))))
        elif len(peers) == 1 and set(peers[0]) == {"podSelector"}:
            got.add(("pods", json.dumps(peers[0]["podSelector"]["matchLabels"], sort_keys=True), frozenset(ports_of(rule))))
        else:
            check(len(peers) == 1 and set(peers[0]) == {"namespaceSelector", "podSelector"},
                  f"{label}: unexpected egress peers {peers}")
            got.add(("selector", json.dumps(peers[0], sort_keys=True), frozenset(ports_of(rule))))
    check(got == want, f"{label}: egress allows {sorted(map(str, got - want))} beyond, "
          f"and lacks {sorted(map(str, want - got))}")


def memory_bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for unit, factor in units.items():
        if str(quantity).endswith(unit):
            return float(str(quantity)[: -len(unit)]) * factor
    return float(quantity)


def check_ollama(docs: list[dict], values: dict, label: str) -> None:
    wanted = values["ollama"]
    name = ollama_name(values)
    ours = [doc for doc in docs if doc["metadata"]["name"].startswith(name)]
    jobs = of_kind(docs, "Job")
    if not wanted["enabled"]:
        check(not ours and not jobs, f"{label}: ollama.enabled is false but Ollama rendered")
        return
    deployment = one(docs, "Deployment", label, name)
    service = one(docs, "Service", label, name)
    claim = one(docs, "PersistentVolumeClaim", label, f"{name}-models")
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    check(selects(service["spec"]["selector"], pod["metadata"]["labels"])
          and not selects(service["spec"]["selector"], daemon_pod_labels(docs, values)),
          f"{label}: the Ollama Service does not select only Ollama's pods")
    check([(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(11434, "http")],
          f"{label}: the Ollama Service's ports are {service['spec']['ports']}")
    container = spec["containers"][0]
    check(len(spec["containers"]) == 1 and container["image"] == f"{wanted['image']['repository']}:{wanted['image']['tag']}",
          f"{label}: Ollama runs {container['image']}")
    check([(p["name"], p["containerPort"]) for p in container["ports"]] == [("http", 11434)],
          f"{label}: Ollama's container ports are {container['ports']}")
    check(spec.get("automountServiceAccountToken") is False, f"{label}: Ollama gets an API token")
    check(deployment["spec"]["strategy"] == {"type": "Recreate"}, f"{label}: two Ollama pods would share a ReadWriteOnce volume")
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    check(volumes["models"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"],
          f"{label}: Ollama's models are not on the chart's PersistentVolumeClaim")
    check(claim["spec"]["resources"]["requests"]["storage"] == wanted["persistence"]["size"]
          and claim["spec"].get("storageClassName", "") == wanted["persistence"]["storageClass"],
          f"{label}: the models claim is {claim['spec']}")
    gpu = wanted["gpu"]
    want_resources = copy.deepcopy(wanted["resources"])
    if gpu["enabled"]:
        want_resources.setdefault("limits", {})[gpu["resource"]] = gpu["count"]
    check(container["resources"] == want_resources,
          f"{label}: Ollama's resources are {container['resources']}, not {want_resources}")
    for key in ("runtimeClassName", "nodeSelector", "tolerations", "affinity"):
        check(spec.get(key) == (wanted[key] or None), f"{label}: Ollama's {key} is {spec.get(key)}, not {wanted[key]}")
    security = container["securityContext"]
    check(spec["securityContext"].get("runAsNonRoot") is True and security.get("allowPrivilegeEscalation") is False,
          f"{label}: Ollama may run as root or escalate")

    if not wanted["pull"]["enabled"]:
        check(not jobs, f"{label}: ollama.pull.enabled is false but a Job rendered")
        return
    job = one(docs, "Job", label, f"{name}-pull")
    hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
    check(hooks == {"post-install", "post-upgrade"}, f"{label}: the pull Job runs at {hooks}")
    env = {item["name"]: item.get("value") for item in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    check(env.get("OLLAMA_HOST") == ollama_endpoint(values) and env.get("MODEL") == values["config"]["ai"]["model"],
          f"{label}: the pull Job pulls {env.get('MODEL')} into {env.get('OLLAMA_HOST')}")
    check(job["spec"]["template"]["spec"].get("automountServiceAccountToken") is False,
          f"{label}: the pull Job gets an API token")


def check_value_set(path: Path | None, validators: dict) -> int:
    label = path.relative_to(CHART).as_posix() if path else "default values"
    values = load_values(path)
    lint(values, label)
    manifests = render(values)
    effective = merged(values)
    rendered = documents(manifests)
    check(rendered, f"{label}: nothing rendered")
    for template, doc in rendered:
        where = f"{label}: {template}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
        if doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            validate_custom(doc, validators, where)
        else:
            validate_builtin(doc, where)
        labels = doc["metadata"].get("labels") or {}
        check(labels.get("app.kubernetes.io/instance") == RELEASE, f"{where}: no instance label")
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "ClusterHealingPolicy",
                               "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
            # So `helm template | kubectl apply -f -` lands in the right place too.
            check(doc["metadata"].get("namespace"), f"{where}: no metadata.namespace")
    docs = [doc for _, doc in rendered]
    check_deployment(docs, manifests, effective, label)
    check_policies(docs, effective, label)
    service_account = one(docs, "ServiceAccount", label)["metadata"]["name"]
    check_admission(docs, effective, service_account, label)
    check_service(docs, effective, label)
    check_network_policy(docs, effective, label)
    check_ollama(docs, effective, label)
    return len(rendered)


def expect_refusal(values: dict, reason: str, label: str) -> None:
    try:
        render(values)
    except helm.HelmError as error:
        check(reason in str(error), f"{label}: refused for another reason: {error}")
        return
    raise Failed(f"{label}: the chart rendered; it must refuse ({reason})")


def main() -> int:
    kubernetes_validate_version = getattr(kubernetes_validate, "__version__", None) or kv.__version__
    print(f"check-chart: Helm SDK {helm.helm_sdk_version()}, kubernetes-validate "
          f"{kubernetes_validate_version} (Kubernetes {KUBE_VERSION}, strict)")
    try:
        crds = [doc for doc in yaml.safe_load_all(CRD_FILE.read_text()) if doc]
        names = sorted(crd["metadata"]["name"] for crd in crds)
        check(names == CRD_NAMES, f"{CRD_FILE.name}: CRDs {names}")
        for crd in crds:
            validate_builtin(crd, f"{CRD_FILE.name}: {crd['metadata']['name']}")
        with helm.Chart.load(CHART) as chart:
            seen = [entry["name"] for entry in chart.crds]
            check(seen == [f"crds/{CRD_FILE.name}"], f"Helm sees {seen} as the chart's CRD files")
            check(chart.metadata.get("appVersion") == "0.1.0", "Chart.yaml appVersion is not 0.1.0")
        check(SERVICEMONITOR_CRD.is_file(), f"no ServiceMonitor CRD at {SERVICEMONITOR_CRD} (scripts/check-chart fetches it)")
        monitor_crds = [doc for doc in yaml.safe_load_all(SERVICEMONITOR_CRD.read_text()) if doc]
        check([crd["metadata"]["name"] for crd in monitor_crds] == ["servicemonitors.monitoring.coreos.com"],
              f"{SERVICEMONITOR_CRD}: not the ServiceMonitor CRD")
        validators = crd_validators(crds + monitor_crds)
        print(f"check-chart: ok: {CRD_FILE.relative_to(ROOT)} ({len(crds)} CRDs); ServiceMonitor CRD of "
              f"prometheus-operator {monitor_crds[0]['metadata']['annotations']['operator.prometheus.io/version']}")
        ollama = merged(None)["ollama"]["resources"]
        check(4 * 2**30 <= memory_bytes(ollama["requests"]["memory"]) <= memory_bytes(ollama["limits"]["memory"]) <= 8 * 2**30,
              f"Ollama's default memory is not sized for small models (4-8 GiB): {ollama}")

        for path in [None, *sorted((CHART / "ci").glob("*.yaml"))]:
            count = check_value_set(path, validators)
            label = path.relative_to(ROOT) if path else "default values"
            print(f"check-chart: ok: {label}: lint, {count} manifests validated, assertions hold")

        base = render(None)["kubeskippy/templates/deployment.yaml"]
        changed = render({"config": {"ai": {"model": "mistral:7b"}}})["kubeskippy/templates/deployment.yaml"]
        annotation = lambda text: yaml.safe_load(text)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        check(annotation(base) != annotation(changed), "a config change does not change checksum/config")

        expect_refusal({"leaderElection": {"enabled": False}}, "needs leaderElection.enabled", "2 replicas unelected")
        expect_refusal({"config": {"ai": {"apiKey": "sk-123"}}}, "config.ai.apiKey is refused", "key in config")
        expect_refusal({"apiKey": {"existingSecret": "a"}, "config": {"ai": {"apiKeySecretRef": {"name": "b", "key": "k"}}}},
                       "not both", "two key sources")
        # values.schema.json: a bad value stops the install with its path in the message.
        webhook = {"name": "a", "format": "slack", "urlSecret": {"name": "s", "key": "url"}, "events": ["failed"]}
        for bad, path in (
            ({"replicaCount": "two"}, "/replicaCount"),
            ({"serviceMonitr": {"enabled": True}}, "serviceMonitr"),
            ({"config": {"ai": {"provider": "anthropic"}}}, "/config/ai/provider"),
            ({"config": {"ai": {"timeout": "30 seconds"}}}, "/config/ai/timeout"),
            ({"config": {"safety": {"maxReplica": 3}}}, "maxReplica"),
            ({"ollama": {"gpu": {"count": 0}}}, "/ollama/gpu/count"),
            ({"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1"]}}}, "/networkPolicy/apiServer/cidrs/0"),
            ({"notifications": {"webhooks": [{**webhook, "format": "xml"}]}}, "/notifications/webhooks/0/format"),
            ({"notifications": {"webhooks": [{**webhook, "events": ["deleted"]}]}}, "/notifications/webhooks/0/events/0"),
            ({"notifications": {"webhooks": [{k: v for k, v in webhook.items() if k != "urlSecret"}]}}, "urlSecret"),
        ):
            expect_refusal(bad, path, f"schema: {path}")
        # What a schema cannot say, the templates refuse.
        expect_refusal({"networkPolicy": {"enabled": True}}, "networkPolicy.apiServer.cidrs is empty", "no API server")
        expect_refusal({"serviceMonitor": {"enabled": True}, "service": {"enabled": False}},
                       "serviceMonitor.enabled needs service.enabled", "monitor without Service")
        expect_refusal({"ollama": {"pull": {"enabled": True}}}, "ollama.pull.enabled needs ollama.enabled", "pull without Ollama")
        expect_refusal({"notifications": {"webhooks": [webhook, webhook]}}, 'the name "a" is used twice', "webhook twice")
        print("check-chart: ok: config changes roll the pods; unsafe and malformed values are refused, naming the value")
    except Failed as failure:
        print(f"check-chart: FAILED: {failure}", file=sys.stderr)
        return 1
    except helm.HelmError as error:
        print(f"check-chart: FAILED: helm: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    except Exception as error:  # a chart shaped unlike what the checks expect
        traceback.print_exc()
        print(f"check-chart: FAILED: {type(error).__name__}: {' '.join(str(error).split())}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
