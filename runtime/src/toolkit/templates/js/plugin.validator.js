// {{name}}: a KubeSkippy validator (world `{{world}}`). It denies scaling to
// zero replicas and allows everything else; put your rules in `judge`.
//
// One self-contained ES module: `jco componentize` does not resolve relative
// imports. Types follow jco's mapping of the WIT: camelCase fields, variants
// as { tag: 'scale', val: 3 }, u64 as BigInt, absent options as undefined.

export const safetyValidator = {
  validate(recommendation, incident, context) {
    return judge(recommendation, incident, context);
  },
};

export function judge(recommendation, _incident, _context) {
  const action = recommendation.action;
  if (action.tag === 'scale' && action.val === 0) {
    return { tag: 'deny', val: 'scaling to zero replicas takes the workload down' };
  }
  return { tag: 'allow' };
}
