// The chart's security settings: API keys (the bootstrap key's Secret, the API's AUTH_* environment, the test pod
// and the ServiceMonitor sending a key, no literal secret anywhere), the values that configure them, and the
// NetworkPolicies, checked by evaluating the rendered policies on concrete connections.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parse } from 'yaml';
import { API_KEY_PATTERN } from '../../services/core/src/auth/api-key.ts';
import { loadConfig } from '../../services/core/src/config.ts';
import { ROOT } from '../support/processes.ts';
import { CHART, installNotes, type Manifest, NAMESPACE, pick, podSpecOf, readManifests, render, template, VALUES_FILES } from './helm.ts';
import { allowed, type Endpoint, inCidr, type Protocol } from './network-policy.ts';

const test = suite('chart: API keys, secrets and NetworkPolicies');

const external = ['connections.databaseUrl=postgres://u:p@db:5432/conveyor', 'connections.amqpUrl=amqp://u:p@mq:5672'];
const rendered = new Map<string, Manifest[]>();
const SECRET_ENV = ['DATABASE_URL', 'AMQP_URL', 'AUTH_BOOTSTRAP_KEY', 'API_KEY', 'POSTGRES_PASSWORD', 'RABBITMQ_DEFAULT_USER', 'RABBITMQ_DEFAULT_PASS'];

test.before(async () => {
  for (const [name, file] of Object.entries(VALUES_FILES)) rendered.set(name, await render([file]));
});

const every = (fn: (manifests: Manifest[], name: string) => void) => {
  for (const [name, manifests] of rendered) fn(manifests, name);
};
const containerOf = (manifests: Manifest[], kind: string, name: string) => podSpecOf(pick(manifests, kind, name)).containers[0];
const envOf = (container: any): Map<string, any> => new Map((container.env ?? []).map((entry: any) => [entry.name, entry]));
const decoded = (secret: Manifest, key: string) => Buffer.from(secret['data'][key], 'base64').toString('utf8');

/** Renders with `set` and expects helm to refuse, saying `message`. */
async function refused(set: readonly string[], message: string | RegExp): Promise<void> {
  const result = await template([], set);
  assert.is.not(result.code, 0, `rendered with ${set.join(' ')}`);
  if (typeof message === 'string') assert.ok(result.stderr.includes(message), `expected "${message}" in:\n${result.stderr}`);
  else assert.match(result.stderr, message);
}

test('the chart-managed bootstrap key is a Conveyor API key, generated per install, kept on uninstall and found again on upgrade', async () => {
  const secret = pick(rendered.get('default') as Manifest[], 'Secret', 'conveyor-bootstrap-key');
  assert.equal(Object.keys(secret['data']), ['AUTH_BOOTSTRAP_KEY']);
  const key = decoded(secret, 'AUTH_BOOTSTRAP_KEY');
  assert.match(key, API_KEY_PATTERN);
  assert.is(secret.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
  assert.is(secret['stringData'], undefined);
  const again = decoded(pick(await render([VALUES_FILES.default]), 'Secret', 'conveyor-bootstrap-key'), 'AUTH_BOOTSTRAP_KEY');
  assert.match(again, API_KEY_PATTERN);
  assert.is.not(again, key, 'the chart ships no fixed key: each new install generates its own');
  // `helm template` has no cluster to look the Secret up in, so the reuse on upgrade is checked in the template.
  const source = readFileSync(join(CHART, 'templates', 'api', 'bootstrap-key-secret.yaml'), 'utf8');
  assert.match(source, /lookup "v1" "Secret" \.Release\.Namespace \$name/);
  assert.match(source, /\$key = index \$existing\.data \$secretKey \| b64dec/);
});

test('with auth.bootstrapKey.existingSecret the chart creates no key Secret and every user of the key reads that one', async () => {
  const manifests = await render([], [...external, 'auth.bootstrapKey.existingSecret=my-keys', 'auth.bootstrapKey.existingSecretKey=bootstrap.key', 'metrics.serviceMonitor.enabled=true']);
  assert.not.ok(manifests.some((manifest) => manifest.kind === 'Secret' && manifest.metadata.name === 'conveyor-bootstrap-key'));
  const ref = { secretKeyRef: { name: 'my-keys', key: 'bootstrap.key' } };
  assert.equal(envOf(containerOf(manifests, 'Deployment', 'conveyor-api')).get('AUTH_BOOTSTRAP_KEY').valueFrom, ref);
  assert.equal(envOf(containerOf(manifests, 'Pod', 'conveyor-test')).get('API_KEY').valueFrom, ref);
  assert.equal(pick(manifests, 'ServiceMonitor', 'conveyor-api')['spec'].endpoints[0].authorization, { type: 'Bearer', credentials: { name: 'my-keys', key: 'bootstrap.key' } });
  const notes = await installNotes([], [...external, 'auth.bootstrapKey.existingSecret=my-keys', 'auth.bootstrapKey.existingSecretKey=bootstrap.key']);
  assert.ok(notes.includes(`kubectl get secret my-keys -n ${NAMESPACE} -o jsonpath='{.data.bootstrap\\.key}' | base64 -d`), notes);
});

test('the API always runs with API keys, its settings from the values, the key only through a secretKeyRef', async () => {
  every((manifests, name) => {
    const env = envOf(containerOf(manifests, 'Deployment', 'conveyor-api'));
    assert.is(env.get('AUTH_MODE').value, 'apikey', name);
    const secretName = name === 'k8s/dev-values' ? 'conveyor-dev-api-key' : 'conveyor-bootstrap-key';
    const key = name === 'production' ? 'api-key' : 'AUTH_BOOTSTRAP_KEY';
    assert.equal(env.get('AUTH_BOOTSTRAP_KEY').valueFrom, { secretKeyRef: { name: secretName, key } }, name);
    assert.is(env.get('AUTH_BOOTSTRAP_TENANT').value, name === 'production' ? 'platform' : NAMESPACE, `${name}: the tenant defaults to the release namespace`);
    for (const worker of ['conveyor-worker', 'conveyor-controller']) {
      const keys = [...envOf(containerOf(manifests, 'Deployment', worker)).keys()];
      assert.equal(keys.filter((variable) => variable.startsWith('AUTH_') || variable.startsWith('PUBLIC_')), [], `${name}: ${worker} gets the API's settings`);
    }
  });
  const tuned = await render([], [
    ...external,
    'auth.bootstrapTenant=shop',
    'auth.cacheMs=1000',
    'auth.rateLimit.perSecond=0',
    'auth.rateLimit.burst=50',
    'api.publicDocs=true',
    'api.limits.bodyBytes=65536',
    'api.limits.headersTimeoutMs=5000',
    'api.limits.requestTimeoutMs=60000',
  ]);
  const env = envOf(containerOf(tuned, 'Deployment', 'conveyor-api'));
  const values = Object.fromEntries(['AUTH_BOOTSTRAP_TENANT', 'AUTH_CACHE_MS', 'RATE_LIMIT_PER_SECOND', 'RATE_LIMIT_BURST', 'BODY_LIMIT_BYTES', 'HTTP_HEADERS_TIMEOUT_MS', 'HTTP_REQUEST_TIMEOUT_MS', 'PUBLIC_DOCS', 'PUBLIC_METRICS'].map((variable) => [variable, env.get(variable)?.value]));
  assert.equal(values, {
    AUTH_BOOTSTRAP_TENANT: 'shop',
    AUTH_CACHE_MS: '1000',
    RATE_LIMIT_PER_SECOND: '0',
    RATE_LIMIT_BURST: '50',
    BODY_LIMIT_BYTES: '65536',
    HTTP_HEADERS_TIMEOUT_MS: '5000',
    HTTP_REQUEST_TIMEOUT_MS: '60000',
    PUBLIC_DOCS: 'true',
    PUBLIC_METRICS: 'false',
  });
  const config = loadConfig({ ...values, AUTH_MODE: env.get('AUTH_MODE').value, AUTH_BOOTSTRAP_KEY: `cvy_${'a'.repeat(43)}` });
  assert.equal([config.authMode, config.host, config.rateLimitPerSecond, config.publicDocs, config.publicMetrics], ['apikey', '0.0.0.0', 0, true, false]);
});

test('no Deployment, StatefulSet, Pod or ConfigMap holds a secret: secret variables come from Secrets, and no key or password appears', () => {
  const credentialUrl = /\b[a-z][a-z0-9+.-]*:\/\/[^\s/:@]+:[^\s/@]+@/;
  const apiKey = /cvy_[A-Za-z0-9_-]{43}/;
  every((manifests, name) => {
    const keys = manifests.filter((manifest) => manifest.kind === 'Secret' && manifest['data']?.AUTH_BOOTSTRAP_KEY).map((secret) => decoded(secret, 'AUTH_BOOTSTRAP_KEY'));
    for (const manifest of manifests.filter((candidate) => candidate.kind !== 'Secret')) {
      const where = `${name}: ${manifest.kind}/${manifest.metadata.name}`;
      const text = JSON.stringify(manifest);
      assert.not.match(text, apiKey, `${where} holds an API key`);
      assert.not.match(text, credentialUrl, `${where} holds a URL with a password`);
      for (const key of keys) assert.not.ok(text.includes(key), `${where} holds the bootstrap key`);
      const pod = podSpecOf(manifest);
      for (const container of pod ? [...(pod.initContainers ?? []), ...pod.containers] : []) {
        for (const entry of container.env ?? []) {
          if (SECRET_ENV.includes(entry.name)) assert.ok(entry.valueFrom?.secretKeyRef && entry.value === undefined, `${where}/${container.name}: ${entry.name} is not from a Secret`);
        }
      }
    }
    const config = pick(manifests, 'ConfigMap', 'conveyor')['data'] as Record<string, string>;
    assert.equal(Object.keys(config).filter((key) => SECRET_ENV.includes(key) || /KEY|PASSWORD|TOKEN|SECRET/.test(key)), [], name);
  });
});

test('the helm test pod sends the bootstrap key, from its Secret, on every request, and checks that no key means 401', () => {
  every((manifests, name) => {
    const pod = pick(manifests, 'Pod', 'conveyor-test');
    const container = pod['spec'].containers[0];
    const apiKey = envOf(containerOf(manifests, 'Deployment', 'conveyor-api')).get('AUTH_BOOTSTRAP_KEY').valueFrom;
    assert.equal(envOf(container).get('API_KEY').valueFrom, apiKey, `${name}: the test pod reads the API's key`);
    // Continued lines joined, so that each curl command is one line.
    const script = (container.args.join('\n') as string).replace(/\\\n\s*/g, ' ');
    const usesKey = script.split('\n').filter((line) => line.includes('$API_KEY'));
    assert.equal(usesKey, [`printf 'Authorization: Bearer %s\\n' "$API_KEY" > /tmp/auth-header`], `${name}: the key goes only into the header file, never into a command's arguments`);
    const curls = script.split('\n').filter((line: string) => /\bcurl\b/.test(line));
    const withKey = curls.filter((line: string) => line.includes('-H @/tmp/auth-header'));
    assert.is(withKey.length, 2, `${name}: submit and poll send the key`);
    assert.ok(withKey.some((line: string) => line.includes('-d \'{"type":"echo"')) && withKey.some((line: string) => line.includes('"$API/api/v1/tasks/$id"')));
    assert.match(script, /\[ "\$code" = 401 \] \|\| \{ echo "without a key/);
  });
});

test('NOTES.txt tells how to read the bootstrap key and call the API with it', async () => {
  const notes = await installNotes([VALUES_FILES.default]);
  assert.ok(notes.includes(`export CONVEYOR_API_KEY=$(kubectl get secret conveyor-bootstrap-key -n ${NAMESPACE} -o jsonpath='{.data.AUTH_BOOTSTRAP_KEY}' | base64 -d)`), notes);
  assert.match(notes, /curl -s -X POST \$API\/api\/v1\/tasks -H "Authorization: Bearer \$CONVEYOR_API_KEY"/);
  assert.match(notes, /curl -s "\$API\/api\/v1\/tasks\?limit=5" -H "Authorization: Bearer \$CONVEYOR_API_KEY"/);
  assert.match(notes, new RegExp(`The bootstrap key \\(tenant ${NAMESPACE}; scopes tasks:read, tasks:write and admin\\)`));
  assert.match(notes, /POST \$API\/api\/v1\/keys/);
  assert.match(notes, /NetworkPolicies are on/);
  const production = await installNotes([VALUES_FILES.production]);
  assert.ok(production.includes(`kubectl get secret conveyor-bootstrap-key -n ${NAMESPACE} -o jsonpath='{.data.api-key}' | base64 -d`), production);
  assert.not.match(production, /generated at the first install/);
});

test('the ServiceMonitor sends a key unless /metrics is public, and /metrics cannot be public where the API is exposed', async () => {
  const monitored = await render([VALUES_FILES.production]);
  assert.equal(pick(monitored, 'ServiceMonitor', 'conveyor-api')['spec'].endpoints[0].authorization, { type: 'Bearer', credentials: { name: 'conveyor-prometheus-key', key: 'api-key' } });
  const open = await render([], [...external, 'metrics.serviceMonitor.enabled=true', 'api.publicMetrics=true']);
  assert.is(pick(open, 'ServiceMonitor', 'conveyor-api')['spec'].endpoints[0].authorization, undefined);
  assert.is(envOf(containerOf(open, 'Deployment', 'conveyor-api')).get('PUBLIC_METRICS').value, 'true');
  const everyone = 'networkPolicy.api.extraFrom[0].ipBlock.cidr=0.0.0.0/0';
  await refused([...external, 'api.publicMetrics=true', 'api.ingress.enabled=true'], 'api.publicMetrics=true would publish /metrics through the Ingress, NodePort or LoadBalancer');
  await refused([...external, 'api.publicMetrics=true', 'api.service.type=LoadBalancer', everyone], 'api.publicMetrics=true would publish /metrics');
});

test('the schema refuses bad auth, API limit and NetworkPolicy values, naming them', async () => {
  await refused([...external, 'auth.bootstrapTenant=Bad_Tenant'], /\/auth\/bootstrapTenant/);
  await refused([...external, 'auth.bootstrapTenant=-shop'], /\/auth\/bootstrapTenant/);
  await refused([...external, 'auth.mode=none'], /additional properties 'mode' not allowed/);
  await refused([...external, 'auth.bootstrapKey.existingSecret=Not_A_Name'], /\/auth\/bootstrapKey\/existingSecret/);
  await refused([...external, 'auth.bootstrapKey.existingSecretKey=a/b'], /\/auth\/bootstrapKey\/existingSecretKey/);
  await refused([...external, 'auth.rateLimit.burst=0'], /\/auth\/rateLimit\/burst/);
  await refused([...external, 'auth.cacheMs=300001'], /\/auth\/cacheMs/);
  await refused([...external, 'api.limits.bodyBytes=100'], /\/api\/limits\/bodyBytes/);
  await refused([...external, 'api.publicDocs=yes'], /\/api\/publicDocs/);
  await refused([...external, 'networkPolicy.enabled=maybe'], /\/networkPolicy\/enabled/);
  await refused([...external, 'networkPolicy.worker.egress[0].ports[0].port=443'], /additional properties 'egress' not allowed/);
  await refused([...external, 'networkPolicy.postgresql.ports[0]=0'], /\/networkPolicy\/postgresql\/ports\/0/);
  await refused([...external, 'networkPolicy.postgresql.to[0].ipBlock.cidr=10.0.0.0/8', 'networkPolicy.postgresql.to[0].podSelector.matchLabels.app=db'], /\/networkPolicy\/postgresql\/to\/0/);
  await refused([...external, 'networkPolicy.kubernetesApi.to[0].ipBlock.cidr=somewhere'], /\/networkPolicy\/kubernetesApi\/to\/0\/ipBlock\/cidr/);
  await refused([...external, 'networkPolicy.ingressController.podSelector.matchExpressions[0].key=app', 'networkPolicy.ingressController.podSelector.matchExpressions[0].operator=Like'], /\/networkPolicy\/ingressController\/podSelector\/matchExpressions\/0\/operator/);
});

test('fail: a headers timeout above the request timeout; a NodePort or LoadBalancer that the NetworkPolicy would close', async () => {
  await refused([...external, 'api.limits.headersTimeoutMs=40000'], 'api.limits.headersTimeoutMs (40000) exceeds api.limits.requestTimeoutMs (30000)');
  await refused([...external, 'api.service.type=LoadBalancer'], 'api.service.type=LoadBalancer with networkPolicy.enabled lets only the ingress controller reach the API');
  await refused([...external, 'api.service.type=NodePort'], 'api.service.type=NodePort with networkPolicy.enabled');
  // The valid neighbours render.
  await render([], [...external, 'api.limits.headersTimeoutMs=30000']);
  await render([], [...external, 'api.service.type=LoadBalancer', 'networkPolicy.api.extraFrom[0].ipBlock.cidr=0.0.0.0/0']);
  await render([], [...external, 'api.service.type=NodePort', 'networkPolicy.enabled=false']);
  await render([], [...external, 'api.publicMetrics=true']);
});

test('every ci values file and k8s/dev-values.yaml renders with API keys on and the NetworkPolicies of its components', () => {
  every((manifests, name) => {
    const policies = manifests.filter((manifest) => manifest.kind === 'NetworkPolicy').map((policy) => policy.metadata.name).sort();
    const expected = ['conveyor-api', 'conveyor-controller', 'conveyor-worker'];
    if (manifests.some((manifest) => manifest.metadata.name === 'conveyor-postgresql' && manifest.kind === 'StatefulSet')) expected.push('conveyor-postgresql');
    if (manifests.some((manifest) => manifest.metadata.name === 'conveyor-rabbitmq' && manifest.kind === 'StatefulSet')) expected.push('conveyor-rabbitmq');
    assert.equal(policies, expected.sort(), name);
    assert.is(envOf(containerOf(manifests, 'Deployment', 'conveyor-api')).get('AUTH_MODE').value, 'apikey', name);
  });
  assert.ok((rendered.get('dev') as Manifest[]).some((manifest) => manifest.kind === 'NetworkPolicy' && manifest.metadata.name === 'conveyor-postgresql'), 'the dev values cover the database policies');
});

// ---- NetworkPolicies, evaluated on connections between concrete pods.

const namespaceLabels = (namespace: string) => ({ 'kubernetes.io/metadata.name': namespace });
const outsider = (namespace: string, labels: Record<string, string>, ip: string, ports: { name: string; containerPort: number; protocol: string }[] = []): Endpoint => ({
  ip,
  pod: { namespace, namespaceLabels: namespaceLabels(namespace), labels, ports },
});
const INGRESS_NGINX = outsider('ingress-nginx', { 'app.kubernetes.io/name': 'ingress-nginx', 'app.kubernetes.io/component': 'controller' }, '10.244.1.2');
const TRAEFIK = outsider('traefik', { 'app.kubernetes.io/name': 'traefik' }, '10.244.1.3');
const STRANGER = outsider('shop', { app: 'shop' }, '10.244.2.7');
const NEIGHBOUR = outsider(NAMESPACE, { app: 'debug' }, '10.244.0.99');
const PROMETHEUS = outsider('monitoring', { 'app.kubernetes.io/name': 'prometheus' }, '10.244.3.4');
const KUBE_DNS = outsider('kube-system', { 'k8s-app': 'kube-dns' }, '10.244.0.3', [
  { name: 'dns', containerPort: 53, protocol: 'UDP' },
  { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
]);
const INTERNET: Endpoint = { ip: '8.8.8.8' };
const KUBE_API_SERVER: Endpoint = { ip: '172.18.0.2' };
const EXTERNAL_DB: Endpoint = { ip: '10.0.5.10' };

/** A pod of a rendered workload (or the test Pod), with its template's labels and container ports. */
function podOf(manifests: Manifest[], kind: string, name: string, ip: string): Endpoint {
  const manifest = pick(manifests, kind, name);
  const labels = kind === 'Pod' ? manifest.metadata.labels : manifest['spec'].template.metadata.labels;
  const ports = podSpecOf(manifest).containers.flatMap((container: { ports?: unknown[] }) => container.ports ?? []);
  return { ip, pod: { namespace: NAMESPACE, namespaceLabels: namespaceLabels(NAMESPACE), labels, ports } };
}

function conveyorPods(manifests: Manifest[]) {
  const has = (name: string) => manifests.some((manifest) => manifest.kind === 'StatefulSet' && manifest.metadata.name === name);
  return {
    api: podOf(manifests, 'Deployment', 'conveyor-api', '10.244.0.10'),
    worker: podOf(manifests, 'Deployment', 'conveyor-worker', '10.244.0.11'),
    controller: podOf(manifests, 'Deployment', 'conveyor-controller', '10.244.0.12'),
    test: podOf(manifests, 'Pod', 'conveyor-test', '10.244.0.13'),
    postgresql: has('conveyor-postgresql') ? podOf(manifests, 'StatefulSet', 'conveyor-postgresql', '10.244.0.20') : EXTERNAL_DB,
    rabbitmq: has('conveyor-rabbitmq') ? podOf(manifests, 'StatefulSet', 'conveyor-rabbitmq', '10.244.0.21') : { ip: '10.0.6.10' },
  };
}

type Case = [what: string, source: Endpoint, destination: Endpoint, port: number, expected: boolean, protocol?: Protocol];

function check(manifests: Manifest[], cases: readonly Case[], label: string): void {
  for (const [what, source, destination, port, expected, protocol = 'TCP'] of cases) {
    assert.is(allowed(manifests, NAMESPACE, source, destination, port, protocol), expected, `${label}: ${what} should be ${expected ? 'allowed' : 'denied'}`);
  }
}

test('the evaluator: ipBlocks with except, named and ranged ports, both directions needed', () => {
  assert.ok(inCidr('10.0.5.10', '10.0.5.0/24') && !inCidr('10.0.6.10', '10.0.5.0/24') && inCidr('8.8.8.8', '0.0.0.0/0'));
  const destination = outsider('a', { app: 'db' }, '10.0.0.5', [{ name: 'sql', containerPort: 5432, protocol: 'TCP' }]);
  const source = outsider('a', { app: 'client' }, '10.0.0.6');
  const policy = (name: string, spec: object): Manifest => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: 'a' }, spec });
  const ingress = policy('db', { podSelector: { matchLabels: { app: 'db' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ port: 'sql' }] }] });
  assert.ok(allowed([ingress], 'a', source, destination, 5432));
  assert.not.ok(allowed([ingress], 'a', source, destination, 5433), 'another port');
  assert.not.ok(allowed([ingress], 'a', source, destination, 5432, 'UDP'), 'another protocol');
  assert.not.ok(allowed([ingress], 'a', outsider('b', { app: 'client' }, '10.0.1.6'), destination, 5432), 'a podSelector alone means the policy namespace');
  const egress = policy('client', { podSelector: { matchLabels: { app: 'client' } }, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['10.0.0.5/32'] } }], ports: [{ port: 5000, endPort: 6000 }] }] });
  assert.not.ok(allowed([ingress, egress], 'a', source, destination, 5432), 'egress excepts the destination');
  assert.ok(allowed([egress], 'a', source, { ip: '10.0.9.9' }, 5999));
  assert.not.ok(allowed([egress], 'a', source, { ip: '10.0.9.9' }, 6001));
  assert.ok(allowed([egress], 'a', destination, INTERNET, 443), 'a pod no policy selects is open');
});

test('the default NetworkPolicies isolate Conveyor: only the ingress controller and the test pod reach the API; workers reach only DNS, PostgreSQL and RabbitMQ', () => {
  for (const name of ['default', 'dev'] as const) {
    const manifests = rendered.get(name) as Manifest[];
    const pods = conveyorPods(manifests);
    const postgresPort = 5432;
    check(manifests, [
      ['ingress controller → api', INGRESS_NGINX, pods.api, 8000, true],
      ['helm test pod → api', pods.test, pods.api, 8000, true],
      ['pod of another namespace → api', STRANGER, pods.api, 8000, false],
      ['unlabelled pod of the release namespace → api', NEIGHBOUR, pods.api, 8000, false],
      ['ingress controller → worker metrics', INGRESS_NGINX, pods.worker, 9091, false],
      ['Prometheus → worker metrics (no PodMonitor)', PROMETHEUS, pods.worker, 9091, false],
      ['Prometheus → api (no ServiceMonitor)', PROMETHEUS, pods.api, 8000, false],
      ['worker → PostgreSQL', pods.worker, pods.postgresql, postgresPort, true],
      ['api → PostgreSQL', pods.api, pods.postgresql, postgresPort, true],
      ['controller → PostgreSQL', pods.controller, pods.postgresql, postgresPort, true],
      ['worker → RabbitMQ', pods.worker, pods.rabbitmq, 5672, true],
      ['worker → DNS over UDP', pods.worker, KUBE_DNS, 53, true, 'UDP'],
      ['worker → DNS over TCP', pods.worker, KUBE_DNS, 53, true],
      ['worker → 8.8.8.8:443', pods.worker, INTERNET, 443, false],
      ['worker → 8.8.8.8:53 (a resolver outside the cluster)', pods.worker, INTERNET, 53, false, 'UDP'],
      ['worker → api', pods.worker, pods.api, 8000, false],
      ['worker → a pod of another namespace', pods.worker, outsider('shop', { app: 'shop' }, '10.244.2.8', [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]), 8080, false],
      ['worker → Kubernetes API', pods.worker, KUBE_API_SERVER, 6443, false],
      ['api → 8.8.8.8:443', pods.api, INTERNET, 443, false],
      ['api → Kubernetes API', pods.api, KUBE_API_SERVER, 443, false],
      ['controller → Kubernetes API (6443)', pods.controller, KUBE_API_SERVER, 6443, true],
      ['controller → Kubernetes API Service (443)', pods.controller, KUBE_API_SERVER, 443, true],
      ['controller → 8.8.8.8:80', pods.controller, INTERNET, 80, false],
    ], name);
  }
  const dev = rendered.get('dev') as Manifest[];
  const pods = conveyorPods(dev);
  check(dev, [
    ['pod of another namespace → PostgreSQL', STRANGER, pods.postgresql, 5432, false],
    ['unlabelled pod of the release namespace → PostgreSQL', NEIGHBOUR, pods.postgresql, 5432, false],
    ['helm test pod → PostgreSQL', pods.test, pods.postgresql, 5432, false],
    ['pod of another namespace → RabbitMQ', STRANGER, pods.rabbitmq, 5672, false],
    ['worker → RabbitMQ management', pods.worker, pods.rabbitmq, 15672, false],
    ['worker → an outside PostgreSQL (only the release\'s is allowed)', pods.worker, EXTERNAL_DB, 5432, false],
  ], 'dev');
});

test('without NetworkPolicies everything is open, so the denials above come from the policies', async () => {
  const manifests = await render([VALUES_FILES.dev], ['networkPolicy.enabled=false']);
  assert.not.ok(manifests.some((manifest) => manifest.kind === 'NetworkPolicy'));
  const pods = conveyorPods(manifests);
  check(manifests, [
    ['pod of another namespace → api', STRANGER, pods.api, 8000, true],
    ['pod of another namespace → PostgreSQL', STRANGER, pods.postgresql, 5432, true],
    ['worker → 8.8.8.8:443', pods.worker, INTERNET, 443, true],
  ], 'networkPolicy.enabled=false');
});

test('Prometheus reaches the metrics ports once a monitor scrapes them, and nobody else does', async () => {
  const manifests = await render([VALUES_FILES.default], ['metrics.serviceMonitor.enabled=true', 'metrics.podMonitor.enabled=true']);
  const pods = conveyorPods(manifests);
  check(manifests, [
    ['Prometheus → api /metrics', PROMETHEUS, pods.api, 8000, true],
    ['Prometheus → worker metrics', PROMETHEUS, pods.worker, 9091, true],
    ['Prometheus → controller metrics', PROMETHEUS, pods.controller, 9091, true],
    ['Prometheus of another namespace → worker metrics', outsider('shop', { 'app.kubernetes.io/name': 'prometheus' }, '10.244.2.9'), pods.worker, 9091, false],
    ['pod of another namespace → worker metrics', STRANGER, pods.worker, 9091, false],
  ], 'monitors on');
});

test('the selectors, destinations and extra rules are configurable', async () => {
  const manifests = await render([VALUES_FILES.default], [
    'networkPolicy.ingressController.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=traefik',
    'networkPolicy.ingressController.podSelector.matchLabels.app\\.kubernetes\\.io/name=traefik',
    'networkPolicy.api.extraFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=shop',
    'networkPolicy.postgresql.to[0].ipBlock.cidr=10.0.5.10/32',
    'networkPolicy.kubernetesApi.to[0].ipBlock.cidr=172.18.0.2/32',
    'networkPolicy.worker.extraEgress[0].to[0].ipBlock.cidr=10.20.0.0/16',
    'networkPolicy.worker.extraEgress[0].ports[0].port=443',
  ]);
  const pods = conveyorPods(manifests);
  check(manifests, [
    ['Traefik → api', TRAEFIK, pods.api, 8000, true],
    ['ingress-nginx → api', INGRESS_NGINX, pods.api, 8000, false],
    ['a client namespace from extraFrom → api', STRANGER, pods.api, 8000, true],
    ['worker → the configured PostgreSQL', pods.worker, EXTERNAL_DB, 5432, true],
    ['worker → another PostgreSQL', pods.worker, { ip: '10.0.5.11' }, 5432, false],
    ['controller → the configured control plane', pods.controller, KUBE_API_SERVER, 6443, true],
    ['controller → another address on 6443', pods.controller, { ip: '172.18.0.3' }, 6443, false],
    ['worker → a service its extraEgress allows', pods.worker, { ip: '10.20.1.1' }, 443, true],
    ['api → that service (the worker\'s rule only)', pods.api, { ip: '10.20.1.1' }, 443, false],
    ['worker → 8.8.8.8:443', pods.worker, INTERNET, 443, false],
  ], 'configured');
});

// ---- The dev loop keeps keys on.

test('docker compose and Tilt run the API with keys on, sharing one documented development key, and compose publishes the API', () => {
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, { environment?: Record<string, string>; ports?: string[] }> };
  const api = compose.services['api'] as { environment: Record<string, string>; ports: string[] };
  assert.is(api.environment['AUTH_MODE'], 'apikey');
  const fallback = /^\$\{CONVEYOR_API_KEY:-(.+)\}$/.exec(api.environment['AUTH_BOOTSTRAP_KEY'] ?? '');
  assert.ok(fallback, `AUTH_BOOTSTRAP_KEY is ${api.environment['AUTH_BOOTSTRAP_KEY']}`);
  const devKey = fallback[1] as string;
  assert.match(devKey, API_KEY_PATTERN);
  assert.ok(api.ports.includes('8000:8000'), 'the API is published on the host');
  const config = loadConfig({ ...api.environment, AUTH_BOOTSTRAP_KEY: devKey });
  assert.equal([config.authMode, config.host, config.authBootstrapKey], ['apikey', '0.0.0.0', devKey]);
  assert.ok(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8').includes(`export CONVEYOR_API_KEY=${devKey}`), 'the compose file says which key to use');

  const [secret] = readManifests(join(ROOT, 'k8s', 'dev-api-key.yaml'));
  assert.is(secret?.kind, 'Secret');
  const devValues = parse(readFileSync(VALUES_FILES['k8s/dev-values'], 'utf8')) as { auth: { bootstrapKey: { existingSecret: string } } };
  assert.is(devValues.auth.bootstrapKey.existingSecret, secret?.metadata.name);
  assert.equal(secret?.['stringData'], { AUTH_BOOTSTRAP_KEY: devKey }, 'Tilt and compose share the key');
  const env = envOf(containerOf(rendered.get('k8s/dev-values') as Manifest[], 'Deployment', 'conveyor-api'));
  assert.equal(env.get('AUTH_BOOTSTRAP_KEY').valueFrom, { secretKeyRef: { name: secret?.metadata.name, key: 'AUTH_BOOTSTRAP_KEY' } });
});

test.run();
