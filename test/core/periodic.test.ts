import { Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { pino } from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Periodic } from '../../services/core/src/periodic.ts';
import { testLog } from '../support/system.ts';
import { within } from '../support/wait.ts';

const test = suite('core: periodic runs');

const BOUND_MS = 5_000;
// Intervals the tests never wait for: a run that comes must have come for another reason.
const NEVER = 600_000;

/** Rejects when `promise` has not settled within `ms`, so that a missing run fails the test instead of hanging it. */
const bounded = <T>(promise: Promise<T>, what: string, ms = BOUND_MS): Promise<T> => within(promise, ms, what);

/**
 * A run function that records when each run starts and ends, lets a test await the n-th start or end, and
 * does whatever `body(n)` does (1-based), so that a test can hold a run open or make it fail.
 */
function recorder(body: (n: number) => Promise<boolean | void> = async () => undefined) {
  const runs: { start: number; end?: number }[] = [];
  let active = 0;
  let mostActive = 0;
  const waiters: { done: () => boolean; resolve: () => void }[] = [];
  const check = () => {
    for (const waiter of waiters.filter((w) => w.done())) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };
  const run = async () => {
    const record: { start: number; end?: number } = { start: performance.now() };
    runs.push(record);
    active += 1;
    mostActive = Math.max(mostActive, active);
    check();
    try {
      return await body(runs.length);
    } finally {
      active -= 1;
      record.end = performance.now();
      check();
    }
  };
  const until = (done: () => boolean, what: string) =>
    bounded(new Promise<void>((resolve) => (done() ? resolve() : waiters.push({ done, resolve }))), what);
  return {
    run,
    runs,
    get mostActive() {
      return mostActive;
    },
    started: (n: number) => until(() => runs.length >= n, `run ${n} to start`),
    ended: (n: number) => until(() => runs[n - 1]?.end !== undefined, `run ${n} to end`),
  };
}

/** A promise a test resolves when it chooses: holds a run open. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

/**
 * Lets every timer already due fire. A run scheduled "at once" is a 0 ms timer; timers fire in order of their
 * deadlines, so one set after it, for longer, fires after it: waiting for that is an ordering, not a guess.
 */
const timersFlushed = () => delay(30);

function capturingLog() {
  const lines: { level: number; msg: string; err?: string; component?: string }[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()));
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

test('start runs at once, not after the first interval', async () => {
  const job = recorder();
  const periodic = new Periodic('job', NEVER, job.run, testLog);
  periodic.start();
  try {
    await job.started(1);
  } finally {
    await periodic.stop();
  }
});

test('runs again every intervalMs, counted from the end of the run before', async () => {
  const INTERVAL = 40;
  const job = recorder(() => delay(10));
  const periodic = new Periodic('job', INTERVAL, job.run, testLog);
  periodic.start();
  await job.ended(4);
  await periodic.stop();
  for (let i = 1; i < 4; i++) {
    const [previous, next] = [job.runs[i - 1], job.runs[i]];
    // Timer deadlines are whole milliseconds, so a measured gap may come out a fraction short.
    const gap = (next?.start ?? 0) - (previous?.end ?? Infinity);
    assert.ok(gap >= INTERVAL - 1, `run ${i + 1} started ${gap.toFixed(1)} ms after run ${i} ended`);
  }
});

test('nudge runs at once instead of waiting for the interval', async () => {
  const job = recorder();
  const periodic = new Periodic('job', NEVER, job.run, testLog);
  periodic.start();
  try {
    await job.ended(1);
    periodic.nudge();
    await job.started(2);
  } finally {
    await periodic.stop();
  }
});

test('nudges during a run bring exactly one more run, after it ends', async () => {
  const held = gate();
  const job = recorder(async (n) => (n === 1 ? held.opened : undefined));
  const periodic = new Periodic('job', NEVER, job.run, testLog);
  periodic.start();
  try {
    await job.started(1);
    for (let i = 0; i < 3; i++) periodic.nudge();
    await timersFlushed();
    assert.is(job.runs.length, 1, 'a nudge never starts a second run beside the first');
    held.open();
    await job.ended(2);
    assert.ok((job.runs[1]?.start ?? 0) >= (job.runs[0]?.end ?? Infinity), 'the second run began after the first ended');
    await timersFlushed();
    assert.is(job.runs.length, 2, 'three nudges during one run make one more run, not three');
  } finally {
    await periodic.stop();
  }
});

test('runs never overlap, however often it is nudged and however short the interval', async () => {
  const job = recorder(() => delay(3));
  const periodic = new Periodic('job', 1, job.run, testLog);
  periodic.start();
  const nudging = setInterval(() => periodic.nudge(), 1);
  try {
    await job.ended(20);
  } finally {
    clearInterval(nudging);
    await periodic.stop();
  }
  assert.is(job.mostActive, 1);
  for (let i = 1; i < job.runs.length; i++) {
    assert.ok((job.runs[i]?.start ?? 0) >= (job.runs[i - 1]?.end ?? Infinity), `run ${i + 1} started before run ${i} ended`);
  }
});

test('a run that returns true is followed by another at once; one that returns nothing waits', async () => {
  const job = recorder(async (n) => n <= 3);
  const periodic = new Periodic('job', NEVER, job.run, testLog);
  periodic.start();
  try {
    await job.ended(4);
    await timersFlushed();
    assert.is(job.runs.length, 4, 'the fourth run returned false: the next waits for the interval');
  } finally {
    await periodic.stop();
  }
});

test('failures are logged once per streak, recovery once, and the schedule goes on', async () => {
  const { log, lines } = capturingLog();
  const failing = new Set([1, 2, 3, 5, 6]);
  const job = recorder(async (n) => {
    if (failing.has(n)) throw new Error(`failure ${n}`);
  });
  const periodic = new Periodic('job', 1, job.run, log);
  periodic.start();
  await job.ended(8);
  await periodic.stop();
  const ours = lines.filter((line) => line.component === 'job').map((line) => [line.level, line.msg, line.err]);
  assert.equal(ours, [
    [40, 'job failed; retrying on schedule', 'failure 1'],
    [30, 'job recovered', undefined],
    [40, 'job failed; retrying on schedule', 'failure 5'],
    [30, 'job recovered', undefined],
  ]);
});

// The signature promises a promise, but a plain function that validates its input and throws before
// returning one is an easy mistake; the schedule must survive it like any other failure.
test('a run that throws before returning a promise is handled like any failure', async () => {
  const { log, lines } = capturingLog();
  const job = recorder();
  let calls = 0;
  const periodic = new Periodic(
    'job',
    1,
    () => {
      calls += 1;
      if (calls === 1) throw new Error('synchronous');
      return job.run();
    },
    log,
  );
  periodic.start();
  try {
    await job.started(2);
  } finally {
    await periodic.stop();
  }
  assert.ok(lines.some((line) => line.msg === 'job failed; retrying on schedule' && line.err === 'synchronous'));
});

test('stop waits for the run in flight, and nothing runs after it', async () => {
  const held = gate();
  const job = recorder(async (n) => (n === 1 ? held.opened : undefined));
  const periodic = new Periodic('job', 1, job.run, testLog);
  periodic.start();
  await job.started(1);

  let stopped = false;
  const stopping = periodic.stop().then(() => (stopped = true));
  const again = periodic.stop();
  await timersFlushed();
  assert.not.ok(stopped, 'stop returned while a run was still going');
  held.open();
  await bounded(Promise.all([stopping, again]), 'both stops to resolve');
  assert.ok(job.runs[0]?.end !== undefined, 'the run ended before stop resolved');

  periodic.nudge();
  await timersFlushed();
  assert.is(job.runs.length, 1, 'neither the interval nor a nudge runs it after stop');
});

test('a stop right after start cancels the first run', async () => {
  const job = recorder();
  const periodic = new Periodic('job', 1, job.run, testLog);
  periodic.start();
  await periodic.stop();
  await timersFlushed();
  assert.is(job.runs.length, 0);
});

test.run();
