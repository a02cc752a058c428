import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { controlExchange } from '../../services/core/src/queue/control.ts';
import { deleteExchanges, deleteQueues, dropDatabase, freshDatabaseUrl, freshQueueName } from '../support/isolation.ts';
import { ENTRY_POINTS, isRunning, killAll, type LogLine, matches, type ServiceProcess, spawnService } from '../support/processes.ts';
import { services } from '../support/services.ts';
import { eventually, request } from '../support/system.ts';

type Ctx = { databaseUrl: string; amqpUrl: string; queues: string[] };
const test = suite<Ctx>('e2e: processes');

const TASKS = '/api/v1/tasks';
// The first process to start creates and migrates the suite's database.
const START_MS = 20_000;
const STOP_MS = 15_000;

test.before(async (ctx) => {
  ctx.databaseUrl = await freshDatabaseUrl();
  ctx.amqpUrl = (await services()).amqpUrl;
  ctx.queues = [];
});

test.after(async (ctx) => {
  await killAll();
  await dropDatabase(ctx.databaseUrl);
  await deleteQueues(ctx.queues);
  await deleteExchanges(ctx.queues.map(controlExchange));
});

/**
 * The environment of one test's processes. The suite shares a database (tests only look at their own task ids),
 * but each test gets its own queue, so that a process a failed test left running cannot take the next test's tasks.
 */
function testEnv(ctx: Ctx): Record<string, string> {
  const queue = freshQueueName();
  ctx.queues.push(queue);
  return {
    DATABASE_URL: ctx.databaseUrl,
    AMQP_URL: ctx.amqpUrl,
    TASKS_QUEUE: queue,
    HOST: '127.0.0.1',
    AUTH_MODE: 'none',
    PORT: '0',
    // Workers serve probes; a fixed port would be taken by whichever process of any test run got there first.
    METRICS_PORT: '0',
    LOG_LEVEL: 'info',
  };
}

const baseUrlOf = (listening: LogLine) => `http://127.0.0.1:${String(listening['port'])}`;

/** `npm run api`, returned once it listens and has its publisher channel (tasks sent earlier would stay `pending`). */
async function startApi(env: Record<string, string>): Promise<{ api: ServiceProcess; baseUrl: string }> {
  const api = spawnService('api', ENTRY_POINTS.api, env);
  const listening = await api.waitForMessage('listening', {}, START_MS);
  await api.waitForMessage('connected to RabbitMQ', {}, START_MS);
  return { api, baseUrl: baseUrlOf(listening) };
}

/** `npm run worker`, returned once it consumes the queue. */
async function startWorker(env: Record<string, string>, overrides: Record<string, string>): Promise<ServiceProcess> {
  const worker = spawnService(`worker ${overrides['WORKER_ID'] ?? ''}`, ENTRY_POINTS.worker, { ...env, ...overrides });
  await worker.waitForMessage('consuming', {}, START_MS);
  return worker;
}

async function submit(baseUrl: string, ms: number): Promise<string> {
  const res = await request(baseUrl, 'POST', TASKS, { type: 'sleep', payload: { ms } });
  assert.is(res.status, 201, res.text);
  return res.body.id as string;
}

async function getTask(baseUrl: string, id: string) {
  const res = await request(baseUrl, 'GET', `${TASKS}/${id}`);
  assert.is(res.status, 200, res.text);
  return res.body;
}

async function stopCleanly(service: ServiceProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  assert.equal(await service.stop(signal, STOP_MS), { code: 0, signal: null }, `${service.name} exit\n${service.tail()}`);
}

async function unusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A TCP relay from `port` to RabbitMQ: makes an "unreachable" broker address start answering. */
async function relayToRabbitMq(port: number, amqpUrl: string): Promise<{ close: () => Promise<void> }> {
  const target = new URL(amqpUrl);
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect({ host: target.hostname, port: Number(target.port || 5672) });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

async function launcherRoundTrip(ctx: Ctx, signal: NodeJS.Signals): Promise<void> {
  const launcher = spawnService('npm start', ENTRY_POINTS.launcher, testEnv(ctx));
  const listening = await launcher.waitForMessage('listening', { service: 'api' }, START_MS);
  await launcher.waitForMessage('connected to RabbitMQ', { service: 'api' }, START_MS);
  await launcher.waitForMessage('consuming', { service: 'worker' }, START_MS);
  const children = launcher.adoptDescendants();
  assert.is(children.length, 2, 'the launcher runs one API and one worker');
  const baseUrl = baseUrlOf(listening);

  // Exactly what `curl -d '…' URL` sends.
  const created = await request(baseUrl, 'POST', TASKS, '{"type":"sleep","payload":{"ms":500}}', {
    'content-type': 'application/x-www-form-urlencoded',
  });
  assert.is(created.status, 201, created.text);
  const id = created.body.id as string;

  const done = await eventually(
    async () => {
      const task = await getTask(baseUrl, id);
      return task.status === TaskStatus.completed && task;
    },
    10_000,
    `task ${id} to complete`,
  );
  assert.equal(done.result, { sleptMs: 500 });
  const tookMs = Date.parse(done.finishedAt) - Date.parse(done.createdAt);
  assert.ok(tookMs >= 500 && tookMs < 1_500, `submitted to finished took ${tookMs} ms; the sleep is 500 ms`);

  // 'task completed' is written just after the row is stored, so it may still be on its way.
  await launcher.waitForMessage('task completed', { service: 'worker', taskId: id }, 5_000);
  const stages = launcher.find((line) => line['taskId'] === id).map((line) => [line.service, line.msg]);
  assert.equal(stages, [
    ['api', 'task submitted'],
    ['worker', 'task started'],
    ['worker', 'task completed'],
  ]);

  // The launcher exits 0 only when both children did.
  assert.equal(await launcher.stop(signal, STOP_MS), { code: 0, signal: null }, launcher.tail());
  for (const service of ['api', 'worker']) {
    assert.is(launcher.find(matches('stopping', { service, signal })).length, 1, `${service} got ${signal} once`);
    assert.is(launcher.find(matches('stopped', { service })).length, 1, `${service} stopped cleanly`);
  }
  for (const pid of children) assert.not.ok(isRunning(pid), `child ${pid} still running`);
}

test('npm start: API and worker run a curl -d task in time, log each stage once, and stop together on SIGTERM', async (ctx) => {
  await launcherRoundTrip(ctx, 'SIGTERM');
});

test('npm start: Ctrl-C (SIGINT) stops both services cleanly', async (ctx) => {
  await launcherRoundTrip(ctx, 'SIGINT');
});

test('npm run api with two npm run worker processes: 20 tasks all complete, spread over both workers', async (ctx) => {
  const env = testEnv(ctx);
  const { api, baseUrl } = await startApi(env);
  const workers = await Promise.all(['w1', 'w2'].map((id) => startWorker(env, { WORKER_ID: id })));

  const ids = await Promise.all(Array.from({ length: 20 }, () => submit(baseUrl, 200)));
  const ours = (line: LogLine) => ids.includes(line['taskId'] as string);
  await eventually(
    async () => workers.flatMap((w) => w.find((l) => l.msg === 'task completed' && ours(l))).length === ids.length,
    15_000,
    'every task to be logged completed',
  );

  const list = await request(baseUrl, 'GET', `${TASKS}?type=sleep&limit=500`);
  const byId = new Map((list.body.items as { id: string; status: string; result: unknown }[]).map((t) => [t.id, t]));
  for (const id of ids) {
    assert.is(byId.get(id)?.status, TaskStatus.completed, `task ${id}`);
    assert.equal(byId.get(id)?.result, { sleptMs: 200 });
  }

  const started = workers.map((w) => w.find((l) => l.msg === 'task started' && ours(l)));
  assert.is(new Set(started.flat().map((l) => l['taskId'])).size, ids.length, 'every task started');
  assert.is(started.flat().length, ids.length, 'no task started twice');
  for (const [index, lines] of started.entries()) {
    assert.ok(lines.length > 0, `worker w${index + 1} ran none of the tasks`);
    assert.ok(lines.every((l) => l['workerId'] === `w${index + 1}`), `worker w${index + 1} logs under its own WORKER_ID`);
  }

  await Promise.all([...workers, api].map((p) => stopCleanly(p)));
});

test('worker SIGTERM past the shutdown timeout hands running tasks back and publishes them; the next worker claims them', async (ctx) => {
  const env = testEnv(ctx);
  const { api, baseUrl } = await startApi(env);
  const settings = { WORKER_CONCURRENCY: '2', SHUTDOWN_TIMEOUT_MS: '300' };
  const first = await startWorker(env, { ...settings, WORKER_ID: 'first' });

  const ids = await Promise.all([submit(baseUrl, 30_000), submit(baseUrl, 30_000)]);
  await Promise.all(ids.map((taskId) => first.waitForMessage('task started', { taskId }, 10_000)));

  // Far below the 30 s the tasks would take: the worker must give them up, not wait for them.
  assert.equal(await first.stop('SIGTERM', 5_000), { code: 0, signal: null }, first.tail());
  for (const taskId of ids) {
    assert.is(first.find(matches('task handed back', { taskId })).length, 1, `task ${taskId} handed back once`);
    assert.is(first.find(matches('task stored but not published; the relay will publish it', { taskId })).length, 0, 'published before the worker exited');
    // Back to pending without counting the attempt, then published again by the worker itself: queued.
    const task = await getTask(baseUrl, taskId);
    assert.is(task.status, TaskStatus.queued);
    assert.is(task.attempts, 0, 'a handed-back attempt does not count');
    assert.is(task.leaseExpiresAt, null);
    assert.equal(task.errors, []);
  }

  const second = await startWorker(env, { ...settings, WORKER_ID: 'second' });
  await Promise.all(ids.map((taskId) => second.waitForMessage('task started', { taskId, attempt: 1 }, 10_000)));
  for (const taskId of ids) {
    const task = await getTask(baseUrl, taskId);
    assert.is(task.status, TaskStatus.in_progress);
    assert.is(task.attempts, 1);
  }

  await Promise.all([second, api].map((p) => stopCleanly(p)));
});

test('worker SIGTERM within the shutdown timeout lets the running task complete, then exits 0', async (ctx) => {
  const env = testEnv(ctx);
  const { api, baseUrl } = await startApi(env);
  const worker = await startWorker(env, { WORKER_ID: 'patient', SHUTDOWN_TIMEOUT_MS: '5000' });

  const taskId = await submit(baseUrl, 500);
  await worker.waitForMessage('task started', { taskId }, 10_000);
  await stopCleanly(worker);

  const position = (msg: string, fields: Record<string, unknown> = {}) => worker.lines.findIndex(matches(msg, fields));
  const stopping = position('stopping', { signal: 'SIGTERM' });
  const completed = position('task completed', { taskId });
  assert.ok(completed >= 0, 'the worker completed the task itself');
  assert.ok(stopping >= 0 && stopping < completed, 'the signal arrived while the task was running');
  assert.ok(position('stopped') > completed, 'the process stopped after the task completed');
  assert.is(worker.find(matches('task handed back')).length, 0);

  const task = await getTask(baseUrl, taskId);
  assert.is(task.status, TaskStatus.completed);
  assert.equal(task.result, { sleptMs: 500 });
  assert.is(task.attempts, 1);

  await stopCleanly(api);
});

test('invalid configuration: every entry point exits non-zero and names all bad variables in one message', async (ctx) => {
  const env = { ...testEnv(ctx), PORT: 'abc', WORKER_CONCURRENCY: '0' };
  const processes = Object.entries(ENTRY_POINTS).map(([name, file]) => spawnService(name, file, env));
  for (const service of processes) {
    const exit = await service.waitForExit(STOP_MS);
    assert.ok(exit.code !== null && exit.code !== 0, `${service.name} exited with ${JSON.stringify(exit)}`);
    const both = service.output.some((line) => /\bPORT\b/.test(line) && /\bWORKER_CONCURRENCY\b/.test(line));
    assert.ok(both, `${service.name} reports PORT and WORKER_CONCURRENCY together\n${service.tail()}`);
    assert.is(service.find(matches('listening')).length, 0, `${service.name} started despite the bad configuration`);
  }
});

test('API without RabbitMQ: accepts tasks as pending, is not ready, logs the outage once while it retries, then relays them', async (ctx) => {
  const port = await unusedPort();
  const env = { ...testEnv(ctx), AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}` };
  const api = spawnService('api without RabbitMQ', ENTRY_POINTS.api, env);
  const baseUrl = baseUrlOf(await api.waitForMessage('listening', {}, START_MS));
  await api.waitForMessage('RabbitMQ not responding', {}, 10_000);

  const created = await request(baseUrl, 'POST', TASKS, { type: 'sleep', payload: { ms: 1 } });
  assert.is(created.status, 201, created.text);
  assert.is(created.body.status, TaskStatus.pending);
  assert.is((await getTask(baseUrl, created.body.id)).status, TaskStatus.pending);

  const outageLines = () => api.find(matches('RabbitMQ not responding')).length;
  const assertNotReady = async () => {
    const ready = await request(baseUrl, 'GET', '/readyz');
    assert.is(ready.status, 503);
    assert.match(ready.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.match(ready.body.detail, /RabbitMQ/);
    assert.equal(ready.body.checks, { database: 'up', broker: 'down' });
  };
  // Nothing announces "still retrying", so watch for a while: reconnects come 0.2, 0.4, 0.8, 1.6 s apart.
  const until = Date.now() + 3_500;
  while (Date.now() < until) {
    await assertNotReady();
    assert.is(outageLines(), 1, 'the outage is logged once, not per retry');
    await delay(250);
  }

  // Proves the API kept retrying all along, and that it says so once when the broker comes back.
  const relay = await relayToRabbitMq(port, ctx.amqpUrl);
  try {
    await api.waitForMessage('RabbitMQ connection restored', {}, 15_000);
    assert.is(outageLines(), 1);
    // The outbox relay runs at once on every reconnect: the task accepted during the outage is published.
    await eventually(async () => (await getTask(baseUrl, created.body.id)).status === TaskStatus.queued, 5_000, 'the relay to publish the stored task');
    assert.ok(api.find(matches('relayed pending tasks')).length > 0);
    assert.not.ok(api.output.some((line) => line.includes(':guest@')), 'the AMQP password reached the log');
    const ready = await request(baseUrl, 'GET', '/readyz');
    assert.is(ready.status, 200, ready.text);
    await stopCleanly(api);
  } finally {
    await relay.close();
  }
});

test.run();
