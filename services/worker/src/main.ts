import { loadConfig } from '../../core/src/config.ts';
import { Database } from '../../core/src/db/database.ts';
import { Lifecycle, runUntilSignalled } from '../../core/src/lifecycle.ts';
import { createLogger } from '../../core/src/log.ts';
import { Broker } from '../../core/src/queue/broker.ts';
import { Publisher } from '../../core/src/queue/publisher.ts';
import { Worker } from './worker.ts';

const config = loadConfig();
const log = createLogger({ service: 'worker', level: config.logLevel }).child({ workerId: config.workerId });
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

await runUntilSignalled(lifecycle, log, config.shutdownTimeoutMs + 10_000);
