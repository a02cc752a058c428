// GET /api/v1/tasks/{id}/events: the history the services append as a task moves, read through a real API
// while a real worker (in-process, with task types of the test's own) runs the tasks.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { z } from 'zod';
import type { AttemptsRepository } from '../../services/core/src/db/attempts-repository.ts';
import type { TasksRepository } from '../../services/core/src/db/tasks-repository.ts';
import { newId } from '../../services/core/src/ids.ts';
import { Broker } from '../../services/core/src/queue/broker.ts';
import { controlExchange } from '../../services/core/src/queue/control.ts';
import { Publisher } from '../../services/core/src/queue/publisher.ts';
import { defineTaskType, type TaskType } from '../../services/core/src/tasks/handler.ts';
import { sleep } from '../../services/core/src/tasks/handlers/sleep.ts';
import type { Task, TaskEvent } from '../../services/core/src/tasks/model.ts';
import { publishTask } from '../../services/core/src/tasks/submit.ts';
import { Worker } from '../../services/worker/src/worker.ts';
import { deleteExchanges, deleteQueues, freshQueueName } from '../support/isolation.ts';
import { eventually, request, testLog, TestWorld } from '../support/system.ts';

type Connection = { broker: Broker; publisher: Publisher };
type Ctx = { world: TestWorld; baseUrl: string; repo: TasksRepository; attempts: AttemptsRepository; db: pg.Client; main: Connection; stops: (() => Promise<unknown>)[]; queues: string[] };
const test = suite<Ctx>('api: task events', {} as Ctx);

const TASKS = '/api/v1/tasks';
const WORKER_ID = 'events-worker';
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const RETRY_DELAY_MS = 300;

// Fails its first attempt and succeeds on the second: a retry the API cannot submit (the type is the test's own).
const flaky = defineTaskType({
  name: 'flaky',
  description: 'fails attempt 1, returns on attempt 2',
  payload: z.object({}),
  async run(_payload, { attempt }) {
    if (attempt === 1) throw new Error('flaky: attempt 1 fails on purpose');
    return { attempt };
  },
});
const TASK_TYPES = new Map<string, TaskType>([['flaky', flaky as unknown as TaskType], ['sleep', sleep as unknown as TaskType]]);

async function connect(ctx: Ctx, queue: string): Promise<Connection> {
  const broker = new Broker({ url: ctx.world.env['AMQP_URL'] as string, connectionName: 'conveyor-events-test' }, testLog);
  const publisher = new Publisher({ broker, queue, confirmTimeoutMs: 5_000 }, testLog);
  ctx.stops.push(() => broker.close(), () => publisher.stop());
  await publisher.start();
  await broker.start();
  await eventually(async () => publisher.ready, 10_000, 'the publisher to connect');
  return { broker, publisher };
}

async function startWorker(ctx: Ctx, connection: Connection, queue: string, workerId: string, shutdownTimeoutMs: number): Promise<Worker> {
  const worker = new Worker(
    { ...connection, repository: ctx.repo, attempts: ctx.attempts, queue, concurrency: 2, workerId, leaseMs: 30_000, shutdownTimeoutMs, cancelGraceMs: 1_000, taskTypes: TASK_TYPES },
    testLog,
  );
  ctx.stops.push(() => worker.stop());
  await worker.start();
  return worker;
}

test.before(async (ctx) => {
  ctx.stops = [];
  ctx.queues = [];
  ctx.world = await TestWorld.create();
  const api = await ctx.world.startApi();
  ctx.baseUrl = api.baseUrl;
  ctx.repo = api.repository;
  ctx.attempts = api.attempts;
  await eventually(async () => api.broker.connected, 10_000, 'the API to connect to RabbitMQ');
  ctx.db = new pg.Client({ connectionString: ctx.world.env['DATABASE_URL'] });
  await ctx.db.connect();
  const queue = ctx.world.env['TASKS_QUEUE'] as string;
  ctx.main = await connect(ctx, queue);
  await startWorker(ctx, ctx.main, queue, WORKER_ID, 5_000);
});

test.after(async (ctx) => {
  for (const stop of ctx.stops.reverse()) await stop().catch(() => undefined);
  await ctx.db?.end();
  await ctx.world?.teardown();
  await deleteQueues(ctx.queues);
  await deleteExchanges(ctx.queues.map(controlExchange));
});

/** Stores a task and publishes it as the API's submit does (the message, then `published` on the confirm). */
async function submitDirect(ctx: Ctx, connection: Connection, type: string, payload: unknown, maxAttempts = 1): Promise<Task> {
  const backoff = { type: 'fixed' as const, delayMs: RETRY_DELAY_MS, maxDelayMs: RETRY_DELAY_MS, jitter: false };
  const { task } = await ctx.repo.insertTask({ id: newId(), tenant: 'default', type, payload, priority: 5, maxAttempts, backoff });
  return publishTask({ repository: ctx.repo, publisher: connection.publisher, log: testLog }, task);
}

const statusIs = (ctx: Ctx, id: string, status: string) =>
  eventually(async () => (await ctx.repo.getTask(id)).status === status, 10_000, `task ${id} to be ${status}`);

async function eventsOf(baseUrl: string, id: string): Promise<TaskEvent[]> {
  const res = await request<{ items: TaskEvent[] }>(baseUrl, 'GET', `${TASKS}/${id}/events`);
  assert.is(res.status, 200, res.text);
  for (const event of res.body.items) assert.match(event.at, ISO);
  const times = res.body.items.map((event) => Date.parse(event.at));
  assert.equal(times, [...times].sort((a, b) => a - b), 'events come oldest first');
  return res.body.items;
}

/**
 * A worker may claim a task between the broker's confirm and the publisher recording it; then the task was
 * never `queued` and no `published` follows `submitted`. Both orders are correct; this removes that one event.
 */
function withoutSubmitPublish(events: TaskEvent[]): TaskEvent[] {
  return events[1]?.kind === 'published' && events[2]?.kind === 'started' ? [events[0] as TaskEvent, ...events.slice(2)] : events;
}

test('a task that failed once and then completed: submitted, started, attempt_failed with retryAt, published by the relay, started, completed', async (ctx) => {
  const task = await submitDirect(ctx, ctx.main, 'flaky', {}, 2);
  await statusIs(ctx, task.id, 'completed');
  const events = withoutSubmitPublish(await eventsOf(ctx.baseUrl, task.id));
  assert.equal(events.map((e) => [e.kind, e.attempt]), [['submitted', 0], ['started', 1], ['attempt_failed', 1], ['published', 1], ['started', 2], ['completed', 2]]);
  const [submitted, first, failed, relayed, second, completed] = events as [TaskEvent, TaskEvent, TaskEvent, TaskEvent, TaskEvent, TaskEvent];
  assert.equal([submitted.workerId, first.workerId, failed.workerId, second.workerId, completed.workerId], [null, WORKER_ID, WORKER_ID, WORKER_ID, WORKER_ID]);
  // Due at once: run_at was set by the same statement, just before the event was written (the task row itself
  // has moved on to its retry's run_at by now).
  assert.equal(Object.keys(submitted.detail).sort(), ['priority', 'runAt']);
  assert.is(submitted.detail['priority'], 5);
  const dueFor = Date.parse(submitted.at) - Date.parse(submitted.detail['runAt'] as string);
  assert.ok(dueFor >= 0 && dueFor < 1000, `runAt ${dueFor} ms before the submitted event`);
  assert.equal(Object.keys(failed.detail).sort(), ['message', 'retryAt']);
  assert.is(failed.detail['message'], 'flaky: attempt 1 fails on purpose');
  const retryAt = failed.detail['retryAt'] as string;
  assert.match(retryAt, ISO);
  const wait = Date.parse(retryAt) - Date.parse(failed.at);
  assert.ok(wait > RETRY_DELAY_MS - 150 && wait <= RETRY_DELAY_MS + 50, `retryAt ${wait} ms after the failure, the fixed backoff`);
  assert.equal(relayed.detail, { by: 'relay' });
  assert.ok(Date.parse(relayed.at) >= Date.parse(retryAt), 'the relay publishes the retry only once it is due');
  assert.equal(completed.detail, {});
  const stored = await ctx.repo.getTask(task.id);
  assert.equal([stored.attempts, stored.result, stored.errors.map((e) => e.message)], [2, { attempt: 2 }, ['flaky: attempt 1 fails on purpose']]);
});

test('cancelling a running task: cancel_requested, then cancelled by its worker', async (ctx) => {
  const res = await request(ctx.baseUrl, 'POST', TASKS, { type: 'sleep', payload: { ms: 60_000 } });
  assert.is(res.status, 201, res.text);
  await statusIs(ctx, res.body.id, 'in_progress');
  assert.is((await request(ctx.baseUrl, 'POST', `${TASKS}/${res.body.id}/cancel`)).status, 202);
  await statusIs(ctx, res.body.id, 'cancelled');
  const events = withoutSubmitPublish(await eventsOf(ctx.baseUrl, res.body.id));
  assert.equal(events.map((e) => [e.kind, e.attempt, e.workerId]), [
    ['submitted', 0, null],
    ['started', 1, WORKER_ID],
    ['cancel_requested', 1, WORKER_ID],
    ['cancelled', 1, WORKER_ID],
  ]);
});

test('a worker stopping with a tiny shutdown timeout hands its running task back: handed_back, then published again', async (ctx) => {
  // A queue of its own, so that the task can only reach the worker this test stops.
  const queue = freshQueueName();
  ctx.queues.push(queue);
  const connection = await connect(ctx, queue);
  const task = await submitDirect(ctx, connection, 'sleep', { ms: 60_000 });
  assert.is(task.status, 'queued', 'published before any worker consumes the queue');
  const worker = await startWorker(ctx, connection, queue, 'leaving-worker', 50);
  await statusIs(ctx, task.id, 'in_progress');
  await worker.stop();
  const events = await eventsOf(ctx.baseUrl, task.id);
  assert.equal(events.map((e) => [e.kind, e.attempt]), [['submitted', 0], ['published', 0], ['started', 1], ['handed_back', 0], ['published', 0]]);
  assert.is(events[2]?.workerId, 'leaving-worker');
  // The hand-back does not count the attempt; its detail says which attempt was given up.
  assert.equal(events[3]?.detail, { attempt: 1 });
  const stored = await ctx.repo.getTask(task.id);
  assert.equal([stored.status, stored.attempts], ['queued', 0]);
});

test('events of an unknown id are a 404 problem, of a malformed id a 400 problem', async (ctx) => {
  const id = randomUUID();
  const missing = await request(ctx.baseUrl, 'GET', `${TASKS}/${id}/events`);
  assert.is(missing.status, 404);
  assert.ok(missing.headers.get('content-type')?.startsWith('application/problem+json'));
  assert.equal([missing.body.status, missing.body.instance], [404, `${TASKS}/${id}/events`]);
  assert.match(missing.body.detail, id);
  const malformed = await request(ctx.baseUrl, 'GET', `${TASKS}/not-a-task/events`);
  assert.is(malformed.status, 400);
  assert.ok(malformed.headers.get('content-type')?.startsWith('application/problem+json'));
  assert.is(malformed.body.errors[0].path, 'id');
});

test('deleting a task deletes its events', async (ctx) => {
  const res = await request(ctx.baseUrl, 'POST', TASKS, { type: 'sleep', payload: { ms: 0 } });
  assert.is(res.status, 201, res.text);
  await statusIs(ctx, res.body.id, 'completed');
  const count = async () => (await ctx.db.query<{ n: number }>('SELECT count(*)::int AS n FROM task_events WHERE task_id = $1', [res.body.id])).rows[0]?.n;
  assert.ok(((await count()) ?? 0) >= 3, 'submitted, started and completed were recorded');
  assert.is((await request(ctx.baseUrl, 'DELETE', `${TASKS}/${res.body.id}`)).status, 204);
  assert.is(await count(), 0);
  assert.is((await request(ctx.baseUrl, 'GET', `${TASKS}/${res.body.id}/events`)).status, 404);
});

test.run();
