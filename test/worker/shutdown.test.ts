import pg from 'pg';
import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { queueDepth } from '../support/isolation.ts';
import { apiSuite, eventually } from '../support/system.ts';
import { getTask, settled, submit, taskIn } from './helpers.ts';

const finish = apiSuite('worker: graceful stop within the timeout');

finish('stop waits for a running task that ends in time, and takes no new work meanwhile', async ({ world, baseUrl, queue }) => {
  // Room for a second task, so that only the stop keeps the worker from taking the one submitted during it.
  const worker = await world.startWorker({ WORKER_CONCURRENCY: '2', SHUTDOWN_TIMEOUT_MS: '5000' });
  const running = await submit(baseUrl, { type: 'sleep', payload: { ms: 300 } });
  await taskIn(baseUrl, running.id, TaskStatus.in_progress);

  const stopped = worker.lifecycle.stop();
  const late = await submit(baseUrl, { type: 'echo', payload: 'late' });
  await stopped;

  // No `eventually`: the stop itself is what must have waited for the task.
  const task = await getTask(baseUrl, running.id);
  assert.is(task.status, TaskStatus.completed);
  assert.equal(task.result, { sleptMs: 300 });
  assert.is(task.attempts, 1);

  const left = await getTask(baseUrl, late.id);
  assert.is(left.status, TaskStatus.queued);
  assert.is(left.attempts, 0);
  await eventually(async () => (await queueDepth(queue)) === 1, 5_000, 'the late task to wait in the queue');
});

finish.run();

const handBack = apiSuite('worker: graceful stop past the timeout');

handBack('stop hands a task that outlives the timeout back: pending without the attempt, then published again at once', async ({ world, baseUrl, queue }) => {
  const first = await world.startWorker({ WORKER_CONCURRENCY: '1', SHUTDOWN_TIMEOUT_MS: '200' });
  const { id } = await submit(baseUrl, { type: 'sleep', payload: { ms: 60_000 } });
  await taskIn(baseUrl, id, TaskStatus.in_progress);
  // The message was acked when the claim committed: while the task runs, the queue holds nothing for it.
  assert.is(await queueDepth(queue), 0);

  const started = performance.now();
  await first.lifecycle.stop();
  const took = performance.now() - started;
  assert.ok(took >= 190, `stop gave the task only ${Math.round(took)} ms of the 200 ms timeout`);
  assert.ok(took < 5_000, `stop took ${Math.round(took)} ms: it waited for the task instead of handing it back`);

  // No `eventually`: the stop itself hands back and publishes before it returns.
  const back = await getTask(baseUrl, id);
  assert.is(back.status, TaskStatus.queued, 'handed back to pending, then published by the stopping worker');
  assert.is(back.attempts, 0, 'a handed-back attempt does not count');
  assert.is(back.startedAt, null);
  assert.is(back.leaseExpiresAt, null, 'the lease is released, so the reaper has nothing to do');
  assert.equal(back.errors, [], 'a hand-back is not a failure');
  assert.is(await queueDepth(queue), 1, 'a new message for the next worker');

  const second = await world.startWorker({ WORKER_CONCURRENCY: '1', SHUTDOWN_TIMEOUT_MS: '200' });
  const again = await taskIn(baseUrl, id, TaskStatus.in_progress);
  assert.is(again.attempts, 1);
  assert.ok(again.startedAt, 'startedAt is set again');
  await second.lifecycle.stop();
  const twice = await getTask(baseUrl, id);
  assert.is(twice.status, TaskStatus.queued);
  assert.is(twice.attempts, 0);
});

handBack.run();

const claimRace = apiSuite('worker: stop while a claim is in flight');

claimRace('a task whose claim was still running when the worker stopped is not stranded in_progress', async ({ world, baseUrl, db }) => {
  const { id } = await submit(baseUrl, { type: 'echo', payload: 'claimed while stopping' });
  // Holding the row lock keeps the worker's claim (an UPDATE of that row) waiting: the few milliseconds in
  // which a delivery has arrived but its claim has not returned become 1.5 s, long enough to stop in. The
  // lock ends on PostgreSQL's own clock, so a stop that rightly waits for the claim cannot deadlock the test.
  const locker = new pg.Client({ connectionString: world.env['DATABASE_URL'] as string });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE', [id]);
    const released = locker.query('SELECT pg_sleep(1.5)').then(() => locker.query('COMMIT'));

    const worker = await world.startWorker({ WORKER_CONCURRENCY: '1', SHUTDOWN_TIMEOUT_MS: '300' });
    await eventually(() => claimsWaiting(db), 10_000, "the worker's claim to wait for the row lock");
    await worker.lifecycle.stop();
    await released;
    await eventually(async () => !(await claimsWaiting(db)) && !(await workerQueries(db)), 5_000, 'the claim to end');
  } finally {
    await locker.end();
  }

  // The claim committed after the stop began: the worker gave the task straight back instead of running it.
  const after = await getTask(baseUrl, id);
  assert.ok(after.status !== TaskStatus.in_progress, `the stopped worker left the task in_progress with attempts ${after.attempts}`);
  assert.is(after.attempts, 0, 'the attempt that never started does not count');
  // As for any hand-back, the stopping worker publishes it again before its stop returns.
  assert.is(after.status, TaskStatus.queued, 'the stop returned before the give-back was published');

  await world.startWorker({ WORKER_CONCURRENCY: '1', SHUTDOWN_TIMEOUT_MS: '300' });
  const done = await settled(baseUrl, id, 5_000);
  assert.is(done.status, TaskStatus.completed);
});

claimRace.run();

/** True while some worker statement waits for a row lock in this database. */
async function claimsWaiting(db: pg.Client): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE datname = current_database() AND application_name LIKE 'conveyor-worker%' AND wait_event_type = 'Lock'`,
  );
  return (rows[0]?.n ?? 0) > 0;
}

/** True while some worker statement runs in this database. */
async function workerQueries(db: pg.Client): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE datname = current_database() AND application_name LIKE 'conveyor-worker%' AND state = 'active'`,
  );
  return (rows[0]?.n ?? 0) > 0;
}
