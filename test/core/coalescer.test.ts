import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Coalescer } from '../../services/core/src/coalescer.ts';
import { DatabaseUnavailable } from '../../services/core/src/errors.ts';

const test = suite('core: coalescer');

/** A flush that records each batch it was given and answers when told to. */
function recordingFlush<I, O>(answer: (item: I) => O) {
  const batches: I[][] = [];
  const gates: (() => void)[] = [];
  let holding = false;
  const flush = async (items: I[]) => {
    batches.push(items);
    if (holding) await new Promise<void>((resolve) => gates.push(resolve));
    return items.map(answer);
  };
  return {
    flush,
    batches,
    hold: () => (holding = true),
    release: () => {
      holding = false;
      for (const open of gates.splice(0)) open();
    },
  };
}

test('calls made in one turn of the event loop share one flush, and each gets its own answer', async () => {
  const rec = recordingFlush((n: number) => n * 10);
  const coalescer = new Coalescer(rec.flush, { maxBatch: 100, maxInFlight: 1 });
  const answers = await Promise.all([1, 2, 3, 4].map((n) => coalescer.run(n)));
  assert.equal(answers, [10, 20, 30, 40]);
  assert.equal(rec.batches, [[1, 2, 3, 4]]);
});

test('a lone call is flushed at once; calls made while flushes are in flight wait and go together', async () => {
  const rec = recordingFlush((n: number) => n);
  const coalescer = new Coalescer(rec.flush, { maxBatch: 100, maxInFlight: 1 });
  rec.hold();
  const first = coalescer.run(0);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(rec.batches, [[0]], 'the first call did not wait for company');
  const later: Promise<number>[] = [];
  for (let n = 1; n <= 5; n++) {
    later.push(coalescer.run(n));
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.is(rec.batches.length, 1, 'nothing else is flushed while the one allowed flush runs');
  rec.release();
  assert.equal(await Promise.all([first, ...later]), [0, 1, 2, 3, 4, 5]);
  assert.equal(rec.batches, [[0], [1, 2, 3, 4, 5]]);
});

test('batches are at most maxBatch items, and at most maxInFlight run at once', async () => {
  const rec = recordingFlush((n: number) => n);
  const coalescer = new Coalescer(rec.flush, { maxBatch: 3, maxInFlight: 2 });
  rec.hold();
  const all = Array.from({ length: 10 }, (_, n) => coalescer.run(n));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(rec.batches, [[0, 1, 2], [3, 4, 5]], 'two flushes in flight, the rest waiting');
  rec.release();
  // Released flushes finish and the waiting batches follow; hold none of them.
  assert.equal(await Promise.all(all), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(rec.batches.flat(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.ok(rec.batches.every((b) => b.length <= 3));
});

test('a batch that fails is retried item by item, so that only the bad item fails', async () => {
  const batches: number[][] = [];
  const coalescer = new Coalescer(async (items: number[]) => {
    batches.push(items);
    if (items.includes(13)) throw new Error('unlucky');
    return items.map((n) => n + 1);
  }, { maxBatch: 100, maxInFlight: 1 });
  const results = await Promise.allSettled([12, 13, 14].map((n) => coalescer.run(n)));
  assert.equal(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)), [13, 'unlucky', 15]);
  assert.equal(batches, [[12, 13, 14], [12], [13], [14]]);
});

test('an unreachable database fails the whole batch at once: retrying each item would only wait longer', async () => {
  let flushes = 0;
  const coalescer = new Coalescer(async (): Promise<number[]> => {
    flushes += 1;
    throw new DatabaseUnavailable();
  }, { maxBatch: 100, maxInFlight: 1 });
  const results = await Promise.allSettled([1, 2, 3].map((n) => coalescer.run(n)));
  assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof DatabaseUnavailable));
  assert.is(flushes, 1);
});

test.run();
