import { loadConfig } from '../../core/src/config.ts';
import { Database } from '../../core/src/db/database.ts';
import { Lifecycle, runUntilSignalled } from '../../core/src/lifecycle.ts';
import { createLogger } from '../../core/src/log.ts';
import { Broker } from '../../core/src/queue/broker.ts';
import { Publisher } from '../../core/src/queue/publisher.ts';
import { createApp } from './app.ts';
import { HttpServer } from './server.ts';

const config = loadConfig();
const log = createLogger({ service: 'api', level: config.logLevel });
const lifecycle = new Lifecycle(log);
const database = new Database(config, 'conveyor-api', log);
const broker = new Broker({ url: config.amqpUrl, connectionName: 'conveyor-api' }, log);
const publisher = new Publisher({ broker, queue: config.tasksQueue, confirmTimeoutMs: config.publishTimeoutMs }, log);
let shuttingDown = false;
let server: HttpServer | null = null;

lifecycle
  .add({ name: 'database', start: () => database.start(), stop: () => database.stop() })
  .add({ name: 'broker', start: () => broker.start(), stop: () => broker.close() })
  .add({ name: 'publisher', start: () => publisher.start(), stop: () => publisher.stop() })
  .add({
    name: 'http',
    start: () => {
      const app = createApp({
        pool: database.pool,
        repository: database.tasks(),
        broker,
        publisher,
        log,
        isShuttingDown: () => shuttingDown,
      });
      server = new HttpServer(app, { host: config.host, port: config.port }, log);
      return server.start();
    },
    stop: async () => {
      // Readiness answers 503 from here on, so a load balancer stops sending before the listener closes.
      shuttingDown = true;
      await server?.stop();
    },
  });

await runUntilSignalled(lifecycle, log, config.shutdownTimeoutMs + 5_000);
