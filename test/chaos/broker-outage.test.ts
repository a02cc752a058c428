import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { matches, type ServiceProcess } from '../support/processes.ts';
import { RabbitNode } from '../support/rabbit-node.ts';
import { eventually } from '../support/system.ts';
import { brokerOutageLog, call, ChaosWorld, historyProblems, isBrokerOutage, linesOf, since, TASKS } from './kit.ts';

type Ctx = { worlds: ChaosWorld[]; node: RabbitNode | null };
const test = suite<Ctx>('chaos: RabbitMQ outage');

// Reconnects back off up to 10 s; once the network is back, everything must be done well within that plus the work.
const SETTLE_AFTER_HEAL_MS = 20_000;
const HEARTBEAT_SECONDS = 2;

test.before((ctx) => {
  ctx.worlds = [];
  ctx.node = null;
});

test.after(async (ctx) => {
  for (const world of ctx.worlds) await world.teardown({ deleteQueue: world.amqpUrl !== ctx.node?.amqpUrl });
  await ctx.node?.stop();
});

type Submitted = { id: string; type: string; payload: unknown };

/** `published`: whether RabbitMQ is expected to confirm the message before the API answers. */
async function submit(baseUrl: string, type: string, payload: unknown, published: boolean): Promise<Submitted> {
  const res = await call(baseUrl, 'POST', TASKS, { type, payload });
  assert.is(res.status, 201, res.text);
  // Once published, a worker may already have claimed the task by the time the API answers.
  if (published) assert.is.not(res.body.status, TaskStatus.pending, `a ${type} task submitted before the outage was published`);
  else assert.is(res.body.status, TaskStatus.pending, `a ${type} task submitted during the outage waits for the relay`);
  return { id: res.body.id as string, type, payload };
}

/** Eight 1.5 s sleeps (some run through the outage, the rest wait in RabbitMQ or in the worker) and eight echoes. */
async function submitBefore(baseUrl: string): Promise<Submitted[]> {
  const tasks: Submitted[] = [];
  for (let i = 0; i < 8; i++) tasks.push(await submit(baseUrl, 'sleep', { ms: 1_500 }, true));
  for (let i = 0; i < 8; i++) tasks.push(await submit(baseUrl, 'echo', { before: i }, true));
  return tasks;
}

async function submitDuring(baseUrl: string, count: number): Promise<Submitted[]> {
  const tasks: Submitted[] = [];
  for (let i = 0; i < count; i++) {
    tasks.push(i % 2 === 0 ? await submit(baseUrl, 'echo', { during: i }, false) : await submit(baseUrl, 'sleep', { ms: 100 }, false));
  }
  return tasks;
}

async function assertBrokerNotReady(baseUrl: string): Promise<void> {
  const ready = await call(baseUrl, 'GET', '/readyz');
  assert.is(ready.status, 503, ready.text);
  assert.match(ready.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(ready.body.checks, { database: 'up', broker: 'down' });
}

/** Every task completed with its own result, in one attempt, started exactly once by the workers. */
async function assertCompletedOnce(world: ChaosWorld, tasks: readonly Submitted[], workers: readonly ServiceProcess[]): Promise<void> {
  const rows = await world.rows(tasks.map((t) => t.id));
  assert.is(rows.length, tasks.length, 'every accepted task is stored');
  const byId = new Map(rows.map((row) => [row.id, row]));
  for (const task of tasks) {
    const row = byId.get(task.id);
    assert.ok(row, `task ${task.id} lost`);
    assert.equal(historyProblems(row), [], `task ${task.id}`);
    assert.is(row.status, TaskStatus.completed, `task ${task.id} (${task.type})`);
    assert.is(row.attempts, 1, `task ${task.id} attempts`);
    assert.equal(row.result, task.type === 'sleep' ? { sleptMs: (task.payload as { ms: number }).ms } : task.payload);
    const starts = linesOf(workers, matches('task started', { taskId: task.id }));
    assert.is(starts.length, 1, `task ${task.id} started ${starts.length} times`);
  }
}

/** The outage and the recovery were each logged once: not once per reconnect attempt, nor once more per channel. */
function assertLoggedOnce(service: ServiceProcess): void {
  const log = brokerOutageLog(service);
  assert.is(log.outages, 1, `${service.name} outage lines:\n${log.lines.join('\n')}`);
  assert.is(log.recoveries, 1, `${service.name} recovery lines:\n${log.lines.join('\n')}`);
}

async function proxiedOutage(ctx: Ctx, how: 'cut' | 'blackhole'): Promise<void> {
  const world = await ChaosWorld.create({
    proxyAmqp: true,
    heartbeatSeconds: HEARTBEAT_SECONDS,
    // A submit caught between the cut and its detection waits this long for a confirm, then answers pending.
    env: { PUBLISH_TIMEOUT_MS: '1000' },
  });
  ctx.worlds.push(world);
  const proxy = world.amqpProxy as NonNullable<typeof world.amqpProxy>;
  const { api, baseUrl } = await world.startApi();
  const worker = await world.startWorker('w1', { WORKER_CONCURRENCY: '4' });

  const before = await submitBefore(baseUrl);
  // The cut must find work in flight: a sleep running in the worker, more waiting behind it.
  await worker.waitForMessage('task started', { taskId: before[0]?.id }, 10_000);

  const cutAt = performance.now();
  if (how === 'cut') proxy.cut();
  else proxy.blackhole();
  await Promise.all([api, worker].map((p) => p.waitForLine(isBrokerOutage, 15_000, 'the outage to be noticed')));
  const detectedMs = since(cutAt);
  await assertBrokerNotReady(baseUrl);
  const during = await submitDuring(baseUrl, 20);

  const healAt = performance.now();
  proxy.heal();
  await Promise.all([api, worker].map((p) => p.waitForMessage('RabbitMQ connection restored', {}, SETTLE_AFTER_HEAL_MS)));
  const reconnectedMs = since(healAt);
  const all = [...before, ...during];
  await eventually(async () => (await world.unfinished(all.map((t) => t.id))) === 0, SETTLE_AFTER_HEAL_MS, 'every task to finish after the heal');
  const settledMs = since(healAt);
  console.log(`  broker ${how}: outage noticed after ${detectedMs} ms, reconnected ${reconnectedMs} ms and all ${all.length} tasks done ${settledMs} ms after the heal`);

  await assertCompletedOnce(world, all, [worker]);
  for (const service of [api, worker]) assertLoggedOnce(service);
  assert.ok(api.alive && worker.alive, 'no process restarted');
  assert.is((await call(baseUrl, 'GET', '/readyz')).status, 200);
}

test('proxy cut: tasks submitted during the outage answer 201 pending; after the heal every task completes exactly once', async (ctx) => {
  await proxiedOutage(ctx, 'cut');
});

test('proxy blackhole (only heartbeats notice): same guarantees, outage and recovery logged once each', async (ctx) => {
  await proxiedOutage(ctx, 'blackhole');
});

test('private RabbitMQ node: tasks submitted during stop_app complete exactly once after start_app', async (ctx) => {
  ctx.node = await RabbitNode.start();
  const world = await ChaosWorld.create({ amqpUrl: ctx.node.amqpUrl, heartbeatSeconds: HEARTBEAT_SECONDS });
  ctx.worlds.push(world);
  const { api, baseUrl } = await world.startApi();
  const worker = await world.startWorker('w1', { WORKER_CONCURRENCY: '4' });

  const before = await submitBefore(baseUrl);
  await worker.waitForMessage('task started', { taskId: before[0]?.id }, 10_000);

  const stoppedAt = performance.now();
  await ctx.node.stopApp();
  await Promise.all([api, worker].map((p) => p.waitForLine(isBrokerOutage, 15_000, 'the outage to be noticed')));
  const detectedMs = since(stoppedAt);
  await assertBrokerNotReady(baseUrl);
  const during = await submitDuring(baseUrl, 20);

  const startAt = performance.now();
  await ctx.node.startApp();
  await Promise.all([api, worker].map((p) => p.waitForMessage('RabbitMQ connection restored', {}, SETTLE_AFTER_HEAL_MS)));
  const reconnectedMs = since(startAt);
  const all = [...before, ...during];
  await eventually(async () => (await world.unfinished(all.map((t) => t.id))) === 0, SETTLE_AFTER_HEAL_MS, 'every task to finish after start_app');
  console.log(`  stop_app: noticed after ${detectedMs} ms; after start_app, reconnected in ${reconnectedMs} ms, all ${all.length} tasks done in ${since(startAt)} ms`);

  await assertCompletedOnce(world, all, [worker]);
  for (const service of [api, worker]) assertLoggedOnce(service);
  assert.ok(api.alive && worker.alive, 'no process restarted');
});

test.run();
