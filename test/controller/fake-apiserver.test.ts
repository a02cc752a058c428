// Proves the fake API server speaks the protocol the way @kubernetes/client-node 1.x expects, driving it only
// through client-node's own clients, Watch and informers over real HTTP. The controller's tests rely on each
// behaviour checked here, so a difference from kube-apiserver shows up in this file first.
import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  V1MicroTime,
  VersionApi,
  type KubeConfig,
} from '@kubernetes/client-node';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { apiError, recordInformer, recordWatch, within } from '../support/fake-apiserver/client-helpers.ts';
import { FakeApiServer } from '../support/fake-apiserver/index.ts';

type Ctx = { server: FakeApiServer; kc: KubeConfig; core: CoreV1Api; apps: AppsV1Api; custom: CustomObjectsApi };
const test = suite<Ctx>('controller: fake API server');

const GROUP = 'conveyor.dev';
const VERSION = 'v1alpha1';
const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const STRATEGIC = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
let namespaces = 0;
// Each test works in its own namespace (the fake needs none created), so no test sees another's objects.
const freshNamespace = () => `ns-${++namespaces}`;

test.before(async (ctx) => {
  ctx.server = await FakeApiServer.start();
  ctx.kc = ctx.server.kubeConfig();
  ctx.core = ctx.kc.makeApiClient(CoreV1Api);
  ctx.apps = ctx.kc.makeApiClient(AppsV1Api);
  ctx.custom = ctx.kc.makeApiClient(CustomObjectsApi);
});

test.after(async ({ server }) => {
  await server.stop();
});

const pod = (name: string, labels: Record<string, string> = {}) => ({ metadata: { name, labels }, spec: { containers: [{ name: 'main', image: 'busybox:1' }] } });
const deployment = (name: string) => ({
  metadata: { name },
  spec: { selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'worker', image: 'conveyor:dev' }] } } },
});
const workerPool = (name: string, spec: Record<string, unknown> = {}) => ({ apiVersion: `${GROUP}/${VERSION}`, kind: 'WorkerPool', metadata: { name }, spec: { workerDeployment: 'worker', ...spec } });
const task = (name: string, spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}) => ({ apiVersion: `${GROUP}/${VERSION}`, kind: 'Task', metadata: { name, ...metadata }, spec: { type: 'echo', ...spec } });
const customRef = (namespace: string, plural: string) => ({ group: GROUP, version: VERSION, namespace, plural });

test('a KubeConfig from kubeConfig() reaches the server over plain HTTP on 127.0.0.1', async ({ server, kc }) => {
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.is(kc.getCurrentCluster()?.server, server.url);
  const version = await kc.makeApiClient(VersionApi).getCode();
  assert.is(version.major, '1');
});

test('create/get/list: uid, timestamps, global resourceVersion, label and field selectors', async ({ server, core }) => {
  const namespace = freshNamespace();
  const created = await core.createNamespacedPod({ namespace, body: pod('a', { app: 'x' }) });
  await core.createNamespacedPod({ namespace, body: pod('b', { app: 'y' }) });
  assert.match(created.metadata?.uid ?? '', /^[0-9a-f-]{36}$/);
  assert.instance(created.metadata?.creationTimestamp, Date);
  assert.is(created.status?.phase, 'Pending');
  const read = await core.readNamespacedPod({ namespace, name: 'a' });
  assert.is(read.metadata?.resourceVersion, created.metadata?.resourceVersion);
  const all = await core.listNamespacedPod({ namespace });
  assert.equal(all.items.map((item) => item.metadata?.name), ['a', 'b']);
  assert.is(all.metadata?.resourceVersion, String(server.revision));
  assert.ok(Number(all.items[1]?.metadata?.resourceVersion) > Number(created.metadata?.resourceVersion), 'one counter for every write');
  assert.equal((await core.listNamespacedPod({ namespace, labelSelector: 'app in (y,z)' })).items.map((item) => item.metadata?.name), ['b']);
  assert.equal((await core.listNamespacedPod({ namespace, fieldSelector: 'metadata.name=a' })).items.map((item) => item.metadata?.name), ['a']);
  assert.equal((await core.listNamespacedPod({ namespace, labelSelector: '!app' })).items, []);
  const badField = await apiError(core.listNamespacedPod({ namespace, fieldSelector: 'spec.image=x' }));
  assert.equal([badField.code, badField.status.reason], [400, 'BadRequest']);
});

test('errors are Status objects: 404 NotFound, 409 AlreadyExists, 422 Invalid', async ({ core }) => {
  const namespace = freshNamespace();
  const missing = await apiError(core.readNamespacedPod({ namespace, name: 'nope' }));
  assert.equal(missing.status, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'pods "nope" not found', reason: 'NotFound', code: 404, details: { name: 'nope', kind: 'pods' } });
  await core.createNamespacedPod({ namespace, body: pod('a') });
  const duplicate = await apiError(core.createNamespacedPod({ namespace, body: pod('a') }));
  assert.equal([duplicate.code, duplicate.status.reason, duplicate.status.message], [409, 'AlreadyExists', 'pods "a" already exists']);
  const noContainers = await apiError(core.createNamespacedPod({ namespace, body: { metadata: { name: 'Bad_Name' }, spec: { containers: [] } } }));
  assert.equal([noContainers.code, noContainers.status.reason], [422, 'Invalid']);
  assert.equal(noContainers.status.details?.causes?.map((cause) => cause.field), ['metadata.name', 'spec.containers']);
});

test('update: resourceVersion conflicts, generation follows spec changes only', async ({ apps }) => {
  const namespace = freshNamespace();
  const created = await apps.createNamespacedDeployment({ namespace, body: deployment('worker') });
  assert.equal([created.spec?.replicas, created.metadata?.generation], [1, 1]);
  const relabelled = await apps.replaceNamespacedDeployment({ namespace, name: 'worker', body: { ...created, metadata: { ...created.metadata, labels: { tier: 'x' } } } });
  assert.is(relabelled.metadata?.generation, 1);
  const stale = await apiError(apps.replaceNamespacedDeployment({ namespace, name: 'worker', body: { ...created, spec: { ...created.spec!, replicas: 5 } } }));
  assert.equal([stale.code, stale.status.reason], [409, 'Conflict']);
  assert.match(stale.status.message ?? '', /the object has been modified/);
  const staleMerge = await apiError(apps.patchNamespacedDeployment({ namespace, name: 'worker', body: { metadata: { resourceVersion: created.metadata?.resourceVersion }, spec: { replicas: 5 } } }, MERGE));
  assert.is(staleMerge.code, 409);
  const scaled = await apps.replaceNamespacedDeployment({ namespace, name: 'worker', body: { ...relabelled, spec: { ...relabelled.spec!, replicas: 5 } } });
  assert.equal([scaled.spec?.replicas, scaled.metadata?.generation], [5, 2]);
});

test('patch: client-node sends JSON patch by default; merge and strategic via Content-Type; failures', async ({ apps }) => {
  const namespace = freshNamespace();
  await apps.createNamespacedDeployment({ namespace, body: deployment('worker') });
  const jsonPatched = await apps.patchNamespacedDeployment({ namespace, name: 'worker', body: [{ op: 'add', path: '/metadata/annotations', value: { a: '1' } }] });
  assert.equal(jsonPatched.metadata?.annotations, { a: '1' });
  const merged = await apps.patchNamespacedDeployment({ namespace, name: 'worker', body: { metadata: { annotations: { b: '2' } } } }, MERGE);
  assert.equal(merged.metadata?.annotations, { a: '1', b: '2' });
  const strategic = await apps.patchNamespacedDeployment({ namespace, name: 'worker', body: { metadata: { annotations: { a: null } } } }, STRATEGIC);
  assert.equal(strategic.metadata?.annotations, { b: '2' });
  const mergeBodyAsJsonPatch = await apiError(apps.patchNamespacedDeployment({ namespace, name: 'worker', body: { spec: { replicas: 2 } } }));
  assert.equal([mergeBodyAsJsonPatch.code, mergeBodyAsJsonPatch.status.reason], [400, 'BadRequest']);
  const failedTest = await apiError(apps.patchNamespacedDeployment({ namespace, name: 'worker', body: [{ op: 'test', path: '/spec/replicas', value: 9 }] }));
  assert.is(failedTest.code, 422);
  const apply = await apiError(apps.patchNamespacedDeployment({ namespace, name: 'worker', body: {} }, setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply)));
  assert.equal([apply.code, apply.status.reason], [415, 'UnsupportedMediaType']);
});

test('scale subresource: autoscaling/v1 Scale mirrors the Deployment; conflicts; status hook', async ({ server, apps }) => {
  const namespace = freshNamespace();
  await apps.createNamespacedDeployment({ namespace, body: deployment('worker') });
  const scale = await apps.readNamespacedDeploymentScale({ namespace, name: 'worker' });
  assert.equal([scale.kind, scale.apiVersion, scale.spec?.replicas, scale.status?.selector], ['Scale', 'autoscaling/v1', 1, 'app=worker']);
  const byJsonPatch = await apps.patchNamespacedDeploymentScale({ namespace, name: 'worker', body: [{ op: 'replace', path: '/spec/replicas', value: 3 }] });
  assert.is(byJsonPatch.spec?.replicas, 3);
  const byMerge = await apps.patchNamespacedDeploymentScale({ namespace, name: 'worker', body: { spec: { replicas: 4 } } }, MERGE);
  assert.is(byMerge.spec?.replicas, 4);
  const after = await apps.readNamespacedDeployment({ namespace, name: 'worker' });
  assert.equal([after.spec?.replicas, after.metadata?.generation, after.metadata?.resourceVersion], [4, 3, byMerge.metadata?.resourceVersion]);
  const stale = await apiError(apps.replaceNamespacedDeploymentScale({ namespace, name: 'worker', body: { ...scale, spec: { replicas: 2 } } }));
  assert.is(stale.code, 409);
  const negative = await apiError(apps.patchNamespacedDeploymentScale({ namespace, name: 'worker', body: { spec: { replicas: -1 } } }, MERGE));
  assert.equal([negative.code, negative.status.details?.causes?.[0]?.field], [422, 'spec.replicas']);
  server.setDeploymentStatus(namespace, 'worker', { replicas: 4, readyReplicas: 2 });
  assert.is((await apps.readNamespacedDeploymentScale({ namespace, name: 'worker' })).status?.replicas, 4);
  assert.is((await apps.readNamespacedDeploymentStatus({ namespace, name: 'worker' })).status?.readyReplicas, 2);
  assert.is(server.count({ verb: 'patch', resource: 'deployments.apps', subresource: 'scale', namespace }), 3);
});

test('status subresource: the main resource ignores .status, /status changes only .status', async ({ custom }) => {
  const namespace = freshNamespace();
  const ref = customRef(namespace, 'workerpools');
  const created = await custom.createNamespacedCustomObject({ ...ref, body: { ...workerPool('pool'), status: { desiredReplicas: 7 } } });
  assert.is(created.status, undefined);
  const withStatus = await custom.patchNamespacedCustomObjectStatus({ ...ref, name: 'pool', body: { spec: { maxReplicas: 3 }, status: { desiredReplicas: 2, conditions: [{ type: 'Ready', status: 'True' }] } } }, MERGE);
  assert.equal([withStatus.status.desiredReplicas, withStatus.spec.maxReplicas, withStatus.metadata.generation], [2, 10, 1]);
  const replaced = await custom.replaceNamespacedCustomObject({ ...ref, name: 'pool', body: { ...withStatus, spec: { ...withStatus.spec, maxReplicas: 4 }, status: { desiredReplicas: 99 } } });
  assert.equal([replaced.spec.maxReplicas, replaced.status.desiredReplicas, replaced.metadata.generation], [4, 2, 2]);
  const jsonPatchedStatus = await custom.patchNamespacedCustomObjectStatus({ ...ref, name: 'pool', body: [{ op: 'replace', path: '/status/desiredReplicas', value: 3 }] });
  assert.is(jsonPatchedStatus.status.desiredReplicas, 3);
  const unchanged = await custom.patchNamespacedCustomObjectStatus({ ...ref, name: 'pool', body: { status: { desiredReplicas: 3 } } }, MERGE);
  assert.is(unchanged.metadata.resourceVersion, jsonPatchedStatus.metadata.resourceVersion, 'a no-op write stores nothing');
  const duplicate = await apiError(custom.patchNamespacedCustomObjectStatus({ ...ref, name: 'pool', body: { status: { conditions: [{ type: 'Ready', status: 'True' }, { type: 'Ready', status: 'False' }] } } }, MERGE));
  assert.equal([duplicate.code, duplicate.status.details?.causes?.[0]?.reason], [422, 'FieldValueDuplicate']);
});

test('CRD schema: defaults, 422 for priority 10, min > max, bad enum, wrong type, missing required', async ({ custom }) => {
  const namespace = freshNamespace();
  const tasks = customRef(namespace, 'tasks');
  const created = await custom.createNamespacedCustomObject({ ...tasks, body: task('t1', { payload: { any: { nested: [1, 'x'] } } }) });
  assert.equal(created.spec, { type: 'echo', payload: { any: { nested: [1, 'x'] } }, priority: 5, maxAttempts: 1 });
  const pool = await custom.createNamespacedCustomObject({ ...customRef(namespace, 'workerpools'), body: workerPool('p1') });
  assert.equal(pool.spec, { workerDeployment: 'worker', queue: 'tasks', minReplicas: 0, maxReplicas: 10, tasksPerReplica: 10, pollIntervalSeconds: 2, scaleDownStabilizationSeconds: 60 });
  const causesOf = async (plural: string, body: object) => {
    const failure = await apiError(custom.createNamespacedCustomObject({ ...customRef(namespace, plural), body }));
    assert.equal([failure.code, failure.status.reason], [422, 'Invalid']);
    return failure.status.details?.causes?.map((cause) => `${cause.field}: ${cause.message}`);
  };
  assert.equal(await causesOf('tasks', task('t2', { priority: 10 })), ['spec.priority: Invalid value: 10: spec.priority in body should be less than or equal to 9']);
  assert.equal(await causesOf('workerpools', workerPool('p2', { minReplicas: 5, maxReplicas: 2 })), ['spec: Invalid value: "object": minReplicas must not exceed maxReplicas']);
  // The rule sees the defaulted object: maxReplicas defaults to 10.
  assert.equal(await causesOf('workerpools', workerPool('p3', { minReplicas: 20 })), ['spec: Invalid value: "object": minReplicas must not exceed maxReplicas']);
  assert.equal(await causesOf('tasks', task('t3', { backoff: { type: 'linear' } })), ['spec.backoff.type: Unsupported value: "linear": supported values: "exponential", "fixed"']);
  assert.match((await causesOf('tasks', task('t4', { priority: 'high' })))?.[0] ?? '', /^spec\.priority: Invalid value: "high": spec\.priority in body must be of type integer/);
  assert.equal(await causesOf('tasks', { ...task('t5'), spec: { priority: 1 } }), ['spec.type: Required value']);
  const noKind = await apiError(custom.createNamespacedCustomObject({ ...tasks, body: { metadata: { name: 't6' }, spec: { type: 'echo' } } }));
  assert.is(noKind.code, 400);
});

test('CRD schema: unknown fields are pruned with a warning, or a 400 with fieldValidation=Strict', async ({ custom }) => {
  const namespace = freshNamespace();
  const tasks = customRef(namespace, 'tasks');
  const response = await custom.createNamespacedCustomObjectWithHttpInfo({ ...tasks, body: task('t1', { colour: 'red' }) });
  assert.is(response.data.spec.colour, undefined);
  assert.match(response.headers['warning'] ?? '', /unknown field \\"spec\.colour\\"/);
  const strict = await apiError(custom.createNamespacedCustomObject({ ...tasks, body: task('t2', { colour: 'red' }), fieldValidation: 'Strict' }));
  assert.equal([strict.code, strict.status.message], [400, 'strict decoding error: unknown field "spec.colour"']);
});

test("CRD rules on update: a Task's spec is immutable; metadata and status still change", async ({ custom }) => {
  const namespace = freshNamespace();
  const ref = customRef(namespace, 'tasks');
  const created = await custom.createNamespacedCustomObject({ ...ref, body: task('t1') });
  const changed = await apiError(custom.patchNamespacedCustomObject({ ...ref, name: 't1', body: { spec: { priority: 7 } } }, MERGE));
  assert.equal(changed.status.details?.causes?.map((cause) => `${cause.field}: ${cause.message}`), ['spec: Invalid value: "object": a Task\'s spec cannot change once created']);
  const labelled = await custom.patchNamespacedCustomObject({ ...ref, name: 't1', body: { metadata: { labels: { a: 'b' } } } }, MERGE);
  assert.equal(labelled.metadata.labels, { a: 'b' });
  await custom.patchNamespacedCustomObjectStatus({ ...ref, name: 't1', body: { status: { phase: 'Queued', taskId: 'x' } } }, MERGE);
  const unconditional = await apiError(custom.replaceNamespacedCustomObject({ ...ref, name: 't1', body: { ...created, metadata: { name: 't1' } } }));
  assert.equal([unconditional.code, unconditional.status.details?.causes?.[0]?.field], [422, 'metadata.resourceVersion']);
  const strategic = await apiError(custom.patchNamespacedCustomObject({ ...ref, name: 't1', body: { metadata: { labels: { c: 'd' } } } }, STRATEGIC));
  assert.is(strategic.code, 415);
});

test('informer: ADDED/MODIFIED/DELETED, reconnect after closeWatches() without relisting', async ({ server, kc, custom }) => {
  const namespace = freshNamespace();
  const ref = customRef(namespace, 'workerpools');
  await custom.createNamespacedCustomObject({ ...ref, body: workerPool('before') });
  const informer = makeInformer(kc, `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/workerpools`, () => custom.listNamespacedCustomObject(ref));
  const events = recordInformer(informer);
  const watching = server.nextRequest({ verb: 'watch', resource: 'workerpools.conveyor.dev', namespace });
  await informer.start();
  await events.waitFor('add', (object) => object.metadata.name === 'before');
  await within(watching, 5000, 'the informer to watch');
  await custom.createNamespacedCustomObject({ ...ref, body: workerPool('pool') });
  await events.waitFor('add', (object) => object.metadata.name === 'pool');
  await custom.patchNamespacedCustomObject({ ...ref, name: 'pool', body: { spec: { maxReplicas: 5 } } }, MERGE);
  const updated = await events.waitFor('update', (object) => object.spec.maxReplicas === 5);
  const lists = server.count({ verb: 'list', resource: 'workerpools.conveyor.dev', namespace });
  const rewatch = server.nextRequest({ verb: 'watch', resource: 'workerpools.conveyor.dev', namespace });
  assert.is(server.closeWatches({ resource: 'workerpools.conveyor.dev' }), 1);
  const reconnected = await within(rewatch, 5000, 'the informer to watch again');
  assert.is(reconnected.query['resourceVersion'], updated.object.metadata.resourceVersion, 'it resumes from the last event');
  await custom.deleteNamespacedCustomObject({ ...ref, name: 'pool' });
  await events.waitFor('delete', (object) => object.metadata.name === 'pool');
  assert.is(server.count({ verb: 'list', resource: 'workerpools.conveyor.dev', namespace }), lists, 'no relist after a clean close');
  assert.equal(informer.list(namespace).map((object) => object.metadata?.name), ['before']);
  await informer.stop();
});

test('informer: a 410 Expired watch makes it relist, and it catches up on what changed', async ({ server, kc, core }) => {
  const namespace = freshNamespace();
  await core.createNamespacedPod({ namespace, body: pod('stays') });
  await core.createNamespacedPod({ namespace, body: pod('goes') });
  const informer = makeInformer(kc, `/api/v1/namespaces/${namespace}/pods`, () => core.listNamespacedPod({ namespace }));
  const events = recordInformer(informer);
  const watching = server.nextRequest({ verb: 'watch', resource: 'pods', namespace });
  await informer.start();
  await within(watching, 5000, 'the informer to watch');
  // An old watch from before the compaction gets the 410 as an ERROR event too.
  const old = await recordWatch(kc, `/api/v1/namespaces/${namespace}/pods`, { resourceVersion: String(server.revision) });
  const relist = server.nextRequest({ verb: 'list', resource: 'pods', namespace });
  server.expireWatches();
  await within(relist, 5000, 'the informer to relist');
  const error = await old.recorder.waitFor('ERROR');
  assert.equal([error.object.code, error.object.reason], [410, 'Expired']);
  await old.recorder.waitFor('done');
  const mark = events.mark();
  await core.deleteNamespacedPod({ namespace, name: 'goes' });
  await events.waitFor('delete', (object) => object.metadata.name === 'goes', mark);
  const stale = await recordWatch(kc, `/api/v1/namespaces/${namespace}/pods`, { resourceVersion: '1001' });
  assert.is((await stale.recorder.waitFor('ERROR')).object.code, 410);
  await informer.stop();
});

test('informer: a broken connection or failed list is an error event, and the informer stops', async ({ server, kc, core }) => {
  const namespace = freshNamespace();
  const informer = makeInformer(kc, `/api/v1/namespaces/${namespace}/pods`, () => core.listNamespacedPod({ namespace }));
  const events = recordInformer(informer);
  const watching = server.nextRequest({ verb: 'watch', resource: 'pods', namespace });
  await informer.start();
  await within(watching, 5000, 'the informer to watch');
  server.closeWatches({ resource: 'pods', abrupt: true });
  await events.waitFor('error');
  server.failNext('pods', 1, { verb: 'list' });
  // Restarting resumes from the last resourceVersion, without a list; a relist after a 410 would hit the fault.
  const rewatch = server.nextRequest({ verb: 'watch', resource: 'pods', namespace });
  await informer.start();
  await within(rewatch, 5000, 'the restarted informer to watch');
  await core.createNamespacedPod({ namespace, body: pod('seen') });
  await events.waitFor('add', (object) => object.metadata.name === 'seen');
  const fresh = makeInformer(kc, `/api/v1/namespaces/${namespace}/pods`, () => core.listNamespacedPod({ namespace }));
  const freshEvents = recordInformer(fresh);
  await fresh.start();
  const failure = await freshEvents.waitFor('error');
  assert.is(failure.object.code, 500);
  assert.is(server.pendingFaults(), 0);
  await informer.stop();
});

test('watch: replay after resourceVersion, selector transitions, bookmarks, timeoutSeconds', async ({ server, kc, core }) => {
  const namespace = freshNamespace();
  const path = `/api/v1/namespaces/${namespace}/pods`;
  const { metadata } = await core.listNamespacedPod({ namespace });
  await core.createNamespacedPod({ namespace, body: pod('a', { app: 'x' }) });
  await core.patchNamespacedPod({ namespace, name: 'a', body: { metadata: { labels: { app: 'y' } } } }, MERGE);
  const replay = await recordWatch(kc, path, { resourceVersion: metadata?.resourceVersion, labelSelector: 'app=x', allowWatchBookmarks: true });
  await replay.recorder.waitFor('DELETED', (object) => object.metadata.labels.app === 'y');
  assert.equal(replay.recorder.events.map((event) => event.type), ['ADDED', 'DELETED']);
  server.emitBookmark();
  const bookmark = await replay.recorder.waitFor('BOOKMARK');
  assert.equal(bookmark.object, { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: String(server.revision) } });
  const current = await recordWatch(kc, path, { resourceVersion: '' });
  await current.recorder.waitFor('ADDED', (object) => object.metadata.name === 'a');
  server.emitBookmark();
  await core.deleteNamespacedPod({ namespace, name: 'a' });
  await current.recorder.waitFor('DELETED');
  assert.equal(current.recorder.events.map((event) => event.type), ['ADDED', 'DELETED'], 'no bookmark without allowWatchBookmarks');
  const timed = await recordWatch(kc, path, { timeoutSeconds: 1 });
  assert.is((await timed.recorder.waitFor('done')).object, null);
  replay.abort();
  current.abort();
});

test('finalizers: delete marks the object, removing the last finalizer deletes it', async ({ server, kc, custom }) => {
  const namespace = freshNamespace();
  const ref = customRef(namespace, 'tasks');
  await custom.createNamespacedCustomObject({ ...ref, body: task('t1', {}, { finalizers: ['conveyor.dev/cancel'] }) });
  const watch = await recordWatch(kc, `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/tasks`, { resourceVersion: '0' });
  await watch.recorder.waitFor('ADDED');
  const marked = await custom.deleteNamespacedCustomObject({ ...ref, name: 't1' });
  assert.type(marked.metadata.deletionTimestamp, 'string');
  await watch.recorder.waitFor('MODIFIED', (object) => object.metadata.deletionTimestamp !== undefined);
  const stillThere = await custom.getNamespacedCustomObject({ ...ref, name: 't1' });
  assert.equal(stillThere.metadata.finalizers, ['conveyor.dev/cancel']);
  const adding = await apiError(custom.patchNamespacedCustomObject({ ...ref, name: 't1', body: { metadata: { finalizers: ['conveyor.dev/cancel', 'other'] } } }, MERGE));
  assert.equal([adding.code, adding.status.details?.causes?.[0]?.field], [422, 'metadata.finalizers']);
  await custom.patchNamespacedCustomObject({ ...ref, name: 't1', body: [{ op: 'remove', path: '/metadata/finalizers' }] });
  const deleted = await watch.recorder.waitFor('DELETED');
  assert.ok(Number(deleted.object.metadata.resourceVersion) > Number(stillThere.metadata.resourceVersion));
  assert.is((await apiError(custom.getNamespacedCustomObject({ ...ref, name: 't1' }))).code, 404);
  assert.is(server.get('tasks.conveyor.dev', namespace, 't1'), undefined);
  watch.abort();
});

test('delete: preconditions, and what DELETE answers (object for pods and CRs, Status for Deployments)', async ({ apps, core }) => {
  const namespace = freshNamespace();
  await apps.createNamespacedDeployment({ namespace, body: deployment('worker') });
  const wrongUid = await apiError(apps.deleteNamespacedDeployment({ namespace, name: 'worker', body: { preconditions: { uid: 'not-it' } } }));
  assert.equal([wrongUid.code, wrongUid.status.reason], [409, 'Conflict']);
  const status = await apps.deleteNamespacedDeployment({ namespace, name: 'worker' });
  assert.equal([status.kind, status.status], ['Status', 'Success']);
  await core.createNamespacedPod({ namespace, body: pod('p') });
  const deletedPod = await core.deleteNamespacedPod({ namespace, name: 'p' });
  assert.is(deletedPod.metadata?.name, 'p');
});

test('hooks: arrange and inspect state, await it, with the same validation and watch events as the API', async ({ server, kc, core }) => {
  const namespace = freshNamespace();
  const watch = await recordWatch(kc, `/api/v1/namespaces/${namespace}/pods`, { resourceVersion: '' });
  server.create('pods', pod('p', { app: 'worker' }), namespace);
  await watch.recorder.waitFor('ADDED', (object) => object.metadata.name === 'p');
  const running = server.waitFor('pods', namespace, 'p', (object) => (object?.['status'] as { phase?: string } | undefined)?.phase === 'Running');
  server.setStatus('pods', namespace, 'p', { phase: 'Running' });
  assert.is((await within(running, 5000, 'the pod to run'))?.metadata.name, 'p');
  assert.is((await core.readNamespacedPodStatus({ namespace, name: 'p' })).status?.phase, 'Running');
  assert.equal(server.list('pods', namespace).map((object) => object.metadata.name), ['p']);
  assert.throws(() => server.create('tasks.conveyor.dev', task('t', { priority: 10 }), namespace), (error: Error) => /less than or equal to 9/.test(error.message));
  const gone = server.waitFor('pods', namespace, 'p', (object) => object === undefined);
  server.delete('pods', namespace, 'p');
  assert.is(await within(gone, 5000, 'the pod to go'), undefined);
  await watch.recorder.waitFor('DELETED');
  watch.abort();
});

test('faults: next N requests fail with 500, outages answer 503', async ({ server, core }) => {
  const namespace = freshNamespace();
  server.failNext('pods', 2, { verb: 'list' });
  for (let i = 0; i < 2; i += 1) {
    const failure = await apiError(core.listNamespacedPod({ namespace }));
    assert.equal([failure.code, failure.status.reason], [500, 'InternalError']);
  }
  await core.listNamespacedPod({ namespace });
  assert.is(server.count({ verb: 'list', resource: 'pods', namespace, code: 500 }), 2);
  server.setUnavailable(true);
  const down = await apiError(core.listNamespacedPod({ namespace }));
  assert.equal([down.code, down.status.reason], [503, 'ServiceUnavailable']);
  server.setUnavailable(false);
  await core.listNamespacedPod({ namespace });
});

test('leases: MicroTime needs V1MicroTime (a Date is a 400); contenders conflict on resourceVersion', async ({ kc }) => {
  const namespace = freshNamespace();
  const leases = kc.makeApiClient(CoordinationV1Api);
  const spec = { holderIdentity: 'a', leaseDurationSeconds: 15 };
  const withDate = await apiError(leases.createNamespacedLease({ namespace, body: { metadata: { name: 'controller' }, spec: { ...spec, renewTime: new Date() as V1MicroTime } } }));
  assert.is(withDate.code, 400);
  const lease = await leases.createNamespacedLease({ namespace, body: { metadata: { name: 'controller' }, spec: { ...spec, acquireTime: new V1MicroTime(), renewTime: new V1MicroTime() } } });
  assert.type(lease.spec?.renewTime, 'string', 'client-node 1.x returns MicroTime fields as strings');
  // A renewal a second on, so that it changes the object even within the millisecond of its creation (an
  // unchanged write is not stored and keeps its resourceVersion).
  const renewTime = new V1MicroTime(Date.now() + 1_000);
  const renewed = await leases.replaceNamespacedLease({ namespace, name: 'controller', body: { ...lease, spec: { ...lease.spec, renewTime } } });
  const takeover = await apiError(leases.replaceNamespacedLease({ namespace, name: 'controller', body: { ...lease, spec: { ...lease.spec, holderIdentity: 'b', leaseTransitions: 1 } } }));
  assert.equal([takeover.code, takeover.status.reason], [409, 'Conflict']);
  assert.is((await leases.readNamespacedLease({ namespace, name: 'controller' })).metadata?.resourceVersion, renewed.metadata?.resourceVersion);
});

test('events: core/v1 and events.k8s.io/v1, with the latter requiring its reporting fields', async ({ kc, core }) => {
  const namespace = freshNamespace();
  const regarding = { apiVersion: `${GROUP}/${VERSION}`, kind: 'WorkerPool', name: 'pool', namespace };
  await core.createNamespacedEvent({ namespace, body: { metadata: { generateName: 'pool.' }, involvedObject: regarding, reason: 'ScaledUp', message: 'to 3', type: 'Normal' } });
  const listed = await core.listNamespacedEvent({ namespace, fieldSelector: 'involvedObject.name=pool,reason=ScaledUp' });
  assert.match(listed.items[0]?.metadata?.name ?? '', /^pool\.[a-z0-9]{5}$/);
  const events = kc.makeApiClient(EventsV1Api);
  const body = { metadata: { name: 'pool.1' }, regarding, reason: 'ScaledUp', action: 'Scale', note: 'to 3', type: 'Normal', eventTime: new V1MicroTime(), reportingInstance: 'controller-0' };
  const missing = await apiError(events.createNamespacedEvent({ namespace, body }));
  assert.equal(missing.status.details?.causes?.map((cause) => cause.field), ['reportingController']);
  const created = await events.createNamespacedEvent({ namespace, body: { ...body, reportingController: 'conveyor.dev/controller' } });
  assert.is(created.reason, 'ScaledUp');
});

test.run();
