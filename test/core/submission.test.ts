import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ValidationError } from '../../services/core/src/errors.ts';
import { MAX_SLEEP_MS } from '../../services/core/src/tasks/handlers/sleep.ts';
import { TASK_LIMITS } from '../../services/core/src/tasks/model.ts';
import { taskTypeNames } from '../../services/core/src/tasks/registry.ts';
import { parseSubmission } from '../../services/core/src/tasks/submission.ts';

const test = suite('core: task submission');

function rejected(body: unknown): ValidationError {
  try {
    parseSubmission(body);
  } catch (error) {
    assert.instance(error, ValidationError);
    return error as ValidationError;
  }
  assert.unreachable(`parseSubmission accepted ${JSON.stringify(body)}`);
  throw new Error('unreachable');
}

const paths = (error: ValidationError) => error.errors.map((e) => e.path);

test('defaults: payload {}, priority 5, maxAttempts 1', () => {
  assert.equal(parseSubmission({ type: 'echo' }), { type: 'echo', payload: {}, priority: 5, maxAttempts: 1 });
  assert.is(TASK_LIMITS.defaultPriority, 5);
  assert.is(TASK_LIMITS.defaultMaxAttempts, 1);
});

test('given values are kept', () => {
  assert.equal(parseSubmission({ type: 'echo', payload: [1, 'two', null], priority: 9, maxAttempts: 3 }), {
    type: 'echo',
    payload: [1, 'two', null],
    priority: 9,
    maxAttempts: 3,
  });
});

test('the payload comes back as its type parsed it, defaults included', () => {
  assert.equal(parseSubmission({ type: 'fail' }).payload, { message: 'task failed on purpose' });
  assert.equal(parseSubmission({ type: 'sleep', payload: { ms: 10 } }).payload, { ms: 10 });
});

test('priority is an integer from 0 to 9', () => {
  assert.is(parseSubmission({ type: 'echo', priority: 0 }).priority, 0);
  assert.is(parseSubmission({ type: 'echo', priority: 9 }).priority, 9);
  for (const priority of [-1, 10, 2.5, '5', null]) {
    const error = rejected({ type: 'echo', priority });
    assert.equal(paths(error), ['priority'], `priority ${JSON.stringify(priority)}`);
  }
});

test('maxAttempts is an integer of at least 1, up to the policy limit', () => {
  assert.is(parseSubmission({ type: 'echo', maxAttempts: 1 }).maxAttempts, 1);
  assert.is(parseSubmission({ type: 'echo', maxAttempts: TASK_LIMITS.maxMaxAttempts }).maxAttempts, TASK_LIMITS.maxMaxAttempts);
  for (const maxAttempts of [0, -3, 1.5, '2', TASK_LIMITS.maxMaxAttempts + 1]) {
    const error = rejected({ type: 'echo', maxAttempts });
    assert.equal(paths(error), ['maxAttempts'], `maxAttempts ${JSON.stringify(maxAttempts)}`);
  }
});

test('backoff, runAt, timeoutMs, idempotencyKey and retentionMs are optional and kept as given (runAt as its UTC instant)', () => {
  assert.equal(
    parseSubmission({
      type: 'echo',
      backoff: { type: 'fixed', delayMs: 250 },
      runAt: '2031-01-02T03:04:05+01:00',
      timeoutMs: 1_000,
      idempotencyKey: 'order-42',
      retentionMs: 0,
    }),
    {
      type: 'echo',
      payload: {},
      priority: 5,
      maxAttempts: 1,
      // A partial backoff is completed from the defaults, so that the stored task says exactly what it will do.
      backoff: { type: 'fixed', delayMs: 250, maxDelayMs: 300_000, jitter: true },
      // The same instant, in UTC: what PostgreSQL stores and the API answers with.
      runAt: '2031-01-02T02:04:05.000Z',
      timeoutMs: 1_000,
      idempotencyKey: 'order-42',
      retentionMs: 0,
    },
  );
  assert.is(parseSubmission({ type: 'echo', timeoutMs: TASK_LIMITS.maxTimeoutMs }).timeoutMs, TASK_LIMITS.maxTimeoutMs);
  assert.is(parseSubmission({ type: 'echo', idempotencyKey: 'k'.repeat(TASK_LIMITS.maxIdempotencyKeyLength) }).idempotencyKey?.length, TASK_LIMITS.maxIdempotencyKeyLength);
});

test('bad backoff, runAt, timeoutMs, idempotencyKey and retentionMs are rejected at their paths', () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ backoff: { delayMs: 5_000, maxDelayMs: 1_000 } }, 'backoff.delayMs'],
    [{ backoff: { type: 'linear' } }, 'backoff.type'],
    [{ backoff: { factor: 2 } }, 'backoff'],
    [{ runAt: 'tomorrow' }, 'runAt'],
    [{ runAt: '2031-01-02' }, 'runAt'],
    [{ runAt: 1_900_000_000_000 }, 'runAt'],
    [{ timeoutMs: 0 }, 'timeoutMs'],
    [{ timeoutMs: 1.5 }, 'timeoutMs'],
    [{ timeoutMs: TASK_LIMITS.maxTimeoutMs + 1 }, 'timeoutMs'],
    [{ idempotencyKey: '' }, 'idempotencyKey'],
    [{ idempotencyKey: 'k'.repeat(TASK_LIMITS.maxIdempotencyKeyLength + 1) }, 'idempotencyKey'],
    [{ runAt: '0000-06-01T00:00:00Z' }, 'runAt'],
    [{ retentionMs: -1 }, 'retentionMs'],
    [{ retentionMs: TASK_LIMITS.maxRetentionMs + 1 }, 'retentionMs'],
  ];
  for (const [fields, path] of cases) {
    assert.equal([...new Set(paths(rejected({ type: 'echo', ...fields })))], [path], JSON.stringify(fields));
  }
  assert.is(parseSubmission({ type: 'echo', retentionMs: TASK_LIMITS.maxRetentionMs }).retentionMs, TASK_LIMITS.maxRetentionMs);
});

// A client reads `errors` to fix its request: a second message claiming the year is out of range sends it the wrong way.
test('a runAt that is not a date is reported once, as not a date', () => {
  const error = rejected({ type: 'echo', runAt: 'tomorrow' });
  assert.equal(error.errors.map((e) => e.path), ['runAt'], JSON.stringify(error.errors));
  assert.not.match(error.errors[0]?.message ?? '', /year/);
});

test('unknown keys are rejected and named', () => {
  const error = rejected({ type: 'echo', priorty: 3 });
  assert.is(error.errors.length, 1);
  assert.is(error.errors[0]?.path, '(body)');
  assert.match(error.errors[0]?.message ?? '', 'priorty');
  assert.match(error.message, 'priorty');
});

test('a body that is not an object is rejected', () => {
  for (const body of [null, 'echo', [], 42, undefined]) rejected(body);
});

test('an unknown type is a ValidationError listing the known types', () => {
  assert.equal(taskTypeNames(), ['echo', 'fail', 'sleep']);
  const error = rejected({ type: 'reticulate' });
  assert.is(error.status, 422);
  assert.is(error.code, 'validation-failed');
  assert.match(error.message, "unknown task type 'reticulate'");
  assert.match(error.message, 'echo, fail, sleep');
  assert.equal(paths(error), ['type']);
});

test('a missing type says which types exist', () => {
  const error = rejected({ payload: {} });
  assert.equal(paths(error), ['type']);
  assert.match(error.message, 'echo, fail, sleep');
});

test('every problem of a body is reported at once', () => {
  const error = rejected({ type: 'echo', priority: 12, maxAttempts: 0, extra: true });
  assert.equal(paths(error).sort(), ['(body)', 'maxAttempts', 'priority']);
});

test('sleep needs an integer ms from 0 to 600000, reported at payload.ms', () => {
  assert.is(MAX_SLEEP_MS, 600_000);
  assert.equal(parseSubmission({ type: 'sleep', payload: { ms: 0 } }).payload, { ms: 0 });
  assert.equal(parseSubmission({ type: 'sleep', payload: { ms: 600_000 } }).payload, { ms: 600_000 });
  for (const payload of [{}, { ms: -1 }, { ms: 600_001 }, { ms: 1.5 }, { ms: '100' }]) {
    const error = rejected({ type: 'sleep', payload });
    assert.instance(error, ValidationError);
    assert.equal(paths(error), ['payload.ms'], `payload ${JSON.stringify(payload)}`);
    assert.match(error.message, "payload does not fit task type 'sleep'");
    assert.match(error.message, 'payload.ms');
  }
});

test('a payload with keys its type does not take is rejected at payload', () => {
  const error = rejected({ type: 'sleep', payload: { ms: 5, seconds: 1 } });
  assert.equal(paths(error), ['payload']);
  assert.match(error.errors[0]?.message ?? '', 'seconds');
});

test('a payload that is not an object for sleep is rejected at payload', () => {
  const error = rejected({ type: 'sleep', payload: 'ten' });
  assert.equal(paths(error), ['payload']);
});

test('fail takes an optional string message', () => {
  assert.equal(parseSubmission({ type: 'fail', payload: { message: 'boom' } }).payload, { message: 'boom' });
  assert.equal(paths(rejected({ type: 'fail', payload: { message: 7 } })), ['payload.message']);
});

test('the caller\'s body is not changed', () => {
  const body = { type: 'fail', payload: {} };
  parseSubmission(body);
  assert.equal(body, { type: 'fail', payload: {} });
});

test('a defaulted payload is a fresh object each time', () => {
  const first = parseSubmission({ type: 'echo' });
  (first.payload as Record<string, unknown>)['leaked'] = true;
  assert.equal(parseSubmission({ type: 'echo' }).payload, {});
});

test.run();
