"""The component face of the team validator: reads configuration through the
host import and hands each call to policy.py."""

from typing import Optional

from wit_world import exports
from wit_world.imports import host, types

import policy


class SafetyValidator(exports.SafetyValidator):
    def validate(
        self,
        recommendation: types.Recommendation,
        incident: types.Incident,
        context: types.ReviewContext,
    ) -> types.Verdict:
        return policy.validate(recommendation, host.config)


# The approval gate exists from kubeskippy:plugin@0.1.1 on; built for the
# 0.1.0 `validator-plugin` world, the bindings lack it and the module exports
# the validator alone.
if hasattr(exports, "ApprovalGate"):

    class ApprovalGate(exports.ApprovalGate):
        def requires_approval(
            self, recommendation: types.Recommendation, incident: types.Incident
        ) -> Optional[str]:
            return policy.requires_approval(recommendation, host.config)
