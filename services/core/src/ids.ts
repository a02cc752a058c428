import { v7 } from 'uuid';

/** A new id (tasks, API keys): UUIDv7, so ids sort by creation time (monotonic within a process). */
export function newId(): string {
  return v7();
}
