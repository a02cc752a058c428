import type { z } from 'zod';
import type { Logger } from '../log.ts';

/** What a handler knows about the attempt it runs in. */
export type TaskContext = Readonly<{
  taskId: string;
  type: string;
  /** 1 for the first attempt. */
  attempt: number;
  maxAttempts: number;
  /** Aborted when the worker stops or gives the task up; long handlers should honour it. */
  signal: AbortSignal;
  log: Logger;
}>;

/**
 * A task type: the schema its payload must satisfy at submit, and the plain async function that runs it.
 * What `run` returns is stored as the task's `result` (it must be JSON-serialisable).
 */
export type TaskType<S extends z.ZodType = z.ZodType> = Readonly<{
  name: string;
  description: string;
  payload: S;
  run: (payload: z.output<S>, ctx: TaskContext) => Promise<unknown>;
}>;

/** Declares a task type with its payload type inferred from the schema. */
export function defineTaskType<S extends z.ZodType>(type: TaskType<S>): TaskType<S> {
  return Object.freeze(type);
}
