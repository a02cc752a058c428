/** Latencies in milliseconds, kept whole (a run records at most a few hundred thousand), summarised exactly. */
export type LatencySummary = { count: number; p50: number; p95: number; p99: number; max: number };

export class LatencyRecorder {
  #values: number[] = [];

  record(ms: number): void {
    this.#values.push(ms);
  }

  summary(): LatencySummary {
    const sorted = Float64Array.from(this.#values).sort();
    return summarize(sorted);
  }
}

/** Nearest-rank percentiles of ascending values. */
export function summarize(sorted: ArrayLike<number>): LatencySummary {
  const at = (q: number) => (sorted.length === 0 ? 0 : round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number));
  return { count: sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1) };
}

const round = (ms: number) => Math.round(ms * 100) / 100;
