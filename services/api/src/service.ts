import type { Config } from '../../core/src/config.ts';
import type { Database } from '../../core/src/db/database.ts';
import { Lifecycle } from '../../core/src/lifecycle.ts';
import type { Logger } from '../../core/src/log.ts';
import type { Broker } from '../../core/src/queue/broker.ts';
import { createRuntime } from '../../core/src/runtime.ts';
import { createApp } from './app.ts';
import { HttpServer } from './server.ts';

export type ApiService = { lifecycle: Lifecycle; database: Database; broker: Broker; url: () => string };

/**
 * Wires the API: database (schema migrated) → RabbitMQ connection → publisher → HTTP server.
 * Stopping runs the reverse: readiness turns 503 and the listener closes, then the rest.
 */
export function createApiService(config: Config, log: Logger): ApiService {
  const lifecycle = new Lifecycle(log);
  const { database, broker, publisher, components } = createRuntime(config, log, 'conveyor-api');
  let shuttingDown = false;
  let server: HttpServer | null = null;

  lifecycle.add(...components, {
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
      shuttingDown = true;
      await server?.stop();
    },
  });

  const url = () => {
    const host = config.host === '0.0.0.0' ? '127.0.0.1' : config.host;
    return `http://${host}:${server?.port ?? config.port}`;
  };
  return { lifecycle, database, broker, url };
}
