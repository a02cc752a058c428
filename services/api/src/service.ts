import type { Config } from '../../core/src/config.ts';
import type { Database } from '../../core/src/db/database.ts';
import { Lifecycle } from '../../core/src/lifecycle.ts';
import type { Logger } from '../../core/src/log.ts';
import type { Broker } from '../../core/src/queue/broker.ts';
import { ControlChannel } from '../../core/src/queue/control.ts';
import { createMetrics, observeTaskTable } from '../../core/src/metrics.ts';
import { createRuntime } from '../../core/src/runtime.ts';
import { Maintenance } from '../../core/src/tasks/maintenance.ts';
import { Relay } from '../../core/src/tasks/relay.ts';
import { ALL_SCOPES } from '../../core/src/auth/api-key.ts';
import { createApp } from './app.ts';
import { Authenticator } from './auth.ts';
import { HttpServer } from './server.ts';

export type ApiService = { lifecycle: Lifecycle; database: Database; broker: Broker; url: () => string };

/**
 * Wires the API: database (schema migrated) → RabbitMQ connection → publisher → control channel → outbox
 * relay → maintenance (lease reaper, lost-message reconciliation, retention) → bootstrap key → HTTP server.
 * Stopping runs the reverse: readiness turns 503 and the listener closes, then the rest.
 */
export function createApiService(config: Config, log: Logger): ApiService {
  const lifecycle = new Lifecycle(log);
  const metrics = createMetrics('api');
  const { database, broker, publisher, components } = createRuntime(config, log, 'conveyor-api', metrics);
  const control = new ControlChannel({ broker, queue: config.tasksQueue }, log);
  observeTaskTable(metrics, () => database.upkeep().gauges());
  let relay: Relay | null = null;
  let maintenance: Maintenance | null = null;
  let shuttingDown = false;
  let server: HttpServer | null = null;

  lifecycle.add(...components, { name: 'control', start: () => control.start(), stop: () => control.stop() }, {
    name: 'relay',
    start: () => {
      relay = new Relay({ upkeep: database.upkeep(), publisher, broker, intervalMs: config.relayIntervalMs, metrics }, log);
      return relay.start();
    },
    stop: async () => relay?.stop(),
  }, {
    name: 'maintenance',
    start: async () => {
      maintenance = new Maintenance(
        {
          upkeep: database.upkeep(),
          readyMessages: () => publisher.depth(),
          intervalMs: config.reaperIntervalMs,
          queuedReconcileMs: config.queuedReconcileMs,
          retentionMs: config.taskRetentionMs,
          retentionIntervalMs: config.retentionIntervalMs,
          metrics,
        },
        log,
      );
      maintenance.start();
    },
    stop: async () => maintenance?.stop(),
  }, {
    name: 'auth',
    start: async () => {
      if (config.authMode === 'none') {
        log.warn({ host: config.host }, 'AUTH_MODE=none: every request acts for the default tenant with every scope; listening on loopback only');
      } else if (config.authBootstrapKey) {
        const key = { tenant: config.authBootstrapTenant, scopes: ALL_SCOPES, name: 'bootstrap' };
        await database.apiKeys().ensureKey(key, config.authBootstrapKey);
      }
    },
    stop: async () => undefined,
  }, {
    name: 'http',
    start: () => {
      const keys = database.apiKeys();
      const app = createApp({
        pool: database.pool,
        repository: database.tasks(),
        keys,
        auth: new Authenticator({ mode: config.authMode, cacheMs: config.authCacheMs, keys }),
        settings: config,
        broker,
        publisher,
        control,
        metrics,
        log,
        isShuttingDown: () => shuttingDown,
      });
      server = new HttpServer(app, config, log);
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
