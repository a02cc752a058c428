import type { KubernetesObject, ObjectCache, V1Pod } from '@kubernetes/client-node';
import type { TaskUpkeep } from '../../../core/src/db/task-upkeep.ts';
import type { Logger } from '../../../core/src/log.ts';
import type { ControllerMetrics } from '../../../core/src/metrics.ts';
import type { QueueInspector } from '../../../core/src/queue/inspector.ts';
import { recordEvent } from '../events.ts';
import { type Condition, type Kube, mergePatch, patchStatus, setCondition, splitKey, statusCode } from '../kube.ts';
import type { ReconcileResult } from '../reconcile-queue.ts';

export type WorkerPoolSpec = {
  workerDeployment: string;
  queue?: string;
  minReplicas?: number;
  maxReplicas?: number;
  tasksPerReplica?: number;
  pollIntervalSeconds?: number;
  scaleDownStabilizationSeconds?: number;
};

export type Backlog = { ready: number; pending: number; queued: number; inProgress: number; total: number };

export type WorkerPool = KubernetesObject & {
  spec: WorkerPoolSpec;
  status?: { conditions?: Condition[]; lastScaleTime?: string; backlog?: Backlog; desiredReplicas?: number; currentReplicas?: number };
};

export const POD_DELETION_COST = 'controller.kubernetes.io/pod-deletion-cost';

/** The spec with the CRD's defaults, in case an object predates them. */
function withDefaults(spec: WorkerPoolSpec): Required<WorkerPoolSpec> {
  return {
    queue: 'tasks',
    minReplicas: 0,
    maxReplicas: 10,
    tasksPerReplica: 10,
    pollIntervalSeconds: 2,
    scaleDownStabilizationSeconds: 60,
    ...spec,
  };
}

/** Replicas the backlog calls for, within the pool's bounds. */
export function desiredReplicas(spec: Required<WorkerPoolSpec>, backlog: number): number {
  const wanted = Math.ceil(backlog / spec.tasksPerReplica);
  return Math.min(spec.maxReplicas, Math.max(spec.minReplicas, wanted));
}

export type WorkerPoolDeps = {
  kube: Kube;
  cache: ObjectCache<WorkerPool>;
  upkeep: TaskUpkeep;
  inspector: QueueInspector;
  metrics: ControllerMetrics;
  log: Logger;
};

/**
 * Scales a worker Deployment from the backlog: up at once, down only to the highest recommendation of the
 * last stabilization window (as the HorizontalPodAutoscaler does), to zero when idle. It orders busy workers
 * last for scale-in through the pod-deletion-cost annotation, and reports what it saw in `status`.
 */
export class WorkerPoolReconciler {
  readonly #deps: WorkerPoolDeps;
  /** Per pool: recommendations since the backlog first called for fewer replicas than there are. */
  readonly #low = new Map<string, { since: number; recommendations: { at: number; replicas: number }[] }>();

  constructor(deps: WorkerPoolDeps) {
    this.#deps = deps;
  }

  forget(key: string): void {
    this.#low.delete(key);
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const pool = this.#deps.cache.get(name, namespace);
    if (!pool) {
      this.forget(key);
      return;
    }
    const spec = withDefaults(pool.spec);
    const requeue = { requeueAfterMs: spec.pollIntervalSeconds * 1000 };
    const backlog = await this.#readBacklog(spec.queue);
    this.#deps.metrics.backlog.set({ queue: spec.queue }, backlog.total);

    let current: number;
    try {
      const scale = await this.#deps.kube.apps.readNamespacedDeploymentScale({ name: spec.workerDeployment, namespace });
      current = scale.spec?.replicas ?? 0;
    } catch (error) {
      if (statusCode(error) !== 404) throw error;
      await this.#patchStatus(pool, { backlog }, { type: 'Ready', status: 'False', reason: 'DeploymentNotFound', message: `deployment ${spec.workerDeployment} does not exist` });
      return requeue;
    }

    const desired = desiredReplicas(spec, backlog.total);
    const target = this.#target(key, spec, current, desired, Date.now());
    this.#deps.metrics.desiredReplicas.set({ workerpool: key }, desired);
    this.#deps.metrics.maxReplicas.set({ workerpool: key }, spec.maxReplicas);
    let lastScaleTime = pool.status?.lastScaleTime;
    if (target !== current) {
      await this.#scale(pool, spec, current, target, backlog);
      lastScaleTime = new Date().toISOString();
    }
    this.#deps.metrics.currentReplicas.set({ workerpool: key }, target);
    if (target > 0) await this.#setDeletionCosts(namespace, spec.workerDeployment);

    const limited = Math.ceil(backlog.total / spec.tasksPerReplica) > spec.maxReplicas;
    await this.#patchStatus(
      pool,
      { backlog, desiredReplicas: desired, currentReplicas: target, ...(lastScaleTime ? { lastScaleTime } : {}) },
      { type: 'Ready', status: 'True', reason: 'BacklogRead', message: `backlog ${backlog.total}, ${target} of ${desired} desired replicas` },
      { type: 'ScalingLimited', status: limited ? 'True' : 'False', reason: limited ? 'TooFewReplicas' : 'WithinBounds', message: limited ? `the backlog wants more than maxReplicas ${spec.maxReplicas}` : 'the backlog fits within maxReplicas' },
    );
    return requeue;
  }

  async #readBacklog(queue: string): Promise<Backlog> {
    const counts = await this.#deps.upkeep.backlog();
    // RabbitMQ may hold messages the database does not know as queued (published by another install); count the larger.
    const ready = await this.#deps.inspector.readyMessages(queue).catch(() => 0);
    return { ready, ...counts, total: Math.max(ready, counts.queued) + counts.pending + counts.inProgress };
  }

  #target(key: string, spec: Required<WorkerPoolSpec>, current: number, desired: number, now: number): number {
    if (desired >= current) {
      this.#low.delete(key);
      return desired;
    }
    const window = spec.scaleDownStabilizationSeconds * 1000;
    const low = this.#low.get(key) ?? { since: now, recommendations: [] };
    low.recommendations = [...low.recommendations.filter((r) => r.at > now - window), { at: now, replicas: desired }];
    this.#low.set(key, low);
    if (now - low.since < window) return current;
    return Math.min(current, Math.max(...low.recommendations.map((r) => r.replicas)));
  }

  async #scale(pool: WorkerPool, spec: Required<WorkerPoolSpec>, current: number, target: number, backlog: Backlog): Promise<void> {
    const { namespace = 'default' } = pool.metadata ?? {};
    await this.#deps.kube.apps.patchNamespacedDeploymentScale(
      { name: spec.workerDeployment, namespace, body: { spec: { replicas: target } } },
      mergePatch,
    );
    const direction = target > current ? 'up' : 'down';
    const message = `scaled ${spec.workerDeployment} from ${current} to ${target} replicas: backlog ${backlog.total} at ${spec.tasksPerReplica} per replica`;
    this.#deps.metrics.scalings.inc({ workerpool: `${namespace}/${pool.metadata?.name}`, direction });
    this.#deps.log.info({ workerpool: pool.metadata?.name, from: current, to: target, backlog: backlog.total }, 'scaled workers');
    await recordEvent(this.#deps.kube, pool, { type: 'Normal', reason: direction === 'up' ? 'ScaledUp' : 'ScaledDown', message }, this.#deps.log);
  }

  /** Idle workers get cost 0 and busy ones their running count, so a scale-in removes idle pods first. */
  async #setDeletionCosts(namespace: string, deployment: string): Promise<void> {
    const { kube, upkeep } = this.#deps;
    const labels = (await kube.apps.readNamespacedDeployment({ name: deployment, namespace })).spec?.selector?.matchLabels ?? {};
    const labelSelector = Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',');
    if (!labelSelector) return;
    const [pods, running] = await Promise.all([kube.core.listNamespacedPod({ namespace, labelSelector }), upkeep.runningByWorker()]);
    await Promise.all(pods.items.map((pod: V1Pod) => this.#setCost(pod, namespace, String(running.get(pod.metadata?.name ?? '') ?? 0))));
  }

  async #setCost(pod: V1Pod, namespace: string, cost: string): Promise<void> {
    if (!pod.metadata?.name || pod.metadata.annotations?.[POD_DELETION_COST] === cost) return;
    await this.#deps.kube.core.patchNamespacedPod(
      { name: pod.metadata.name, namespace, body: { metadata: { annotations: { [POD_DELETION_COST]: cost } } } },
      mergePatch,
    );
  }

  async #patchStatus(pool: WorkerPool, fields: Record<string, unknown>, ...conditions: Condition[]): Promise<void> {
    const generation = pool.metadata?.generation;
    let merged = pool.status?.conditions;
    for (const condition of conditions) merged = setCondition(merged, { ...condition, ...(generation ? { observedGeneration: generation } : {}) });
    await patchStatus(this.#deps.kube, 'workerpools', pool, { ...fields, conditions: merged });
  }
}
