import type { Middleware } from 'koa';
import { RateLimited } from '../../core/src/errors.ts';
import type { Principal } from '../../core/src/auth/api-key.ts';

type Bucket = { tokens: number; at: number };

/** Past this many tracked keys, buckets that have refilled (and so carry no state) are dropped. */
const MAX_TRACKED_KEYS = 10_000;

/**
 * One token bucket per key: `burst` requests at once, refilled at `ratePerSecond`. Buckets live in this
 * process, so with several API replicas a key's budget is per replica.
 */
export class TokenBuckets {
  readonly #rate: number;
  readonly #burst: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(ratePerSecond: number, burst: number) {
    this.#rate = ratePerSecond;
    this.#burst = burst;
  }

  /** Takes a token for `key`: 0 when granted, otherwise the whole seconds until one is available. */
  take(key: string, now = performance.now()): number {
    const bucket = this.#buckets.get(key) ?? this.#track(key, now);
    bucket.tokens = Math.min(this.#burst, bucket.tokens + ((now - bucket.at) / 1000) * this.#rate);
    bucket.at = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.#rate));
  }

  #track(key: string, now: number): Bucket {
    if (this.#buckets.size >= MAX_TRACKED_KEYS) {
      for (const [other, bucket] of this.#buckets) {
        if (bucket.tokens + ((now - bucket.at) / 1000) * this.#rate >= this.#burst) this.#buckets.delete(other);
      }
    }
    const bucket = { tokens: this.#burst, at: now };
    this.#buckets.set(key, bucket);
    return bucket;
  }
}

/** 429 with `Retry-After` once a key has spent its budget. Requests without a key (authentication off) are not limited. */
export function rateLimit(ratePerSecond: number, burst: number): Middleware {
  if (ratePerSecond === 0) return (_ctx, next) => next();
  const buckets = new TokenBuckets(ratePerSecond, burst);
  return async (ctx, next) => {
    const keyId = (ctx.state['principal'] as Principal | undefined)?.keyId;
    if (keyId) {
      const wait = buckets.take(keyId);
      if (wait > 0) throw new RateLimited(wait);
    }
    await next();
  };
}
