import { setTimeout as delay } from 'node:timers/promises';
import Router from '@koa/router';

const READINESS_TIMEOUT_MS = 2_000;
import type { DatabasePool } from '../../../core/src/db/pool.ts';
import { pingDatabase } from '../../../core/src/db/pool.ts';
import type { Broker } from '../../../core/src/queue/broker.ts';
import { PROBLEM_TYPE_BASE, sendProblem } from '../problem.ts';

export type HealthDeps = { pool: DatabasePool; broker: Broker; isShuttingDown: () => boolean };

export function healthRouter(deps: HealthDeps): Router {
  const router = new Router();

  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });

  router.get('/readyz', async (ctx) => {
    // A silently partitioned database never answers: no answer within the limit counts as down.
    const database = await Promise.race([
      pingDatabase(deps.pool).then(
        () => 'up' as const,
        () => 'down' as const,
      ),
      delay(READINESS_TIMEOUT_MS, 'down' as const, { ref: false }),
    ]);
    const broker = deps.broker.connected ? ('up' as const) : ('down' as const);
    const checks = { database, broker };
    if (deps.isShuttingDown()) {
      sendProblem(ctx, { type: PROBLEM_TYPE_BASE + 'shutting-down', status: 503, detail: 'the API is shutting down', checks });
      return;
    }
    const down = Object.entries(checks).filter(([, state]) => state === 'down').map(([name]) => name);
    if (down.length > 0) {
      const names = down.map((name) => (name === 'database' ? 'PostgreSQL' : 'RabbitMQ')).join(' and ');
      sendProblem(ctx, { type: PROBLEM_TYPE_BASE + 'not-ready', status: 503, detail: `${names} not reachable`, checks });
      return;
    }
    ctx.body = { status: 'ok', checks };
  });

  return router;
}
