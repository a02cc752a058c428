import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { matches } from '../support/processes.ts';
import { call, ChaosWorld, historyProblems, since, TASKS } from './kit.ts';

type Ctx = { world: ChaosWorld };
const test = suite<Ctx>('chaos: worker killed mid-task');

const LEASE_MS = 2_000;
const REAPER_INTERVAL_MS = 300;
const SLEEP_MS = 3_000;

test.before(async (ctx) => {
  ctx.world = await ChaosWorld.create({ env: { TASK_LEASE_MS: String(LEASE_MS), REAPER_INTERVAL_MS: String(REAPER_INTERVAL_MS) } });
});

test.after(async (ctx) => {
  await ctx.world.teardown();
});

test('SIGKILL mid-task: after the lease expires a second worker finishes each task (attempt 2, worker lost); maxAttempts 1 fails', async ({ world }) => {
  const { api, baseUrl } = await world.startApi();
  const first = await world.startWorker('doomed', { WORKER_CONCURRENCY: '8' });

  const submit = async (maxAttempts: number) => {
    const res = await call(baseUrl, 'POST', TASKS, { type: 'sleep', payload: { ms: SLEEP_MS }, maxAttempts });
    assert.is(res.status, 201, res.text);
    return res.body.id as string;
  };
  const retried = [await submit(3), await submit(3), await submit(3), await submit(3)];
  const single = await submit(1);
  await Promise.all([...retried, single].map((taskId) => first.waitForMessage('task started', { taskId, attempt: 1 }, 10_000)));

  const killedAt = Date.now();
  const clock = performance.now();
  assert.equal(await first.stop('SIGKILL', 5_000), { code: null, signal: 'SIGKILL' });
  const second = await world.startWorker('survivor', { WORKER_CONCURRENCY: '8' });

  await world.settle([...retried, single], LEASE_MS + SLEEP_MS + 10_000, [api, second]);
  const recoveredMs = since(clock);

  for (const taskId of retried) {
    const [row] = await world.rows([taskId]);
    assert.ok(row, `task ${taskId} lost`);
    assert.equal(historyProblems(row), [], taskId);
    assert.is(row.status, TaskStatus.completed);
    assert.is(row.attempts, 2);
    assert.equal(row.result, { sleptMs: SLEEP_MS });
    assert.is(row.errors.length, 1);
    assert.is(row.errors[0]?.message, 'worker lost');
    assert.is(row.errors[0]?.attempt, 1);
    // The lease was last renewed at most a third of it before the kill: reaping sooner would steal a live task.
    const reapedAfterKill = Date.parse(row.errors[0]?.at ?? '') - killedAt;
    assert.ok(reapedAfterKill >= (LEASE_MS * 2) / 3 - 200, `reaped ${reapedAfterKill} ms after the kill, before the lease could expire`);
    assert.ok(reapedAfterKill <= LEASE_MS + REAPER_INTERVAL_MS + 1_500, `reaped ${reapedAfterKill} ms after the kill`);
    assert.is(second.find(matches('task started', { taskId })).length, 1, 'the survivor ran it once');
    assert.is(second.find(matches('task started', { taskId, attempt: 2 })).length, 1, 'as attempt 2');
    assert.is(api.find(matches('lease expired: worker lost', { taskId })).length, 1, 'reaped once');
  }

  const [lost] = await world.rows([single]);
  assert.ok(lost, 'the single-attempt task is stored');
  assert.equal(historyProblems(lost), [], single);
  assert.is(lost.status, TaskStatus.failed);
  assert.is(lost.attempts, 1);
  assert.equal(lost.errors.map((e) => [e.message, e.attempt]), [['worker lost', 1]]);
  assert.is(second.find(matches('task started', { taskId: single })).length, 0, 'a task out of attempts is not run again');
  console.log(`  worker SIGKILLed with 5 tasks running: all settled ${recoveredMs} ms after the kill (lease ${LEASE_MS} ms, sleeps ${SLEEP_MS} ms)`);
});

test.run();
