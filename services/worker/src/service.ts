import type { Config } from '../../core/src/config.ts';
import { Database } from '../../core/src/db/database.ts';
import { Lifecycle } from '../../core/src/lifecycle.ts';
import type { Logger } from '../../core/src/log.ts';
import { Broker } from '../../core/src/queue/broker.ts';
import { Publisher } from '../../core/src/queue/publisher.ts';
import { Worker } from './worker.ts';

export type WorkerService = { lifecycle: Lifecycle; database: Database; worker: () => Worker | null };

/**
 * Wires a worker: database (schema migrated) → RabbitMQ connection → publisher (for retries) → consumer.
 * Stopping runs the reverse: stop consuming, finish or hand back running tasks, then close connections.
 */
export function createWorkerService(config: Config, log: Logger): WorkerService {
  const lifecycle = new Lifecycle(log);
  const database = new Database(config, 'conveyor-worker', log);
  const broker = new Broker({ url: config.amqpUrl, connectionName: `conveyor-worker-${config.workerId}` }, log);
  const publisher = new Publisher({ broker, queue: config.tasksQueue, confirmTimeoutMs: config.publishTimeoutMs }, log);
  let worker: Worker | null = null;

  lifecycle
    .add({ name: 'database', start: () => database.start(), stop: () => database.stop() })
    .add({ name: 'broker', start: () => broker.start(), stop: () => broker.close() })
    .add({ name: 'publisher', start: () => publisher.start(), stop: () => publisher.stop() })
    .add({
      name: 'worker',
      start: () => {
        worker = new Worker(
          {
            broker,
            publisher,
            repository: database.tasks(),
            queue: config.tasksQueue,
            concurrency: config.workerConcurrency,
            shutdownTimeoutMs: config.shutdownTimeoutMs,
          },
          log,
        );
        return worker.start();
      },
      stop: async () => worker?.stop(),
    });

  return { lifecycle, database, worker: () => worker };
}
