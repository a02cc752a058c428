import * as assert from 'uvu/assert';
import { newId } from '../../services/core/src/ids.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { queueDepth } from '../support/isolation.ts';
import { apiSuite, eventually, request } from '../support/system.ts';
import { allCompleted, getTask, publishRaw, settled, startOrder, submit } from './helpers.ts';

const ms = (iso: string | null) => Date.parse(iso ?? '');

const outcomes = apiSuite('worker: task outcomes');

outcomes.before(async ({ world }) => {
  await world.startWorker({ WORKER_CONCURRENCY: '1' });
});

outcomes('an echo task completes with its payload as result, in one attempt', async ({ baseUrl }) => {
  const payload = { hello: 'world', n: [1, 2, 3], nested: { ok: true } };
  const { id } = await submit(baseUrl, { type: 'echo', payload });
  const task = await settled(baseUrl, id);
  assert.is(task.status, TaskStatus.completed);
  assert.equal(task.result, payload);
  assert.is(task.attempts, 1);
  assert.is(task.error, null);
  assert.ok(task.startedAt && task.finishedAt, 'startedAt and finishedAt are set');
  assert.ok(ms(task.startedAt) <= ms(task.finishedAt), 'started before it finished');
});

outcomes('a sleep task completes after sleeping at least as long as asked', async ({ baseUrl }) => {
  const { id } = await submit(baseUrl, { type: 'sleep', payload: { ms: 200 } });
  const task = await settled(baseUrl, id);
  assert.is(task.status, TaskStatus.completed);
  assert.equal(task.result, { sleptMs: 200 });
  assert.is(task.attempts, 1);
  const took = ms(task.finishedAt) - ms(task.startedAt);
  assert.ok(took >= 200, `finishedAt - startedAt was ${took} ms`);
});

outcomes('a failing task ends failed with its error, and the worker goes on with the next task', async ({ baseUrl }) => {
  const before = Date.now();
  const { id } = await submit(baseUrl, { type: 'fail', payload: { message: 'boom' } });
  const failed = await settled(baseUrl, id);
  assert.is(failed.status, TaskStatus.failed);
  assert.equal({ ...failed.error, at: undefined }, { message: 'boom', attempt: 1, at: undefined });
  assert.ok(ms(failed.error?.at ?? null) >= before && ms(failed.error?.at ?? null) <= ms(failed.finishedAt), `error.at ${failed.error?.at}`);
  assert.equal(failed.errors, [failed.error]);
  assert.is(failed.result, null);
  assert.is(failed.attempts, 1);
  assert.ok(failed.finishedAt, 'finishedAt is set');
  assert.is(failed.leaseExpiresAt, null, 'the lease is released');
  assert.ok(failed.workerId, 'the worker that ran it is recorded');

  const next = await submit(baseUrl, { type: 'echo', payload: 'after the failure' });
  const done = await settled(baseUrl, next.id);
  assert.is(done.status, TaskStatus.completed);
  assert.is(done.result, 'after the failure');
});

outcomes('a failing task is retried after its backoff until maxAttempts, keeping every attempt\'s error', async ({ baseUrl }) => {
  const DELAY_MS = 300;
  const { id } = await submit(baseUrl, {
    type: 'fail',
    payload: { message: 'boom' },
    maxAttempts: 3,
    backoff: { type: 'fixed', delayMs: DELAY_MS, maxDelayMs: DELAY_MS, jitter: false },
  });
  const task = await settled(baseUrl, id);
  assert.is(task.status, TaskStatus.failed);
  assert.is(task.attempts, 3);
  assert.equal(task.errors.map((e) => [e.message, e.attempt]), [['boom', 1], ['boom', 2], ['boom', 3]]);
  assert.equal(task.error, task.errors[2]);
  assert.is(task.result, null);
  // Each attempt fails at once, so the time between failures is the wait before the retry.
  for (let i = 1; i < 3; i++) {
    const gap = ms(task.errors[i]?.at ?? null) - ms(task.errors[i - 1]?.at ?? null);
    assert.ok(gap >= DELAY_MS, `attempt ${i + 1} ran ${gap} ms after attempt ${i} failed; the backoff is ${DELAY_MS} ms`);
  }
});

outcomes('a task no handler exists for fails at once, whatever attempts are left', async ({ world, baseUrl, queue, db }) => {
  // As a row written by a newer API whose type this worker does not know; the API itself refuses unknown types.
  const id = newId();
  await db.query(
    `INSERT INTO tasks (id, type, payload, priority, max_attempts, backoff) VALUES ($1, 'retired-type', '{}', 5, 5, '{"type":"fixed","delayMs":0,"maxDelayMs":0,"jitter":false}')`,
    [id],
  );
  await publishRaw(world.env['AMQP_URL'] as string, queue, { taskId: id, type: 'retired-type', priority: 5 });
  const task = await settled(baseUrl, id);
  assert.is(task.status, TaskStatus.failed);
  assert.is(task.attempts, 1, 'a permanent error is not retried');
  assert.match(task.error?.message ?? '', "no handler for task type 'retired-type'");
});

outcomes.run();

const messages = apiSuite('worker: messages without a runnable task');

messages('a message whose task was deleted is acked and skipped', async ({ world, baseUrl, queue }) => {
  // No worker yet: the message waits in the queue while its task is deleted.
  const gone = await submit(baseUrl, { type: 'echo', payload: 'deleted' });
  assert.is((await request(baseUrl, 'DELETE', `/api/v1/tasks/${gone.id}`)).status, 204);
  // Same priority, so it is delivered after the deleted one; with one delivery at a time it can only
  // start once the deleted one's message was settled.
  const next = await submit(baseUrl, { type: 'echo', payload: 'next' });
  assert.is(await queueDepth(queue), 2);

  const worker = await world.startWorker({ WORKER_CONCURRENCY: '1' });
  assert.is((await settled(baseUrl, next.id)).status, TaskStatus.completed);
  await worker.lifecycle.stop();

  // A message left unacked would have gone back to the queue when the worker closed its channel.
  await eventually(async () => (await queueDepth(queue)) === 0, 5_000, 'the queue to be empty');
  assert.is((await request(baseUrl, 'GET', `/api/v1/tasks/${gone.id}`)).status, 404);
});

messages('a duplicate message runs its task exactly once', async ({ world, baseUrl, queue }) => {
  const task = await submit(baseUrl, { type: 'sleep', payload: { ms: 300 } });
  assert.is(task.status, TaskStatus.queued);
  await publishRaw(world.env['AMQP_URL'] as string, queue, { taskId: task.id, type: task.type, priority: task.priority });
  assert.is(await queueDepth(queue), 2);

  // Two at a time, so that both copies are delivered together and only the claim can keep them apart.
  const worker = await world.startWorker({ WORKER_CONCURRENCY: '2' });
  const done = await settled(baseUrl, task.id);
  assert.is(done.status, TaskStatus.completed);
  assert.equal(done.result, { sleptMs: 300 });
  await worker.lifecycle.stop();

  assert.is((await getTask(baseUrl, task.id)).attempts, 1);
  await eventually(async () => (await queueDepth(queue)) === 0, 5_000, 'both copies to be acked');
});

messages.run();

const priorities = apiSuite('worker: priorities');

priorities('a waiting backlog is taken highest priority first, then in submission order', async ({ world, baseUrl, queue, db }) => {
  const backlog: string[] = [];
  for (let i = 0; i < 6; i++) backlog.push((await submit(baseUrl, { type: 'echo', payload: i, priority: 0 })).id);
  const urgent = (await submit(baseUrl, { type: 'echo', payload: 'urgent', priority: 9 })).id;
  assert.is(await queueDepth(queue), 7);

  const worker = await world.startWorker({ WORKER_CONCURRENCY: '1' });
  await allCompleted(db, [...backlog, urgent]);
  await worker.lifecycle.stop();

  assert.equal(await startOrder(db, [...backlog, urgent]), [urgent, ...backlog]);
});

// Messages are acked when their claim commits, so a busy worker takes up to WORKER_CONCURRENCY more messages
// (its prefetch) and holds them for its next free slot: those go first, and the urgent task overtakes the rest.
priorities('a high-priority task submitted while the worker is busy overtakes the backlog still in the queue', async ({ world, baseUrl, queue, db }) => {
  const worker = await world.startWorker({ WORKER_CONCURRENCY: '1' });
  const busy = (await submit(baseUrl, { type: 'sleep', payload: { ms: 1_500 } })).id;
  await eventually(async () => (await getTask(baseUrl, busy)).status === TaskStatus.in_progress, 10_000, 'the sleep task to start');

  const backlog: string[] = [];
  for (let i = 0; i < 4; i++) backlog.push((await submit(baseUrl, { type: 'echo', payload: i, priority: 0 })).id);
  const urgent = (await submit(baseUrl, { type: 'echo', payload: 'urgent', priority: 9 })).id;
  await eventually(async () => (await queueDepth(queue)) === 4, 5_000, 'the busy worker to hold one message, no more');
  // Otherwise the backlog could have been taken one by one as it arrived, and the order would prove nothing.
  assert.is((await getTask(baseUrl, busy)).status, TaskStatus.in_progress, 'the worker was still busy when the backlog was complete');
  assert.is((await getTask(baseUrl, backlog[0] as string)).status, TaskStatus.queued, 'a held message is not claimed before a slot frees');

  const all = [busy, ...backlog, urgent];
  await allCompleted(db, all);
  await worker.lifecycle.stop();

  assert.equal(await startOrder(db, all), [busy, backlog[0], urgent, ...backlog.slice(1)]);
});

priorities.run();
