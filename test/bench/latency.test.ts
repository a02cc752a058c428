import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LatencyRecorder, summarize } from '../../bench/latency.ts';

const test = suite('bench: latency percentiles');

test('nearest-rank percentiles: of 1..100 ms, p50 is 50, p95 95, p99 99, max 100', () => {
  const recorder = new LatencyRecorder();
  // Recorded out of order, as answers arrive.
  for (let ms = 100; ms >= 1; ms--) recorder.record(ms);
  assert.equal(recorder.summary(), { count: 100, p50: 50, p95: 95, p99: 99, max: 100 });
});

test('a slow tail shows at p99 only when it is more than 1% of the requests', () => {
  const fast = Array.from({ length: 990 }, () => 2);
  assert.is(summarize(Float64Array.from([...fast, ...Array.from({ length: 10 }, () => 900)]).sort()).p99, 2);
  assert.is(summarize(Float64Array.from([...fast.slice(1), ...Array.from({ length: 11 }, () => 900)]).sort()).p99, 900);
});

test('fractions are kept to a hundredth of a millisecond; nothing recorded is all zeros', () => {
  assert.equal(summarize([1.23456]), { count: 1, p50: 1.23, p95: 1.23, p99: 1.23, max: 1.23 });
  assert.equal(summarize([]), { count: 0, p50: 0, p95: 0, p99: 0, max: 0 });
});

test.run();
