import type { KubernetesObject, ObjectCache } from '@kubernetes/client-node';
import type { TasksRepository } from '../../../core/src/db/tasks-repository.ts';
import { ValidationError } from '../../../core/src/errors.ts';
import type { Logger } from '../../../core/src/log.ts';
import type { ControlChannel } from '../../../core/src/queue/control.ts';
import type { Publisher } from '../../../core/src/queue/publisher.ts';
import type { Task } from '../../../core/src/tasks/model.ts';
import { FINISHED_STATUSES, TaskStatus } from '../../../core/src/tasks/state.ts';
import { parseSubmission } from '../../../core/src/tasks/submission.ts';
import { submitTask } from '../../../core/src/tasks/submit.ts';
import { recordEvent } from '../events.ts';
import { type Condition, GROUP, type Kube, mergePatch, patchStatus, setCondition, splitKey, statusCode, TASK_FINALIZER, VERSION } from '../kube.ts';
import type { ReconcileResult } from '../reconcile-queue.ts';

export type TaskPhase = 'Pending' | 'Queued' | 'Running' | 'Succeeded' | 'Failed' | 'Cancelled';

export type TaskResourceStatus = {
  observedGeneration?: number;
  phase?: TaskPhase;
  taskId?: string;
  attempts?: number;
  startedAt?: string;
  finishedAt?: string;
  result?: unknown;
  error?: string;
  conditions?: Condition[];
};

export type TaskResource = KubernetesObject & {
  spec: { type: string; payload?: unknown; priority?: number; maxAttempts?: number; backoff?: unknown; runAt?: string; timeoutMs?: number; ttlSecondsAfterFinished?: number };
  status?: TaskResourceStatus;
};

const PHASES: Record<TaskStatus, TaskPhase> = {
  [TaskStatus.pending]: 'Pending',
  [TaskStatus.queued]: 'Queued',
  [TaskStatus.in_progress]: 'Running',
  [TaskStatus.completed]: 'Succeeded',
  [TaskStatus.failed]: 'Failed',
  [TaskStatus.cancelled]: 'Cancelled',
};

const FINISHED_PHASES: readonly TaskPhase[] = FINISHED_STATUSES.map((status) => PHASES[status]);

/** The resource's status as the task in PostgreSQL says it is. */
export function statusOf(task: Task): TaskResourceStatus {
  return {
    phase: PHASES[task.status],
    taskId: task.id,
    attempts: task.attempts,
    ...(task.startedAt ? { startedAt: task.startedAt } : {}),
    ...(task.finishedAt ? { finishedAt: task.finishedAt } : {}),
    ...(task.status === TaskStatus.completed ? { result: task.result } : {}),
    ...(task.error && task.status !== TaskStatus.completed ? { error: task.error.message } : {}),
  };
}

export type TaskDeps = {
  kube: Kube;
  cache: ObjectCache<TaskResource>;
  repository: TasksRepository;
  publisher: Publisher;
  control: ControlChannel;
  syncIntervalMs: number;
  log: Logger;
};

/**
 * Turns Task resources into Conveyor tasks and keeps their status in step. The task is created once per
 * resource (its uid is the idempotency key), deleting the resource cancels the task (finalizer), and
 * `ttlSecondsAfterFinished` deletes finished resources. PostgreSQL stays the source of truth.
 */
export class TaskReconciler {
  readonly #deps: TaskDeps;

  constructor(deps: TaskDeps) {
    this.#deps = deps;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const resource = this.#deps.cache.get(name, namespace);
    if (!resource) return;
    const finalizers = resource.metadata?.finalizers ?? [];
    if (resource.metadata?.deletionTimestamp) {
      if (finalizers.includes(TASK_FINALIZER)) await this.#finalize(resource, finalizers);
      return;
    }
    if (!finalizers.includes(TASK_FINALIZER)) {
      await this.#patch(resource, { metadata: { finalizers: [...finalizers, TASK_FINALIZER], resourceVersion: resource.metadata?.resourceVersion } });
    }
    const taskId = resource.status?.taskId;
    // A refused spec cannot change (the CRD makes it immutable): it was reported once, for this generation.
    const refused = resource.status?.conditions?.some((c) => c.type === 'Accepted' && c.status === 'False');
    if (!taskId && refused && resource.status?.observedGeneration === resource.metadata?.generation) return;
    const task = taskId ? await this.#deps.repository.findTask(taskId, tenantOf(resource)) : await this.#submit(resource);
    if (!task) {
      // Deleted through the API or swept by retention: the resource keeps its last status; its TTL still applies.
      return taskId ? this.#next(resource, resource.status ?? {}, false) : undefined;
    }
    const status = statusOf(task);
    if (changed(resource.status, status)) {
      const conditions = setCondition(resource.status?.conditions, {
        type: 'Finished',
        status: FINISHED_PHASES.includes(status.phase as TaskPhase) ? 'True' : 'False',
        reason: status.phase ?? 'Unknown',
        message: status.error ?? `task ${task.id} is ${task.status}`,
      });
      await this.#patchStatus(resource, { ...status, conditions });
    }
    return this.#next(resource, status, true);
  }

  /** What comes after a sync: another sync while the task runs (if it still exists), or the TTL deletion once it finished. */
  async #next(resource: TaskResource, status: TaskResourceStatus, taskExists: boolean): Promise<ReconcileResult> {
    if (!FINISHED_PHASES.includes(status.phase as TaskPhase)) return taskExists ? { requeueAfterMs: this.#deps.syncIntervalMs } : undefined;
    const ttl = resource.spec.ttlSecondsAfterFinished;
    if (ttl === undefined || !status.finishedAt) return;
    const dueInMs = Date.parse(status.finishedAt) + ttl * 1000 - Date.now();
    if (dueInMs > 0) return { requeueAfterMs: dueInMs };
    await this.#deps.kube.custom
      .deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: resource.metadata?.namespace ?? 'default', plural: 'tasks', name: resource.metadata?.name ?? '' })
      .catch((error: unknown) => {
        if (statusCode(error) !== 404) throw error;
      });
    this.#deps.log.info({ task: resource.metadata?.name, ttlSeconds: ttl }, 'deleted a finished Task resource past its TTL');
  }

  async #submit(resource: TaskResource): Promise<Task | null> {
    const { kube, log } = this.#deps;
    let submission;
    try {
      submission = parseSubmission({ ...resourceSpec(resource), idempotencyKey: `k8s:${resource.metadata?.uid}` });
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      const conditions = setCondition(resource.status?.conditions, { type: 'Accepted', status: 'False', reason: 'InvalidSpec', message: error.message });
      await this.#patchStatus(resource, { phase: 'Failed', error: error.message, conditions });
      await recordEvent(kube, resource, { type: 'Warning', reason: 'InvalidSpec', message: error.message }, log);
      return null;
    }
    const { task, created } = await submitTask(this.#deps, tenantOf(resource), submission);
    if (created) await recordEvent(kube, resource, { type: 'Normal', reason: 'Submitted', message: `created task ${task.id}` }, log);
    return task;
  }

  /** The resource is being deleted: cancel its task (if it still runs), then let Kubernetes remove it. */
  async #finalize(resource: TaskResource, finalizers: string[]): Promise<void> {
    const taskId = resource.status?.taskId;
    if (taskId) {
      const cancelled = await this.#deps.repository.cancelTask(taskId, tenantOf(resource)).catch((error: unknown) => {
        if ((error as { status?: number }).status === 404) return null;
        throw error;
      });
      if (cancelled?.outcome === 'requested') this.#deps.control.broadcastCancel(taskId);
      if (cancelled && cancelled.outcome !== 'unchanged') this.#deps.log.info({ taskId, task: resource.metadata?.name }, 'Task resource deleted: task cancelled');
    }
    await this.#patch(resource, {
      metadata: { finalizers: finalizers.filter((f) => f !== TASK_FINALIZER), resourceVersion: resource.metadata?.resourceVersion },
    });
  }

  async #patch(resource: TaskResource, body: object): Promise<void> {
    await this.#deps.kube.custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: resource.metadata?.namespace ?? 'default', plural: 'tasks', name: resource.metadata?.name ?? '', body },
      mergePatch,
    );
  }

  #patchStatus(resource: TaskResource, status: TaskResourceStatus): Promise<void> {
    return patchStatus(this.#deps.kube, 'tasks', resource, status);
  }
}

/** A Task resource's tasks belong to the tenant named after its namespace (namespaces are valid tenant names). */
function tenantOf(resource: TaskResource): string {
  return resource.metadata?.namespace ?? 'default';
}

/** The REST submission a Task resource's spec stands for (the spec mirrors the REST body, plus the TTL). */
function resourceSpec(resource: TaskResource): Record<string, unknown> {
  const { ttlSecondsAfterFinished: _ttl, ...spec } = resource.spec;
  return spec;
}

function changed(current: TaskResourceStatus | undefined, next: TaskResourceStatus): boolean {
  const keys = ['phase', 'taskId', 'attempts', 'startedAt', 'finishedAt', 'error'] as const;
  return keys.some((k) => current?.[k] !== next[k]) || JSON.stringify(current?.result ?? null) !== JSON.stringify(next.result ?? null);
}
