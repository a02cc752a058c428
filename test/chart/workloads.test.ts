import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../services/core/src/config.ts';
import { ConfigError } from '../../services/core/src/errors.ts';
import { CONTROLLER_SOURCES, chartCustomResources, findApiCalls, grantsFor, grantsOf } from './controller-calls.ts';
import { type Manifest, pick, podSpecOf, render, VALUES_FILES } from './helm.ts';

const test = suite('chart: workloads, RBAC and configuration');

const rendered = new Map<string, Manifest[]>();
const external = ['connections.databaseUrl=postgres://u:p@db:5432/conveyor', 'connections.amqpUrl=amqp://u:p@mq:5672'];

test.before(async () => {
  for (const [name, file] of Object.entries(VALUES_FILES)) rendered.set(name, await render([file]));
});

const every = (fn: (manifests: Manifest[], name: string) => void) => {
  for (const [name, manifests] of rendered) fn(manifests, name);
};
const workloads = (manifests: Manifest[]) => manifests.filter((manifest) => podSpecOf(manifest) !== null);
const containerOf = (manifests: Manifest[], deployment: string) => podSpecOf(pick(manifests, 'Deployment', deployment)).containers[0];
const envOf = (container: any): Map<string, any> => new Map((container.env ?? []).map((entry: any) => [entry.name, entry]));

let controllerGrants: string[] = [];

test.before(async () => {
  const resources = chartCustomResources();
  controllerGrants = await grantsFor(findApiCalls(CONTROLLER_SOURCES, [...resources.keys()]), resources);
});

test('the controller Role grants exactly what the controller\'s API calls need, namespaced, bound to its ServiceAccount only', () => {
  // Both ways: a missing grant breaks a call in the cluster; an extra one is a privilege nothing uses.
  assert.ok(controllerGrants.includes('coordination.k8s.io leases update') && controllerGrants.includes('apps deployments/scale patch'), controllerGrants.join('\n'));
  every((manifests, name) => {
    const role = pick(manifests, 'Role', 'conveyor-controller');
    const granted = grantsOf(role['rules']);
    assert.equal(controllerGrants.filter((grant) => !granted.includes(grant)), [], `${name}: used by the controller but not granted`);
    assert.equal(granted.filter((grant) => !controllerGrants.includes(grant)), [], `${name}: granted but used by no call in services/controller/src`);
    assert.not.ok(manifests.some((manifest) => manifest.kind === 'ClusterRole' || manifest.kind === 'ClusterRoleBinding'), `${name}: cluster-wide RBAC`);
    assert.equal(manifests.filter((manifest) => manifest.kind === 'Role').length, 1);
    const binding = pick(manifests, 'RoleBinding', 'conveyor-controller');
    assert.equal(binding['roleRef'], { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'conveyor-controller' });
    assert.equal(binding['subjects'], [{ kind: 'ServiceAccount', name: 'conveyor-controller', namespace: 'conveyor-test' }]);
    const controller = podSpecOf(pick(manifests, 'Deployment', 'conveyor-controller'));
    assert.is(controller.serviceAccountName, 'conveyor-controller');
    for (const deployment of ['conveyor-api', 'conveyor-worker']) {
      assert.is(podSpecOf(pick(manifests, 'Deployment', deployment)).automountServiceAccountToken, false, `${name}: ${deployment} gets a token`);
    }
  });
});

test('the call analysis finds each kind of call, resolves receivers and plurals, and refuses what it cannot place', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-calls-'));
  try {
    const kube = `import { AppsV1Api, CoreV1Api, CustomObjectsApi, EventsV1Api, makeInformer } from '@kubernetes/client-node';
      export type Kube = { core: CoreV1Api; apps: AppsV1Api; custom: CustomObjectsApi; events: EventsV1Api };
      // A comment's apostrophe: don't let it open a string.
      export async function writeStatus(kube: Kube, plural: string) {
        await kube.custom.replaceNamespacedCustomObjectStatus({ group: 'conveyor.dev', version: 'v1alpha1', namespace: 'ns', plural, name: 'x', body: {} });
      }
      export class Watcher {
        constructor(kube: Kube, plural: string) {
          makeInformer(kube.config, '/apis', () => kube.custom.listNamespacedCustomObject({ group: 'conveyor.dev', version: 'v1alpha1', namespace: 'ns', plural }));
        }
      }
      export async function act(kube: Kube) {
        await kube.core.deleteNamespacedPod({ name: 'p', namespace: 'ns' });
        await kube.events.createNamespacedEvent({ namespace: 'ns', body: {} });
        await kube.apps
          .replaceNamespacedDeploymentScale({ name: 'd', namespace: 'ns', body: {} });
        await writeStatus(kube, 'workerpools');
        new Watcher(kube, 'tasks');
        await repository.listTasks();
      }`;
    writeFileSync(join(dir, 'kube.ts'), kube);
    const resources = chartCustomResources();
    const calls = findApiCalls(dir, [...resources.keys()]);
    assert.equal(await grantsFor(calls, resources), [
      'apps deployments/scale update',
      'conveyor.dev tasks list',
      'conveyor.dev tasks watch',
      'conveyor.dev workerpools/status update',
      'core pods delete',
      'events.k8s.io events create',
    ]);
    writeFileSync(join(dir, 'kube.ts'), kube.replace("writeStatus(kube, 'workerpools')", 'writeStatus(kube, somePlural)'));
    assert.throws(() => findApiCalls(dir, [...resources.keys()]), /cannot tell which resource this call acts on/);
    writeFileSync(join(dir, 'kube.ts'), `${kube}\nconst client = other.readNamespacedPod({ name: 'p', namespace: 'ns' });`);
    assert.throws(() => findApiCalls(dir, [...resources.keys()]), /other\.readNamespacedPod: the receiver is declared as no client-node API class/);
    writeFileSync(join(dir, 'kube.ts'), `${kube}\nconst watch = new Watch(config);`);
    assert.throws(() => findApiCalls(dir, [...resources.keys()]), /which the analysis does not follow/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every pod and container runs non-root, read-only, without privilege escalation or capabilities, under RuntimeDefault seccomp', () => {
  every((manifests, name) => {
    for (const workload of workloads(manifests)) {
      const where = `${name}: ${workload.kind}/${workload.metadata.name}`;
      const pod = podSpecOf(workload);
      assert.is(pod.securityContext?.runAsNonRoot, true, where);
      assert.is(pod.securityContext?.seccompProfile?.type, 'RuntimeDefault', where);
      const tmp = (pod.volumes ?? []).find((volume: any) => volume.name === 'tmp');
      assert.ok(tmp?.emptyDir, `${where}: no emptyDir for /tmp`);
      for (const container of [...(pod.initContainers ?? []), ...pod.containers]) {
        const context = container.securityContext;
        assert.ok(context, `${where}/${container.name}: no securityContext`);
        assert.is(context.runAsNonRoot, true, `${where}/${container.name}`);
        assert.is(context.allowPrivilegeEscalation, false, `${where}/${container.name}`);
        assert.is(context.readOnlyRootFilesystem, true, `${where}/${container.name}`);
        assert.equal(context.capabilities?.drop, ['ALL'], `${where}/${container.name}`);
        assert.is(context.seccompProfile?.type, 'RuntimeDefault', `${where}/${container.name}`);
        assert.ok(container.volumeMounts.some((mount: any) => mount.name === 'tmp' && mount.mountPath === '/tmp'), `${where}/${container.name}: /tmp`);
      }
    }
  });
});

test("the worker's grace period outlasts SHUTDOWN_TIMEOUT_MS + 10 s, whatever the timeout", async () => {
  const cases = [...rendered, ['61.5 s timeout', await render([], [...external, 'worker.shutdownTimeoutMs=61500'])] as const];
  for (const [name, manifests] of cases) {
    const worker = podSpecOf(pick(manifests, 'Deployment', 'conveyor-worker'));
    const shutdownMs = Number(envOf(worker.containers[0]).get('SHUTDOWN_TIMEOUT_MS').value);
    assert.ok(worker.terminationGracePeriodSeconds * 1000 > shutdownMs + 10_000, `${name}: ${worker.terminationGracePeriodSeconds} s for ${shutdownMs} ms`);
  }
});

test('probes: the API on /healthz and /readyz of port 8000; worker and controller on METRICS_PORT 9091', () => {
  every((manifests, name) => {
    const api = containerOf(manifests, 'conveyor-api');
    assert.equal(api.ports, [{ name: 'http', containerPort: 8000, protocol: 'TCP' }], name);
    assert.is(envOf(api).get('PORT').value, '8000');
    assert.equal(api.livenessProbe.httpGet, { path: '/healthz', port: 'http' });
    assert.equal(api.readinessProbe.httpGet, { path: '/readyz', port: 'http' });
    for (const deployment of ['conveyor-worker', 'conveyor-controller']) {
      const container = containerOf(manifests, deployment);
      assert.equal(container.ports, [{ name: 'metrics', containerPort: 9091, protocol: 'TCP' }], `${name}: ${deployment}`);
      assert.is(envOf(container).get('METRICS_PORT').value, '9091');
      assert.equal(container.livenessProbe.httpGet, { path: '/healthz', port: 'metrics' });
      assert.equal(container.readinessProbe.httpGet, { path: '/readyz', port: 'metrics' });
    }
    for (const deployment of ['conveyor-api', 'conveyor-worker', 'conveyor-controller']) {
      const resources = containerOf(manifests, deployment).resources;
      assert.ok(resources?.requests?.cpu && resources?.requests?.memory && resources?.limits?.memory, `${name}: ${deployment} resources`);
    }
  });
});

test('downward API: WORKER_ID is the worker pod name; the controller gets POD_NAME, POD_NAMESPACE and its Lease name', () => {
  every((manifests, name) => {
    const worker = envOf(containerOf(manifests, 'conveyor-worker'));
    assert.equal(worker.get('WORKER_ID').valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, name);
    const controller = envOf(containerOf(manifests, 'conveyor-controller'));
    assert.equal(controller.get('POD_NAME').valueFrom, { fieldRef: { fieldPath: 'metadata.name' } });
    assert.equal(controller.get('POD_NAMESPACE').valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } });
    assert.is(controller.get('CONTROLLER_LEASE_NAME').value, 'conveyor-controller');
  });
});

test('the URLs come from the Secret (or existingSecret), never from the ConfigMap', () => {
  every((manifests, name) => {
    const secretName = name === 'production' ? 'conveyor-connections' : 'conveyor';
    for (const deployment of ['conveyor-api', 'conveyor-worker', 'conveyor-controller']) {
      const env = envOf(containerOf(manifests, deployment));
      for (const key of ['DATABASE_URL', 'AMQP_URL']) {
        assert.equal(env.get(key).valueFrom, { secretKeyRef: { name: secretName, key } }, `${name}: ${deployment} ${key}`);
      }
    }
    const data = pick(manifests, 'ConfigMap', 'conveyor')['data'];
    assert.not.ok('DATABASE_URL' in data || 'AMQP_URL' in data);
    assert.is(manifests.some((manifest) => manifest.kind === 'Secret' && manifest.metadata.name === 'conveyor'), name !== 'production', name);
  });
});

const baseline = loadConfig({});

/** True when services/core/src/config.ts reads `name`: setting it either changes the configuration or is refused by name. */
function configReads(name: string): boolean {
  try {
    return !isDeepStrictEqual(loadConfig({ [name]: 'chart-probe' }), baseline);
  } catch (error) {
    return error instanceof ConfigError && error.message.includes(`${name}:`);
  }
}

/** A Secret's values, from `stringData` or decoded from `data`. */
function secretData(secret: Manifest): Record<string, string> {
  const decoded = Object.entries((secret['data'] ?? {}) as Record<string, string>).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]);
  return { ...Object.fromEntries(decoded), ...secret['stringData'] };
}

/** Every variable a container gets, with the value it would have in the cluster. */
function environmentOf(manifests: Manifest[], container: any): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of container.envFrom ?? []) Object.assign(env, pick(manifests, 'ConfigMap', source.configMapRef.name)['data']);
  const secrets = new Map(manifests.filter((manifest) => manifest.kind === 'Secret').map((secret) => [secret.metadata.name, secretData(secret)]));
  const samples: Record<string, string> = { DATABASE_URL: 'postgres://u:p@db:5432/conveyor', AMQP_URL: 'amqp://u:p@mq:5672', AUTH_BOOTSTRAP_KEY: `cvy_${'k'.repeat(43)}` };
  for (const entry of container.env ?? []) {
    if (entry.value !== undefined) env[entry.name] = entry.value;
    else if (entry.valueFrom?.fieldRef) env[entry.name] = entry.valueFrom.fieldRef.fieldPath === 'metadata.namespace' ? 'conveyor-test' : 'conveyor-worker-5d8f7-abcde';
    else if (entry.valueFrom?.secretKeyRef) {
      const { name, key } = entry.valueFrom.secretKeyRef;
      const value = secrets.get(name)?.[key] ?? samples[entry.name];
      if (value === undefined) throw new Error(`no value for ${entry.name} from Secret ${name} key ${key}`);
      env[entry.name] = value;
    }
  }
  return env;
}

test('every environment variable the chart sets is one config.ts reads, with a value loadConfig accepts', () => {
  assert.ok(configReads('WORKER_ID') && configReads('TASKS_QUEUE') && !configReads('NOT_A_CONVEYOR_SETTING'), 'the probe itself works');
  every((manifests, name) => {
    for (const deployment of ['conveyor-api', 'conveyor-worker', 'conveyor-controller']) {
      const env = environmentOf(manifests, containerOf(manifests, deployment));
      const unknown = Object.keys(env).filter((key) => !configReads(key));
      assert.equal(unknown, [], `${name}: ${deployment} sets variables config.ts does not read`);
      try {
        loadConfig(env);
      } catch (error) {
        assert.unreachable(`${name}: ${deployment}: ${(error as Error).message}`);
      }
    }
  });
});

test('the default WorkerPool targets the worker Deployment and its queue, and then owns its replica count', async () => {
  every((manifests, name) => {
    const pool = pick(manifests, 'WorkerPool', 'conveyor-worker');
    assert.is(pool['spec'].workerDeployment, 'conveyor-worker', name);
    assert.is(pool['spec'].queue, pick(manifests, 'ConfigMap', 'conveyor')['data'].TASKS_QUEUE, name);
    assert.is(pick(manifests, 'Deployment', 'conveyor-worker')['spec'].replicas, undefined, `${name}: replicas would fight the controller`);
  });
  const fixed = await render([], [...external, 'worker.pool.enabled=false', 'worker.replicas=3', 'config.tasksQueue=jobs']);
  assert.not.ok(fixed.some((manifest) => manifest.kind === 'WorkerPool'));
  assert.is(pick(fixed, 'Deployment', 'conveyor-worker')['spec'].replicas, 3);
  const pooled = await render([], [...external, 'config.tasksQueue=jobs']);
  assert.is(pick(pooled, 'WorkerPool', 'conveyor-worker')['spec'].queue, 'jobs');
});

test('the helm test pod submits a task to the API Service and waits, bounded, for it to complete', () => {
  every((manifests, name) => {
    const pod = pick(manifests, 'Pod', 'conveyor-test');
    assert.is(pod.metadata.annotations?.['helm.sh/hook'], 'test', name);
    const container = pod['spec'].containers[0];
    const script = container.args.join('\n');
    assert.match(script, /curl .*-d '\{"type":"echo"/s);
    assert.match(script, /completed\) echo "task \$id completed"; exit 0/);
    assert.match(script, /TIMEOUT_SECONDS/);
    assert.is(envOf(container).get('API').value, 'http://conveyor-api:8000');
  });
});

test('an Ingress routes the configured hosts, class and TLS to the API Service', async () => {
  const manifests = await render([VALUES_FILES.production]);
  const ingress = pick(manifests, 'Ingress', 'conveyor-api');
  assert.is(ingress['spec'].ingressClassName, 'nginx');
  assert.equal(ingress['spec'].tls, [{ secretName: 'conveyor-tls', hosts: ['conveyor.example.com'] }]);
  assert.equal(ingress['spec'].rules, [{
    host: 'conveyor.example.com',
    http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'conveyor-api', port: { name: 'http' } } } }] },
  }]);
});

test.run();
