import Router from '@koa/router';
import type { Context } from 'koa';
import { ValidationError } from '../../../core/src/errors.ts';
import type { TasksRepository } from '../../../core/src/db/tasks-repository.ts';
import type { Logger } from '../../../core/src/log.ts';
import type { Publisher } from '../../../core/src/queue/publisher.ts';
import { parseSubmission, toFieldIssues } from '../../../core/src/tasks/submission.ts';
import { submitTask } from '../../../core/src/tasks/submit.ts';
import { jsonBody } from '../body.ts';
import { decodeCursor, encodeCursor, ListTasksQuerySchema, TaskIdSchema } from '../schemas.ts';

export const TASKS_PATH = '/api/v1/tasks';

export type TasksDeps = { repository: TasksRepository; publisher: Publisher; log: Logger };

function taskIdParam(ctx: Context): string {
  const parsed = TaskIdSchema.safeParse(ctx.params['id']);
  if (!parsed.success) {
    throw new ValidationError(`'${ctx.params['id']}' is not a task id (a UUID)`, [{ path: 'id', message: 'must be a UUID' }], 400);
  }
  return parsed.data;
}

function listQuery(ctx: Context) {
  const parsed = ListTasksQuerySchema.safeParse(ctx.query);
  if (!parsed.success) {
    const errors = toFieldIssues(parsed.error.issues);
    throw new ValidationError(`invalid query: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, errors, 400);
  }
  const { cursor, ...rest } = parsed.data;
  if (cursor === undefined) return rest;
  const beforeId = decodeCursor(cursor);
  if (!beforeId) throw new ValidationError('cursor is not one this API issued', [{ path: 'cursor', message: 'invalid cursor' }], 400);
  return { ...rest, beforeId };
}

export function tasksRouter(deps: TasksDeps): Router {
  const router = new Router({ prefix: TASKS_PATH });

  router.post('/', jsonBody(), async (ctx) => {
    const task = await submitTask(deps, parseSubmission(ctx.request.body));
    ctx.status = 201;
    ctx.set('Location', `${TASKS_PATH}/${task.id}`);
    ctx.body = task;
  });

  router.get('/', async (ctx) => {
    const { limit, ...filter } = listQuery(ctx);
    // One row more than asked tells whether another page exists without a count.
    const rows = await deps.repository.listTasks({ ...filter, limit: limit + 1 });
    const items = rows.slice(0, limit);
    const last = items.at(-1);
    ctx.body = { items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
  });

  router.get('/:id', async (ctx) => {
    ctx.body = await deps.repository.getTask(taskIdParam(ctx));
  });

  router.delete('/:id', async (ctx) => {
    await deps.repository.deleteTask(taskIdParam(ctx));
    ctx.status = 204;
  });

  return router;
}
