// The WorkerPool loop end to end: the real controller in-process against the fake API server (which validates
// WorkerPools against the chart's CRD), with the backlog in real PostgreSQL and RabbitMQ behind it.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { eventually, request } from '../support/system.ts';
import { condition, type Controller, type ControllerRig, DEPLOYMENTS, GROUP, NS, POOLS, rigSuite, VERSION, waitLeading } from './helpers.ts';

const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

const POD_DELETION_COST = 'controller.kubernetes.io/pod-deletion-cost';

// --- Scaling. No API and no worker run here: the backlog is rows inserted as `pending`, which nothing publishes,
// so the autoscaler sees exactly what a test put there.

const scaling = rigSuite<{ controller: Controller }>('controller: WorkerPool scaling');

scaling.before(async (ctx) => {
  ctx.controller = await ctx.rig.startController('controller-0');
  await waitLeading(ctx.controller);
});

scaling.after.each(async ({ rig }) => {
  // Every pool reads the same database, so one test's pools and backlog must not outlive it.
  for (const pool of rig.server.list(POOLS, NS)) rig.server.delete(POOLS, NS, pool.metadata.name as string);
  await rig.db.query('DELETE FROM tasks');
});

scaling('a backlog scales the Deployment up at once; idle, it waits out the stabilization window, then goes to zero; new work brings it back within a poll', async ({ rig }) => {
  rig.createDeployment('worker-a');
  const pool = rig.createPool('pool-a', { workerDeployment: 'worker-a', minReplicas: 0, maxReplicas: 5, tasksPerReplica: 2, pollIntervalSeconds: 1, scaleDownStabilizationSeconds: 1 });
  // The controller has read the pool and an empty backlog before the work arrives.
  await rig.waitForStatus(POOLS, 'pool-a', (s) => condition(s, 'Ready')?.status === 'True' && s.backlog?.total === 0);
  assert.is(rig.replicas('worker-a'), 0);

  const arrived = Date.now();
  await rig.insertPending(5);
  await rig.server.waitFor(DEPLOYMENTS, NS, 'worker-a', (d) => (d?.['spec'] as { replicas: number }).replicas !== 0, 5000);
  const scaleUpMs = Date.now() - arrived;
  assert.is(rig.replicas('worker-a'), 3, 'ceil(5 / 2) replicas');
  // Nothing watches PostgreSQL: the backlog is polled every pollIntervalSeconds (1 s), so that bounds the latency.
  assert.ok(scaleUpMs < 2000, `scaled up ${scaleUpMs} ms after the backlog appeared`);
  process.stdout.write(` [scale-up ${scaleUpMs} ms] `);

  const up = await rig.waitForStatus(POOLS, 'pool-a', (s) => s.currentReplicas === 3);
  assert.equal(up.backlog, { ready: 0, pending: 5, queued: 0, inProgress: 0, total: 5 });
  assert.is(up.desiredReplicas, 3);
  assert.is(up.observedGeneration, pool.metadata.generation);
  const scaledAt = Date.parse(up.lastScaleTime);
  assert.ok(scaledAt >= arrived && scaledAt <= Date.now(), `lastScaleTime ${up.lastScaleTime}`);
  assert.equal([condition(up, 'Ready')?.status, condition(up, 'Ready')?.reason], ['True', 'BacklogRead']);
  assert.is(condition(up, 'ScalingLimited')?.status, 'False');
  const scaledUp = rig.events('pool-a', 'ScaledUp');
  assert.is(scaledUp.length, 1, 'one event per scaling');
  assert.is(scaledUp[0].type, 'Normal');
  assert.match(scaledUp[0].message, /from 0 to 3 replicas/);
  assert.equal([scaledUp[0].involvedObject.kind, scaledUp[0].involvedObject.uid], ['WorkerPool', pool.metadata.uid]);

  // The workers finish everything: the autoscaler sees it at once but keeps the replicas for the window.
  const idleSince = Date.now();
  await rig.finishAll();
  const held = await rig.waitForStatus(POOLS, 'pool-a', (s) => s.desiredReplicas === 0, 3000);
  assert.is(held.currentReplicas, 3, 'held during the stabilization window');
  assert.is(rig.replicas('worker-a'), 3);
  assert.is(rig.events('pool-a', 'ScaledDown').length, 0);
  await rig.waitForReplicas('worker-a', 0, 5000);
  const heldMs = Date.now() - idleSince;
  assert.ok(heldMs >= 1000, `scaled down ${heldMs} ms after going idle; the window is 1 s`);
  // The event is recorded after the scale and before the status.
  const down = await rig.waitForStatus(POOLS, 'pool-a', (s) => s.currentReplicas === 0);
  const scaledDown = rig.events('pool-a', 'ScaledDown');
  assert.is(scaledDown.length, 1);
  assert.match(scaledDown[0].message, /from 3 to 0 replicas/);
  assert.ok(Date.parse(down.lastScaleTime) > scaledAt, 'lastScaleTime moves with every scaling');

  const again = Date.now();
  await rig.insertPending(1);
  await rig.waitForReplicas('worker-a', 1, 5000);
  const fromZeroMs = Date.now() - again;
  assert.ok(fromZeroMs < 2000, `back from zero ${fromZeroMs} ms after new work; the poll is 1 s`);
  process.stdout.write(` [from zero ${fromZeroMs} ms] `);
  await rig.waitForStatus(POOLS, 'pool-a', (s) => s.currentReplicas === 1);
  assert.is(rig.events('pool-a', 'ScaledUp').length, 2);
});

scaling('minReplicas holds workers with no backlog; maxReplicas caps the scale and sets ScalingLimited', async ({ rig }) => {
  rig.createDeployment('worker-b');
  rig.createPool('pool-b', { workerDeployment: 'worker-b', minReplicas: 1, maxReplicas: 2, tasksPerReplica: 1, pollIntervalSeconds: 1, scaleDownStabilizationSeconds: 1 });
  // No work at all, yet minReplicas 1 brings the Deployment up from 0.
  await rig.waitForReplicas('worker-b', 1);
  const atMin = await rig.waitForStatus(POOLS, 'pool-b', (s) => s.currentReplicas === 1);
  assert.is(atMin.backlog.total, 0);
  assert.is(condition(atMin, 'ScalingLimited')?.status, 'False');

  await rig.insertPending(5);
  await rig.waitForReplicas('worker-b', 2);
  const capped = await rig.waitForStatus(POOLS, 'pool-b', (s) => s.currentReplicas === 2);
  assert.equal([capped.backlog.total, capped.desiredReplicas], [5, 2]);
  assert.equal([condition(capped, 'ScalingLimited')?.status, condition(capped, 'ScalingLimited')?.reason], ['True', 'TooFewReplicas']);
  assert.is(capped.observedGeneration, 1);

  // Raising maxReplicas (as kubectl edit would) lifts the cap at once; the status says which generation it saw.
  const custom = rig.server.kubeConfig(NS).makeApiClient(CustomObjectsApi);
  await custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: 'workerpools', name: 'pool-b', body: { spec: { maxReplicas: 4 } } }, MERGE);
  await rig.waitForReplicas('worker-b', 4);
  const raised = await rig.waitForStatus(POOLS, 'pool-b', (s) => s.observedGeneration === 2 && s.currentReplicas === 4);
  assert.is(raised.desiredReplicas, 4);
  assert.is(condition(raised, 'ScalingLimited')?.status, 'True', 'a backlog of 5 still wants more than 4');

  await rig.finishAll();
  await rig.waitForReplicas('worker-b', 1, 5000);
  const idle = await rig.waitForStatus(POOLS, 'pool-b', (s) => s.currentReplicas === 1 && s.backlog.total === 0);
  assert.is(condition(idle, 'ScalingLimited')?.status, 'False');
  // More polls read the scale without going below minReplicas.
  for (let i = 0; i < 2; i++) await rig.server.nextRequest({ verb: 'get', resource: DEPLOYMENTS, subresource: 'scale', name: 'worker-b' }, 3000);
  assert.is(rig.replicas('worker-b'), 1);
  assert.is(rig.events('pool-b', 'ScaledDown').length, 1);
});

scaling('a WorkerPool naming a missing Deployment is Ready=False DeploymentNotFound, and recovers once it exists', async ({ rig }) => {
  const pool = rig.createPool('pool-c', { workerDeployment: 'worker-c', minReplicas: 1, maxReplicas: 3, pollIntervalSeconds: 1 });
  const missing = await rig.waitForStatus(POOLS, 'pool-c', (s) => condition(s, 'Ready') !== undefined);
  assert.equal([condition(missing, 'Ready')?.status, condition(missing, 'Ready')?.reason], ['False', 'DeploymentNotFound']);
  assert.match(condition(missing, 'Ready')?.message ?? '', /worker-c/);
  assert.is(condition(missing, 'Ready')?.observedGeneration, pool.metadata.generation);
  assert.is(missing.backlog.total, 0, 'the backlog is still reported');
  assert.is(rig.server.count({ verb: 'patch', resource: DEPLOYMENTS, name: 'worker-c' }), 0);

  rig.createDeployment('worker-c');
  await rig.waitForReplicas('worker-c', 1, 5000);
  const found = await rig.waitForStatus(POOLS, 'pool-c', (s) => condition(s, 'Ready')?.status === 'True');
  assert.is(found.currentReplicas, 1);
});

scaling('a deleted WorkerPool is no longer reconciled: its Deployment stays put while another pool scales', async ({ rig }) => {
  rig.createDeployment('worker-d');
  rig.createDeployment('worker-e');
  rig.createPool('pool-d', { workerDeployment: 'worker-d', tasksPerReplica: 1, pollIntervalSeconds: 1, scaleDownStabilizationSeconds: 0 });
  rig.createPool('pool-e', { workerDeployment: 'worker-e', tasksPerReplica: 1, pollIntervalSeconds: 1, scaleDownStabilizationSeconds: 0 });
  await rig.waitForStatus(POOLS, 'pool-d', (s) => condition(s, 'Ready')?.status === 'True');
  await rig.waitForStatus(POOLS, 'pool-e', (s) => condition(s, 'Ready')?.status === 'True');

  rig.server.delete(POOLS, NS, 'pool-d');
  // Both pools poll in step, so a reconcile of pool-d may be in flight at the delete; two polls of the other pool
  // later it has surely ended, and from then on nothing may touch pool-d or its Deployment.
  const pollOfE = () => rig.server.nextRequest({ verb: 'get', resource: DEPLOYMENTS, subresource: 'scale', name: 'worker-e' }, 3000);
  for (let i = 0; i < 2; i++) await pollOfE();
  const touches = () => rig.server.count({ resource: DEPLOYMENTS, name: 'worker-d' }) + rig.server.count({ resource: POOLS, name: 'pool-d' });
  const before = touches();
  await rig.insertPending(2);
  await rig.waitForReplicas('worker-e', 2, 3000);
  for (let i = 0; i < 2; i++) await pollOfE();
  assert.is(rig.replicas('worker-d'), 0, 'the deleted pool did not scale its Deployment');
  assert.is(touches(), before, 'nor read it, nor wrote the pool\'s status');
});

scaling.run();

// --- Pod deletion cost. Real workers, whose WORKER_ID is a pod's name, run long sleep tasks submitted through
// the API, so PostgreSQL's in_progress rows name the pods that are busy.

type CostCtx = { baseUrl: string; controller: Controller };
const costs = rigSuite<CostCtx>('controller: WorkerPool pod deletion cost');

costs.before(async (ctx) => {
  const { rig } = ctx;
  const api = await rig.world.startApi();
  ctx.baseUrl = api.baseUrl;
  await eventually(async () => api.broker.connected, 10_000, 'the API to connect to RabbitMQ');
  ctx.controller = await rig.startController('controller-0');
  await waitLeading(ctx.controller);
});

costs('a backlog submitted through the API counts once, though it is both in RabbitMQ and queued in PostgreSQL', async ({ rig, baseUrl }) => {
  // No worker runs yet: the tasks wait in RabbitMQ as ready messages and in PostgreSQL as queued rows.
  for (let i = 0; i < 3; i++) assert.is((await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'echo', payload: i })).status, 201);
  rig.createDeployment('worker-q');
  rig.createPool('pool-q', { workerDeployment: 'worker-q', tasksPerReplica: 1, maxReplicas: 10, pollIntervalSeconds: 1 });
  // The submits are all confirmed before the pool exists, so its first reading is the whole backlog.
  const status = await rig.waitForStatus(POOLS, 'pool-q', (s) => s.backlog !== undefined);
  assert.equal(status.backlog, { ready: 3, pending: 0, queued: 3, inProgress: 0, total: 3 });
  assert.equal([status.desiredReplicas, rig.replicas('worker-q')], [3, 3]);
  rig.server.delete(POOLS, NS, 'pool-q');
});

const annotations = (rig: ControllerRig, pod: string): Record<string, string> => rig.server.get('pods', NS, pod)?.metadata.annotations ?? {};

costs('busy pods get their running count as pod-deletion-cost and idle pods 0, following the work', async ({ rig, baseUrl }) => {
  rig.createDeployment('worker-p', { pods: ['worker-p-0', 'worker-p-1', 'worker-p-2'] });
  rig.server.create('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'unrelated-0', labels: { app: 'other' } }, spec: { containers: [{ name: 'c', image: 'busybox:1' }] } }, NS);
  // A long window keeps the replicas up after the work ends, so the costs are still maintained then.
  rig.createPool('pool-p', { workerDeployment: 'worker-p', tasksPerReplica: 1, maxReplicas: 5, pollIntervalSeconds: 1, scaleDownStabilizationSeconds: 60 });
  // One real worker, named as pod worker-p-0, runs two tasks at once; a short shutdown keeps teardown quick.
  await rig.world.startWorker({ WORKER_ID: 'worker-p-0', WORKER_CONCURRENCY: '2', SHUTDOWN_TIMEOUT_MS: '500', CANCEL_GRACE_MS: '500' });
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const res = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'sleep', payload: { ms: 30_000 } });
    assert.is(res.status, 201, res.text);
    ids.push(res.body.id);
  }
  const statuses = async () => (await rig.db.query<{ status: string; worker_id: string }>('SELECT status::text, worker_id FROM tasks WHERE id = ANY($1::uuid[]) ORDER BY id', [ids])).rows;
  await eventually(async () => (await statuses()).every((r) => r.status === TaskStatus.in_progress), 10_000, 'both sleeps to run');
  assert.equal((await statuses()).map((r) => r.worker_id), ['worker-p-0', 'worker-p-0']);

  const cost = (pod: string) => annotations(rig, pod)[POD_DELETION_COST];
  await rig.server.waitFor('pods', NS, 'worker-p-0', (p: any) => p?.metadata.annotations?.[POD_DELETION_COST] === '2', 5000);
  await rig.server.waitFor('pods', NS, 'worker-p-2', (p: any) => p?.metadata.annotations?.[POD_DELETION_COST] !== undefined, 5000);
  assert.equal([cost('worker-p-0'), cost('worker-p-1'), cost('worker-p-2')], ['2', '0', '0']);
  assert.is(cost('unrelated-0'), undefined, 'only the Deployment\'s pods are annotated');

  // The cost follows the work: one task ends, then the other.
  assert.is((await request(baseUrl, 'POST', `/api/v1/tasks/${ids[0]}/cancel`)).status, 202);
  await rig.server.waitFor('pods', NS, 'worker-p-0', (p: any) => p?.metadata.annotations?.[POD_DELETION_COST] === '1', 5000);
  assert.is((await request(baseUrl, 'POST', `/api/v1/tasks/${ids[1]}/cancel`)).status, 202);
  await rig.server.waitFor('pods', NS, 'worker-p-0', (p: any) => p?.metadata.annotations?.[POD_DELETION_COST] === '0', 5000);
  assert.equal((await statuses()).map((r) => r.status), [TaskStatus.cancelled, TaskStatus.cancelled]);
  assert.equal([cost('worker-p-1'), cost('worker-p-2')], ['0', '0']);
});

costs.run();
