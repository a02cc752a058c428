import { z } from 'zod';
import { type FieldIssue, ValidationError } from '../errors.ts';
import { BackoffSchema } from './backoff.ts';
import { storableText, StorableJsonSchema } from '../storable.ts';
import { TASK_LIMITS } from './model.ts';
import { findTaskType, taskTypeNames } from './registry.ts';

const knownTypes = () => taskTypeNames().join(', ');

/** What a client sends to create a task (REST body; the Task custom resource's spec mirrors it). */
export const SubmitTaskSchema = z
  .object({
    type: z
      .enum(taskTypeNames() as [string, ...string[]], {
        error: (issue) =>
          typeof issue.input === 'string'
            ? `unknown task type '${issue.input}'; known types: ${knownTypes()}`
            : `type is required: one of ${knownTypes()}`,
      })
      .meta({ description: 'A registered task type.' }),
    payload: StorableJsonSchema.default({}).meta({
      description: "The task's input (any JSON, nested at most 32 levels); must fit the type's payload schema.",
    }),
    priority: z
      .number()
      .int()
      .min(TASK_LIMITS.minPriority)
      .max(TASK_LIMITS.maxPriority)
      .default(TASK_LIMITS.defaultPriority)
      .meta({ description: 'Higher runs sooner.' }),
    maxAttempts: z
      .number()
      .int()
      .min(1)
      .max(TASK_LIMITS.maxMaxAttempts)
      .default(TASK_LIMITS.defaultMaxAttempts)
      .meta({ description: 'How many times the task may run before it is failed.' }),
    backoff: BackoffSchema.optional().meta({ description: 'Delay before each retry; default exponential from 1 s, capped at 5 min, with jitter.' }),
    runAt: z.iso
      .datetime({ offset: true })
      // Stored as the UTC instant, to the millisecond: PostgreSQL refuses offsets past ±15:59 and local dates in
      // year 0000, and would round 9999-12-31T23:59:59.9999995Z up into year 10000. Digits past the millisecond
      // are dropped before Date reads the value, which it does not do reliably.
      .transform((value) => new Date(value.replace(/(\.\d{3})\d+/, '$1')))
      .refine((date) => date.getUTCFullYear() >= 1 && date.getUTCFullYear() <= 9999, 'runAt must be between years 0001 and 9999')
      .transform((date) => date.toISOString())
      .optional()
      .meta({ description: 'Do not start before this time (ISO 8601). Delayed tasks wait in PostgreSQL, not in RabbitMQ.' }),
    timeoutMs: z
      .number()
      .int()
      .min(1)
      .max(TASK_LIMITS.maxTimeoutMs)
      .optional()
      .meta({ description: 'An attempt running longer is aborted and fails with error `timeout`.' }),
    idempotencyKey: storableText(z.string().min(1).max(TASK_LIMITS.maxIdempotencyKeyLength))
      .optional()
      .meta({ description: 'A second submit with the same key returns the first task (200) instead of creating one. Also accepted as the Idempotency-Key header.' }),
    retentionMs: z
      .number()
      .int()
      .min(0)
      .max(TASK_LIMITS.maxRetentionMs)
      .optional()
      .meta({ description: 'How long to keep the task once finished (0: forever); default TASK_RETENTION.' }),
  })
  .strict()
  .meta({ id: 'SubmitTask' });

export type Submission = z.output<typeof SubmitTaskSchema>;

export function toFieldIssues(issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = []): FieldIssue[] {
  return issues.map((issue) => {
    const path = [...prefix, ...issue.path].map(String).join('.');
    const keys = issue.code === 'unrecognized_keys' ? `: ${issue.keys.join(', ')}` : '';
    return { path: path || '(body)', message: `${issue.message}${keys}` };
  });
}

/** How many tasks one batch may carry, and how many of its problems a refusal lists. */
export const BATCH_LIMITS = Object.freeze({ maxTasks: 1000, maxReportedIssues: 100 });

export const SubmitBatchSchema = z
  .object({
    tasks: z
      .array(z.unknown())
      .min(1)
      .max(BATCH_LIMITS.maxTasks)
      .meta({ description: `1 to ${BATCH_LIMITS.maxTasks} tasks, each as \`POST /api/v1/tasks\` takes it.` }),
  })
  .strict()
  .meta({ id: 'SubmitBatch' });

/**
 * Validates a batch: all of it or nothing, with every problem reported under `tasks.<index>`.
 * @throws {ValidationError} (422) listing the problems found (the first {@link BATCH_LIMITS.maxReportedIssues}).
 */
export function parseBatch(body: unknown): Submission[] {
  const parsed = SubmitBatchSchema.safeParse(body);
  if (!parsed.success) {
    const errors = toFieldIssues(parsed.error.issues);
    throw new ValidationError(errors.map((e) => `${e.path}: ${e.message}`).join('; '), errors);
  }
  const submissions: Submission[] = [];
  const errors: FieldIssue[] = [];
  parsed.data.tasks.forEach((item, index) => {
    try {
      submissions.push(parseSubmission(item));
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      errors.push(...error.errors.map((e) => ({ path: `tasks.${index}.${e.path === '(body)' ? '' : e.path}`.replace(/\.$/, ''), message: e.message })));
    }
  });
  if (errors.length > 0) {
    const shown = errors.slice(0, BATCH_LIMITS.maxReportedIssues);
    const more = errors.length > shown.length ? `; and ${errors.length - shown.length} more` : '';
    throw new ValidationError(`no task was stored: ${shown.map((e) => `${e.path}: ${e.message}`).join('; ')}${more}`, shown);
  }
  return submissions;
}

/**
 * Validates a submission, including the payload against its type's own schema.
 * @throws {ValidationError} (422) listing every problem found.
 */
export function parseSubmission(body: unknown): Submission {
  const parsed = SubmitTaskSchema.safeParse(body);
  if (!parsed.success) {
    const errors = toFieldIssues(parsed.error.issues);
    throw new ValidationError(errors.map((e) => `${e.path}: ${e.message}`).join('; '), errors);
  }
  const taskType = findTaskType(parsed.data.type);
  if (!taskType) throw new ValidationError(`unknown task type '${parsed.data.type}'; known types: ${knownTypes()}`);
  const payload = taskType.payload.safeParse(parsed.data.payload);
  if (!payload.success) {
    const errors = toFieldIssues(payload.error.issues, ['payload']);
    const detail = errors.map((e) => `${e.path}: ${e.message}`).join('; ');
    throw new ValidationError(`payload does not fit task type '${taskType.name}': ${detail}`, errors);
  }
  return { ...parsed.data, payload: payload.data as Submission['payload'] };
}
