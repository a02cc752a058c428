import type { KubeConfig } from '@kubernetes/client-node';
import type { Config } from '../../core/src/config.ts';
import { Lifecycle } from '../../core/src/lifecycle.ts';
import type { Periodic } from '../../core/src/periodic.ts';
import type { Logger } from '../../core/src/log.ts';
import { createControllerMetrics, createMetrics } from '../../core/src/metrics.ts';
import type { ProbeServer } from '../../core/src/probes.ts';
import { ControlChannel } from '../../core/src/queue/control.ts';
import { QueueInspector } from '../../core/src/queue/inspector.ts';
import { createProbes, createRuntime } from '../../core/src/runtime.ts';
import { createReaper } from '../../core/src/tasks/maintenance.ts';
import { ResourceInformer } from './informers.ts';
import { createKube } from './kube.ts';
import { LeaderElector } from './leader.ts';
import { ReconcileQueue } from './reconcile-queue.ts';
import { type TaskResource, TaskReconciler } from './reconcilers/task.ts';
import { type WorkerPool, WorkerPoolReconciler } from './reconcilers/worker-pool.ts';

export type ControllerService = { lifecycle: Lifecycle; leader: LeaderElector; probes: ProbeServer };

/**
 * Wires the controller: database → RabbitMQ → publisher and control channel → probes → Lease campaign →
 * reconcile queues → informers. Informers keep the caches warm on every replica; the queues and the reaper
 * act only while this replica holds the Lease. Stopping: informers, then the queues drain, then the Lease is released.
 */
export function createControllerService(config: Config, kubeConfig: KubeConfig, log: Logger): ControllerService {
  const lifecycle = new Lifecycle(log);
  const kube = createKube(kubeConfig);
  const metrics = createControllerMetrics(createMetrics('controller'));
  const runtime = createRuntime(config, log, `conveyor-controller-${config.podName}`, metrics);
  const { database, broker, publisher, components } = runtime;
  const control = new ControlChannel({ broker, queue: config.tasksQueue }, log);
  const inspector = new QueueInspector(broker);
  const observe = (loop: string) => (outcome: 'ok' | 'error', seconds: number) => {
    metrics.reconcileDuration.observe({ loop, outcome }, seconds);
    if (outcome === 'error') metrics.reconcileErrors.inc({ loop });
  };
  const namespace = config.podNamespace;

  let pools: ResourceInformer<WorkerPool> | null = null;
  let tasks: ResourceInformer<TaskResource> | null = null;
  let poolReconciler: WorkerPoolReconciler | null = null;
  let taskReconciler: TaskReconciler | null = null;
  const poolQueue = new ReconcileQueue('workerpool', async (key) => poolReconciler?.reconcile(key), log, observe('workerpool'));
  const taskQueue = new ReconcileQueue('task', async (key) => taskReconciler?.reconcile(key), log, observe('task'));
  let reaper: Periodic | null = null;

  const leader = new LeaderElector(
    {
      api: kube.coordination,
      namespace,
      name: config.controllerLeaseName,
      identity: config.podName,
      leaseDurationMs: config.controllerLeaseMs,
      renewIntervalMs: Math.max(500, Math.floor(config.controllerLeaseMs / 5)),
      onStartedLeading: () => {
        metrics.leader.set(1);
        for (const key of pools?.keys() ?? []) poolQueue.enqueue(key);
        for (const key of tasks?.keys() ?? []) taskQueue.enqueue(key);
        poolQueue.resume();
        taskQueue.resume();
        reaper?.start();
      },
      onStoppedLeading: () => {
        metrics.leader.set(0);
        // Only the leader's view of the pools is current; a standby exports none rather than stale values.
        for (const gauge of [metrics.backlog, metrics.desiredReplicas, metrics.currentReplicas, metrics.maxReplicas]) gauge.reset();
        poolQueue.pause();
        taskQueue.pause();
        void reaper?.stop();
      },
    },
    log,
  );
  const probes = createProbes(config, runtime, metrics, log);

  lifecycle.add(
    ...components,
    { name: 'control', start: () => control.start(), stop: () => control.stop() },
    { name: 'probes', start: () => probes.start(), stop: () => probes.stop() },
    { name: 'leader', start: async () => leader.start(), stop: () => leader.stop() },
    { name: 'reconcile-queues', start: async () => undefined, stop: async () => void (await Promise.all([poolQueue.drain(), taskQueue.drain(), reaper?.stop()])) },
    {
      name: 'informers',
      start: async () => {
        const repository = database.tasks();
        const upkeep = database.upkeep();
        // The cluster's stale requeue: the shared core's reaper, run while this replica leads.
        reaper = createReaper(
          {
            upkeep,
            readyMessages: () => inspector.readyMessages(config.tasksQueue),
            intervalMs: config.reaperIntervalMs,
            queuedReconcileMs: config.queuedReconcileMs,
            metrics,
          },
          log,
        );
        pools = new ResourceInformer<WorkerPool>(kube, namespace, { plural: 'workerpools', onKey: (k) => poolQueue.enqueue(k), onDelete: (k) => { poolQueue.forget(k); poolReconciler?.forget(k); } }, log);
        tasks = new ResourceInformer<TaskResource>(kube, namespace, { plural: 'tasks', onKey: (k) => taskQueue.enqueue(k), onDelete: (k) => taskQueue.forget(k) }, log);
        poolReconciler = new WorkerPoolReconciler({ kube, cache: pools.cache, upkeep, inspector, metrics, log });
        taskReconciler = new TaskReconciler({ kube, cache: tasks.cache, repository, publisher, control, syncIntervalMs: config.taskSyncIntervalMs, log });
        await Promise.all([pools.start(), tasks.start()]);
      },
      stop: async () => void (await Promise.all([pools?.stop(), tasks?.stop()])),
    },
  );
  return { lifecycle, leader, probes };
}
