import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { eventually, request, TestWorld } from '../support/system.ts';

type Ctx = { world: TestWorld; baseUrl: string; repository: Awaited<ReturnType<TestWorld['startApi']>>['repository'] };
const test = suite<Ctx>('api: tasks');

test.before(async (ctx) => {
  ctx.world = await TestWorld.create();
  const api = await ctx.world.startApi();
  ctx.baseUrl = api.baseUrl;
  ctx.repository = api.repository;
  await eventually(async () => api.broker.connected, 10_000, 'the API to connect to RabbitMQ');
});

test.after(async (ctx) => {
  await ctx.world.teardown();
});

test('POST /api/v1/tasks stores and publishes a task: 201, Location, defaults', async ({ baseUrl }) => {
  const res = await request(baseUrl, 'POST', '/api/v1/tasks', { type: 'echo', payload: { hello: 'world' } });
  assert.is(res.status, 201);
  assert.is(res.headers.get('location'), `/api/v1/tasks/${res.body.id}`);
  assert.match(res.body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(
    { ...res.body, id: undefined, createdAt: undefined, updatedAt: undefined },
    {
      id: undefined,
      type: 'echo',
      payload: { hello: 'world' },
      priority: 5,
      status: TaskStatus.queued,
      attempts: 0,
      maxAttempts: 1,
      result: null,
      error: null,
      createdAt: undefined,
      updatedAt: undefined,
      startedAt: null,
      finishedAt: null,
    },
  );
  const read = await request(baseUrl, 'GET', `/api/v1/tasks/${res.body.id}`);
  assert.is(read.status, 200);
  assert.is(read.body.status, TaskStatus.queued);
});

test.run();
