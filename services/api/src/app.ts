import Router from '@koa/router';
import Koa from 'koa';
import type { TasksRepository } from '../../core/src/db/tasks-repository.ts';
import type { DatabasePool } from '../../core/src/db/pool.ts';
import type { Logger } from '../../core/src/log.ts';
import type { Metrics } from '../../core/src/metrics.ts';
import type { Broker } from '../../core/src/queue/broker.ts';
import type { ControlChannel } from '../../core/src/queue/control.ts';
import type { Publisher } from '../../core/src/queue/publisher.ts';
import { problemDetails } from './problem.ts';
import { requestContext } from './request-context.ts';
import { docsRouter } from './routes/docs.ts';
import { healthRouter } from './routes/health.ts';
import { tasksRouter } from './routes/tasks.ts';

export type AppDeps = {
  pool: DatabasePool;
  broker: Broker;
  publisher: Publisher;
  control: ControlChannel;
  metrics: Metrics;
  repository: TasksRepository;
  log: Logger;
  isShuttingDown: () => boolean;
};

/** Builds the Koa application without listening (tests mount `app.callback()` on an ephemeral port). */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.proxy = true;
  app.on('error', (error: unknown, ctx?: Koa.Context) => {
    deps.log.error({ err: error, method: ctx?.method, path: ctx?.path, requestId: ctx?.state['requestId'] }, 'request failed');
  });

  const router = new Router();
  router.get('/metrics', async (ctx) => {
    ctx.type = deps.metrics.registry.contentType;
    ctx.body = await deps.metrics.registry.metrics();
  });
  for (const child of [tasksRouter(deps), healthRouter(deps), docsRouter()]) router.use(child.routes());
  app.use(requestContext(deps.log, deps.metrics));
  app.use(problemDetails());
  app.use(router.routes());
  // 405 (with `Allow`) for a known path and a wrong method, 501 for an unknown method; problemDetails writes the body.
  app.use(router.allowedMethods());
  return app;
}
