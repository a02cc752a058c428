import { z } from 'zod';
import { ValidationError } from '../../core/src/errors.ts';
import { storableText } from '../../core/src/storable.ts';
import { TASK_LIMITS, TaskSchema, TaskStatusSchema } from '../../core/src/tasks/model.ts';
import { toFieldIssues } from '../../core/src/tasks/submission.ts';

/**
 * A part of a request (`what`: query, body, id) parsed with `schema`.
 * @throws {ValidationError} with `status` (400 for queries and ids, 422 for bodies), listing every problem.
 */
export function validated<T extends z.ZodType>(schema: T, input: unknown, what: string, status: number): z.output<T> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const errors = toFieldIssues(result.error.issues);
  throw new ValidationError(`invalid ${what}: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, errors, status);
}

export const LIST_LIMITS = Object.freeze({ defaultLimit: 50, maxLimit: 500 });

export const TaskIdSchema = z.uuid({ error: 'must be a task id (a UUID)' }).meta({ description: 'Task id (UUIDv7).' });

/** Query of `GET /api/v1/tasks`. The cursor is opaque: the `nextCursor` of the previous page. */
export const ListTasksQuerySchema = z
  .object({
    status: TaskStatusSchema.optional(),
    type: storableText(z.string().min(1).max(TASK_LIMITS.maxTypeLength)).optional(),
    limit: z.coerce.number().int().min(1).max(LIST_LIMITS.maxLimit).default(LIST_LIMITS.defaultLimit),
    cursor: z.string().max(100).optional(),
  })
  .strict();

export const TaskListSchema = z
  .object({
    items: z.array(TaskSchema),
    nextCursor: z.string().nullable().meta({ description: 'Pass as `cursor` for the next page; null on the last page.' }),
  })
  .meta({ id: 'TaskList' });

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details.' });

export const HealthSchema = z
  .object({
    status: z.enum(['ok', 'unavailable']),
    checks: z.record(z.string(), z.enum(['up', 'down'])).optional(),
  })
  .meta({ id: 'Health' });

/** Cursors wrap the last id of a page, so clients cannot depend on their shape. */
export function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): string | null {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  return z.uuid().safeParse(id).success ? id : null;
}
