// Core components wired by hand for tests below the services: a migrated database of the file's own, its own
// tasks queue, and as many broker connections with publishers on it as a test asks for.
import pg from 'pg';
import { loadConfig } from '../../services/core/src/config.ts';
import { Database } from '../../services/core/src/db/database.ts';
import type { AttemptsRepository } from '../../services/core/src/db/attempts-repository.ts';
import type { TaskUpkeep } from '../../services/core/src/db/task-upkeep.ts';
import type { NewTask, TasksRepository } from '../../services/core/src/db/tasks-repository.ts';
import { newId } from '../../services/core/src/ids.ts';
import { Broker } from '../../services/core/src/queue/broker.ts';
import { Publisher } from '../../services/core/src/queue/publisher.ts';
import { DEFAULT_BACKOFF } from '../../services/core/src/tasks/backoff.ts';
import type { Task } from '../../services/core/src/tasks/model.ts';
import type { TaskType } from '../../services/core/src/tasks/handler.ts';
import { Worker } from '../../services/worker/src/worker.ts';
import { deleteExchanges, deleteQueues, dropDatabase, freshDatabaseUrl, freshQueueName } from './isolation.ts';
import { backdate } from './repositories.ts';
import { services } from './services.ts';
import { testLog } from './system.ts';
import { within } from './wait.ts';

export type Connection = { broker: Broker; publisher: Publisher; connected: () => Promise<void> };

export class CoreRig {
  readonly database: Database;
  readonly repo: TasksRepository;
  readonly attempts: AttemptsRepository;
  readonly upkeep: TaskUpkeep;
  /** A direct connection, for what the repository does not expose (timestamps to move into the past). */
  readonly db: pg.Client;
  readonly queue: string;
  readonly #databaseUrl: string;
  readonly #amqpUrl: string;
  readonly #stops: (() => Promise<unknown>)[] = [];

  private constructor(database: Database, db: pg.Client, databaseUrl: string, amqpUrl: string) {
    this.database = database;
    this.repo = database.tasks();
    this.attempts = database.attempts();
    this.upkeep = database.upkeep();
    this.db = db;
    this.queue = freshQueueName();
    this.#databaseUrl = databaseUrl;
    this.#amqpUrl = amqpUrl;
  }

  static async create(): Promise<CoreRig> {
    const databaseUrl = await freshDatabaseUrl();
    const database = new Database(loadConfig({ DATABASE_URL: databaseUrl, LOG_LEVEL: 'silent' }), 'conveyor-core-test', testLog);
    await database.start();
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    return new CoreRig(database, db, databaseUrl, (await services()).amqpUrl);
  }

  /**
   * A broker and a publisher on the rig's queue, as one process holds them. `beforeStart` registers more
   * connect hooks after the publisher's (as the services do), before the broker connects; with `start: false`
   * the broker is left for the test to start.
   */
  async connect(
    beforeStart: (broker: Broker, publisher: Publisher) => Promise<void> = async () => undefined,
    options: { start: boolean } = { start: true },
  ): Promise<Connection> {
    const broker = new Broker({ url: this.#amqpUrl, connectionName: 'conveyor-core-test', reconnect: { initialDelayMs: 50, maxDelayMs: 500 } }, testLog);
    const publisher = new Publisher({ broker, queue: this.queue, confirmTimeoutMs: 5_000 }, testLog);
    this.#stops.push(() => broker.close(), () => publisher.stop());
    await publisher.start();
    await beforeStart(broker, publisher);
    let resolve!: () => void;
    const connected = new Promise<void>((r) => (resolve = r));
    await broker.onConnect(async () => resolve());
    if (options.start) await broker.start();
    return { broker, publisher, connected: () => within(connected, 10_000, 'RabbitMQ to connect') };
  }

  /**
   * A worker on the rig's queue, running the given task types, stopped (its control exchange removed) in
   * teardown. `beforeStop` runs first: it lets handlers that wait for the test return.
   */
  async startWorker(
    conn: Connection,
    options: { workerId: string; concurrency: number; cancelGraceMs: number; taskTypes: ReadonlyMap<string, TaskType>; beforeStop: () => void },
  ): Promise<Worker> {
    const { beforeStop, ...rest } = options;
    const worker = new Worker(
      { broker: conn.broker, publisher: conn.publisher, repository: this.repo, attempts: this.attempts, queue: this.queue, leaseMs: 30_000, shutdownTimeoutMs: 500, ...rest },
      testLog,
    );
    await worker.start();
    this.onTeardown(async () => {
      beforeStop();
      await worker.stop();
      await deleteExchanges([`${this.queue}.control`]);
    });
    return worker;
  }

  /** Registers a cleanup that runs, last registered first, in teardown. */
  onTeardown(stop: () => Promise<unknown>): void {
    this.#stops.push(stop);
  }

  /** Stores a pending task (not published), due now unless `runAt` says otherwise. */
  async insert(overrides: Partial<NewTask> = {}): Promise<Task> {
    const { task } = await this.repo.insertTask({ id: newId(), tenant: 'default', type: 'echo', payload: {}, priority: 5, maxAttempts: 1, backoff: DEFAULT_BACKOFF, ...overrides });
    return task;
  }

  /**
   * Moves a timestamp column of these rows `ms` into the past. The relay, the reaper and the sweeps read
   * PostgreSQL's clock, so this is how a test makes a task old without waiting.
   */
  async backdate(ids: readonly string[], column: Parameters<typeof backdate>[2], ms: number): Promise<void> {
    await backdate(this.db, ids, column, ms);
  }

  /**
   * Makes pending tasks look stored a while ago (during an outage, say): the relay leaves a task alone for a
   * moment after it is made pending for immediate publishing, because its submit is publishing it.
   */
  async storedEarlier(ids: readonly string[]): Promise<void> {
    await this.backdate(ids, 'updated_at', 60_000);
  }

  /** Task ids by status, among `ids`, in one consistent read. */
  async statuses(ids: readonly string[]): Promise<Map<string, string>> {
    const { rows } = await this.db.query<{ id: string; status: string }>('SELECT id, status FROM tasks WHERE id = ANY($1::uuid[])', [ids]);
    return new Map(rows.map((row) => [row.id, row.status]));
  }

  async countIn(ids: readonly string[], status: string): Promise<number> {
    return [...(await this.statuses(ids)).values()].filter((s) => s === status).length;
  }

  async teardown(): Promise<void> {
    for (const stop of this.#stops.reverse()) await within(stop(), 10_000, 'a cleanup').catch(() => undefined);
    await this.db.end().catch(() => undefined);
    await this.database.stop();
    await dropDatabase(this.#databaseUrl);
    await deleteQueues([this.queue]);
  }
}

export { within } from './wait.ts';
