// The SDK's sample incident (plugins/sdk/src/sample.rs) in the shape jco hands
// a JavaScript component: camelCase fields, u64 as BigInt, enums as kebab-case
// strings, absent options as undefined.
export function oomCrashloopIncident() {
  const deployment = { kind: 'Deployment', namespace: 'shop', name: 'app' };
  const container = {
    name: 'app',
    usage: { cpuMillicores: 890n, memoryBytes: 1500n << 20n },
    limits: { cpuMillicores: 1000n, memoryBytes: 512n << 20n },
    requests: { cpuMillicores: 250n, memoryBytes: 256n << 20n },
    restartCount: 5,
    ready: false,
    waitingReason: 'CrashLoopBackOff',
    waitingMessage: 'back-off 2m40s restarting failed container',
    lastTerminationReason: 'OOMKilled',
    lastExitCode: 137,
  };
  return {
    id: 'shop-deployment-app-0001',
    target: deployment,
    workload: { target: deployment, desiredReplicas: 2, readyReplicas: 1, containers: ['app'] },
    pods: [
      {
        name: 'app-xyz',
        namespace: 'shop',
        phase: 'Running',
        statusReason: 'CrashLoopBackOff',
        restartCount: 5,
        usage: container.usage,
        limits: container.limits,
        containers: [container],
        owner: deployment,
        node: 'node-1',
      },
    ],
    events: [
      {
        eventType: 'Warning',
        reason: 'OOMKilled',
        message: 'Container app was OOM killed',
        count: 3,
        involved: { kind: 'Pod', namespace: 'shop', name: 'app-xyz' },
      },
    ],
    findings: [
      { trigger: 'restart-count', kind: 'restarts', detail: 'Pod app-xyz has restarted 5 times', pod: 'app-xyz' },
      { trigger: 'memory-limit', kind: 'memory-pressure', detail: 'Memory usage at 1500MiB (limit 512MiB)', pod: 'app-xyz' },
      { trigger: 'oom-killed', kind: 'oom-killed', detail: 'OOMKilled events detected', pod: 'app-xyz' },
    ],
  };
}
