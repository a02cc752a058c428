import amqplib from 'amqplib';
import pg from 'pg';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { controlExchange } from '../../services/core/src/queue/control.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { queueDepth } from '../support/isolation.ts';
import { eventually, request, TestWorld } from '../support/system.ts';

type Api = Awaited<ReturnType<TestWorld['startApi']>>;
type Ctx = { world: TestWorld; baseUrl: string; attempts: Api['attempts'] };
const PROBLEM = 'application/problem+json';
const test = suite<Ctx>('api: tasks');

test.before(async (ctx) => {
  ctx.world = await TestWorld.create();
  const api = await ctx.world.startApi();
  ctx.baseUrl = api.baseUrl;
  ctx.attempts = api.attempts;
  await eventually(async () => api.broker.connected, 10_000, 'the API to connect to RabbitMQ');
});

test.after(async (ctx) => {
  await ctx.world.teardown();
});

async function countRows(world: TestWorld): Promise<number> {
  const client = new pg.Client({ connectionString: world.env['DATABASE_URL'] });
  await client.connect();
  try {
    return Number((await client.query('SELECT count(*) AS n FROM tasks')).rows[0].n);
  } finally {
    await client.end();
  }
}

function assertProblem(res: { status: number; headers: Headers; body: any }, status: number, detail: RegExp) {
  assert.is(res.status, status);
  assert.ok(res.headers.get('content-type')?.startsWith(PROBLEM), `content-type ${res.headers.get('content-type')}`);
  assert.is(res.body.status, status);
  assert.type(res.body.type, 'string');
  assert.type(res.body.title, 'string');
  assert.type(res.body.instance, 'string');
  assert.match(res.body.detail, detail);
}

test('POST stores and publishes a task: 201, Location, every default', async ({ baseUrl }) => {
  const res = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'echo', payload: { hello: 'world' } });
  assert.is(res.status, 201);
  assert.is(res.headers.get('location'), `/api/v1/tasks/${res.body.id}`);
  // UUIDv7: version nibble 7, RFC 4122 variant.
  assert.match(res.body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const { id, createdAt, updatedAt, runAt, ...rest } = res.body;
  assert.equal(rest, {
    tenant: 'default',
    type: 'echo',
    payload: { hello: 'world' },
    priority: 5,
    status: TaskStatus.queued,
    attempts: 0,
    maxAttempts: 1,
    result: null,
    error: null,
    errors: [],
    backoff: { type: 'exponential', delayMs: 1_000, maxDelayMs: 300_000, jitter: true },
    timeoutMs: null,
    idempotencyKey: null,
    retentionMs: null,
    cancelRequested: false,
    workerId: null,
    leaseExpiresAt: null,
    startedAt: null,
    finishedAt: null,
  });
  assert.match(createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.match(updatedAt, /Z$/);
  assert.is(runAt, createdAt, 'due at once');
  const read = await request(baseUrl, 'GET', `/api/v1/tasks/${id}`);
  assert.is(read.status, 200);
  assert.equal(read.body, res.body);
});

test('POST takes payload, priority and maxAttempts; payload defaults to {}', async ({ baseUrl }) => {
  const full = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'sleep', payload: { ms: 10 }, priority: 9, maxAttempts: 3 });
  assert.is(full.status, 201);
  assert.is(full.body.priority, 9);
  assert.is(full.body.maxAttempts, 3);
  assert.equal(full.body.payload, { ms: 10 });
  const bare = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'echo', priority: 0 });
  assert.is(bare.status, 201);
  assert.equal(bare.body.payload, {});
  assert.is(bare.body.priority, 0);
  for (const payload of [[1, 2], 'text', 42, null, true]) {
    const res = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'echo', payload });
    assert.is(res.status, 201, `payload ${JSON.stringify(payload)}`);
    assert.equal(res.body.payload, payload);
  }
});

test('POST takes backoff, timeoutMs, retentionMs and runAt; a task due later waits, pending and unpublished', async ({ world, baseUrl }) => {
  const queue = world.env['TASKS_QUEUE'] as string;
  const depth = await queueDepth(queue);
  const runAt = new Date(Date.now() + 3_600_000);
  const res = await request(baseUrl, 'POST', '/api/v1/tasks', {
    type: 'echo',
    backoff: { type: 'fixed', delayMs: 500 },
    timeoutMs: 2_000,
    retentionMs: 0,
    runAt: runAt.toISOString(),
  });
  assert.is(res.status, 201, res.text);
  assert.equal(res.body.backoff, { type: 'fixed', delayMs: 500, maxDelayMs: 300_000, jitter: true });
  assert.is(res.body.timeoutMs, 2_000);
  assert.is(res.body.retentionMs, 0);
  assert.is(res.body.runAt, runAt.toISOString());
  assert.is(res.body.status, TaskStatus.pending);
  assert.is(await queueDepth(queue), depth, 'a delayed task waits in PostgreSQL, not in RabbitMQ');
  assert.equal((await request(baseUrl, 'GET', `/api/v1/tasks/${res.body.id}`)).body, res.body);
  assert.is((await request(baseUrl, 'DELETE', `/api/v1/tasks/${res.body.id}`)).status, 204);
});

test('POST reads the body as JSON when curl -d labels it form-urlencoded or nothing labels it', async ({ baseUrl }) => {
  const body = '{"type":"sleep","payload":{"ms":5}}';
  const curl = await request(baseUrl, 'POST', '/api/v1/tasks', body, { 'content-type': 'application/x-www-form-urlencoded' });
  assert.is(curl.status, 201);
  assert.equal(curl.body.payload, { ms: 5 });
  const unlabelled = await fetch(`${baseUrl}/api/v1/tasks`, { method: 'POST', body: Buffer.from(body) });
  assert.is(unlabelled.status, 201);
});

test('POST rejects an unknown type with 422 listing the known types, and stores nothing', async ({ baseUrl, world }) => {
  const before = await countRows(world);
  const res = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'transcode' });
  assertProblem(res, 422, /unknown task type 'transcode'.*echo, fail, sleep/);
  assert.equal(res.body.errors[0].path, 'type');
  const missing = await request(baseUrl, 'POST', '/api/v1/tasks', { payload: {} });
  assertProblem(missing, 422, /type/);
  assert.is(await countRows(world), before);
});

test('POST rejects a payload that does not fit its type with 422 naming the field', async ({ baseUrl, world }) => {
  const before = await countRows(world);
  for (const payload of [{}, { ms: -1 }, { ms: 600_001 }, { ms: 1.5 }, { ms: '10' }, { ms: 10, extra: true }]) {
    const res = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'sleep', payload });
    assertProblem(res, 422, /payload/);
    assert.ok(res.body.errors.some((e: { path: string }) => e.path.startsWith('payload')), JSON.stringify(res.body.errors));
  }
  const fail = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'fail', payload: { message: 7 } });
  assertProblem(fail, 422, /payload\.message/);
  assert.is(await countRows(world), before);
});

test('POST rejects bad priority, maxAttempts, reliability settings and unknown fields with 422', async ({ baseUrl, world }) => {
  const before = await countRows(world);
  const cases: [unknown, RegExp][] = [
    [{ type: 'echo', priority: 10 }, /priority/],
    [{ type: 'echo', priority: -1 }, /priority/],
    [{ type: 'echo', priority: 4.5 }, /priority/],
    [{ type: 'echo', priority: 'high' }, /priority/],
    [{ type: 'echo', maxAttempts: 0 }, /maxAttempts/],
    [{ type: 'echo', maxAttempts: 2.5 }, /maxAttempts/],
    [{ type: 'echo', prority: 3 }, /prority/],
    [{ type: 'echo', backoff: { delayMs: 2_000, maxDelayMs: 1_000 } }, /backoff\.delayMs/],
    [{ type: 'echo', runAt: 'tomorrow' }, /runAt/],
    [{ type: 'echo', timeoutMs: 0 }, /timeoutMs/],
    [{ type: 'echo', retentionMs: -1 }, /retentionMs/],
    [{ type: 'echo', idempotencyKey: '' }, /idempotencyKey/],
    [[{ type: 'echo' }], /object/],
  ];
  for (const [body, detail] of cases) {
    const res = await request(baseUrl, 'POST', '/api/v1/tasks', body);
    assertProblem(res, 422, detail);
  }
  assert.is(await countRows(world), before);
});

test('POST answers 400 for malformed JSON, 415 for other media types, 413 past 1 MiB', async ({ baseUrl, world }) => {
  const before = await countRows(world);
  assertProblem(await request(baseUrl, 'POST', '/api/v1/tasks', '{"type": "echo",'), 400, /./);
  assertProblem(await request(baseUrl, 'POST', '/api/v1/tasks', '"echo"'), 400, /./);
  assertProblem(await request(baseUrl, 'POST', '/api/v1/tasks', 'type=echo', { 'content-type': 'text/plain' }), 415, /application\/json/);
  const huge = JSON.stringify({ type: 'echo', payload: { blob: 'x'.repeat(1024 * 1024 + 10) } });
  assertProblem(await request(baseUrl, 'POST', '/api/v1/tasks', huge), 413, /./);
  assert.is(await countRows(world), before);
});

test('GET /{id}: 404 problem for an unknown id, 400 for a malformed one', async ({ baseUrl }) => {
  assertProblem(await request(baseUrl, 'GET', '/api/v1/tasks/01900000-0000-7000-8000-000000000000'), 404, /does not exist/);
  assertProblem(await request(baseUrl, 'GET', '/api/v1/tasks/not-a-uuid'), 400, /not a task id/);
});

test('GET lists newest first with filters and keyset pagination', async ({ baseUrl }) => {
  const created: string[] = [];
  for (let i = 0; i < 7; i++) {
    const res = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'sleep', payload: { ms: i } });
    created.push(res.body.id);
  }
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const query: string = `?type=sleep&limit=3${cursor ? `&cursor=${cursor}` : ''}`;
    const page = await request(baseUrl, 'GET', `/api/v1/tasks${query}`);
    assert.is(page.status, 200);
    assert.ok(page.body.items.length <= 3);
    seen.push(...page.body.items.map((t: { id: string }) => t.id));
    cursor = page.body.nextCursor;
    pages++;
  } while (cursor && pages < 10);
  const sleeps = seen.filter((id) => created.includes(id));
  assert.equal(sleeps, [...created].reverse(), 'every sleep task once, newest first');
  assert.is(new Set(seen).size, seen.length, 'no task appears on two pages');
  const echoes = await request(baseUrl, 'GET', '/api/v1/tasks?type=echo&limit=500');
  assert.ok(echoes.body.items.length > 0);
  assert.ok(echoes.body.items.every((t: { type: string }) => t.type === 'echo'));
  const queued = await request(baseUrl, 'GET', '/api/v1/tasks?status=queued&limit=500');
  assert.ok(queued.body.items.every((t: { status: string }) => t.status === 'queued'));
  assert.ok(queued.body.items.some((t: { id: string }) => t.id === created[0]));
  const none = await request(baseUrl, 'GET', '/api/v1/tasks?status=cancelled');
  assert.equal(none.body, { items: [], nextCursor: null });
});

test('GET list answers 400 for a bad status, limit or cursor', async ({ baseUrl }) => {
  for (const query of ['status=done', 'limit=0', 'limit=501', 'limit=ten', 'cursor=bm90LWEtdXVpZA', 'status=queued&status=failed', 'sort=id']) {
    assertProblem(await request(baseUrl, 'GET', `/api/v1/tasks?${query}`), 400, /./);
  }
});

test('DELETE of a running task removes it: 204, its worker is told to stop, its writes are refused', async ({ world, baseUrl, attempts }) => {
  const res = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'sleep', payload: { ms: 1 }, priority: 0 });
  // No worker runs yet in this file: claim the task as one would.
  const claimed = await attempts.claimTask(res.body.id, 'test-worker', 30_000);
  assert.is(claimed?.status, 'in_progress');
  const cancels = await listenForControl(world);
  try {
    const del = await request(baseUrl, 'DELETE', `/api/v1/tasks/${res.body.id}`);
    assert.is(del.status, 204, del.text);
    assert.is(del.text, '');
    assert.equal(await cancels.next(), { action: 'cancel', taskId: res.body.id });
  } finally {
    await cancels.close();
  }
  assertProblem(await request(baseUrl, 'GET', `/api/v1/tasks/${res.body.id}`), 404, /does not exist/);
  assert.is(await attempts.completeTask(res.body.id, claimed?.leaseToken as string, 'too late'), false, 'the worker cannot bring it back');
  assertProblem(await request(baseUrl, 'DELETE', '/api/v1/tasks/123'), 400, /not a task id/);
});

test('DELETE removes a queued task: 204, then 404; its message is dropped by the worker', async ({ baseUrl, world }) => {
  const res = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'echo', payload: { n: 1 } });
  const del = await request(baseUrl, 'DELETE', `/api/v1/tasks/${res.body.id}`);
  assert.is(del.status, 204);
  assert.is(del.text, '');
  assertProblem(await request(baseUrl, 'GET', `/api/v1/tasks/${res.body.id}`), 404, /does not exist/);
  assertProblem(await request(baseUrl, 'DELETE', `/api/v1/tasks/${res.body.id}`), 404, /does not exist/);
  // A worker now drains the queue: the deleted task must not come back to life.
  const after = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'echo', payload: { n: 2 } });
  await world.startWorker();
  await eventually(async () => (await request(baseUrl, 'GET', `/api/v1/tasks/${after.body.id}`)).body.status === 'completed', 10_000, 'the later task to complete');
  assert.is((await request(baseUrl, 'GET', `/api/v1/tasks/${res.body.id}`)).status, 404);
});

/** Listens on the control exchange as a worker does, and hands over each message as it arrives. */
async function listenForControl(world: TestWorld) {
  const connection = await amqplib.connect(world.env['AMQP_URL'] as string);
  const channel = await connection.createChannel();
  const exchange = controlExchange(world.env['TASKS_QUEUE'] as string);
  await channel.assertExchange(exchange, 'fanout', { durable: true });
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, exchange, '');
  const arrived: unknown[] = [];
  const waiting: ((message: unknown) => void)[] = [];
  await channel.consume(queue, (raw) => {
    if (!raw) return;
    const message: unknown = JSON.parse(raw.content.toString());
    const waiter = waiting.shift();
    if (waiter) waiter(message);
    else arrived.push(message);
  }, { noAck: true });
  return {
    next: (timeoutMs = 5_000): Promise<unknown> => {
      if (arrived.length > 0) return Promise.resolve(arrived.shift());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no control message within ${timeoutMs} ms`)), timeoutMs);
        waiting.push((message) => {
          clearTimeout(timer);
          resolve(message);
        });
      });
    },
    close: () => connection.close(),
  };
}

test('unknown routes are 404 and wrong methods 405 with Allow, as problems', async ({ baseUrl }) => {
  assertProblem(await request(baseUrl, 'GET', '/api/v2/tasks'), 404, /no route/);
  const put = await request(baseUrl, 'PUT', '/api/v1/tasks', {});
  assertProblem(put, 405, /PUT is not allowed/);
  assert.match(put.headers.get('allow') ?? '', /GET/);
  assert.match(put.headers.get('allow') ?? '', /POST/);
});

test('X-Request-Id is echoed when given and generated otherwise', async ({ baseUrl }) => {
  const given = await request(baseUrl, 'GET', '/healthz', undefined, { 'x-request-id': 'abc-123' });
  assert.is(given.headers.get('x-request-id'), 'abc-123');
  const generated = await request(baseUrl, 'GET', '/healthz');
  assert.match(generated.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
});

test.run();
