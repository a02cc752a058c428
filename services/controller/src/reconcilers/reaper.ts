import type { TasksRepository } from '../../../core/src/db/tasks-repository.ts';
import type { Logger } from '../../../core/src/log.ts';
import type { Metrics } from '../../../core/src/metrics.ts';
import { Periodic } from '../../../core/src/periodic.ts';
import { reapExpiredLeases, reconcileQueued } from '../../../core/src/tasks/maintenance.ts';

/**
 * The cluster's stale requeue: while this replica leads, settles tasks whose worker was lost and sends back
 * queued tasks RabbitMQ lost, on a timer. The functions are the shared core's, safe to run beside the API's.
 */
export function createReaperLoop(
  options: { repository: TasksRepository; readyMessages: () => Promise<number>; intervalMs: number; queuedReconcileMs: number; metrics: Metrics },
  log: Logger,
): Periodic {
  const scoped = log.child({ component: 'reaper' });
  return new Periodic(
    'reaper',
    options.intervalMs,
    async () => {
      await reapExpiredLeases(options.repository, scoped, options.metrics);
      await reconcileQueued(options.repository, options.readyMessages, options.queuedReconcileMs, scoped);
    },
    log,
  );
}
