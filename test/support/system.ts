// Starts the real API and worker in-process, wired exactly as their main.ts wires them, on a test file's own
// database and queue, and talks to them over HTTP.
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { suite, type Test } from 'uvu';
import { type Config, loadConfig } from '../../services/core/src/config.ts';
import { createLogger, type Logger } from '../../services/core/src/log.ts';
import type { Task } from '../../services/core/src/tasks/model.ts';
import { FINISHED_STATUSES, type TaskStatus } from '../../services/core/src/tasks/state.ts';
import { createApiService } from '../../services/api/src/service.ts';
import { createWorkerService, type WorkerService } from '../../services/worker/src/service.ts';
import { controlExchange } from '../../services/core/src/queue/control.ts';
import { deleteExchanges, deleteQueues, dropDatabase, freshDatabaseUrl, freshQueueName } from './isolation.ts';
import { services } from './services.ts';

export const testLog: Logger = createLogger({ service: 'test', level: process.env['TEST_LOG_LEVEL'] ?? 'silent' });

/** A test file's private world: its database and queue, and every service it started, all torn down together. */
export class TestWorld {
  readonly env: Record<string, string>;
  readonly #stops: (() => Promise<void>)[] = [];
  readonly #queues: string[];

  private constructor(env: Record<string, string>) {
    this.env = env;
    this.#queues = [env['TASKS_QUEUE'] as string];
  }

  static async create(): Promise<TestWorld> {
    const { amqpUrl } = await services();
    return new TestWorld({
      DATABASE_URL: await freshDatabaseUrl(),
      AMQP_URL: amqpUrl,
      TASKS_QUEUE: freshQueueName(),
      HOST: '127.0.0.1',
      // Most tests are about tasks, not keys: they act for the default tenant (test/api/auth tests turn keys on).
      AUTH_MODE: 'none',
      PORT: '0',
      METRICS_PORT: '0',
      LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'silent',
      // Tests wait on the relay (retries, delayed tasks, outages): a short tick keeps them quick.
      RELAY_INTERVAL_MS: '100',
    });
  }

  config(overrides: Record<string, string> = {}): Config {
    return loadConfig({ ...this.env, ...overrides });
  }

  /** Starts an API; `overrides` change its environment (e.g. an AMQP_URL where nothing listens). */
  async startApi(overrides: Record<string, string> = {}) {
    const api = createApiService(this.config(overrides), testLog);
    await api.lifecycle.start();
    this.#stops.push(() => api.lifecycle.stop());
    return { ...api, baseUrl: api.url(), repository: api.database.tasks(), attempts: api.database.attempts() };
  }

  async startWorker(overrides: Record<string, string> = {}): Promise<WorkerService> {
    const worker = createWorkerService(this.config(overrides), testLog);
    await worker.lifecycle.start();
    this.#stops.push(() => worker.lifecycle.stop());
    return worker;
  }

  async teardown(): Promise<void> {
    for (const stop of this.#stops.reverse()) await stop().catch(() => undefined);
    await dropDatabase(this.env['DATABASE_URL'] as string);
    await deleteQueues(this.#queues);
    await deleteExchanges(this.#queues.map(controlExchange));
  }
}

/** A suite's world with a running API, and a PostgreSQL client for what the API does not show. */
export type ApiSuiteCtx = {
  world: TestWorld;
  baseUrl: string;
  queue: string;
  db: pg.Client;
};

/** A suite with its own database, queue and API (started with `apiEnv`); no worker until a test starts one. */
export function apiSuite(name: string, apiEnv: Record<string, string> = {}): Test<ApiSuiteCtx> {
  const test = suite<ApiSuiteCtx>(name, {} as ApiSuiteCtx);
  test.before(async (ctx) => {
    ctx.world = await TestWorld.create();
    ctx.queue = ctx.world.env['TASKS_QUEUE'] as string;
    const api = await ctx.world.startApi(apiEnv);
    ctx.baseUrl = api.baseUrl;
    await eventually(async () => api.broker.connected, 10_000, 'the API to connect to RabbitMQ');
    // The API created the database on start, so it exists by now.
    ctx.db = new pg.Client({ connectionString: ctx.world.env['DATABASE_URL'] as string });
    await ctx.db.connect();
  });
  test.after(async (ctx) => {
    await ctx.db?.end();
    await ctx.world?.teardown();
  });
  return test;
}

/**
 * Polls `probe` until it returns something other than `undefined`/`false`, or fails after `timeoutMs`.
 * For state that lives in another system (a row a worker writes), where there is no event to await.
 */
export async function eventually<T>(probe: () => Promise<T | undefined | false>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}

export type HttpResult<T = any> = { status: number; headers: Headers; body: T; text: string };

/** A request to the API; the body is sent as JSON unless it is already a string. */
export async function request<T = any>(baseUrl: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult<T>> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const response = await fetch(baseUrl + path, init);
  const text = await response.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, body: parsed as T, text };
}

/** Reads a task through the API, which must know it. */
export async function getTask(baseUrl: string, id: string): Promise<Task> {
  const res = await request<Task>(baseUrl, 'GET', `/api/v1/tasks/${id}`);
  if (res.status !== 200) throw new Error(`GET task ${id}: ${res.status} ${res.text}`);
  return res.body;
}

/** Waits for the task to reach `status`. */
export function taskIn(baseUrl: string, id: string, status: TaskStatus, timeoutMs = 10_000): Promise<Task> {
  return eventually(
    async () => {
      const task = await getTask(baseUrl, id);
      return task.status === status && task;
    },
    timeoutMs,
    `task ${id} to be ${status}`,
  );
}

/**
 * Waits for the task to finish, whichever way, so that a wrong outcome fails on its status rather than on a
 * timeout. A failed attempt with attempts left is `pending`, not finished: this waits through retries.
 */
export function settled(baseUrl: string, id: string, timeoutMs = 10_000): Promise<Task> {
  return eventually(
    async () => {
      const task = await getTask(baseUrl, id);
      return FINISHED_STATUSES.includes(task.status) && task;
    },
    timeoutMs,
    `task ${id} to finish`,
  );
}
