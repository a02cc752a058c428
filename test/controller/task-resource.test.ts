// Task custom resources end to end: applied to the fake API server (validated against the chart's CRD), turned
// into Conveyor tasks in real PostgreSQL by the real controller, run by a real worker over real RabbitMQ.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import * as assert from 'uvu/assert';
import { TASK_FINALIZER } from '../../services/controller/src/kube.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { eventually, request } from '../support/system.ts';
import { condition, type Controller, type ControllerRig, GROUP, NS, readMetric, rigSuite, TASKS, taskResource, VERSION, waitLeading } from './helpers.ts';

const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

type Ctx = { controller: Controller };
const test = rigSuite<Ctx>('controller: Task resources');

test.before(async (ctx) => {
  const { rig } = ctx;
  // A short shutdown and cancel grace keep teardown quick when a sleep is still running.
  await rig.world.startWorker({ WORKER_ID: 'task-worker', WORKER_CONCURRENCY: '4', SHUTDOWN_TIMEOUT_MS: '500', CANCEL_GRACE_MS: '500' });
});

let generation = 0;
test.before.each(async (ctx) => {
  // One test replaces the controller; should it fail half-way, the next test still gets a leader.
  if (ctx.controller?.lifecycle.state === 'running' && ctx.controller.leader.leading) return;
  ctx.controller = await ctx.rig.startController(`controller-${generation++}`);
  await waitLeading(ctx.controller, 6000);
});

/** The Conveyor tasks a Task resource created: the controller submits with the resource's uid as idempotency key. */
async function rowsFor(rig: ControllerRig, uid: string) {
  const { rows } = await rig.db.query<{ id: string; status: string; type: string; tenant: string }>(
    'SELECT id, status::text, type, tenant FROM tasks WHERE idempotency_key = $1',
    [`k8s:${uid}`],
  );
  return rows;
}

const finished = (s: any) => ['Succeeded', 'Failed', 'Cancelled'].includes(s.phase);

test('an echo Task creates one Conveyor task, gets the finalizer, and its status follows the task to Succeeded', async ({ rig }) => {
  const payload = { hello: 'kubernetes', n: [1, 2] };
  const created = rig.createTask('echo-1', { type: 'echo', payload });
  const status = await rig.waitForStatus(TASKS, 'echo-1', finished, 10_000);
  assert.is(status.phase, 'Succeeded');
  assert.equal(status.result, payload);
  assert.is(status.attempts, 1);
  assert.ok(Date.parse(status.startedAt) <= Date.parse(status.finishedAt), `startedAt ${status.startedAt}, finishedAt ${status.finishedAt}`);
  assert.is(status.error, undefined);
  assert.is(status.observedGeneration, created.metadata.generation);
  assert.equal([condition(status, 'Finished')?.status, condition(status, 'Finished')?.reason], ['True', 'Succeeded']);

  const resource = rig.server.get(TASKS, NS, 'echo-1');
  assert.equal(resource?.metadata.finalizers, [TASK_FINALIZER]);
  const rows = await rowsFor(rig, created.metadata.uid as string);
  assert.equal(rows, [{ id: status.taskId, status: TaskStatus.completed, type: 'echo', tenant: NS }]);
  const submitted = rig.events('echo-1', 'Submitted');
  assert.is(submitted.length, 1);
  assert.match(submitted[0].message, new RegExp(status.taskId));
});

test('a controller that dies between creating the task and recording its id leaves one task: its successor finds it', async (ctx) => {
  const { rig } = ctx;
  // The dying controller talks to the API server through a proxy, so that it alone can be cut off.
  const { proxy, kubeConfig } = await rig.proxiedKubeConfig();
  await ctx.controller.stop();
  const doomed = await rig.startController('controller-doomed', {}, kubeConfig);
  await waitLeading(doomed);

  // Its first status write fails, and at that moment it loses the API server for good.
  rig.server.failNext(TASKS, 1, { verb: 'patch', subresource: 'status' });
  const statusFailed = rig.server.nextRequest({ verb: 'patch', resource: TASKS, subresource: 'status', name: 'restart-1', code: 500 }, 5000);
  const created = rig.createTask('restart-1', { type: 'sleep', payload: { ms: 300 } });
  await statusFailed;
  proxy.cut();
  assert.is((await rowsFor(rig, created.metadata.uid as string)).length, 1, 'the task was created');
  await doomed.stop();
  assert.is(rig.server.get(TASKS, NS, 'restart-1')?.['status'], undefined, 'but its id was not recorded');
  assert.is(rig.lease().holderIdentity, 'controller-doomed', 'nor the Lease released');

  // The successor takes over once the Lease expires, and submits again with the resource's uid.
  ctx.controller = await rig.startController('controller-successor');
  await waitLeading(ctx.controller, 6000);
  const status = await rig.waitForStatus(TASKS, 'restart-1', finished, 10_000);
  assert.is(status.phase, 'Succeeded');
  const rows = await rowsFor(rig, created.metadata.uid as string);
  assert.equal(rows.map((row) => row.id), [status.taskId], 'still exactly one task');
  assert.is(rows[0]?.status, TaskStatus.completed);
  assert.is(rig.events('restart-1', 'Submitted').length, 1, 'the second submit found the first task');
});

test('a fail Task ends Failed with the error message', async ({ rig }) => {
  rig.createTask('fail-1', { type: 'fail', payload: { message: 'boom from k8s' } });
  const status = await rig.waitForStatus(TASKS, 'fail-1', finished, 10_000);
  assert.is(status.phase, 'Failed');
  assert.is(status.error, 'boom from k8s');
  assert.is(status.attempts, 1);
  assert.is(status.result, undefined);
  assert.type(status.finishedAt, 'string');
  assert.equal([condition(status, 'Finished')?.status, condition(status, 'Finished')?.message], ['True', 'boom from k8s']);
});

test('a spec the CRD accepts but Conveyor refuses ends Failed, Accepted=False InvalidSpec, with a Warning event and no task', async ({ rig }) => {
  // ms: -1 passes the CRD (payload is free-form) but not the sleep type's payload schema.
  const created = rig.createTask('invalid-1', { type: 'sleep', payload: { ms: -1 } });
  const status = await rig.waitForStatus(TASKS, 'invalid-1', (s) => s.phase !== undefined);
  assert.is(status.phase, 'Failed');
  assert.match(status.error, /ms/);
  assert.equal([condition(status, 'Accepted')?.status, condition(status, 'Accepted')?.reason], ['False', 'InvalidSpec']);
  assert.is(status.taskId, undefined);
  const warning = await eventually(async () => rig.events('invalid-1', 'InvalidSpec')[0], 5000, 'the InvalidSpec event');
  assert.is(warning.type, 'Warning');
  assert.match(warning.message, /ms/);
  assert.equal(await rowsFor(rig, created.metadata.uid as string), []);
  assert.is(rig.events('invalid-1', 'Submitted').length, 0);
});

test('a refused Task is reported once: a later reconcile neither validates it again nor repeats the Warning', async ({ rig, controller }) => {
  const custom = rig.server.kubeConfig(NS).makeApiClient(CustomObjectsApi);
  rig.createTask('invalid-2', { type: 'sleep', payload: { ms: -1 } });
  await rig.waitForStatus(TASKS, 'invalid-2', (s) => condition(s, 'Accepted')?.status === 'False');
  await eventually(async () => rig.events('invalid-2', 'InvalidSpec').length > 0, 5000, 'the InvalidSpec event');
  // A Task's spec cannot change (CRD rule self == oldSelf), so nothing can make it valid: touching its labels, a
  // relist or a new leader must not refuse it again.
  const reconciles = () => readMetric(controller, 'conveyor_reconcile_duration_seconds_count', { loop: 'task' });
  const before = await reconciles();
  await custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: 'tasks', name: 'invalid-2', body: { metadata: { labels: { touched: 'yes' } } } }, MERGE);
  await eventually(async () => (await reconciles()) > before, 5000, 'the reconcile the label change causes');
  assert.is(rig.events('invalid-2', 'InvalidSpec').length, 1, 'one Warning per refused Task, not one per reconcile');
});

test('deleting a running Task cancels its task, then the finalizer is removed and the resource goes', async ({ rig }) => {
  const custom = rig.server.kubeConfig(NS).makeApiClient(CustomObjectsApi);
  // Through client-node, as kubectl apply and kubectl delete would.
  const created = await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: 'tasks', body: taskResource('sleepy-1', { type: 'sleep', payload: { ms: 30_000 } }) });
  const running = await rig.waitForStatus(TASKS, 'sleepy-1', (s) => s.phase === 'Running', 10_000);
  const gone = rig.server.waitFor(TASKS, NS, 'sleepy-1', (o) => o === undefined, 10_000);
  await custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: 'tasks', name: 'sleepy-1' });
  await gone;
  // The finalizer held the resource until the cancel was recorded.
  const { rows } = await rig.db.query<{ requested: boolean }>('SELECT cancel_requested_at IS NOT NULL AS requested FROM tasks WHERE id = $1', [running.taskId]);
  assert.equal(rows, [{ requested: true }]);
  const row = await eventually(
    async () => {
      const [found] = await rowsFor(rig, created.metadata.uid);
      return found?.status === TaskStatus.cancelled && found;
    },
    5000,
    'the task to be cancelled',
  );
  assert.is(row.id, running.taskId);
});

test('ttlSecondsAfterFinished deletes a finished Task about that long after it finished; the task stays in PostgreSQL', async ({ rig }) => {
  const created = rig.createTask('ttl-1', { type: 'echo', payload: 'short-lived', ttlSecondsAfterFinished: 1 });
  const status = await rig.waitForStatus(TASKS, 'ttl-1', finished, 10_000);
  assert.is(status.phase, 'Succeeded');
  await rig.server.waitFor(TASKS, NS, 'ttl-1', (o) => o === undefined, 5000);
  const afterMs = Date.now() - Date.parse(status.finishedAt);
  assert.ok(afterMs >= 1000 && afterMs < 2500, `deleted ${afterMs} ms after it finished; the TTL is 1 s`);
  assert.equal(await rowsFor(rig, created.metadata.uid as string), [{ id: status.taskId, status: TaskStatus.completed, type: 'echo', tenant: NS }]);
  // Without a TTL a finished resource stays: echo-1 finished well over a second ago.
  assert.is((rig.server.get(TASKS, NS, 'echo-1')?.['status'] as { phase?: string } | undefined)?.phase, 'Succeeded');
});

test('tasks submitted through REST are not copied into Task resources', async ({ rig }) => {
  const api = await rig.world.startApi();
  const before = rig.server.list(TASKS, NS).length;
  const creates = rig.server.count({ verb: 'create', resource: TASKS });
  const res = await request(api.baseUrl, 'POST', '/api/v1/tasks', { type: 'echo', payload: 'via REST' });
  assert.is(res.status, 201, res.text);
  await eventually(async () => (await api.repository.findTask(res.body.id))?.status === TaskStatus.completed, 10_000, 'the REST task to complete');
  assert.is(rig.server.list(TASKS, NS).length, before);
  assert.ok(!rig.server.list(TASKS, NS).some((o: any) => o.status?.taskId === res.body.id));
  assert.is(rig.server.count({ verb: 'create', resource: TASKS }), creates, 'the controller creates no Task resources');
});

test.run();
