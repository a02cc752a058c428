import { v7 } from 'uuid';

/** A new task id: UUIDv7, so ids sort by creation time (monotonic within a process). */
export function newTaskId(): string {
  return v7();
}
