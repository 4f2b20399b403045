"""{{name}}: a KubeSkippy response parser (world `{{world}}`). It reads a reply
in the default prompt's JSON schema: the first `{` to the last `}`, so markdown
fences or prose around the object do no harm. Raising `Err(message)` returns
the WIT error."""

import json
import math
from typing import Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types


class ResponseParser(exports.ResponseParser):
    def parse_response(self, reply: str, incident: types.Incident) -> types.Analysis:
        return parse(reply, incident)


def parse(reply: str, incident: types.Incident) -> types.Analysis:
    start, end = reply.find("{"), reply.rfind("}")
    if start < 0 or end < 0:
        raise Err("the reply has no JSON object")
    try:
        obj = json.loads(reply[start : max(start, end) + 1])
    except ValueError:
        raise Err("the reply is not valid JSON")
    if not isinstance(obj, dict):
        raise Err("the reply is not valid JSON")
    if not isinstance(obj.get("summary"), str):
        raise Err("the reply has no summary")
    return types.Analysis(
        summary=obj["summary"],
        issues=[issue(item) for item in items(obj, "issues")],
        recommendations=[recommendation(item, incident) for item in items(obj, "recommendations")],
    )


def items(obj: dict, key: str) -> list[dict]:
    value = obj.get(key)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def text(obj: dict, key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


SEVERITIES = {"low": types.Severity.LOW, "high": types.Severity.HIGH, "critical": types.Severity.CRITICAL}


def issue(obj: dict) -> types.Issue:
    return types.Issue(
        title=text(obj, "title"),
        severity=SEVERITIES.get(text(obj, "severity"), types.Severity.MEDIUM),
        impact=text(obj, "impact"),
        root_cause=text(obj, "root_cause"),
    )


def recommendation(obj: dict, incident: types.Incident) -> types.Recommendation:
    # "Kind/name" in the incident's namespace; anything else means the incident's target.
    kind, slash, name = text(obj, "target").partition("/")
    if slash and kind and name:
        target = types.ObjectRef(kind=kind, namespace=incident.target.namespace, name=name)
    else:
        target = incident.target
    action_name = text(obj, "action")
    replicas = obj.get("replicas")
    if action_name == "restart":
        action = types.Action_Restart()
    elif action_name == "delete-pod":
        action = types.Action_DeletePod()
    elif action_name == "scale" and type(replicas) is int and 0 <= replicas <= 0xFFFFFFFF:
        action = types.Action_Scale(replicas)
    elif action_name == "patch":
        action = patch(obj, incident)
    else:
        action = types.Action_None_()
    confidence = obj.get("confidence")
    return types.Recommendation(
        action=action,
        target=target,
        reason=text(obj, "reason"),
        risk=text(obj, "risk"),
        confidence=float(confidence) if type(confidence) in (int, float) else 0.0,
    )


def patch(obj: dict, incident: types.Incident) -> types.Action:
    container = text(obj, "container")
    if not container and incident.workload is not None and incident.workload.containers:
        container = incident.workload.containers[0]
    resources = types.ResourcePatch(
        container=container,
        cpu_limit_millicores=cpu_millicores(text(obj, "cpu_limit")),
        cpu_request_millicores=cpu_millicores(text(obj, "cpu_request")),
        memory_limit_bytes=memory_bytes(text(obj, "memory_limit")),
        memory_request_bytes=memory_bytes(text(obj, "memory_request")),
    )
    changes = (
        resources.cpu_limit_millicores,
        resources.cpu_request_millicores,
        resources.memory_limit_bytes,
        resources.memory_request_bytes,
    )
    if all(value is None for value in changes):
        return types.Action_None_()
    return types.Action_Patch(types.Patch_Resources(resources))


def quantity(text: str, suffixes: list[tuple[str, float]]) -> Optional[int]:
    """A Kubernetes quantity: a number and an optional suffix."""
    number, scale = text.strip(), 1.0
    for suffix, factor in suffixes:
        if number.endswith(suffix):
            number, scale = number[: len(number) - len(suffix)], factor
            break
    try:
        value = float(number)
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0 or number.strip() != number or not number:
        return None
    return math.floor(value * scale + 0.5)


def memory_bytes(text: str) -> Optional[int]:
    ki = 1024.0
    return quantity(text, [("Ki", ki), ("Mi", ki**2), ("Gi", ki**3), ("k", 1e3), ("M", 1e6), ("G", 1e9)])


def cpu_millicores(text: str) -> Optional[int]:
    # "500m" is millicores; a bare number is cores.
    return quantity(text, [("m", 1.0), ("", 1000.0)])
