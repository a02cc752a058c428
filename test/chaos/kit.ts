// What the chaos suites share: services run as child processes (so that a worker can be SIGKILLed and every log
// line read), optional proxies between them and PostgreSQL / RabbitMQ, direct reads of the task rows for the
// final invariants, and teardown that removes every process, proxy, database, queue and exchange, even after a
// failure.
import { setTimeout as delay } from 'node:timers/promises';
import amqplib from 'amqplib';
import pg from 'pg';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { dropDatabase, freshDatabaseUrl, freshQueueName } from '../support/isolation.ts';
import { ENTRY_POINTS, killAll, type LogLine, type ServiceProcess, spawnService } from '../support/processes.ts';
import { services } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

export const TASKS = '/api/v1/tasks';
/** The first process to start creates and migrates the database; starts are slow on 2 busy cores. */
export const START_MS = 20_000;
const REQUEST_TIMEOUT_MS = 15_000;

export const TERMINAL: readonly string[] = [TaskStatus.completed, TaskStatus.failed, TaskStatus.cancelled];

export type WorldOptions = {
  /** RabbitMQ to use instead of the shared one (a private node). */
  amqpUrl?: string;
  proxyAmqp?: boolean;
  proxyPostgres?: boolean;
  /** Seconds; short heartbeats let a blackholed connection be noticed in seconds rather than 20. */
  heartbeatSeconds?: number;
  /** Environment every process gets, on top of the defaults below. */
  env?: Record<string, string>;
};

/** One test's database, queue, proxies and processes. */
export class ChaosWorld {
  readonly databaseUrl: string;
  readonly amqpUrl: string;
  readonly queue: string;
  readonly amqpProxy: TcpProxy | null;
  readonly pgProxy: TcpProxy | null;
  readonly env: Record<string, string>;
  #pool: pg.Pool | null = null;

  private constructor(fields: Pick<ChaosWorld, 'databaseUrl' | 'amqpUrl' | 'queue' | 'amqpProxy' | 'pgProxy' | 'env'>) {
    this.databaseUrl = fields.databaseUrl;
    this.amqpUrl = fields.amqpUrl;
    this.queue = fields.queue;
    this.amqpProxy = fields.amqpProxy;
    this.pgProxy = fields.pgProxy;
    this.env = fields.env;
  }

  static async create(options: WorldOptions = {}): Promise<ChaosWorld> {
    const databaseUrl = await freshDatabaseUrl();
    const amqpUrl = options.amqpUrl ?? (await services()).amqpUrl;
    const queue = freshQueueName();
    const amqpProxy = options.proxyAmqp ? await TcpProxy.for(amqpUrl) : null;
    const pgProxy = options.proxyPostgres ? await TcpProxy.for(databaseUrl) : null;
    const serviceAmqp = new URL(amqpProxy ? amqpProxy.rewrite(amqpUrl) : amqpUrl);
    if (options.heartbeatSeconds !== undefined) serviceAmqp.searchParams.set('heartbeat', String(options.heartbeatSeconds));
    const env = {
      DATABASE_URL: pgProxy ? pgProxy.rewrite(databaseUrl) : databaseUrl,
      AMQP_URL: serviceAmqp.toString(),
      TASKS_QUEUE: queue,
      HOST: '127.0.0.1',
      AUTH_MODE: 'none',
      PORT: '0',
      LOG_LEVEL: 'info',
      RELAY_INTERVAL_MS: '100',
      REAPER_INTERVAL_MS: '300',
      // Several workers share the machine: each takes an ephemeral port for its probes.
      METRICS_PORT: '0',
      ...options.env,
    };
    return new ChaosWorld({ databaseUrl, amqpUrl, queue, amqpProxy, pgProxy, env });
  }

  /** Spawns an API; resolves once it listens and has its publisher channel. */
  async startApi(overrides: Record<string, string> = {}): Promise<{ api: ServiceProcess; baseUrl: string }> {
    const api = spawnService('api', ENTRY_POINTS.api, { ...this.env, ...overrides });
    const listening = await api.waitForMessage('listening', {}, START_MS);
    await api.waitForMessage('connected to RabbitMQ', {}, START_MS);
    return { api, baseUrl: `http://127.0.0.1:${String(listening['port'])}` };
  }

  /** Spawns a worker without waiting for it (it may be starting into an outage). */
  spawnWorker(workerId: string, overrides: Record<string, string> = {}): ServiceProcess {
    return spawnService(`worker ${workerId}`, ENTRY_POINTS.worker, { ...this.env, WORKER_ID: workerId, ...overrides });
  }

  /** Spawns a worker; resolves once it consumes the queue. */
  async startWorker(workerId: string, overrides: Record<string, string> = {}): Promise<ServiceProcess> {
    const worker = this.spawnWorker(workerId, overrides);
    await worker.waitForMessage('consuming', {}, START_MS);
    return worker;
  }

  /** A direct connection to the test database, past any proxy: the test's view of the truth. */
  get pool(): pg.Pool {
    if (!this.#pool) {
      this.#pool = new pg.Pool({ connectionString: this.databaseUrl, max: 2 });
      // The teardown's DROP DATABASE … WITH (FORCE) can reach a connection that pool.end() is still closing;
      // that error is expected, and unhandled it would end the whole test run.
      this.#pool.on('connect', (client) => client.on('error', () => undefined));
      this.#pool.on('error', () => undefined);
    }
    return this.#pool;
  }

  async rows(ids?: readonly string[]): Promise<TaskRow[]> {
    const where = ids ? 'WHERE id = ANY($1::uuid[])' : '';
    const result = await this.pool.query<TaskRow>(
      `SELECT id, type, payload, status, attempts, max_attempts AS "maxAttempts", result, errors,
              idempotency_key AS "idempotencyKey", cancel_requested_at IS NOT NULL AS "cancelRequested",
              created_at AS "createdAt", finished_at AS "finishedAt"
       FROM tasks ${where} ORDER BY id`,
      ids ? [ids] : [],
    );
    return result.rows;
  }

  /** Tasks not yet in a terminal status. */
  async unfinished(ids?: readonly string[]): Promise<number> {
    const filter = ids ? 'AND id = ANY($2::uuid[])' : '';
    const result = await this.pool.query<{ count: number }>(
      `SELECT count(*)::int AS count FROM tasks WHERE NOT (status::text = ANY($1::text[])) ${filter}`,
      ids ? [TERMINAL, ids] : [TERMINAL],
    );
    return result.rows[0]?.count ?? 0;
  }

  /**
   * Waits until every task in `ids` is finished.
   * @throws after `timeoutMs`, naming the unfinished tasks and quoting the warnings of `processes`.
   */
  async settle(ids: readonly string[], timeoutMs: number, processes: readonly ServiceProcess[] = []): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.unfinished(ids)) > 0) {
      if (Date.now() > deadline) {
        const open = (await this.rows(ids)).filter((row) => !TERMINAL.includes(row.status));
        const described = open.slice(0, 10).map((row) => `${row.id} ${row.type} ${row.status} attempts ${row.attempts}/${row.maxAttempts} errors ${JSON.stringify(row.errors)}`);
        const warnings = processes.flatMap((p) => p.find((line) => line.level === 'warn' || line.level === 'error').slice(-3).map((line) => `  ${p.name}: ${JSON.stringify(line)}`));
        throw new Error(`${open.length} of ${ids.length} tasks unfinished after ${timeoutMs} ms:\n${described.join('\n')}\nlast warnings:\n${warnings.join('\n')}`);
      }
      await delay(100);
    }
  }

  /** Kills every process, closes the proxies, drops the database and deletes the queue; never throws. */
  async teardown(options: { deleteQueue?: boolean } = {}): Promise<void> {
    await killAll().catch(() => undefined);
    await this.amqpProxy?.close().catch(() => undefined);
    await this.pgProxy?.close().catch(() => undefined);
    await this.#pool?.end().catch(() => undefined);
    await dropDatabase(this.databaseUrl).catch((error: unknown) => console.error(`could not drop ${this.databaseUrl}:`, error));
    if (options.deleteQueue !== false) {
      await deleteTopology(this.amqpUrl, this.queue).catch((error: unknown) => console.error(`could not delete ${this.queue}:`, error));
    }
  }
}

export type TaskError = { message: string; attempt: number; at?: string };

export type TaskRow = {
  id: string;
  type: string;
  payload: unknown;
  status: string;
  attempts: number;
  maxAttempts: number;
  result: unknown;
  errors: TaskError[];
  idempotencyKey: string | null;
  cancelRequested: boolean;
  createdAt: Date;
  finishedAt: Date | null;
};

/** The tasks queue and its control exchange (the services declare both). */
async function deleteTopology(amqpUrl: string, queue: string): Promise<void> {
  const connection = await amqplib.connect(amqpUrl);
  try {
    const channel = await connection.createChannel();
    await channel.deleteQueue(queue);
    await channel.deleteExchange(`${queue}.control`);
  } finally {
    await connection.close();
  }
}

export type HttpResult = { status: number; headers: Headers; body: any; text: string };

/**
 * One request with a deadline, so that no wait in a chaos test is unbounded.
 * @throws on network errors and when the deadline passes.
 */
export async function call(baseUrl: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs = REQUEST_TIMEOUT_MS): Promise<HttpResult> {
  const init: RequestInit = { method, headers: { ...headers }, signal: AbortSignal.timeout(timeoutMs) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const response = await fetch(baseUrl + path, init);
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, body: parsed, text };
}

/** Log lines of several processes (workers that came and went) matching `predicate`. */
export function linesOf(processes: readonly ServiceProcess[], predicate: (line: LogLine) => boolean): LogLine[] {
  return processes.flatMap((p) => p.find(predicate));
}

const BROKER_OUTAGE = new Set(['RabbitMQ connection lost', 'RabbitMQ not responding']);

/** A line announcing that RabbitMQ went away (the first one of an outage; reconnect attempts stay quiet). */
export const isBrokerOutage = (line: LogLine) => line['component'] === 'broker' && BROKER_OUTAGE.has(line.msg ?? '');

/** How many warnings a process wrote about RabbitMQ (each is an outage announced), and how many recoveries. */
export function brokerOutageLog(service: ServiceProcess): { outages: number; recoveries: number; lines: string[] } {
  const broker = service.find((line) => line['component'] === 'broker');
  return {
    outages: broker.filter((line) => line.level === 'warn' || line.level === 'error').length,
    recoveries: broker.filter((line) => line.msg === 'RabbitMQ connection restored').length,
    lines: broker.map((line) => `${String(line['time'])} ${line.level ?? ''} ${line.msg ?? ''}`),
  };
}

/**
 * What a task's history must satisfy whatever happened to it: a terminal status, no more attempts than allowed,
 * and one recorded error per attempt that did not end the task (the last attempt of a completed task has none;
 * a cancelled task's last attempt may have none).
 * @returns the violations, empty when the history explains the outcome.
 */
export function historyProblems(row: TaskRow): string[] {
  const problems: string[] = [];
  const errors = row.errors.length;
  if (!TERMINAL.includes(row.status)) problems.push(`not finished: ${row.status}`);
  if (row.attempts > row.maxAttempts) problems.push(`ran ${row.attempts} times, max ${row.maxAttempts}`);
  if (row.status === TaskStatus.completed && errors !== row.attempts - 1) problems.push(`completed after ${row.attempts} attempts with ${errors} errors`);
  if (row.status === TaskStatus.failed && errors !== row.attempts) problems.push(`failed after ${row.attempts} attempts with ${errors} errors`);
  if (row.status === TaskStatus.cancelled && errors !== row.attempts && errors !== row.attempts - 1) {
    problems.push(`cancelled after ${row.attempts} attempts with ${errors} errors`);
  }
  if (row.errors.some((error, index) => error.attempt !== index + 1)) problems.push(`errors out of order: ${JSON.stringify(row.errors)}`);
  return problems;
}

export const since = (start: number) => Math.round(performance.now() - start);
