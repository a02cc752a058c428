import Router from '@koa/router';
import Koa from 'koa';
import { Scope } from '../../core/src/auth/api-key.ts';
import type { Config } from '../../core/src/config.ts';
import type { ApiKeysRepository } from '../../core/src/db/api-keys-repository.ts';
import type { TasksRepository } from '../../core/src/db/tasks-repository.ts';
import type { DatabasePool } from '../../core/src/db/pool.ts';
import type { Logger } from '../../core/src/log.ts';
import type { Metrics } from '../../core/src/metrics.ts';
import type { Broker } from '../../core/src/queue/broker.ts';
import type { ControlChannel } from '../../core/src/queue/control.ts';
import type { Publisher } from '../../core/src/queue/publisher.ts';
import { authenticate, type Authenticator, requireScope } from './auth.ts';
import { problemDetails } from './problem.ts';
import { rateLimit } from './rate-limit.ts';
import { requestContext } from './request-context.ts';
import { docsRouter } from './routes/docs.ts';
import { healthRouter } from './routes/health.ts';
import { keysRouter } from './routes/keys.ts';
import { tasksRouter } from './routes/tasks.ts';
import { securityHeaders } from './security-headers.ts';

export type AppSettings = Pick<Config, 'bodyLimitBytes' | 'publicDocs' | 'publicMetrics' | 'rateLimitPerSecond' | 'rateLimitBurst'>;

export type AppDeps = {
  pool: DatabasePool;
  broker: Broker;
  publisher: Publisher;
  control: ControlChannel;
  metrics: Metrics;
  repository: TasksRepository;
  keys: ApiKeysRepository;
  auth: Authenticator;
  settings: AppSettings;
  log: Logger;
  isShuttingDown: () => boolean;
};

/** Paths served without a key: the probes always, the docs and metrics when configured so. */
function openPaths(settings: AppSettings): (path: string) => boolean {
  return (path) =>
    path === '/healthz' ||
    path === '/readyz' ||
    (settings.publicDocs && (path === '/docs' || path.startsWith('/docs/') || path === '/openapi.json')) ||
    (settings.publicMetrics && path === '/metrics');
}

/** Builds the Koa application without listening (tests mount `app.callback()` on an ephemeral port). */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.proxy = true;
  app.on('error', (error: unknown, ctx?: Koa.Context) => {
    deps.log.error({ err: error, method: ctx?.method, path: ctx?.path, requestId: ctx?.state['requestId'] }, 'request failed');
  });

  const { settings } = deps;
  const router = new Router();
  const metricsGuard = settings.publicMetrics ? [] : [requireScope(Scope.admin)];
  router.get('/metrics', ...metricsGuard, async (ctx) => {
    ctx.type = deps.metrics.registry.contentType;
    ctx.body = await deps.metrics.registry.metrics();
  });
  const children = [
    tasksRouter({ ...deps, bodyLimitBytes: settings.bodyLimitBytes }),
    keysRouter({ keys: deps.keys, auth: deps.auth, bodyLimitBytes: settings.bodyLimitBytes, log: deps.log }),
    healthRouter(deps),
    docsRouter(),
  ];
  for (const child of children) router.use(child.routes());
  app.use(requestContext(deps.log, deps.metrics));
  app.use(securityHeaders());
  app.use(problemDetails());
  app.use(authenticate(deps.auth, openPaths(settings)));
  app.use(rateLimit(settings.rateLimitPerSecond, settings.rateLimitBurst));
  app.use(router.routes());
  // 405 (with `Allow`) for a known path and a wrong method, 501 for an unknown method; problemDetails writes the body.
  app.use(router.allowedMethods());
  return app;
}
