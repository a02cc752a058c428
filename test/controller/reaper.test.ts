// The controller's stale requeue: the shared reaper, run by whichever replica holds the Lease, settling tasks
// whose worker vanished. No API runs here: its own reaper would settle the rows first.
import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { eventually } from '../support/system.ts';
import { type ControllerRig, readMetric, rigSuite, waitLeading } from './helpers.ts';

const test = rigSuite('controller: stale requeue');

/** A task some worker claimed and then lost: in_progress, its lease expiring `leaseMs` from now (negative: expired). */
async function runningTask(rig: ControllerRig, options: { maxAttempts: number; leaseMs: number }): Promise<string> {
  const [id] = await rig.insertPending(1);
  await rig.db.query(
    `UPDATE tasks SET status = $2, attempts = 1, max_attempts = $3, worker_id = 'vanished-worker', lease_token = gen_random_uuid(),
       started_at = now() - interval '1 minute', lease_expires_at = now() + make_interval(secs => $4 / 1000.0)
     WHERE id = $1`,
    [id, TaskStatus.in_progress, options.maxAttempts, options.leaseMs],
  );
  return id as string;
}

type Row = { status: string; error: { message: string; attempt: number } | null; lease_token: string | null; finished_at: Date | null };
async function row(rig: ControllerRig, id: string): Promise<Row> {
  const { rows } = await rig.db.query<Row>('SELECT status::text, error, lease_token, finished_at FROM tasks WHERE id = $1', [id]);
  return rows[0] as Row;
}

test('the leader reaps expired leases as "worker lost" and counts them; the standby does not, until it leads', async ({ rig }) => {
  const a = await rig.startController('ctrl-a');
  await waitLeading(a);
  const b = await rig.startController('ctrl-b');
  const lastAttempt = await runningTask(rig, { maxAttempts: 1, leaseMs: -1000 });
  const retried = await runningTask(rig, { maxAttempts: 3, leaseMs: -1000 });
  const alive = await runningTask(rig, { maxAttempts: 1, leaseMs: 3_600_000 });

  const failed = await eventually(async () => {
    const r = await row(rig, lastAttempt);
    return r.status === TaskStatus.failed && r;
  }, 5000, 'the task on its last attempt to fail');
  assert.equal(failed.error, { ...failed.error, message: 'worker lost', attempt: 1 });
  assert.is(failed.lease_token, null, 'the lease is released');
  assert.ok(failed.finished_at, 'finished');
  const back = await eventually(async () => {
    const r = await row(rig, retried);
    return r.status === TaskStatus.pending && r;
  }, 5000, 'the task with attempts left to be retried');
  assert.is(back.error?.message, 'worker lost');
  assert.is(back.finished_at, null);
  assert.is((await row(rig, alive)).status, TaskStatus.in_progress, 'a live lease is left alone');

  assert.is(await readMetric(a, 'conveyor_tasks_reaped_total', { outcome: TaskStatus.failed }), 1);
  assert.is(await readMetric(a, 'conveyor_tasks_reaped_total', { outcome: TaskStatus.pending }), 1);
  assert.is(await readMetric(b, 'conveyor_tasks_reaped_total'), 0);

  // Leadership moves, and the reaper with it.
  await a.stop();
  await waitLeading(b, 3000);
  const later = await runningTask(rig, { maxAttempts: 1, leaseMs: -1000 });
  await eventually(async () => (await row(rig, later)).status === TaskStatus.failed, 5000, 'the new leader to reap');
  assert.is(await readMetric(b, 'conveyor_tasks_reaped_total', { outcome: TaskStatus.failed }), 1);
});

test.run();
