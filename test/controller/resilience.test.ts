// The controller against an unreliable API server: failing writes, broken and expired watches, an outage.
import * as assert from 'uvu/assert';
import type { FakeApiServer, RequestFilter } from '../support/fake-apiserver/index.ts';
import { eventually } from '../support/system.ts';
import { condition, type Controller, DEPLOYMENTS, NS, POOLS, readMetric, rigSuite, TASKS, waitLeading } from './helpers.ts';

type Ctx = { controller: Controller };
const test = rigSuite<Ctx>('controller: resilience');

test.before(async (ctx) => {
  ctx.controller = await ctx.rig.startController('controller-0');
  await waitLeading(ctx.controller);
});

test.after.each(async ({ rig }) => {
  // Pools read the whole database's backlog: each test starts from none.
  for (const pool of rig.server.list(POOLS, NS)) rig.server.delete(POOLS, NS, pool.metadata.name as string);
  await rig.db.query('DELETE FROM tasks');
});

const ready = (s: any) => condition(s, 'Ready')?.status === 'True';

test('a failed scale and a failed status write are retried with doubling backoff (1 s, then 2 s) until they succeed', async ({ rig, controller }) => {
  rig.createDeployment('worker-r1');
  rig.createPool('pool-r1', { workerDeployment: 'worker-r1', tasksPerReplica: 1, pollIntervalSeconds: 1 });
  await rig.waitForStatus(POOLS, 'pool-r1', ready);
  const errorsBefore = await readMetric(controller, 'conveyor_reconcile_errors_total', { loop: 'workerpool' });

  rig.server.failNext(DEPLOYMENTS, 1, { verb: 'patch', subresource: 'scale' });
  const statusPatch = () => rig.server.nextRequest({ verb: 'patch', resource: POOLS, subresource: 'status', name: 'pool-r1' }, 5000);
  const failedScale = rig.server.nextRequest({ verb: 'patch', resource: DEPLOYMENTS, subresource: 'scale', name: 'worker-r1' }, 5000);
  await rig.insertPending(2);
  assert.is((await failedScale).code, 500);
  const t1 = Date.now();
  // Armed only now: every poll writes the status, so an earlier fault would hit a poll from before the backlog.
  rig.server.failNext(POOLS, 1, { verb: 'patch', subresource: 'status' });
  assert.is((await statusPatch()).code, 500, 'the retry scaled, then its status write failed');
  const t2 = Date.now();
  assert.is(rig.replicas('worker-r1'), 2);
  assert.is((await statusPatch()).code, 200);
  const t3 = Date.now();
  assert.ok(t2 - t1 >= 950 && t2 - t1 < 1600, `first retry ${t2 - t1} ms after the failure; the backoff is 1 s`);
  assert.ok(t3 - t2 >= 1950 && t3 - t2 < 2700, `second retry ${t3 - t2} ms after the failure; the backoff is 2 s`);
  const status = await rig.waitForStatus(POOLS, 'pool-r1', (s) => s.currentReplicas === 2);
  assert.is(status.desiredReplicas, 2);
  assert.is(await readMetric(controller, 'conveyor_reconcile_errors_total', { loop: 'workerpool' }), errorsBefore + 2);
  assert.is(rig.events('pool-r1', 'ScaledUp').length, 1, 'the failed scale recorded no event');
});

test('the informers come back after abrupt watch disconnects and 410 Expired, and miss nothing written meanwhile', async ({ rig }) => {
  const rewatch = (resource: string) => rig.server.nextRequest({ verb: 'watch', resource, code: 200 }, 5000);
  const watches = [rewatch(POOLS), rewatch(TASKS)];
  assert.ok(rig.server.closeWatches({ abrupt: true }) >= 2, 'both informers were watching');
  // Written while no watch is open: the informers resume from their last resourceVersion, which replays it.
  rig.createDeployment('worker-r2');
  rig.createPool('pool-r2', { workerDeployment: 'worker-r2', pollIntervalSeconds: 1 });
  rig.createTask('task-r2', { type: 'echo', runAt: new Date(Date.now() + 3_600_000).toISOString() });
  await Promise.all(watches);
  await rig.waitForStatus(POOLS, 'pool-r2', ready);
  const task = await rig.waitForStatus(TASKS, 'task-r2', (s) => s.taskId !== undefined);
  assert.is(task.phase, 'Pending', 'a task due in an hour waits in PostgreSQL');

  // A 410 makes client-node relist; what is created right after must be in the new list or the new watch.
  const relists = [POOLS, TASKS].map((resource) => rig.server.nextRequest({ verb: 'list', resource, code: 200 }, 5000));
  assert.ok(rig.server.expireWatches() >= 2);
  rig.createPool('pool-r3', { workerDeployment: 'worker-r2', pollIntervalSeconds: 1 });
  rig.createTask('task-r3', { type: 'echo', runAt: new Date(Date.now() + 3_600_000).toISOString() });
  await Promise.all(relists);
  await rig.waitForStatus(POOLS, 'pool-r3', ready);
  await rig.waitForStatus(TASKS, 'task-r3', (s) => s.taskId !== undefined);
  assert.is(rig.server.openWatches(POOLS), 1);
  assert.is(rig.server.openWatches(TASKS), 1);
});

test('an API server outage: the leader steps down, the controller survives, and catches up once the server is back', async ({ rig, controller }) => {
  const OUTAGE_MS = 6000;
  rig.createDeployment('worker-r4');
  rig.createPool('pool-r4', { workerDeployment: 'worker-r4', tasksPerReplica: 1, pollIntervalSeconds: 1 });
  await rig.waitForStatus(POOLS, 'pool-r4', ready);
  // A restart fails at its list or at its watch, depending on where the outage finds it: count both.
  const lists = attemptTimes(rig.server, { resource: POOLS, verb: 'list' });
  const watches = attemptTimes(rig.server, { resource: POOLS, verb: 'watch' });

  rig.server.setUnavailable(true, OUTAGE_MS);
  const downAt = Date.now();
  // While the controller is blind: work arrives and a WorkerPool is written (the hooks bypass the outage).
  await rig.insertPending(3);
  rig.createDeployment('worker-r5');
  rig.createPool('pool-r5', { workerDeployment: 'worker-r5', minReplicas: 1, pollIntervalSeconds: 1 });
  // It cannot renew the Lease, so it stops acting before another replica could take over (2/3 of the lease).
  await eventually(async () => !controller.leader.leading, 4000, 'the leader to step down');
  assert.ok(Date.now() - downAt <= 3000, `stepped down ${Date.now() - downAt} ms into the outage; the lease is 3 s`);
  assert.is(await readMetric(controller, 'conveyor_controller_leader'), 0);

  await eventually(async () => (await fetch(`${rig.server.url}/version`)).status === 200, OUTAGE_MS + 2000, 'the outage to end');
  const healedAt = Date.now();
  lists.stop();
  watches.stop();
  const attempts = { times: [...lists.times, ...watches.times].sort((x, y) => x - y) };
  await waitLeading(controller, 5000);
  await rig.waitForReplicas('worker-r4', 3, 10_000);
  // The new pool is only known through the recovered informer.
  await rig.waitForReplicas('worker-r5', 1, 10_000);
  await rig.waitForStatus(POOLS, 'pool-r5', ready, 5000);
  const catchUpMs = Date.now() - healedAt;
  process.stdout.write(` [caught up ${catchUpMs} ms after the outage] `);
  assert.is(controller.lifecycle.state, 'running');
  assert.is((await fetch(`http://127.0.0.1:${controller.probes.port}/healthz`)).status, 200);

  // Restarts back off, doubling from 1 s up to 30 s (informers.ts): the wait between failed attempts never shrinks.
  const gaps = attempts.times.slice(1).map((at, i) => at - (attempts.times[i] as number));
  // The fake cuts some attempts before it logs them, so only the gaps it saw are compared.
  assert.ok(
    gaps.every((gap, i) => i === 0 || gap >= (gaps[i - 1] as number) * 0.9),
    `the WorkerPool informer retried after ${gaps.join(', ')} ms: its backoff went back to 1 s while the API server was still down`,
  );
});

/** Records when requests matching `filter` arrive, until `stop()`. */
function attemptTimes(server: FakeApiServer, filter: RequestFilter) {
  const times: number[] = [];
  let recording = true;
  void (async () => {
    while (recording) {
      // Each wait is re-armed in the same tick the last one resolved, so no request slips between them.
      await server.nextRequest(filter, 1000).then(() => times.push(Date.now()), () => undefined);
    }
  })();
  return { times, stop: () => void (recording = false) };
}

test.run();
