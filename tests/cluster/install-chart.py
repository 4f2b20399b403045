"""Installs deploy/kubeskippy into a running test control plane with real Helm
(the Helm v4 library of PyPI helm-python-sdk), as an operator would, and hands
the e2e suite the daemon's identity: a token for the chart's ServiceAccount
from the TokenRequest API, written as DIR/kubeconfig-daemon.

    python install-chart.py DIR NAMESPACE RELEASE

DIR is a control plane's folder from scripts/cluster start. Prints one JSON
line: the release's name, namespace, status, the ServiceAccount and the kinds
Helm created. Runs inside scripts/check-chart's venv (target/chart-venv).
"""

import json
import ssl
import sys
import urllib.request
from pathlib import Path

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "deploy" / "kubeskippy"
TOKEN_SECONDS = 6 * 3600
# The optional pieces the API server can accept without anything running:
# kwok runs no container, so the Ollama pod never serves and no PVC is bound
# (nothing waits for either); the pull Job, a hook Helm would wait for, stays
# off. The API server is on loopback.
VALUES = {
    "replicaCount": 1,
    "ollama": {"enabled": True},
    "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["127.0.0.1/32"]}},
    "dashboard": {"enabled": True},
}


def admin_request(directory: Path, method: str, path: str, body: dict | None = None,
                  content_type: str = "application/json") -> dict:
    config = yaml.safe_load((directory / "kubeconfig").read_text())
    server = config["clusters"][0]["cluster"]["server"]
    token = config["users"][0]["user"]["token"]
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    request = urllib.request.Request(
        server + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as reply:
        return json.load(reply)


def apply_crds(directory: Path) -> None:
    """What deploy/README.md's upgrade does before `helm upgrade`: Helm never
    upgrades the CRDs in crds/."""
    for crd in yaml.safe_load_all((CHART / "crds" / "kubeskippy.io.yaml").read_text()):
        if crd:
            admin_request(
                directory, "PATCH",
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
                "?fieldManager=install-chart&force=true",
                crd, content_type="application/apply-patch+yaml",
            )


def daemon_kubeconfig(directory: Path, namespace: str, service_account: str) -> None:
    review = admin_request(
        directory,
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": TOKEN_SECONDS}},
    )
    config = yaml.safe_load((directory / "kubeconfig").read_text())
    config["users"] = [{"name": "daemon", "user": {"token": review["status"]["token"]}}]
    config["contexts"] = [{"name": "daemon", "context": {"cluster": config["clusters"][0]["name"], "user": "daemon"}}]
    config["current-context"] = "daemon"
    target = directory / "kubeconfig-daemon"
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o600)


def main() -> int:
    if len(sys.argv) != 4:
        print("usage: install-chart.py DIR NAMESPACE RELEASE", file=sys.stderr)
        return 2
    directory, namespace, release = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    try:
        with helm.Config(kubeconfig_path=directory / "kubeconfig", namespace=namespace) as config:
            values = VALUES
            # A second run of the suite on the same control plane upgrades.
            if any(r.get("name") == release for r in config.list(all_namespaces=True)):
                apply_crds(directory)
                installed = config.upgrade(CHART, release, values, namespace=namespace, timeout=120)
            else:
                installed = config.install(
                    CHART, release, values, namespace=namespace, create_namespace=True, timeout=120,
                )
    except helm.HelmError as error:
        print(f"install-chart: helm install failed: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    kinds = sorted({doc["kind"] for doc in yaml.safe_load_all(installed.get("manifest", "")) if doc})
    accounts = [doc["metadata"]["name"] for doc in yaml.safe_load_all(installed.get("manifest", ""))
                if doc and doc["kind"] == "ServiceAccount"]
    if len(accounts) != 1:
        print(f"install-chart: expected one ServiceAccount in the release, found {accounts}", file=sys.stderr)
        return 1
    daemon_kubeconfig(directory, namespace, accounts[0])
    print(json.dumps({"name": installed.get("name"), "namespace": installed.get("namespace"),
                      "status": installed.get("status"), "serviceAccount": accounts[0], "kinds": kinds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
