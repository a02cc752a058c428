import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../support/processes.ts';
import { CHART, helm, installNotes, type Manifest, podSpecOf, readManifests, render, VALUES_FILES } from './helm.ts';
import { builtInProblems, type Crd, CustomResourceValidator, manifestProblems, structuralProblems } from './kubernetes-schemas.ts';

const test = suite('chart: lint, render, Kubernetes 1.33 schemas');

const crdFiles = readdirSync(join(CHART, 'crds')).map((file) => join(CHART, 'crds', file));
const exampleFiles = readdirSync(join(ROOT, 'k8s', 'examples')).map((file) => join(ROOT, 'k8s', 'examples', file));
const crds = crdFiles.flatMap(readManifests) as Crd[];
const customResources = new CustomResourceValidator(crds);
const rendered = new Map<string, Manifest[]>();

test.before(async () => {
  for (const [name, file] of Object.entries(VALUES_FILES)) rendered.set(name, await render([file]));
});

for (const [name, file] of Object.entries(VALUES_FILES)) {
  test(`helm lint --strict passes with ${name} values`, async () => {
    const result = await helm(['lint', '--strict', CHART, '--values', file]);
    assert.is(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test(`every manifest rendered with ${name} values is valid for Kubernetes 1.33`, async () => {
    const manifests = rendered.get(name) as Manifest[];
    assert.ok(manifests.length >= 10, `only ${manifests.length} manifests`);
    for (const manifest of manifests) {
      // No schema of monitoring.coreos.com here: observability.test.ts checks those fields by hand.
      const problems = manifest.apiVersion.startsWith('monitoring.coreos.com/') ? [] : await manifestProblems(manifest, customResources);
      assert.equal(problems, [], `${manifest.kind}/${manifest.metadata.name}: ${problems.join('\n')}`);
      assert.ok(manifest.metadata.labels?.['app.kubernetes.io/instance'], `${manifest.kind}/${manifest.metadata.name} has no instance label`);
    }
  });
}

test('the default render has the three workloads, their PodDisruptionBudgets and NetworkPolicies, the WorkerPool, the bootstrap key and the test pod', () => {
  const kinds = (rendered.get('default') as Manifest[]).map((manifest) => `${manifest.kind}/${manifest.metadata.name}`).sort();
  assert.equal(kinds, [
    'ConfigMap/conveyor',
    'Deployment/conveyor-api',
    'Deployment/conveyor-controller',
    'Deployment/conveyor-worker',
    'NetworkPolicy/conveyor-api',
    'NetworkPolicy/conveyor-controller',
    'NetworkPolicy/conveyor-worker',
    'Pod/conveyor-test',
    'PodDisruptionBudget/conveyor-api',
    'PodDisruptionBudget/conveyor-controller',
    'PodDisruptionBudget/conveyor-worker',
    'Role/conveyor-controller',
    'RoleBinding/conveyor-controller',
    'Secret/conveyor',
    'Secret/conveyor-bootstrap-key',
    'Service/conveyor-api',
    'ServiceAccount/conveyor-api',
    'ServiceAccount/conveyor-controller',
    'ServiceAccount/conveyor-worker',
    'WorkerPool/conveyor-worker',
  ]);
});

test('dev values add PostgreSQL and RabbitMQ StatefulSets with volumes, and an Ingress', () => {
  const manifests = rendered.get('dev') as Manifest[];
  for (const name of ['conveyor-postgresql', 'conveyor-rabbitmq']) {
    const statefulSet = manifests.find((manifest) => manifest.kind === 'StatefulSet' && manifest.metadata.name === name);
    assert.ok(statefulSet, `no StatefulSet ${name}`);
    assert.is(statefulSet['spec'].volumeClaimTemplates[0].metadata.name, 'data');
    assert.ok(manifests.some((manifest) => manifest.kind === 'Service' && manifest.metadata.name === name));
  }
  assert.ok(manifests.some((manifest) => manifest.kind === 'Ingress'));
});

test('the unknown-field check finds a misspelt field that the 1.33 schema alone lets through', async () => {
  const manifest = structuredClone((rendered.get('default') as Manifest[]).find((m) => m.kind === 'Deployment') as Manifest);
  manifest['spec'].template.spec.containers[0].securityContex = {};
  assert.equal(await builtInProblems(manifest), [`unknown field Deployment.spec.template.spec.containers[0].securityContex`]);
  delete manifest['spec'].template.spec.containers[0].securityContex;
  manifest['spec'].template.spec.containers[0].image = 42;
  const problems = await builtInProblems(manifest);
  assert.ok(problems.some((problem) => problem.includes('image must be string')), problems.join('\n'));
});

test('the CRDs are valid apiextensions.k8s.io/v1 resources with structural schemas', async () => {
  assert.equal(crds.map((crd) => crd.metadata.name).sort(), ['tasks.conveyor.dev', 'workerpools.conveyor.dev']);
  for (const crd of crds) {
    assert.equal(await builtInProblems(crd), [], crd.metadata.name);
    for (const version of crd.spec.versions) {
      assert.equal(structuralProblems(version.schema.openAPIV3Schema), [], `${crd.metadata.name} ${version.name}`);
    }
  }
});

test('the structural check catches a node without a type and a list-map key that items do not require', () => {
  const problems = structuralProblems({
    type: 'object',
    properties: {
      metadata: { type: 'object' },
      spec: { properties: { a: { type: 'string' } } },
      conditions: { type: 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'], items: { type: 'object', properties: { type: { type: 'string' } } } },
    },
  });
  assert.equal(problems, ['openAPIV3Schema.spec: no type', 'openAPIV3Schema.conditions: map key type is neither required nor defaulted']);
});

test('the example Task and WorkerPool resources in k8s/examples fit their CRDs', () => {
  const examples = exampleFiles.flatMap(readManifests);
  assert.equal(examples.filter((example) => example.kind === 'Task').map((task) => task['spec'].type).sort(), ['echo', 'fail', 'sleep']);
  assert.ok(examples.some((example) => example.kind === 'WorkerPool'));
  for (const example of examples) {
    assert.equal(customResources.problems(example), [], `${example.kind}/${example.metadata.name}`);
  }
});

test('a custom resource that breaks its CRD is refused: bad priority, unknown field, missing type', () => {
  const task = { apiVersion: 'conveyor.dev/v1alpha1', kind: 'Task', metadata: { name: 'bad' } };
  assert.ok(customResources.problems({ ...task, spec: { type: 'echo', priority: 10 } }).some((p) => p.includes('<= 9')));
  assert.ok(customResources.problems({ ...task, spec: { type: 'echo', priorty: 1 } }).some((p) => p.includes('priorty')));
  assert.ok(customResources.problems({ ...task, spec: { payload: {} } }).some((p) => p.includes('type')));
});

test('the rendered WorkerPool keeps minReplicas <= maxReplicas, as the CRD rule requires', () => {
  for (const [name, manifests] of rendered) {
    for (const pool of manifests.filter((manifest) => manifest.kind === 'WorkerPool')) {
      assert.ok(pool['spec'].minReplicas <= pool['spec'].maxReplicas, `${name}: ${JSON.stringify(pool['spec'])}`);
    }
  }
});

test('NOTES.txt tells how to reach the API: port-forward, the Ingress URL, or the LoadBalancer/NodePort address', async () => {
  const byDefault = await installNotes([VALUES_FILES.default]);
  assert.match(byDefault, /kubectl port-forward -n conveyor-test svc\/conveyor-api 8000:8000\n\s+export API=http:\/\/localhost:8000/);
  assert.match(byDefault, /curl -s -X POST \$API\/api\/v1\/tasks/);
  assert.match(await installNotes([VALUES_FILES.production]), /export API=https:\/\/conveyor\.example\.com\n/);
  // A NodePort or LoadBalancer needs its clients let through the API's NetworkPolicy.
  const everyone = 'networkPolicy.api.extraFrom[0].ipBlock.cidr=0.0.0.0/0';
  assert.match(await installNotes([VALUES_FILES.default], ['api.service.type=LoadBalancer', everyone]), /status\.loadBalancer\.ingress\[0\]\.ip/);
  assert.match(await installNotes([VALUES_FILES.default], ['api.service.type=NodePort', everyone]), /spec\.ports\[0\]\.nodePort/);
  assert.match(await installNotes([VALUES_FILES.dev]), /for development only/);
});

test('the Tiltfile names only workloads and objects that the k8s/dev-values.yaml render has', () => {
  const tiltfile = readFileSync(join(ROOT, 'Tiltfile'), 'utf8');
  // The Tiltfile also applies the dev loop's fixed API key.
  const devKey = readManifests(join(ROOT, 'k8s', 'dev-api-key.yaml'));
  assert.match(tiltfile, /^k8s_yaml\('k8s\/dev-api-key\.yaml'\)$/m);
  const manifests = [...(rendered.get('k8s/dev-values') as Manifest[]), ...crds, ...devKey].filter((manifest) => manifest.kind !== 'Pod');
  const present = new Set(manifests.map((manifest) => `${manifest.metadata.name}:${manifest.kind.toLowerCase()}`));
  const workloads = [...tiltfile.matchAll(/workload='([^']+)'/g)].map((match) => match[1] as string);
  assert.equal(workloads.sort(), ['conveyor-api', 'conveyor-controller', 'conveyor-postgresql', 'conveyor-rabbitmq', 'conveyor-worker']);
  for (const workload of workloads) assert.ok(manifests.some((manifest) => manifest.metadata.name === workload && podSpecOf(manifest)), workload);
  const objects = [...tiltfile.matchAll(/'([a-z0-9.-]+:[a-z]+)'/g)].map((match) => match[1] as string);
  assert.ok(objects.length >= 10, objects.join(', '));
  for (const object of objects) assert.ok(present.has(object), `the Tiltfile names ${object}, which the dev render does not have`);
});

test.run();
