import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/**
 * The process's Prometheus metrics, all prefixed `conveyor_`, with bounded labels (task type, outcome;
 * never a task id). One registry per process, created at start and handed to the components that count.
 */
export function createMetrics(service: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: 'conveyor_' });
  return {
    registry,
    cancelLatency: new Histogram({
      name: 'conveyor_task_cancel_latency_seconds',
      help: 'From a cancel request on a running task to the task ending cancelled.',
      labelNames: ['type'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    duplicateExecutions: new Counter({
      name: 'conveyor_task_duplicate_executions_total',
      help: 'Attempts whose lease was lost while their handler ran: another attempt or a cancellation owns the task, so their outcome was discarded.',
      labelNames: ['type'],
      registers: [registry],
    }),
    relayed: new Counter({
      name: 'conveyor_relay_published_total',
      help: 'Pending tasks the outbox relay published (after an outage, a backoff, a delay or a hand-back).',
      registers: [registry],
    }),
    reaped: new Counter({
      name: 'conveyor_tasks_reaped_total',
      help: 'Running tasks whose lease expired (worker lost), by what became of them.',
      labelNames: ['outcome'],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
