import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Backoff, BACKOFF_LIMITS, BackoffSchema, DEFAULT_BACKOFF, retryDelayMs } from '../../services/core/src/tasks/backoff.ts';
import { TASK_LIMITS } from '../../services/core/src/tasks/model.ts';

const test = suite('core: retry backoff');

const backoff = (overrides: Partial<Backoff>): Backoff => ({ type: 'exponential', delayMs: 1_000, maxDelayMs: 300_000, jitter: false, ...overrides });
const always = (value: number) => () => value;

test('DEFAULT_BACKOFF is exponential from 1 s, capped at 5 min, with jitter, and cannot be changed', () => {
  assert.equal(DEFAULT_BACKOFF, { type: 'exponential', delayMs: 1_000, maxDelayMs: 300_000, jitter: true });
  assert.ok(Object.isFrozen(DEFAULT_BACKOFF));
  assert.equal(BackoffSchema.parse({}), DEFAULT_BACKOFF, 'an empty backoff is the default');
});

test('fixed: the same delay before every retry', () => {
  const fixed = backoff({ type: 'fixed', delayMs: 2_500 });
  for (const attempt of [1, 2, 3, 10, TASK_LIMITS.maxMaxAttempts]) assert.is(retryDelayMs(fixed, attempt), 2_500, `after attempt ${attempt}`);
});

test('exponential: delayMs after the first attempt, doubled after each one since', () => {
  const exponential = backoff({ delayMs: 100 });
  assert.equal([1, 2, 3, 4, 5].map((attempt) => retryDelayMs(exponential, attempt)), [100, 200, 400, 800, 1_600]);
  // An attempt number below 1 is not a valid input, but must not produce a delay below the base.
  assert.is(retryDelayMs(exponential, 0), 100);
});

test('the cap bounds every delay, also when the doubling overflows', () => {
  const capped = backoff({ delayMs: 1_000, maxDelayMs: 5_000 });
  assert.equal([1, 2, 3, 4, 5, 6].map((attempt) => retryDelayMs(capped, attempt)), [1_000, 2_000, 4_000, 5_000, 5_000, 5_000]);
  assert.is(retryDelayMs(capped, TASK_LIMITS.maxMaxAttempts), 5_000);
  assert.is(retryDelayMs(backoff({ delayMs: 1, maxDelayMs: BACKOFF_LIMITS.maxDelayMs }), 2_000), BACKOFF_LIMITS.maxDelayMs, '2^1999 is Infinity');
  assert.is(retryDelayMs(backoff({ type: 'fixed', delayMs: 0, maxDelayMs: 0 }), 7), 0, 'no delay at all is allowed');
  assert.is(retryDelayMs(backoff({ delayMs: 0, maxDelayMs: 0 }), TASK_LIMITS.maxMaxAttempts), 0);
});

test('jitter spreads a delay over its upper half: random 0 gives half, random near 1 the whole', () => {
  const jittered = backoff({ delayMs: 1_000, maxDelayMs: 6_000, jitter: true });
  assert.is(retryDelayMs(jittered, 1, always(0)), 500);
  assert.is(retryDelayMs(jittered, 1, always(0.5)), 750);
  assert.is(retryDelayMs(jittered, 1, always(0.999_999)), 1_000);
  assert.is(retryDelayMs(jittered, 3, always(0)), 2_000);
  // Capped first, then spread: jitter never pushes a delay past the cap.
  assert.is(retryDelayMs(jittered, 10, always(0)), 3_000);
  assert.is(retryDelayMs(jittered, 10, always(0.999_999)), 6_000);
  assert.is(retryDelayMs(backoff({ type: 'fixed', delayMs: 800, maxDelayMs: 800, jitter: true }), 4, always(0.25)), 500);
});

test('jitter with the real random stays within [half, whole] of the capped delay and does vary', () => {
  const jittered = backoff({ delayMs: 1_000, maxDelayMs: 4_000, jitter: true });
  for (const [attempt, capped] of [[1, 1_000], [2, 2_000], [3, 4_000], [8, 4_000]] as const) {
    const delays = Array.from({ length: 200 }, () => retryDelayMs(jittered, attempt));
    assert.ok(delays.every((d) => Number.isInteger(d) && d >= capped / 2 && d <= capped), `attempt ${attempt}: ${Math.min(...delays)}..${Math.max(...delays)}`);
    assert.ok(new Set(delays).size > 10, `attempt ${attempt}: retries of a burst land apart`);
  }
});

test('without jitter the random source is not used', () => {
  const random = () => {
    throw new Error('random was called');
  };
  assert.is(retryDelayMs(backoff({ delayMs: 300 }), 2, random), 600);
});

test('BackoffSchema fills defaults, rejects unknown keys, bad numbers and delayMs above maxDelayMs', () => {
  assert.equal(BackoffSchema.parse({ type: 'fixed' }), { type: 'fixed', delayMs: 1_000, maxDelayMs: 300_000, jitter: true });
  assert.equal(BackoffSchema.parse({ delayMs: 0, maxDelayMs: 0, jitter: false }), { type: 'exponential', delayMs: 0, maxDelayMs: 0, jitter: false });
  const rejected = (value: unknown) => {
    const result = BackoffSchema.safeParse(value);
    assert.not.ok(result.success, `accepted ${JSON.stringify(value)}`);
    return result.error?.issues.map((issue) => issue.path.join('.')) ?? [];
  };
  assert.equal(rejected({ delayMs: 2_000, maxDelayMs: 1_000 }), ['delayMs']);
  assert.equal(rejected({ type: 'linear' }), ['type']);
  assert.equal(rejected({ delayMs: -1 }), ['delayMs']);
  assert.equal(rejected({ delayMs: 1.5 }), ['delayMs']);
  assert.equal(rejected({ maxDelayMs: BACKOFF_LIMITS.maxDelayMs + 1 }), ['maxDelayMs']);
  assert.equal(rejected({ jitter: 'yes' }), ['jitter']);
  assert.ok(rejected({ factor: 3 }).length > 0, 'unknown keys are refused');
});

test.run();
