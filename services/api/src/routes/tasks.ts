import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import type { Metrics } from '../../../core/src/metrics.ts';
import { TaskConflict, ValidationError } from '../../../core/src/errors.ts';
import type { ControlChannel } from '../../../core/src/queue/control.ts';
import { TaskStatus } from '../../../core/src/tasks/state.ts';
import type { TasksRepository } from '../../../core/src/db/tasks-repository.ts';
import type { Logger } from '../../../core/src/log.ts';
import type { Publisher } from '../../../core/src/queue/publisher.ts';
import { parseBatch, parseSubmission } from '../../../core/src/tasks/submission.ts';
import { publishTask, submitTask, submitTasks } from '../../../core/src/tasks/submit.ts';
import { Scope } from '../../../core/src/auth/api-key.ts';
import { principalOf, requireScope } from '../auth.ts';
import { jsonBody } from '../body.ts';
import { decodeCursor, encodeCursor, ListTasksQuerySchema, TaskIdSchema, validated } from '../schemas.ts';

export const TASKS_PATH = '/api/v1/tasks';

export type TasksDeps = {
  repository: TasksRepository;
  publisher: Publisher;
  control: ControlChannel;
  metrics: Metrics;
  log: Logger;
  bodyLimitBytes: number;
};

/** Why a submit was refused, as a bounded label. */
function rejectionReason(error: unknown): string {
  const status = (error as { status?: number }).status;
  if (error instanceof ValidationError) return 'invalid';
  if (status === 413) return 'too_large';
  if (status === 415) return 'media_type';
  if (status === 400) return 'malformed';
  if (status === 503) return 'unavailable';
  return 'error';
}

/** Counts refused submits by reason, including those the body parser refuses before the handler runs. */
function countRejections(metrics: Metrics): Middleware {
  return async (_ctx, next) => {
    try {
      await next();
    } catch (error) {
      metrics.rejected.inc({ reason: rejectionReason(error) });
      throw error;
    }
  };
}

/** The body, with the `Idempotency-Key` header folded in as `idempotencyKey`. */
function submission(ctx: Context): unknown {
  const body = ctx.request.body;
  const header = ctx.get('idempotency-key');
  if (header === '' || body === null || typeof body !== 'object' || Array.isArray(body)) return body;
  const inBody = (body as { idempotencyKey?: unknown }).idempotencyKey;
  if (inBody !== undefined && inBody !== header) {
    throw new ValidationError('the Idempotency-Key header and the idempotencyKey field differ', [
      { path: 'idempotencyKey', message: 'differs from the Idempotency-Key header' },
    ]);
  }
  return { ...body, idempotencyKey: header };
}

function taskIdParam(ctx: Context): string {
  const parsed = TaskIdSchema.safeParse(ctx.params['id']);
  if (!parsed.success) {
    throw new ValidationError(`'${ctx.params['id']}' is not a task id (a UUID)`, [{ path: 'id', message: 'must be a UUID' }], 400);
  }
  return parsed.data;
}

function listQuery(ctx: Context) {
  const { cursor, ...rest } = validated(ListTasksQuerySchema, ctx.query, 'query', 400);
  if (cursor === undefined) return rest;
  const beforeId = decodeCursor(cursor);
  if (!beforeId) throw new ValidationError('cursor is not one this API issued', [{ path: 'cursor', message: 'invalid cursor' }], 400);
  return { ...rest, beforeId };
}

export function tasksRouter(deps: TasksDeps): Router {
  const router = new Router({ prefix: TASKS_PATH });
  const read = requireScope(Scope.tasksRead);
  const write = requireScope(Scope.tasksWrite);
  const tenant = (ctx: Context) => principalOf(ctx).tenant;

  router.post('/', write, countRejections(deps.metrics), jsonBody(deps.bodyLimitBytes), async (ctx) => {
    const { task, created } = await submitTask(deps, tenant(ctx), parseSubmission(submission(ctx)));
    if (created) deps.metrics.submitted.inc({ type: task.type });
    ctx.status = created ? 201 : 200;
    ctx.set('Location', `${TASKS_PATH}/${task.id}`);
    ctx.body = task;
  });

  router.post('/batch', write, countRejections(deps.metrics), jsonBody(deps.bodyLimitBytes), async (ctx) => {
    if (ctx.get('idempotency-key') !== '') {
      throw new ValidationError('a batch takes an idempotencyKey per task, not the Idempotency-Key header', [
        { path: 'Idempotency-Key', message: 'not accepted on a batch' },
      ], 400);
    }
    const results = await submitTasks(deps, tenant(ctx), parseBatch(ctx.request.body));
    for (const { task, created } of results) if (created) deps.metrics.submitted.inc({ type: task.type });
    ctx.status = 201;
    ctx.body = { items: results.map((r) => r.task) };
  });

  router.get('/', read, async (ctx) => {
    const { limit, ...filter } = listQuery(ctx);
    // One row more than asked tells whether another page exists without a count.
    const rows = await deps.repository.listTasks({ ...filter, tenant: tenant(ctx), limit: limit + 1 });
    const items = rows.slice(0, limit);
    const last = items.at(-1);
    ctx.body = { items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
  });

  router.get('/:id', read, async (ctx) => {
    ctx.body = await deps.repository.getTask(taskIdParam(ctx), tenant(ctx));
  });

  router.get('/:id/events', read, async (ctx) => {
    ctx.body = { items: await deps.repository.taskEvents(taskIdParam(ctx), tenant(ctx)) };
  });

  router.post('/:id/cancel', write, async (ctx) => {
    const id = taskIdParam(ctx);
    const { task, outcome } = await deps.repository.cancelTask(id, tenant(ctx));
    if (outcome === 'requested') {
      deps.control.broadcastCancel(id);
      deps.log.info({ taskId: id, type: task.type }, 'cancellation requested');
      ctx.status = 202;
    } else if (task.status === TaskStatus.cancelled) {
      if (outcome === 'cancelled') deps.log.info({ taskId: id, type: task.type }, 'task cancelled');
      ctx.status = 200;
    } else {
      throw new TaskConflict(`task ${id} is ${task.status}: it can no longer be cancelled`);
    }
    ctx.body = task;
  });

  router.post('/:id/retry', write, async (ctx) => {
    const task = await deps.repository.rerunTask(taskIdParam(ctx), tenant(ctx));
    const log = deps.log.child({ taskId: task.id, type: task.type });
    log.info('task retried by request');
    ctx.status = 202;
    ctx.body = await publishTask(deps, task);
  });

  router.delete('/:id', write, async (ctx) => {
    const id = taskIdParam(ctx);
    const was = await deps.repository.deleteTask(id, tenant(ctx));
    // The row is gone, so the worker's writes are refused; telling it stops the handler too.
    if (was === TaskStatus.in_progress) deps.control.broadcastCancel(id);
    ctx.status = 204;
  });

  return router;
}
