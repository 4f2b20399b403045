"""The team's rules, over the WIT types, with the configuration passed in so
that the tests run them natively.

- Scaling above `team.maxReplicas` replicas is denied in the namespaces that
  `team.limitedNamespaces` lists.
- A patch (resources or a raw strategic-merge patch) to an object in a
  namespace that `team.productionNamespaces` lists needs a person's approval.

Namespace lists are comma-separated shell patterns (`prod-*`, `*`). The keys
carry a `team.` prefix because every plugin receives the whole
`plugins.config` map, and the default validator already reads `maxReplicas`
(to lower replicas, not to deny).
"""

from fnmatch import fnmatchcase
from typing import Callable, Optional

from wit_world.imports import types

Config = Callable[[str], Optional[str]]

DEFAULT_MAX_REPLICAS = 5
DEFAULT_LIMITED_NAMESPACES = "*"
DEFAULT_PRODUCTION_NAMESPACES = "production,prod,prod-*"


class Misconfigured(Exception):
    pass


def positive_integer(config: Config, key: str, default: int) -> int:
    text = config(key)
    if text is None:
        return default
    value = text.strip()
    if not value.isdigit() or int(value) == 0:
        raise Misconfigured(f"config {key} must be a positive integer, got {text!r}")
    return int(value)


def namespaces(config: Config, key: str, default: str) -> list[str]:
    text = config(key)
    return [p.strip() for p in (default if text is None else text).split(",") if p.strip()]


def listed(namespace: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(namespace, pattern) for pattern in patterns)


def validate(recommendation: types.Recommendation, config: Config) -> types.Verdict:
    """Denies what the team does not allow; a configuration it cannot read
    denies too, because a validator without its rules must not allow."""
    try:
        max_replicas = positive_integer(config, "team.maxReplicas", DEFAULT_MAX_REPLICAS)
        limited = namespaces(config, "team.limitedNamespaces", DEFAULT_LIMITED_NAMESPACES)
    except Misconfigured as why:
        return types.Verdict_Deny(f"team validator misconfigured: {why}")
    action = recommendation.action
    target = recommendation.target
    if (
        isinstance(action, types.Action_Scale)
        and action.value > max_replicas
        and listed(target.namespace, limited)
    ):
        return types.Verdict_Deny(
            f"scaling {target.kind}/{target.name} to {action.value} replicas is above "
            f"the team's limit of {max_replicas} in namespace {target.namespace}"
        )
    return types.Verdict_Allow()


def requires_approval(recommendation: types.Recommendation, config: Config) -> Optional[str]:
    """Why a person must approve the action first, or None."""
    production = namespaces(config, "team.productionNamespaces", DEFAULT_PRODUCTION_NAMESPACES)
    action = recommendation.action
    target = recommendation.target
    if isinstance(action, types.Action_Patch) and listed(target.namespace, production):
        what = describe_patch(action.value)
        return (
            f"{what} of {target.kind}/{target.name} in production namespace "
            f"{target.namespace} needs a person's approval"
        )
    return None


def describe_patch(patch: types.Patch) -> str:
    if isinstance(patch, types.Patch_Resources):
        return f"a resource patch of container {patch.value.container}"
    return "a strategic-merge patch"
