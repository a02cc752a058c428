import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { migrate } from './migrate.ts';
import { type DatabasePool, openPool } from './pool.ts';
import { ApiKeysRepository } from './api-keys-repository.ts';
import { AttemptsRepository } from './attempts-repository.ts';
import { TaskUpkeep } from './task-upkeep.ts';
import { TasksRepository } from './tasks-repository.ts';

/** The database as a lifecycle component: opens the pool and brings the schema up to date on start. */
export class Database {
  readonly #config: Config;
  readonly #log: Logger;
  readonly #applicationName: string;
  #pool: DatabasePool | null = null;
  #tasks: TasksRepository | null = null;
  #attempts: AttemptsRepository | null = null;

  constructor(config: Config, applicationName: string, log: Logger) {
    this.#config = config;
    this.#applicationName = applicationName;
    this.#log = log.child({ component: 'database' });
  }

  /** @throws {DatabaseUnavailable} when PostgreSQL cannot be reached. */
  async start(): Promise<void> {
    const pool = await openPool(
      this.#config.databaseUrl,
      { maxPoolSize: this.#config.databasePoolSize, applicationName: this.#applicationName },
      this.#log,
    );
    this.#pool = pool;
    await migrate(this.#config.databaseUrl, this.#log);
  }

  get pool(): DatabasePool {
    if (!this.#pool) throw new Error('database not started');
    return this.#pool;
  }

  /** One repository per process, so that every caller's hot-path writes are grouped together. */
  tasks(): TasksRepository {
    this.#tasks ??= new TasksRepository(this.pool);
    return this.#tasks;
  }

  /** One per process, like {@link tasks}. */
  attempts(): AttemptsRepository {
    this.#attempts ??= new AttemptsRepository(this.pool);
    return this.#attempts;
  }

  upkeep(): TaskUpkeep {
    return new TaskUpkeep(this.pool);
  }

  apiKeys(): ApiKeysRepository {
    return new ApiKeysRepository(this.pool);
  }

  async stop(): Promise<void> {
    const pool = this.#pool;
    this.#pool = null;
    this.#tasks = null;
    this.#attempts = null;
    await pool?.end();
  }
}
