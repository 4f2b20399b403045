// {{name}}: a KubeSkippy response parser (world `{{world}}`). It reads a reply
// in the default prompt's JSON schema: the first `{` to the last `}`, so
// markdown fences or prose around the object do no harm.
//
// One self-contained ES module: `jco componentize` does not resolve relative
// imports. Types follow jco's mapping of the WIT: camelCase fields, variants
// as { tag: 'scale', val: 3 }, enums as strings, u64 as BigInt, absent options
// as undefined; throwing a string returns the WIT error.

export const responseParser = {
  parseResponse(reply, incident) {
    return parse(reply, incident);
  },
};

export function parse(reply, incident) {
  const start = reply.indexOf('{');
  const end = reply.lastIndexOf('}');
  if (start < 0 || end < 0) throw 'the reply has no JSON object';
  let object;
  try {
    object = JSON.parse(reply.slice(start, Math.max(start, end) + 1));
  } catch {
    throw 'the reply is not valid JSON';
  }
  if (object === null || typeof object !== 'object' || Array.isArray(object)) {
    throw 'the reply is not valid JSON';
  }
  if (typeof object.summary !== 'string') throw 'the reply has no summary';
  return {
    summary: object.summary,
    issues: items(object, 'issues').map(issue),
    recommendations: items(object, 'recommendations').map((item) => recommendation(item, incident)),
  };
}

function items(object, key) {
  const list = Array.isArray(object[key]) ? object[key] : [];
  return list.filter((item) => item !== null && typeof item === 'object' && !Array.isArray(item));
}

function text(object, key) {
  return typeof object[key] === 'string' ? object[key] : '';
}

function issue(object) {
  const severity = text(object, 'severity');
  return {
    title: text(object, 'title'),
    severity: ['low', 'high', 'critical'].includes(severity) ? severity : 'medium',
    impact: text(object, 'impact'),
    rootCause: text(object, 'root_cause'),
  };
}

function recommendation(object, incident) {
  // "Kind/name" in the incident's namespace; anything else means the incident's target.
  const spec = text(object, 'target');
  const slash = spec.indexOf('/');
  const target =
    slash > 0 && slash < spec.length - 1
      ? { kind: spec.slice(0, slash), namespace: incident.target.namespace, name: spec.slice(slash + 1) }
      : incident.target;
  let action;
  switch (text(object, 'action')) {
    case 'restart':
      action = { tag: 'restart' };
      break;
    case 'delete-pod':
      action = { tag: 'delete-pod' };
      break;
    case 'scale': {
      const replicas = object.replicas;
      action = Number.isInteger(replicas) && replicas >= 0 && replicas <= 0xffffffff
        ? { tag: 'scale', val: replicas }
        : { tag: 'none' };
      break;
    }
    case 'patch':
      action = patch(object, incident);
      break;
    default:
      action = { tag: 'none' };
  }
  return {
    action,
    target,
    reason: text(object, 'reason'),
    risk: text(object, 'risk'),
    confidence: typeof object.confidence === 'number' ? object.confidence : 0,
  };
}

function patch(object, incident) {
  const container = text(object, 'container') || (incident.workload?.containers[0] ?? '');
  const resources = {
    container,
    cpuLimitMillicores: cpuMillicores(text(object, 'cpu_limit')),
    cpuRequestMillicores: cpuMillicores(text(object, 'cpu_request')),
    memoryLimitBytes: memoryBytes(text(object, 'memory_limit')),
    memoryRequestBytes: memoryBytes(text(object, 'memory_request')),
  };
  const changes = [
    resources.cpuLimitMillicores,
    resources.cpuRequestMillicores,
    resources.memoryLimitBytes,
    resources.memoryRequestBytes,
  ].some((value) => value !== undefined);
  return changes ? { tag: 'patch', val: { tag: 'resources', val: resources } } : { tag: 'none' };
}

// A Kubernetes quantity: a number and an optional suffix; u64 fields are BigInt.
function quantity(text, suffixes) {
  const trimmed = text.trim();
  let number = trimmed;
  let scale = 1;
  for (const [suffix, factor] of suffixes) {
    if (trimmed.endsWith(suffix)) {
      number = trimmed.slice(0, trimmed.length - suffix.length);
      scale = factor;
      break;
    }
  }
  if (number === '' || !/^[0-9]*\.?[0-9]*([eE][-+]?[0-9]+)?$/.test(number)) return undefined;
  const value = Number(number);
  return Number.isFinite(value) && value >= 0 ? BigInt(Math.round(value * scale)) : undefined;
}

function memoryBytes(text) {
  const ki = 1024;
  return quantity(text, [['Ki', ki], ['Mi', ki ** 2], ['Gi', ki ** 3], ['k', 1e3], ['M', 1e6], ['G', 1e9]]);
}

// "500m" is millicores; a bare number is cores.
function cpuMillicores(text) {
  return quantity(text, [['m', 1], ['', 1000]]);
}
