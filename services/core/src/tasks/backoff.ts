import { z } from 'zod';

export const BACKOFF_LIMITS = Object.freeze({ maxDelayMs: 86_400_000 });

export const BackoffSchema = z
  .object({
    type: z.enum(['exponential', 'fixed']).default('exponential'),
    delayMs: z.number().int().min(0).max(BACKOFF_LIMITS.maxDelayMs).default(1_000),
    maxDelayMs: z.number().int().min(0).max(BACKOFF_LIMITS.maxDelayMs).default(300_000),
    jitter: z.boolean().default(true).meta({ description: 'Spread each delay over its upper half, so that retries of a burst do not land together.' }),
  })
  .strict()
  .refine((b) => b.delayMs <= b.maxDelayMs, { message: 'delayMs must not exceed maxDelayMs', path: ['delayMs'] })
  .meta({ id: 'Backoff', description: 'How long to wait before each retry: `delayMs`, doubled per attempt when exponential, capped at `maxDelayMs`.' });

export type Backoff = z.output<typeof BackoffSchema>;

export const DEFAULT_BACKOFF: Backoff = Object.freeze(BackoffSchema.parse({}));

/** The wait before retrying after failed attempt number `attempt` (1-based). `random` is injectable for tests. */
export function retryDelayMs(backoff: Backoff, attempt: number, random: () => number = Math.random): number {
  const base = backoff.type === 'fixed' ? backoff.delayMs : backoff.delayMs * 2 ** Math.max(0, attempt - 1);
  const capped = Math.min(base, backoff.maxDelayMs);
  return Math.round(backoff.jitter ? capped / 2 + random() * (capped / 2) : capped);
}
