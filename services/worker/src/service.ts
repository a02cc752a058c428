import type { Config } from '../../core/src/config.ts';
import type { Database } from '../../core/src/db/database.ts';
import { Lifecycle } from '../../core/src/lifecycle.ts';
import type { Logger } from '../../core/src/log.ts';
import { createMetrics } from '../../core/src/metrics.ts';
import type { ProbeServer } from '../../core/src/probes.ts';
import { createProbes, createRuntime } from '../../core/src/runtime.ts';
import { Worker } from './worker.ts';

export type WorkerService = { lifecycle: Lifecycle; database: Database; probes: ProbeServer; worker: () => Worker | null };

/**
 * Wires a worker: database (schema migrated) → RabbitMQ connection → publisher (for hand-backs) → worker.
 * Stopping runs the reverse: stop consuming, finish or hand back running tasks, then close connections.
 */
export function createWorkerService(config: Config, log: Logger): WorkerService {
  const lifecycle = new Lifecycle(log);
  const metrics = createMetrics('worker');
  const runtime = createRuntime(config, log, `conveyor-worker-${config.workerId}`, metrics);
  const { database, broker, publisher, components } = runtime;
  const probes = createProbes(config, runtime, metrics, log);
  let worker: Worker | null = null;

  lifecycle.add(...components, { name: 'probes', start: () => probes.start(), stop: () => probes.stop() }, {
    name: 'worker',
    start: () => {
      worker = new Worker(
        {
          broker,
          publisher,
          repository: database.tasks(),
          attempts: database.attempts(),
          queue: config.tasksQueue,
          concurrency: config.workerConcurrency,
          workerId: config.workerId,
          leaseMs: config.taskLeaseMs,
          shutdownTimeoutMs: config.shutdownTimeoutMs,
          cancelGraceMs: config.cancelGraceMs,
          metrics,
        },
        log,
      );
      return worker.start();
    },
    stop: async () => worker?.stop(),
  });

  return { lifecycle, database, probes, worker: () => worker };
}
