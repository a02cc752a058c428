import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { TASK_STATUSES } from './tasks/state.ts';

/**
 * The process's Prometheus metrics, all prefixed `conveyor_`, with bounded labels (task type, outcome;
 * never a task id). One registry per process, created at start and handed to the components that count.
 */
export function createMetrics(service: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: 'conveyor_' });
  const registers = [registry];
  const seconds = (name: string, help: string, labelNames: string[], buckets: number[]) =>
    new Histogram({ name, help, labelNames, buckets, registers });
  return {
    registry,
    // API
    httpRequests: new Counter({ name: 'conveyor_http_requests_total', help: 'HTTP requests by method, route template and status.', labelNames: ['method', 'route', 'status'], registers }),
    httpDuration: seconds('conveyor_http_request_duration_seconds', 'HTTP request time by method and route template.', ['method', 'route'], [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]),
    submitted: new Counter({ name: 'conveyor_tasks_submitted_total', help: 'Tasks accepted, by type.', labelNames: ['type'], registers }),
    rejected: new Counter({ name: 'conveyor_submit_rejections_total', help: 'Submits refused, by reason.', labelNames: ['reason'], registers }),
    // Flow
    waitTime: seconds('conveyor_task_wait_seconds', 'From when a task was due (submit or runAt) to the start of its attempt, by type.', ['type'], [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]),
    runTime: seconds('conveyor_task_run_seconds', 'Attempt run time, by type and outcome.', ['type', 'outcome'], [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600]),
    outcomes: new Counter({
      name: 'conveyor_task_outcomes_total',
      help: 'Ends of attempts, by type and outcome: completed, failed, retried, cancelled, timed_out, worker_lost.',
      labelNames: ['type', 'outcome'],
      registers,
    }),
    retriesScheduled: new Counter({ name: 'conveyor_task_retries_scheduled_total', help: 'Failed attempts that will be retried after their backoff, by type.', labelNames: ['type'], registers }),
    published: new Counter({ name: 'conveyor_publish_confirms_total', help: 'Task messages RabbitMQ confirmed.', registers }),
    publishFailures: new Counter({ name: 'conveyor_publish_failures_total', help: 'Task messages not confirmed (the task stays pending for the relay), by reason.', labelNames: ['reason'], registers }),
    brokerConnected: new Gauge({ name: 'conveyor_broker_connected', help: '1 while this process is connected to RabbitMQ.', registers }),
    cancelLatency: seconds('conveyor_task_cancel_latency_seconds', 'From a cancel request on a running task to the task ending cancelled.', ['type'], [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
    duplicateExecutions: new Counter({
      name: 'conveyor_task_duplicate_executions_total',
      help: 'Attempts whose lease was lost while their handler ran: another attempt or a cancellation owns the task, so their outcome was discarded.',
      labelNames: ['type'],
      registers,
    }),
    relayed: new Counter({ name: 'conveyor_relay_published_total', help: 'Pending tasks the outbox relay published (after an outage, a backoff, a delay or a hand-back).', registers }),
    reaped: new Counter({ name: 'conveyor_tasks_reaped_total', help: 'Running tasks whose lease expired (worker lost), by what became of them.', labelNames: ['outcome'], registers }),
    // Worker
    inFlight: new Gauge({ name: 'conveyor_worker_inflight_tasks', help: 'Attempts this worker is running.', registers }),
    concurrency: new Gauge({ name: 'conveyor_worker_concurrency', help: 'Attempts this worker may run at once.', registers }),
    heartbeats: new Counter({ name: 'conveyor_worker_heartbeats_total', help: 'Lease renewals sent (one statement for all running attempts).', registers }),
    handlerErrors: new Counter({ name: 'conveyor_worker_handler_errors_total', help: 'Handlers that threw, by type.', labelNames: ['type'], registers }),
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
    maxReplicas: new Gauge({ name: 'conveyor_workerpool_max_replicas', help: 'The most replicas a WorkerPool may scale to.', labelNames: ['workerpool'], registers }),
    leader: new Gauge({ name: 'conveyor_controller_leader', help: '1 while this replica holds the controller Lease.', registers }),
  };
}

export type ControllerMetrics = ReturnType<typeof createControllerMetrics>;

/**
 * Gauges read from the tasks table: tasks by status and the outbox. Read at most once per `cacheMs` whatever
 * the scrape rate, so a busy Prometheus does not turn into a stream of counts.
 */
export function observeTaskTable(
  metrics: Metrics,
  read: () => Promise<{ byStatus: Map<string, number>; duePending: number; oldestDueSeconds: number }>,
  cacheMs = 10_000,
): void {
  let cached: { at: number; value: Awaited<ReturnType<typeof read>> } | null = null;
  const snapshot = async () => {
    if (cached && Date.now() - cached.at < cacheMs) return cached.value;
    // While PostgreSQL is unreachable the last counts stand; conveyor_database_up tells the outage.
    cached = await read().then((value) => ({ at: Date.now(), value }), () => cached);
    return cached?.value ?? null;
  };
  const registers = [metrics.registry];
  new Gauge({
    name: 'conveyor_tasks',
    help: 'Tasks by status (refreshed at most every few seconds).',
    labelNames: ['status'],
    registers,
    async collect() {
      const value = await snapshot();
      for (const status of TASK_STATUSES) this.set({ status }, value?.byStatus.get(status) ?? 0);
    },
  });
  new Gauge({
    name: 'conveyor_outbox_pending_tasks',
    help: 'Due tasks not yet published (RabbitMQ down, or the relay catching up).',
    registers,
    async collect() {
      this.set((await snapshot())?.duePending ?? 0);
    },
  });
  new Gauge({
    name: 'conveyor_outbox_oldest_pending_age_seconds',
    help: 'How long the oldest due, unpublished task has waited.',
    registers,
    async collect() {
      this.set((await snapshot())?.oldestDueSeconds ?? 0);
    },
  });
}
