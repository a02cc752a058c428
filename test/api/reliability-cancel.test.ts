import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { queueDepth } from '../support/isolation.ts';
import { apiSuite, eventually, request } from '../support/system.ts';
import { assertProblem, getTask, inFuture, submit, TASKS, taskIn, time, withWorker } from './reliability-helpers.ts';

const test = apiSuite('api: cancel and delete');
const { pending, queued, in_progress, completed, failed, cancelled } = TaskStatus;
// One slot: a task still holding it would keep the follow-up task from ever starting.
const ONE_SLOT = { WORKER_CONCURRENCY: '1' };

const cancel = (baseUrl: string, id: string) => request(baseUrl, 'POST', `${TASKS}/${id}/cancel`);

/** A sleep long enough that only a stop, never its end, can finish it within the test. */
async function runningSleep(baseUrl: string): Promise<string> {
  const { id } = await submit(baseUrl, { type: 'sleep', payload: { ms: 30_000 } });
  await taskIn(baseUrl, id, in_progress, 5_000);
  return id;
}

async function assertSlotFreed(baseUrl: string): Promise<void> {
  const next = await submit(baseUrl, { type: 'echo', payload: { after: 'stop' } });
  const done = await taskIn(baseUrl, next.id, completed, 5_000);
  assert.equal(done.result, { after: 'stop' });
}

test('a pending task is cancelled at once (200) and never runs, even once its runAt has passed', async ({ world, baseUrl }) => {
  const runAt = inFuture(800);
  const target = await submit(baseUrl, { type: 'echo', runAt });
  assert.is(target.status, pending);
  const res = await cancel(baseUrl, target.id);
  assert.is(res.status, 200, res.text);
  assert.is(res.body.status, cancelled);
  assert.is(res.body.attempts, 0);
  assert.ok(res.body.finishedAt, 'a cancelled task is finished');
  // Due at the same moment: once it has run, the relay has been past the cancelled one too.
  const witness = await submit(baseUrl, { type: 'echo', runAt });
  await withWorker(world, ONE_SLOT, async () => {
    const ran = await taskIn(baseUrl, witness.id, completed, 5_000);
    assert.ok(time(ran.startedAt) >= time(runAt), 'the witness waited for its runAt');
  });
  const after = await getTask(baseUrl, target.id);
  assert.is(after.status, cancelled);
  assert.is(after.attempts, 0);
  assert.is(after.startedAt, null);
  assert.is(after.workerId, null);
});

test('a queued task is cancelled at once (200); a worker started later drops its message without running it', async ({ world, baseUrl, queue }) => {
  const target = await submit(baseUrl, { type: 'echo', payload: { must: 'not run' } });
  assert.is(target.status, queued);
  const res = await cancel(baseUrl, target.id);
  assert.is(res.status, 200, res.text);
  assert.is(res.body.status, cancelled);
  assert.is(res.body.cancelRequested, true);
  // The message is still in RabbitMQ: only the worker's claim can refuse it.
  assert.ok((await queueDepth(queue)) >= 1, 'the cancelled task still has its message');

  const again = await cancel(baseUrl, target.id);
  assert.is(again.status, 200, again.text);
  assert.equal(again.body, res.body, 'cancelling twice changes nothing');

  // With one slot the prefetch is one, so the witness is delivered only after the cancelled message was settled.
  const witness = await submit(baseUrl, { type: 'echo' });
  await withWorker(world, ONE_SLOT, () => taskIn(baseUrl, witness.id, completed, 5_000));
  const after = await getTask(baseUrl, target.id);
  assert.is(after.status, cancelled);
  assert.is(after.attempts, 0);
  assert.is(after.startedAt, null);
  assert.is(after.result, null);
});

test('a running task: 202 with cancelRequested, then cancelled by its worker, whose slot is freed', async ({ world, baseUrl, db }) => {
  await withWorker(world, ONE_SLOT, async () => {
    const id = await runningSleep(baseUrl);
    const res = await cancel(baseUrl, id);
    const accepted = performance.now();
    assert.is(res.status, 202, res.text);
    assert.is(res.body.status, in_progress);
    assert.is(res.body.cancelRequested, true);

    const done = await taskIn(baseUrl, id, cancelled, 8_000);
    const observedMs = Math.round(performance.now() - accepted);
    const { rows } = await db.query<{ ms: number }>(
      'SELECT extract(epoch FROM finished_at - cancel_requested_at)::float8 * 1000 AS ms FROM tasks WHERE id = $1',
      [id],
    );
    console.log(`  cancel latency (running sleep, control broadcast): ${observedMs} ms seen over HTTP, ${rows[0]?.ms.toFixed(1)} ms in PostgreSQL`);
    assert.is(done.attempts, 1);
    assert.is(done.result, null, 'the sleep did not run to its end');
    assert.is(done.leaseExpiresAt, null, 'the lease was released');
    assert.ok(done.finishedAt, 'finishedAt is set');

    const again = await cancel(baseUrl, id);
    assert.is(again.status, 200, again.text);
    assert.equal(again.body, done);
    await assertSlotFreed(baseUrl);
  });
});

test('a cancel whose broadcast was lost still reaches the worker through its heartbeat', async ({ world, baseUrl, db }) => {
  // A 1.5 s lease means a heartbeat every 500 ms; the default (30 s) would beat only every 10 s.
  await withWorker(world, { ...ONE_SLOT, TASK_LEASE_MS: '1500' }, async () => {
    const id = await runningSleep(baseUrl);
    // Written straight to PostgreSQL, so no control message is ever sent.
    const marked = await db.query('UPDATE tasks SET cancel_requested_at = now() WHERE id = $1 AND status = $2', [id, in_progress]);
    assert.is(marked.rowCount, 1);
    const started = performance.now();
    const done = await taskIn(baseUrl, id, cancelled, 8_000);
    console.log(`  cancel latency (running sleep, heartbeat only, 500 ms beat): ${Math.round(performance.now() - started)} ms`);
    assert.is(done.attempts, 1);
    assert.is(done.result, null);
    await assertSlotFreed(baseUrl);
  });
});

test('DELETE of a running task: 204, then 404, and its worker frees the slot', async ({ world, baseUrl }) => {
  await withWorker(world, ONE_SLOT, async (worker) => {
    const id = await runningSleep(baseUrl);
    const res = await request(baseUrl, 'DELETE', `${TASKS}/${id}`);
    assert.is(res.status, 204, res.text);
    assert.is(res.text, '');
    assertProblem(await request(baseUrl, 'GET', `${TASKS}/${id}`), 404, /does not exist/);
    await eventually(async () => worker.worker()?.inFlight === 0, 8_000, 'the worker to stop the deleted task');
    await assertSlotFreed(baseUrl);
    assertProblem(await request(baseUrl, 'GET', `${TASKS}/${id}`), 404, /does not exist/);
  });
});

test('cancel of a completed or failed task is a 409 problem and leaves it as it was', async ({ world, baseUrl }) => {
  const [ok, bad] = await withWorker(world, {}, async () => {
    const ok = await submit(baseUrl, { type: 'echo', payload: 1 });
    const bad = await submit(baseUrl, { type: 'fail', payload: { message: 'no' } });
    return [await taskIn(baseUrl, ok.id, completed, 5_000), await taskIn(baseUrl, bad.id, failed, 5_000)];
  });
  assertProblem(await cancel(baseUrl, ok.id), 409, /completed/);
  assertProblem(await cancel(baseUrl, bad.id), 409, /failed/);
  assert.equal(await getTask(baseUrl, ok.id), ok);
  assert.equal(await getTask(baseUrl, bad.id), bad);
});

test('cancel of an unknown id is a 404 problem, of a malformed id a 400', async ({ baseUrl }) => {
  assertProblem(await cancel(baseUrl, '01900000-0000-7000-8000-000000000000'), 404, /does not exist/);
  assertProblem(await cancel(baseUrl, 'not-a-uuid'), 400, /not a task id/);
});

test.run();
