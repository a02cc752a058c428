import { z } from 'zod';
import { BackoffSchema } from './backoff.ts';
import { TaskStatus } from './state.ts';

/** Policy limits for what a task may ask for, beside the schema that enforces them. */
export const TASK_LIMITS = Object.freeze({
  minPriority: 0,
  maxPriority: 9,
  defaultPriority: 5,
  defaultMaxAttempts: 1,
  maxMaxAttempts: 100,
  maxTypeLength: 100,
  maxTimeoutMs: 86_400_000,
  maxIdempotencyKeyLength: 200,
  /** 100 years: longer is forever in practice, and keeps every date computed from it in PostgreSQL's range. */
  maxRetentionMs: 100 * 365 * 86_400_000,
});

export const TaskStatusSchema = z.enum(TaskStatus).meta({
  description: 'pending: stored, not yet published; queued: published; in_progress: a worker runs it; completed, failed, cancelled: final.',
});

export const TaskErrorSchema = z
  .object({
    message: z.string(),
    attempt: z.number().int().min(1),
    at: z.iso.datetime().optional().meta({ description: 'When the attempt failed.' }),
  })
  .meta({ id: 'TaskError', description: 'Why an attempt failed.' });

const isoTime = z.iso.datetime();

/**
 * Any JSON value. Values only arrive here parsed from JSON (request bodies, jsonb columns) or after a JSON
 * round-trip (handler results), so no structural check is needed; the schema names the concept for OpenAPI.
 */
export const JsonValueSchema = z.unknown().meta({ id: 'JsonValue', description: 'Any JSON value.' });

/** A task as clients see it. Timestamps are ISO 8601 UTC. */
export const TaskSchema = z
  .object({
    id: z.uuid(),
    tenant: z.string().meta({ description: 'The tenant whose key created the task; only its keys see the task.' }),
    type: z.string(),
    payload: JsonValueSchema,
    priority: z.number().int().min(TASK_LIMITS.minPriority).max(TASK_LIMITS.maxPriority),
    status: TaskStatusSchema,
    attempts: z.number().int().min(0),
    maxAttempts: z.number().int().min(1),
    result: JsonValueSchema.nullable(),
    error: TaskErrorSchema.nullable().meta({ description: 'Why the last attempt failed, while that is the latest news.' }),
    errors: z.array(TaskErrorSchema).meta({ description: 'Every failed attempt, oldest first.' }),
    backoff: BackoffSchema,
    timeoutMs: z.number().int().nullable(),
    idempotencyKey: z.string().nullable(),
    retentionMs: z.number().int().nullable().meta({ description: 'How long the task is kept once finished; null: the service default.' }),
    runAt: isoTime.meta({ description: 'A pending task is published at or after this time.' }),
    cancelRequested: z.boolean(),
    workerId: z.string().nullable().meta({ description: 'The worker running the task (or that last ran it).' }),
    leaseExpiresAt: isoTime.nullable().meta({ description: "While in_progress: when the worker's claim lapses unless renewed." }),
    createdAt: isoTime,
    updatedAt: isoTime,
    startedAt: isoTime.nullable(),
    finishedAt: isoTime.nullable(),
  })
  .meta({ id: 'Task' });

export type Task = z.infer<typeof TaskSchema>;
export type TaskError = z.infer<typeof TaskErrorSchema>;

/** One entry of a task's history. */
export const TaskEventSchema = z
  .object({
    at: isoTime,
    kind: z.string().meta({
      description:
        'submitted, published, started, completed, attempt_failed (retry scheduled), failed, cancel_requested, cancelled, handed_back, worker_lost, republished or rerun.',
    }),
    attempt: z.number().int().meta({ description: 'The attempt count when it happened.' }),
    workerId: z.string().nullable(),
    detail: z.record(z.string(), z.unknown()),
  })
  .meta({ id: 'TaskEvent' });

export type TaskEvent = z.infer<typeof TaskEventSchema>;
