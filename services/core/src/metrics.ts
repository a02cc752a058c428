import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

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

/** The controller's own metrics, on the process's registry. */
export function createControllerMetrics(metrics: Metrics) {
  const registers = [metrics.registry];
  return {
    ...metrics,
    backlog: new Gauge({ name: 'conveyor_backlog_tasks', help: 'Tasks waiting or running, as the autoscaler sees them, per WorkerPool queue.', labelNames: ['queue'], registers }),
    desiredReplicas: new Gauge({ name: 'conveyor_workerpool_desired_replicas', help: 'Replicas the autoscaler wants.', labelNames: ['workerpool'], registers }),
    currentReplicas: new Gauge({ name: 'conveyor_workerpool_current_replicas', help: 'Replicas the worker Deployment has.', labelNames: ['workerpool'], registers }),
    scalings: new Counter({ name: 'conveyor_workerpool_scaling_events_total', help: 'Scale changes made, by direction.', labelNames: ['workerpool', 'direction'], registers }),
    reconcileDuration: new Histogram({
      name: 'conveyor_reconcile_duration_seconds',
      help: 'Reconcile time per loop and outcome.',
      labelNames: ['loop', 'outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    reconcileErrors: new Counter({ name: 'conveyor_reconcile_errors_total', help: 'Reconciles that failed and were retried.', labelNames: ['loop'], registers }),
    leader: new Gauge({ name: 'conveyor_controller_leader', help: '1 while this replica holds the controller Lease.', registers }),
  };
}

export type ControllerMetrics = ReturnType<typeof createControllerMetrics>;
