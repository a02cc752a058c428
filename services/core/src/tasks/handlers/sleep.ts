import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { defineTaskType } from '../handler.ts';

export const MAX_SLEEP_MS = 600_000;

export const sleep = defineTaskType({
  name: 'sleep',
  description: 'Waits `ms` milliseconds, then returns `{sleptMs}`. Stops at once when the task is aborted.',
  payload: z.object({ ms: z.number().int().min(0).max(MAX_SLEEP_MS) }).strict(),
  async run({ ms }, { signal }) {
    await delay(ms, undefined, { signal });
    return { sleptMs: ms };
  },
});
