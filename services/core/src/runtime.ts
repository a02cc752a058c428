import type { Config } from './config.ts';
import { Database } from './db/database.ts';
import { pingDatabase } from './db/pool.ts';
import type { Component } from './lifecycle.ts';
import type { Logger } from './log.ts';
import { setTimeout as delay } from 'node:timers/promises';
import { Gauge } from 'prom-client';
import type { Metrics } from './metrics.ts';
import { ProbeServer } from './probes.ts';
import { Broker } from './queue/broker.ts';
import { Publisher } from './queue/publisher.ts';

export type Runtime = Readonly<{
  database: Database;
  broker: Broker;
  publisher: Publisher;
  /** In start order: database (schema migrated) → RabbitMQ connection → publisher. */
  components: readonly Component[];
  /** The dependencies that are unreachable right now (for readiness); empty when all answer. */
  unavailable: () => Promise<string[]>;
}>;

/** What every Conveyor process holds: PostgreSQL, a RabbitMQ connection, and a publisher on it. */
export function createRuntime(config: Config, log: Logger, connectionName: string, metrics?: Metrics): Runtime {
  const database = new Database(config, connectionName, log);
  const broker = new Broker({ url: config.amqpUrl, connectionName, metrics }, log);
  const publisher = new Publisher({ broker, queue: config.tasksQueue, confirmTimeoutMs: config.publishTimeoutMs, metrics }, log);
  if (metrics) {
    new Gauge({
      name: 'conveyor_database_up',
      help: '1 when PostgreSQL answers this process (checked at each scrape).',
      registers: [metrics.registry],
      async collect() {
        // A hung database must not hang the scrape: no answer within a second counts as down.
        const ping = Promise.resolve().then(() => pingDatabase(database.pool)).then(() => 1, () => 0);
        this.set(await Promise.race([ping, delay(1_000, 0, { ref: false })]));
      },
    });
  }
  return {
    database,
    broker,
    publisher,
    unavailable: async () => [
      ...(await pingDatabase(database.pool).then(() => [], () => ['database'])),
      ...(broker.connected ? [] : ['broker']),
    ],
    components: [
      { name: 'database', start: () => database.start(), stop: () => database.stop() },
      { name: 'broker', start: () => broker.start(), stop: () => broker.close() },
      { name: 'publisher', start: () => publisher.start(), stop: () => publisher.stop() },
    ],
  };
}

/** The probe server of a process with no HTTP port of its own (worker, controller): its metrics, and ready while PostgreSQL and RabbitMQ answer. */
export function createProbes(config: Config, runtime: Runtime, metrics: Metrics, log: Logger): ProbeServer {
  return new ProbeServer({ registry: metrics.registry, host: config.host, port: config.metricsPort, unavailable: runtime.unavailable }, log);
}
