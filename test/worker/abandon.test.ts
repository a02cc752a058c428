import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { z } from 'zod';
import { ControlChannel } from '../../services/core/src/queue/control.ts';
import { defineTaskType, type TaskType } from '../../services/core/src/tasks/handler.ts';
import { echo } from '../../services/core/src/tasks/handlers/echo.ts';
import { type Connection, CoreRig } from '../support/core-rig.ts';
import { eventually, testLog } from '../support/system.ts';

type Ctx = { rig: CoreRig; conn: Connection; control: ControlChannel; release: () => void; stubbornRuns: number };
const test = suite<Ctx>('worker: handlers that ignore their abort signal', {} as Ctx);

const GRACE_MS = 300;

test.before(async (ctx) => {
  ctx.rig = await CoreRig.create();
  ctx.stubbornRuns = 0;
  // A handler that never looks at ctx.signal: it returns only when the test lets it.
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  ctx.release = release;
  const stubborn = defineTaskType({
    name: 'stubborn',
    description: 'ignores its abort signal',
    payload: z.object({}),
    async run() {
      ctx.stubbornRuns += 1;
      await released;
      return { late: true };
    },
  });
  const taskTypes = new Map<string, TaskType>([
    ['stubborn', stubborn as unknown as TaskType],
    ['echo', echo as unknown as TaskType],
  ]);
  ctx.conn = await ctx.rig.connect();
  await ctx.conn.connected();
  ctx.control = new ControlChannel({ broker: ctx.conn.broker, queue: ctx.rig.queue }, testLog);
  await ctx.control.start();
  await ctx.rig.startWorker(ctx.conn, { workerId: 'stubborn-worker', concurrency: 1, cancelGraceMs: GRACE_MS, taskTypes, beforeStop: () => ctx.release() });
  ctx.rig.onTeardown(() => ctx.control.stop());
});

test.after(async (ctx) => {
  await ctx.rig.teardown();
});

async function run(ctx: Ctx, overrides: Parameters<CoreRig['insert']>[0]) {
  const task = await ctx.rig.insert(overrides);
  await ctx.conn.publisher.publish({ taskId: task.id, type: task.type, priority: task.priority });
  return task;
}

const status = async (ctx: Ctx, id: string) => (await ctx.rig.repo.getTask(id)).status;

test('a cancelled handler that ignores its signal is abandoned after the grace period and its slot freed', async (ctx) => {
  const task = await run(ctx, { type: 'stubborn' });
  await eventually(async () => (await status(ctx, task.id)) === 'in_progress', 10_000, 'the stubborn task to start');
  const requested = await ctx.rig.repo.cancelTask(task.id);
  assert.is(requested.outcome, 'requested');
  const sentAt = performance.now();
  assert.ok(ctx.control.broadcastCancel(task.id));
  await eventually(async () => (await status(ctx, task.id)) === 'cancelled', 10_000, 'the task to end cancelled');
  assert.ok(performance.now() - sentAt >= GRACE_MS - 20, 'the worker waited the grace period before giving up on the handler');

  // With concurrency 1, another task can only run if the abandoned handler no longer holds the slot.
  const next = await run(ctx, { type: 'echo', payload: { after: 'abandon' } });
  await eventually(async () => (await status(ctx, next.id)) === 'completed', 10_000, 'the next task to run in the freed slot');
  assert.is(ctx.stubbornRuns, 1, 'the stubborn handler is still running (never released) and ran once');
  const final = await ctx.rig.repo.getTask(task.id);
  assert.is(final.status, 'cancelled');
  assert.is(final.result, null);
});

test('a timed-out handler that ignores its signal is abandoned and the attempt fails with timeout', async (ctx) => {
  const task = await run(ctx, { type: 'stubborn', timeoutMs: 200, maxAttempts: 1 });
  const failed = await eventually(async () => {
    const current = await ctx.rig.repo.getTask(task.id);
    return current.status === 'failed' && current;
  }, 10_000, 'the task to fail');
  assert.equal(failed.error?.message, 'timeout');
  assert.is(failed.errors.length, 1);
  // Its late return, once released, must not change the stored outcome.
  ctx.release();
  const next = await run(ctx, { type: 'echo' });
  await eventually(async () => (await status(ctx, next.id)) === 'completed', 10_000, 'a later task to complete');
  assert.is((await ctx.rig.repo.getTask(task.id)).status, 'failed');
});

test.run();
