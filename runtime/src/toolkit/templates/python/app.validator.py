"""{{name}}: a KubeSkippy validator (world `{{world}}`). It denies scaling to
zero replicas and allows everything else; put your rules in `judge`."""

from wit_world import exports
from wit_world.imports import types


class SafetyValidator(exports.SafetyValidator):
    def validate(
        self,
        recommendation: types.Recommendation,
        incident: types.Incident,
        context: types.ReviewContext,
    ) -> types.Verdict:
        return judge(recommendation, incident, context)


def judge(recommendation: types.Recommendation, incident: types.Incident, context: types.ReviewContext) -> types.Verdict:
    action = recommendation.action
    if isinstance(action, types.Action_Scale) and action.value == 0:
        return types.Verdict_Deny("scaling to zero replicas takes the workload down")
    return types.Verdict_Allow()
