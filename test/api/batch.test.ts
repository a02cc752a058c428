import pg from 'pg';
import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { apiSuite, eventually, request } from '../support/system.ts';

const test = apiSuite('api: batch submit');
const BATCH = '/api/v1/tasks/batch';

const count = async (db: pg.Client, where = 'TRUE', params: unknown[] = []) =>
  Number((await db.query(`SELECT count(*)::int AS n FROM tasks WHERE ${where}`, params)).rows[0].n);

test('201 with every task in the order sent, each stored, published and queued, with its history', async ({ baseUrl, db }) => {
  const tasks = Array.from({ length: 25 }, (_, n) => ({ type: n % 2 ? 'echo' : 'sleep', payload: n % 2 ? { n } : { ms: 1 }, priority: n % 10 }));
  const res = await request(baseUrl, 'POST', BATCH, { tasks });
  assert.is(res.status, 201, res.text);
  assert.equal(res.body.items.map((t: any) => [t.type, t.priority, t.payload]), tasks.map((t) => [t.type, t.priority, t.payload]));
  assert.ok(res.body.items.every((t: any) => t.status === TaskStatus.queued && t.tenant === 'default'), 'queued once RabbitMQ confirmed');
  const ids = res.body.items.map((t: any) => t.id);
  assert.is(new Set(ids).size, 25);
  assert.equal([...ids].sort(), ids, 'ids are UUIDv7 in submission order');
  const { rows } = await db.query('SELECT task_id, array_agg(kind ORDER BY id) AS kinds FROM task_events WHERE task_id = ANY($1) GROUP BY task_id', [ids]);
  assert.is(rows.length, 25);
  for (const row of rows) assert.equal(row.kinds, ['submitted', 'published']);
});

test('all or nothing: one invalid task refuses the batch with 422 naming it by index, and stores nothing', async ({ baseUrl, db }) => {
  const before = await count(db);
  const res = await request(baseUrl, 'POST', BATCH, {
    tasks: [{ type: 'echo' }, { type: 'echo' }, { type: 'sleep', payload: { ms: 'soon' } }, { type: 'nope' }, { type: 'echo', priority: 10 }],
  });
  assert.is(res.status, 422, res.text);
  assert.is(res.headers.get('content-type'), 'application/problem+json');
  const paths = res.body.errors.map((e: any) => e.path);
  assert.ok(paths.some((p: string) => p.startsWith('tasks.2.payload')), JSON.stringify(paths));
  assert.ok(paths.some((p: string) => p === 'tasks.3.type'), JSON.stringify(paths));
  assert.ok(paths.some((p: string) => p === 'tasks.4.priority'), JSON.stringify(paths));
  assert.not.ok(paths.some((p: string) => p.startsWith('tasks.0') || p.startsWith('tasks.1')), 'valid tasks are not reported');
  assert.match(res.body.detail, /^no task was stored/);
  assert.is(await count(db), before);
});

test('the batch itself is bounded and strict: 0 or 1,001 tasks, other fields, a non-object body, the Idempotency-Key header', async ({ baseUrl, db }) => {
  const before = await count(db);
  for (const [body, status] of [
    [{ tasks: [] }, 422],
    [{ tasks: Array.from({ length: 1001 }, () => ({ type: 'echo' })) }, 422],
    [{ tasks: [{ type: 'echo' }], priority: 9 }, 422],
    [[{ type: 'echo' }], 422],
    [{ task: [{ type: 'echo' }] }, 422],
  ] as const) {
    const res = await request(baseUrl, 'POST', BATCH, body);
    assert.is(res.status, status, `${JSON.stringify(body).slice(0, 60)}: ${res.text.slice(0, 200)}`);
  }
  const header = await request(baseUrl, 'POST', BATCH, { tasks: [{ type: 'echo' }] }, { 'idempotency-key': 'k' });
  assert.is(header.status, 400);
  assert.match(header.body.detail, /idempotencyKey per task/);
  const full = await request(baseUrl, 'POST', BATCH, { tasks: Array.from({ length: 1000 }, () => ({ type: 'echo' })) });
  assert.is(full.status, 201, '1,000 tasks is the limit, not over it');
  assert.is(await count(db), before + 1000);
});

test('idempotency keys are honoured per task: against earlier tasks and within the batch', async ({ baseUrl, db }) => {
  const first = await request(baseUrl, 'POST', BATCH, { tasks: [{ type: 'echo', payload: 'a', idempotencyKey: 'batch-a' }] });
  assert.is(first.status, 201);
  const second = await request(baseUrl, 'POST', BATCH, {
    tasks: [
      { type: 'echo', payload: 'changed', idempotencyKey: 'batch-a' },
      { type: 'echo', payload: 'b', idempotencyKey: 'batch-b' },
      { type: 'echo', payload: 'b again', idempotencyKey: 'batch-b' },
      { type: 'echo', payload: 'no key' },
    ],
  });
  assert.is(second.status, 201, second.text);
  const [a, b, bAgain, free] = second.body.items;
  assert.is(a.id, first.body.items[0].id, 'the earlier task');
  assert.is(a.payload, 'a', 'unchanged by the second submit');
  assert.is(bAgain.id, b.id, 'a key repeated in one batch is one task');
  assert.is(b.payload, 'b', 'the first in the batch wins');
  assert.is.not(free.id, b.id);
  assert.is(await count(db, 'idempotency_key = ANY($1)', [['batch-a', 'batch-b']]), 2);
  const single = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'echo', idempotencyKey: 'batch-b' });
  assert.equal([single.status, single.body.id], [200, b.id], 'single submits share the keys');
});

test('a batch runs: 200 echo tasks all complete on their first attempt', async ({ world, baseUrl, db }) => {
  await world.startWorker({ WORKER_CONCURRENCY: '16' });
  const res = await request(baseUrl, 'POST', BATCH, { tasks: Array.from({ length: 200 }, (_, n) => ({ type: 'echo', payload: { n } })) });
  assert.is(res.status, 201);
  const ids = res.body.items.map((t: any) => t.id);
  await eventually(async () => (await count(db, "id = ANY($1) AND status = 'completed'", [ids])) === 200, 20_000, 'the batch to complete');
  const { rows } = await db.query('SELECT result, attempts FROM tasks WHERE id = ANY($1) ORDER BY id', [ids]);
  assert.equal(rows.map((r) => [r.result.n, r.attempts]), ids.map((_: string, n: number) => [n, 1]));
});

test('with RabbitMQ unreachable the batch is still accepted, pending, for the relay', async ({ world, db }) => {
  const api = await world.startApi({ AMQP_URL: 'amqp://guest:guest@127.0.0.1:1' });
  const res = await request(api.baseUrl, 'POST', BATCH, { tasks: [{ type: 'echo' }, { type: 'echo', runAt: '2999-01-01T00:00:00Z' }] });
  assert.is(res.status, 201, res.text);
  assert.equal(res.body.items.map((t: any) => t.status), [TaskStatus.pending, TaskStatus.pending]);
  assert.is(await count(db, 'id = ANY($1)', [res.body.items.map((t: any) => t.id)]), 2);
});

test.run();
