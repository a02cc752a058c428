import type { TaskType } from './handler.ts';
import { echo } from './handlers/echo.ts';
import { fail } from './handlers/fail.ts';
import { sleep } from './handlers/sleep.ts';

/** Every task type Conveyor runs, by name. Adding a type is one file in `handlers/` and one line here. */
export const TASK_TYPES: ReadonlyMap<string, TaskType> = new Map(
  [sleep, echo, fail].map((type) => [type.name, type as unknown as TaskType]),
);

export function findTaskType(name: string): TaskType | undefined {
  return TASK_TYPES.get(name);
}

export function taskTypeNames(): string[] {
  return [...TASK_TYPES.keys()].sort();
}
