"""Runs policy.py natively against bindings that componentize-py generates
(see the README for the command)."""

import unittest

from wit_world.imports import types

import policy


def config(**pairs):
    values = {key.replace("_", "."): value for key, value in pairs.items()}
    return values.get


NO_CONFIG = config()


def recommendation(action, namespace="shop", kind="Deployment", name="app"):
    return types.Recommendation(
        action=action,
        target=types.ObjectRef(kind=kind, namespace=namespace, name=name),
        reason="because",
        risk="low",
        confidence=0.9,
    )


def memory_patch():
    return types.Action_Patch(
        types.Patch_Resources(
            types.ResourcePatch(
                container="app",
                cpu_limit_millicores=None,
                cpu_request_millicores=None,
                memory_limit_bytes=2 << 30,
                memory_request_bytes=None,
            )
        )
    )


class Replicas(unittest.TestCase):
    def test_scaling_above_the_default_limit_is_denied_everywhere(self):
        verdict = policy.validate(recommendation(types.Action_Scale(6)), NO_CONFIG)
        self.assertEqual(
            verdict,
            types.Verdict_Deny(
                "scaling Deployment/app to 6 replicas is above the team's limit of 5 in namespace shop"
            ),
        )

    def test_scaling_up_to_the_limit_is_allowed(self):
        for replicas in (0, 1, 5):
            self.assertEqual(
                policy.validate(recommendation(types.Action_Scale(replicas)), NO_CONFIG),
                types.Verdict_Allow(),
            )

    def test_only_listed_namespaces_are_limited(self):
        cfg = config(team_maxReplicas="3", team_limitedNamespaces="payments, team-*")
        scale = types.Action_Scale(4)
        self.assertIsInstance(policy.validate(recommendation(scale, "payments"), cfg), types.Verdict_Deny)
        self.assertIsInstance(policy.validate(recommendation(scale, "team-a"), cfg), types.Verdict_Deny)
        self.assertEqual(policy.validate(recommendation(scale, "shop"), cfg), types.Verdict_Allow())

    def test_other_actions_pass(self):
        for action in (types.Action_Restart(), types.Action_DeletePod(), types.Action_None_(), memory_patch()):
            self.assertEqual(policy.validate(recommendation(action, "prod"), NO_CONFIG), types.Verdict_Allow())

    def test_a_bad_limit_denies_naming_the_key(self):
        for text in ("0", "-1", "many", ""):
            self.assertEqual(
                policy.validate(recommendation(types.Action_Restart()), config(team_maxReplicas=text)),
                types.Verdict_Deny(
                    f"team validator misconfigured: config team.maxReplicas must be a positive integer, got {text!r}"
                ),
            )


class Approval(unittest.TestCase):
    def test_patches_in_production_need_approval(self):
        self.assertEqual(
            policy.requires_approval(recommendation(memory_patch(), "prod-eu"), NO_CONFIG),
            "a resource patch of container app of Deployment/app in production namespace prod-eu "
            "needs a person's approval",
        )
        raw = types.Action_Patch(types.Patch_StrategicMerge("spec: {}"))
        self.assertIn(
            "a strategic-merge patch",
            policy.requires_approval(recommendation(raw, "production"), NO_CONFIG),
        )

    def test_patches_elsewhere_and_other_actions_need_none(self):
        self.assertIsNone(policy.requires_approval(recommendation(memory_patch(), "shop"), NO_CONFIG))
        self.assertIsNone(policy.requires_approval(recommendation(types.Action_Restart(), "prod"), NO_CONFIG))

    def test_the_production_list_is_configurable(self):
        cfg = config(team_productionNamespaces="shop")
        self.assertIsNotNone(policy.requires_approval(recommendation(memory_patch(), "shop"), cfg))
        self.assertIsNone(policy.requires_approval(recommendation(memory_patch(), "prod"), cfg))


if __name__ == "__main__":
    unittest.main()
