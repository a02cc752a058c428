// The per-key work queue under the controller's loops, on its own: no API server, no database.
import { Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { pino } from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Reconcile, ReconcileQueue, type ReconcileResult } from '../../services/controller/src/reconcile-queue.ts';
import { within } from '../support/fake-apiserver/client-helpers.ts';
import { testLog } from '../support/system.ts';

const test = suite('controller: reconcile queue');

type Run = { key: string; startedAt: number; release: (result?: ReconcileResult | Error) => void };

/**
 * A reconcile whose every run waits until the test releases it (or finishes at once with `auto`), recording
 * when each run started and how many ran at once per key.
 */
function scripted(auto?: (key: string, n: number) => ReconcileResult | Error) {
  const runs: Run[] = [];
  const active = new Map<string, number>();
  let maxActivePerKey = 0;
  let maxActive = 0;
  const waiters = new Set<() => void>();
  const reconcile: Reconcile = (key) => {
    active.set(key, (active.get(key) ?? 0) + 1);
    maxActivePerKey = Math.max(maxActivePerKey, active.get(key) as number);
    maxActive = Math.max(maxActive, [...active.values()].reduce((a, b) => a + b, 0));
    return new Promise((resolve, reject) => {
      const finish = (result?: ReconcileResult | Error) => {
        active.set(key, (active.get(key) as number) - 1);
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      runs.push({ key, startedAt: Date.now(), release: finish });
      for (const wake of [...waiters]) wake();
      if (auto) queueMicrotask(() => finish(auto(key, runs.filter((r) => r.key === key).length)));
    });
  };
  const count = (key: string) => runs.filter((r) => r.key === key).length;
  /** Resolves once `key` has started `n` runs. */
  const started = (key: string, n: number, timeoutMs = 5000) => {
    if (count(key) >= n) return Promise.resolve();
    let wake = () => undefined as void;
    const reached = new Promise<void>((resolve) => {
      wake = () => {
        if (count(key) >= n) resolve();
      };
      waiters.add(wake);
    });
    return within(reached, timeoutMs, `${n} runs of ${key}`).finally(() => waiters.delete(wake));
  };
  const runOf = (key: string, n: number) => runs.filter((r) => r.key === key)[n - 1] as Run;
  return { reconcile, runs, count, started, runOf, maxActivePerKey: () => maxActivePerKey, maxActive: () => maxActive };
}

/** A logger whose records the test can read (the queue reports each failure with the retry it scheduled). */
function capturingLog() {
  const records: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      records.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { log: pino({ level: 'warn' }, stream), records };
}

test('one reconcile at a time per key; a key enqueued while it runs runs once more afterwards', async () => {
  const r = scripted();
  const queue = new ReconcileQueue('test', r.reconcile, testLog);
  queue.resume();
  queue.enqueue('ns/a');
  await r.started('ns/a', 1);
  // Three enqueues during the run collapse into one more run, which waits for the first to end.
  queue.enqueue('ns/a');
  queue.enqueue('ns/a');
  queue.enqueue('ns/a');
  assert.is(r.count('ns/a'), 1);
  r.runOf('ns/a', 1).release();
  await r.started('ns/a', 2);
  r.runOf('ns/a', 2).release();
  await queue.drain();
  assert.is(r.count('ns/a'), 2);
  assert.is(r.maxActivePerKey(), 1);
});

test('distinct keys reconcile in parallel', async () => {
  const r = scripted();
  const queue = new ReconcileQueue('test', r.reconcile, testLog);
  queue.resume();
  queue.enqueue('ns/a');
  queue.enqueue('ns/b');
  await r.started('ns/a', 1);
  await r.started('ns/b', 1);
  assert.is(r.maxActive(), 2, 'b started while a was still running');
  r.runOf('ns/a', 1).release();
  r.runOf('ns/b', 1).release();
  await queue.drain();
});

test('a failing reconcile is retried by itself after 1 s, then 2 s; each outcome is reported', async () => {
  const outcomes: string[] = [];
  const r = scripted((_key, n) => (n <= 2 ? new Error(`failure ${n}`) : undefined));
  const queue = new ReconcileQueue('test', r.reconcile, testLog, (outcome) => outcomes.push(outcome));
  queue.resume();
  queue.enqueue('ns/a');
  await r.started('ns/a', 3, 6000);
  const [first, second, third] = [1, 2, 3].map((n) => r.runOf('ns/a', n).startedAt) as [number, number, number];
  assert.ok(second - first >= 950 && second - first < 1500, `first retry after ${second - first} ms`);
  assert.ok(third - second >= 1950 && third - second < 2600, `second retry after ${third - second} ms`);
  await queue.drain();
  assert.equal(outcomes, ['error', 'error', 'ok']);
});

test('the retry backoff doubles up to 30 s, and a success resets it', async () => {
  const { log, records } = capturingLog();
  let failing = true;
  const r = scripted(() => (failing ? new Error('still broken') : undefined));
  let ended: () => void = () => undefined;
  const queue = new ReconcileQueue('test', r.reconcile, log, () => ended());
  queue.resume();
  // An enqueue runs the key at once, replacing its pending retry, so the backoff sequence unfolds without waiting it out.
  const runOnce = () =>
    within(
      new Promise<void>((resolve) => {
        ended = resolve;
        queue.enqueue('ns/a');
      }),
      2000,
      'the run to end',
    );
  for (let i = 0; i < 7; i++) await runOnce();
  failing = false;
  await runOnce();
  failing = true;
  await runOnce();
  await queue.drain();
  assert.equal(records.map((record) => record['retryInMs']), [1000, 2000, 4000, 8000, 16000, 30000, 30000, 1000]);
  assert.equal(records.map((record) => record['failures']), [1, 2, 3, 4, 5, 6, 7, 1]);
  assert.equal(records[0]?.['key'], 'ns/a');
});

test('requeueAfterMs runs the key again after that delay; an enqueue meanwhile runs it at once instead', async () => {
  const r = scripted((_key, n) => ({ requeueAfterMs: n === 1 ? 300 : 60_000 }));
  const queue = new ReconcileQueue('test', r.reconcile, testLog);
  queue.resume();
  queue.enqueue('ns/a');
  await r.started('ns/a', 2, 2000);
  const gap = r.runOf('ns/a', 2).startedAt - r.runOf('ns/a', 1).startedAt;
  assert.ok(gap >= 290 && gap < 800, `requeued after ${gap} ms; asked for 300`);
  // Run 2 asked for a minute; an enqueue (a watch event) does not wait for it.
  queue.enqueue('ns/a');
  await r.started('ns/a', 3, 500);
  await queue.drain();
});

test('paused, nothing starts; resume runs what was enqueued meanwhile, once per key; runs in flight finish', async () => {
  const r = scripted();
  const queue = new ReconcileQueue('test', r.reconcile, testLog);
  // A queue starts paused: a replica that is not the leader keeps its caches warm but does not act.
  queue.enqueue('ns/a');
  queue.enqueue('ns/a');
  queue.enqueue('ns/b');
  // Starting a reconcile is synchronous in enqueue/resume, so nothing having started by now means nothing will.
  assert.is(r.runs.length, 0);
  queue.resume();
  assert.equal(r.runs.map((run) => run.key), ['ns/a', 'ns/b']);

  queue.pause();
  queue.enqueue('ns/c');
  assert.is(r.count('ns/c'), 0, 'no new run while paused');
  r.runOf('ns/a', 1).release();
  r.runOf('ns/b', 1).release();
  queue.resume();
  await r.started('ns/c', 1);
  r.runOf('ns/c', 1).release();
  await queue.drain();
  assert.equal([r.count('ns/a'), r.count('ns/b'), r.count('ns/c')], [1, 1, 1]);
});

test('drain waits for runs in flight, drops pending retries and refuses new work', async () => {
  const r = scripted();
  const queue = new ReconcileQueue('test', r.reconcile, testLog);
  queue.resume();
  queue.enqueue('ns/a');
  queue.enqueue('ns/b');
  r.runOf('ns/b', 1).release({ requeueAfterMs: 50 });
  let drained = false;
  const draining = queue.drain().then(() => {
    drained = true;
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.is(drained, false, 'ns/a is still running');
  r.runOf('ns/a', 1).release({ requeueAfterMs: 50 });
  await within(draining, 1000, 'the drain');
  queue.enqueue('ns/c');
  queue.resume();
  // Both runs asked to come back after 50 ms; a drained queue must not. A negative can only be waited out.
  await delay(150);
  assert.equal(r.runs.map((run) => run.key), ['ns/a', 'ns/b']);
});

test('forget drops a key\'s pending requeue', async () => {
  const r = scripted();
  const queue = new ReconcileQueue('test', r.reconcile, testLog);
  queue.resume();
  queue.enqueue('ns/a');
  r.runOf('ns/a', 1).release({ requeueAfterMs: 50 });
  // Let the run end (its requeue is now pending), then forget the key, as the informer does when an object goes.
  await new Promise((resolve) => setImmediate(resolve));
  queue.forget('ns/a');
  await delay(150);
  assert.is(r.count('ns/a'), 1);
  await queue.drain();
});

test.run();
