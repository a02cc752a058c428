import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { z } from 'zod';
import { defineTaskType, type TaskType } from '../../services/core/src/tasks/handler.ts';
import { type Connection, CoreRig } from '../support/core-rig.ts';
import { eventually } from '../support/system.ts';

const CONCURRENCY = 2;

type Ctx = {
  rig: CoreRig;
  conn: Connection;
  /** Handlers running right now, and the most ever seen at once. */
  running: Set<string>;
  most: number;
  /** Each gated task's handler returns when its gate is opened. */
  gates: Map<string, () => void>;
};
const test = suite<Ctx>('worker: slots', {} as Ctx);

test.before(async (ctx) => {
  ctx.rig = await CoreRig.create();
  ctx.running = new Set();
  ctx.most = 0;
  ctx.gates = new Map();
  const gated = defineTaskType({
    name: 'gated',
    description: 'runs until the test opens its gate',
    payload: z.object({}),
    async run(_payload, { taskId }) {
      ctx.running.add(taskId);
      ctx.most = Math.max(ctx.most, ctx.running.size);
      await new Promise<void>((resolve) => ctx.gates.set(taskId, resolve));
      ctx.running.delete(taskId);
      return { opened: true };
    },
  });
  ctx.conn = await ctx.rig.connect();
  await ctx.conn.connected();
  await ctx.rig.startWorker(ctx.conn, {
    workerId: 'slots-worker',
    concurrency: CONCURRENCY,
    cancelGraceMs: 200,
    taskTypes: new Map<string, TaskType>([['gated', gated as unknown as TaskType]]),
    beforeStop: () => {
      for (const open of ctx.gates.values()) open();
    },
  });
});

test.after(async (ctx) => {
  await ctx.rig.teardown();
});

async function submit(ctx: Ctx): Promise<string> {
  const task = await ctx.rig.insert({ type: 'gated' });
  await ctx.conn.publisher.publish({ taskId: task.id, type: task.type, priority: task.priority });
  return task.id;
}

const started = (ctx: Ctx, id: string) => eventually(async () => ctx.gates.has(id), 10_000, `task ${id} to start`);

/** Opens every gate whose handler is running, and waits for those tasks to be recorded completed. */
async function finishRunning(ctx: Ctx): Promise<void> {
  const ids = [...ctx.running];
  for (const id of ids) ctx.gates.get(id)?.();
  await eventually(async () => (await ctx.rig.countIn(ids, 'completed')) === ids.length, 10_000, 'the running tasks to complete');
}

test('runs at most WORKER_CONCURRENCY handlers at once, and that many', async (ctx) => {
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await submit(ctx));
  await eventually(async () => ctx.running.size === CONCURRENCY, 10_000, 'the slots to fill');
  // The rest wait in the queue, unclaimed, while the slots are full.
  assert.is(await ctx.rig.countIn(ids, 'in_progress'), CONCURRENCY);
  assert.is(await ctx.rig.countIn(ids, 'pending'), ids.length - CONCURRENCY);
  while ((await ctx.rig.countIn(ids, 'completed')) < ids.length) {
    await eventually(async () => ctx.running.size > 0, 10_000, 'a handler to run');
    await finishRunning(ctx);
  }
  assert.is(ctx.most, CONCURRENCY, `at most ${ctx.most} handlers ran at once`);
});

test('a slot is free as soon as its handler returns, while the outcome is still being recorded', async (ctx) => {
  const first = await submit(ctx);
  const second = await submit(ctx);
  await started(ctx, first);
  await started(ctx, second);
  // A row lock held by the test's own connection keeps the first task's completion waiting.
  const { db } = ctx.rig;
  await db.query('BEGIN');
  try {
    await db.query('SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE', [first]);
    ctx.gates.get(first)?.();
    const third = await submit(ctx);
    await started(ctx, third);
    assert.is((await ctx.rig.statuses([first])).get(first), 'in_progress', 'the first outcome was not yet recorded when the third task started');
  } finally {
    await db.query('COMMIT');
  }
  await eventually(async () => (await ctx.rig.countIn([first], 'completed')) === 1, 10_000, 'the first task to be recorded completed');
  await finishRunning(ctx);
});

test.run();
