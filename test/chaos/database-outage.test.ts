import { setTimeout as delay } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { matches } from '../support/processes.ts';
import { eventually } from '../support/system.ts';
import { call, ChaosWorld, historyProblems, since, TASKS } from './kit.ts';

type Ctx = { worlds: ChaosWorld[] };
const test = suite<Ctx>('chaos: PostgreSQL outage');

const SLEEP_MS = 1_500;
// The worker retries a final write for about 16 s; the outage below lasts a few seconds.
const RECOVERY_MS = 20_000;

test.before((ctx) => {
  ctx.worlds = [];
});

test.after(async (ctx) => {
  for (const world of ctx.worlds) await world.teardown();
});

async function proxiedWorld(ctx: Ctx): Promise<ChaosWorld> {
  const world = await ChaosWorld.create({ proxyPostgres: true });
  ctx.worlds.push(world);
  return world;
}

async function assertProblem503(res: Awaited<ReturnType<typeof call>>, what: string): Promise<void> {
  assert.is(res.status, 503, `${what}: ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/, what);
  assert.is(res.body.status, 503, what);
  assert.match(res.body.detail, /PostgreSQL/, what);
}

test('PostgreSQL cut: 503 problems meanwhile; running tasks are stored once it is back; nothing restarts', async (ctx) => {
  const world = await proxiedWorld(ctx);
  const proxy = world.pgProxy as NonNullable<typeof world.pgProxy>;
  const { api, baseUrl } = await world.startApi();
  // Two slots: two sleeps run into the outage, two wait in the worker or in RabbitMQ behind them.
  const worker = await world.startWorker('w1', { WORKER_CONCURRENCY: '2' });
  const submit = async (type: string, payload: unknown) => {
    const res = await call(baseUrl, 'POST', TASKS, { type, payload });
    assert.is(res.status, 201, res.text);
    return res.body.id as string;
  };
  const echoes = [await submit('echo', { n: 1 }), await submit('echo', { n: 2 })];
  await world.settle(echoes, 10_000, [api, worker]);
  const sleeps = [];
  for (let i = 0; i < 4; i++) sleeps.push(await submit('sleep', { ms: SLEEP_MS }));
  const running = sleeps.slice(0, 2);
  await Promise.all(running.map((taskId) => worker.waitForMessage('task started', { taskId }, 10_000)));

  const cutAt = performance.now();
  proxy.cut();
  await assertProblem503(await call(baseUrl, 'POST', TASKS, { type: 'echo', payload: { lost: true } }), 'submit');
  const ready = await call(baseUrl, 'GET', '/readyz');
  await assertProblem503(ready, '/readyz');
  assert.equal(ready.body.checks, { database: 'down', broker: 'up' });
  await assertProblem503(await call(baseUrl, 'GET', `${TASKS}/${sleeps[0]}`), 'read');
  // The handlers finish during the outage; the worker must keep their outcome until it can write it.
  await Promise.all(running.map((taskId) => worker.waitForMessage('PostgreSQL not reachable, retrying the write', { taskId }, SLEEP_MS + 5_000)));
  const outageMs = since(cutAt);

  const acceptedBeforeHeal = proxy.accepted;
  const healAt = performance.now();
  proxy.heal();
  await eventually(async () => (await call(baseUrl, 'GET', '/readyz')).status === 200, RECOVERY_MS, 'readiness to return');
  const readyMs = since(healAt);
  const after = await submit('echo', { after: true });
  const all = [...echoes, ...sleeps, after];
  await world.settle(all, RECOVERY_MS, [api, worker]);
  console.log(`  PostgreSQL cut for ${outageMs} ms: ready again ${readyMs} ms and all ${all.length} tasks done ${since(healAt)} ms after the heal`);

  const rows = await world.rows();
  assert.is(rows.length, all.length, 'the submit refused during the outage stored nothing; every accepted one is there');
  for (const row of rows) {
    assert.equal(historyProblems(row), [], row.id);
    assert.is(row.status, TaskStatus.completed, `${row.id} ${row.type}`);
    assert.is(row.attempts, 1, `${row.id} ran once`);
    assert.is(worker.find(matches('task started', { taskId: row.id })).length, 1, `${row.id} started once`);
    assert.is(worker.find(matches('task completed', { taskId: row.id })).length, 1, `${row.id} completed once`);
  }
  for (const taskId of sleeps) assert.equal(rows.find((row) => row.id === taskId)?.result, { sleptMs: SLEEP_MS });
  // Recovered in place: the same two processes, which never logged a fatal error.
  assert.ok(api.alive && worker.alive, 'no process exited');
  for (const service of [api, worker]) assert.is(service.find((line) => line.level === 'fatal').length, 0, service.tail());
  assert.ok(proxy.accepted > acceptedBeforeHeal, 'the pools opened new connections after the heal');
});

test('silent PostgreSQL partition (blackhole): /readyz still answers, 503, within 5 s; tasks finish once after the heal', async (ctx) => {
  const world = await proxiedWorld(ctx);
  const proxy = world.pgProxy as NonNullable<typeof world.pgProxy>;
  const { api, baseUrl } = await world.startApi();
  const worker = await world.startWorker('w1', { WORKER_CONCURRENCY: '2' });
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const res = await call(baseUrl, 'POST', TASKS, { type: 'sleep', payload: { ms: SLEEP_MS } });
    assert.is(res.status, 201, res.text);
    ids.push(res.body.id as string);
  }
  await Promise.all(ids.map((taskId) => worker.waitForMessage('task started', { taskId }, 10_000)));

  proxy.blackhole();
  // Packets vanish, nothing is refused: only the API's own timeouts can tell. A probe that hangs is a probe
  // that a load balancer cannot act on before its own timeout, and each hung one holds a connection.
  const probeAt = performance.now();
  const ready = await call(baseUrl, 'GET', '/readyz', undefined, {}, 5_000).catch((error: Error) => error);
  const probeMs = since(probeAt);
  // The partition lasts until the handlers have ended, so their final writes must wait for the network.
  await delay(Math.max(0, SLEEP_MS + 500 - probeMs));
  const healAt = performance.now();
  proxy.heal();
  await eventually(async () => (await call(baseUrl, 'GET', '/readyz')).status === 200, RECOVERY_MS, 'readiness to return');
  await world.settle(ids, RECOVERY_MS, [api, worker]);
  console.log(`  PostgreSQL blackholed: /readyz ${ready instanceof Error ? `gave no answer in ${probeMs} ms` : `answered ${ready.status} in ${probeMs} ms`}; tasks done ${since(healAt)} ms after the heal`);

  for (const row of await world.rows(ids)) {
    assert.equal(historyProblems(row), [], row.id);
    assert.is(row.status, TaskStatus.completed);
    assert.is(row.attempts, 1);
    assert.is(worker.find(matches('task started', { taskId: row.id })).length, 1, `${row.id} started once`);
  }
  assert.ok(api.alive && worker.alive, 'no process exited');
  assert.not.instance(ready, Error, '/readyz gave no answer within 5 s while PostgreSQL was silently unreachable');
  if (!(ready instanceof Error)) {
    await assertProblem503(ready, '/readyz');
    assert.equal(ready.body.checks, { database: 'down', broker: 'up' });
  }
});

test.run();
