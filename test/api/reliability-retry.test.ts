import * as assert from 'uvu/assert';
import type { Task } from '../../services/core/src/tasks/model.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { apiSuite, request } from '../support/system.ts';
import { assertProblem, countRows, getTask, inFuture, settled, submit, TASKS, taskIn, time, withWorker } from './reliability-helpers.ts';

const test = apiSuite('api: retry, backoff and timeouts');
const { queued, completed, failed } = TaskStatus;

const retry = (baseUrl: string, id: string) => request<Task>(baseUrl, 'POST', `${TASKS}/${id}/retry`);
const gaps = (task: Task) => task.errors.slice(1).map((e, i) => time(e.at) - time(task.errors[i]?.at));

test('retry of a failed task: 202, it runs again from attempt 1, and errors keeps the earlier failure', async ({ world, baseUrl }) => {
  const first = await withWorker(world, {}, async () => {
    const { id } = await submit(baseUrl, { type: 'fail', payload: { message: 'boom' } });
    return taskIn(baseUrl, id, failed, 5_000);
  });
  assert.is(first.errors.length, 1);

  // No worker runs now, so the answer shows the rerun itself rather than how far a worker already got.
  const res = await retry(baseUrl, first.id);
  assert.is(res.status, 202, res.text);
  assert.is(res.body.id, first.id);
  assert.is(res.body.status, queued);
  assert.is(res.body.attempts, 0);
  assert.is(res.body.error, null);
  assert.is(res.body.finishedAt, null);
  assert.equal(res.body.errors, first.errors);

  const second = await withWorker(world, {}, () => taskIn(baseUrl, first.id, failed, 5_000));
  assert.is(second.attempts, 1, 'the attempt count starts again');
  assert.is(second.errors.length, 2);
  assert.equal(second.errors[0], first.errors[0]);
  assert.is(second.errors[1]?.message, 'boom');
  assert.is(second.errors[1]?.attempt, 1);
  assert.ok(time(second.errors[1]?.at) > time(first.errors[0]?.at), 'the new failure is the later one');
  assert.equal(second.error, second.errors[1]);
  assert.ok(time(second.startedAt) > time(first.finishedAt), 'it really ran again');
});

test('retry of a cancelled task: 202, and it runs to completion exactly once', async ({ world, baseUrl }) => {
  const { id } = await submit(baseUrl, { type: 'echo', payload: { n: 7 } });
  assert.is((await request(baseUrl, 'POST', `${TASKS}/${id}/cancel`)).status, 200);
  const res = await retry(baseUrl, id);
  assert.is(res.status, 202, res.text);
  assert.is(res.body.status, queued);
  assert.is(res.body.cancelRequested, false);
  assert.is(res.body.finishedAt, null);
  // Both the message sent before the cancel and the one the retry sent are in the queue; one claim must win.
  const done = await withWorker(world, {}, () => taskIn(baseUrl, id, completed, 5_000));
  assert.equal(done.result, { n: 7 });
  assert.is(done.attempts, 1);
  assert.is(done.cancelRequested, false);
});

test('retry of a queued, pending or completed task is a 409 problem that changes nothing', async ({ world, baseUrl }) => {
  const waiting = await submit(baseUrl, { type: 'echo', payload: 'queued' });
  assert.is(waiting.status, queued);
  assertProblem(await retry(baseUrl, waiting.id), 409, /queued/);
  const later = await submit(baseUrl, { type: 'echo', runAt: inFuture(3_600_000) });
  assertProblem(await retry(baseUrl, later.id), 409, /pending/);
  assert.equal(await getTask(baseUrl, later.id), later);

  const done = await withWorker(world, {}, () => taskIn(baseUrl, waiting.id, completed, 5_000));
  assertProblem(await retry(baseUrl, done.id), 409, /completed/);
  assert.equal(await getTask(baseUrl, done.id), done);
  assertProblem(await retry(baseUrl, '01900000-0000-7000-8000-000000000000'), 404, /does not exist/);
  assertProblem(await retry(baseUrl, 'not-a-uuid'), 400, /not a task id/);
});

test('exponential backoff waits delayMs, then twice as long, between attempts', async ({ world, baseUrl }) => {
  const backoff = { type: 'exponential', delayMs: 300, maxDelayMs: 5_000, jitter: false };
  const task = await withWorker(world, {}, async () => {
    const { id } = await submit(baseUrl, { type: 'fail', payload: { message: 'again' }, maxAttempts: 3, backoff });
    return settled(baseUrl, id, 8_000);
  });
  assert.is(task.status, failed);
  assert.is(task.attempts, 3);
  assert.equal(task.backoff, backoff);
  assert.equal(task.errors.map((e) => [e.message, e.attempt]), [['again', 1], ['again', 2], ['again', 3]]);
  const [gap1 = 0, gap2 = 0] = gaps(task);
  console.log(`  exponential backoff 300 ms: gaps between failures ${gap1} ms, ${gap2} ms`);
  assert.ok(gap1 >= 300, `first gap ${gap1} ms`);
  assert.ok(gap2 >= 600, `second gap ${gap2} ms`);
  assert.ok(gap2 > gap1, `the gaps grow: ${gap1} ms, then ${gap2} ms`);
  // runAt still holds the last retry's due time, set as the second failure was stored: exactly 600 ms on.
  const lastDelay = time(task.runAt) - time(task.errors[1]?.at);
  assert.ok(lastDelay > 550 && lastDelay <= 600, `the last retry was due ${lastDelay} ms after the failure before it`);
});

test('fixed backoff waits delayMs between every attempt', async ({ world, baseUrl }) => {
  const backoff = { type: 'fixed', delayMs: 300, maxDelayMs: 5_000, jitter: false };
  const task = await withWorker(world, {}, async () => {
    const { id } = await submit(baseUrl, { type: 'fail', maxAttempts: 3, backoff });
    return settled(baseUrl, id, 8_000);
  });
  assert.is(task.status, failed);
  assert.is(task.attempts, 3);
  assert.equal(task.errors.map((e) => e.attempt), [1, 2, 3]);
  const [gap1 = 0, gap2 = 0] = gaps(task);
  console.log(`  fixed backoff 300 ms: gaps between failures ${gap1} ms, ${gap2} ms`);
  assert.ok(gap1 >= 300, `first gap ${gap1} ms`);
  assert.ok(gap2 >= 300, `second gap ${gap2} ms`);
  // Not doubled: the last retry was due delayMs after the second failure, not 2 × delayMs.
  const lastDelay = time(task.runAt) - time(task.errors[1]?.at);
  assert.ok(lastDelay > 250 && lastDelay <= 300, `the last retry was due ${lastDelay} ms after the failure before it`);
});

test('an invalid backoff is a 422 naming the field, and nothing is stored', async ({ baseUrl, db }) => {
  const before = await countRows(db);
  const invalid: Record<string, unknown>[] = [
    { type: 'exponential', delayMs: 6_000, maxDelayMs: 5_000 },
    { type: 'linear', delayMs: 100 },
    { delayMs: -1 },
    { maxDelayMs: -5, delayMs: 0 },
    { delayMs: 1.5 },
    { jitter: 'yes' },
    { delayMs: 100, factor: 3 },
  ];
  for (const backoff of invalid) {
    const res = await request(baseUrl, 'POST', TASKS, { type: 'fail', maxAttempts: 2, backoff });
    assertProblem(res, 422, /backoff/);
    assert.ok(res.body.errors.some((e: { path: string }) => e.path.startsWith('backoff')), JSON.stringify(res.body.errors));
  }
  assert.is(await countRows(db), before);
});

test('an attempt that outlives timeoutMs fails with timeout, long before its handler would end', async ({ world, baseUrl }) => {
  const [once, twice] = await withWorker(world, {}, async () => {
    const one = await submit(baseUrl, { type: 'sleep', payload: { ms: 10_000 }, timeoutMs: 300, maxAttempts: 1 });
    const two = await submit(baseUrl, {
      type: 'sleep',
      payload: { ms: 10_000 },
      timeoutMs: 300,
      maxAttempts: 2,
      backoff: { type: 'fixed', delayMs: 50, maxDelayMs: 50, jitter: false },
    });
    return Promise.all([settled(baseUrl, one.id, 6_000), settled(baseUrl, two.id, 6_000)]);
  });
  assert.is(once.status, failed);
  assert.is(once.attempts, 1);
  assert.is(once.result, null);
  assert.is(once.error?.message, 'timeout');
  assert.is(once.error?.attempt, 1);
  const ran = time(once.finishedAt) - time(once.startedAt);
  assert.ok(ran >= 300 && ran < 5_000, `the attempt ran ${ran} ms`);

  assert.is(twice.status, failed);
  assert.is(twice.attempts, 2);
  assert.equal(twice.errors.map((e) => [e.message, e.attempt]), [['timeout', 1], ['timeout', 2]]);
});

test.run();
