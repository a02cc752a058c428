// Reads the Prometheus text exposition format (version 0.0.4), as the services serve it on /metrics, strictly
// enough that a malformed exposition fails the test that scraped it instead of passing unnoticed.
import * as assert from 'uvu/assert';

export type Labels = Readonly<Record<string, string>>;
export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
export type Sample = Readonly<{ name: string; labels: Labels; value: number }>;
export type Family = { readonly name: string; type: MetricType; help: string | null; readonly samples: Sample[] };

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: readonly MetricType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];
// The sample names a family of each type may hold besides its own name.
const SUFFIXES: Partial<Record<MetricType, readonly string[]>> = {
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['_sum', '_count'],
};

export class ExpositionError extends Error {}

/** One parsed scrape: its families by name, and reads of samples by name and a subset of their labels. */
export class Exposition {
  readonly families: ReadonlyMap<string, Family>;

  constructor(families: ReadonlyMap<string, Family>) {
    this.families = families;
  }

  family(name: string): Family {
    const family = this.families.get(name);
    assert.ok(family, `no metric family ${name} in the exposition`);
    return family;
  }

  /** Samples called `name` (a family's own name or a `_bucket`/`_sum`/`_count` of it) whose labels include `match`. */
  samples(name: string, match: Labels = {}): Sample[] {
    return [...this.families.values()]
      .flatMap((family) => family.samples)
      .filter((sample) => sample.name === name && Object.entries(match).every(([key, value]) => sample.labels[key] === value));
  }

  /**
   * The sum of the matching samples: a counter's total over the labels not named in `match`. A labelled counter
   * has no sample before its first increment, which reads as 0 here, as Prometheus' `sum()` would have it.
   */
  sum(name: string, match: Labels = {}): number {
    return this.samples(name, match).reduce((total, sample) => total + sample.value, 0);
  }

  /** The value of exactly one matching sample (a gauge must be there, not absent). */
  single(name: string, match: Labels = {}): number {
    const found = this.samples(name, match);
    assert.is(found.length, 1, `${name}${JSON.stringify(match)}: expected one sample, found ${found.length}`);
    return (found[0] as Sample).value;
  }

  /** The distinct label sets of a family's series (a histogram's `le` is part of one series, not a series). */
  seriesOf(name: string): Labels[] {
    const seen = new Map<string, Labels>();
    for (const sample of this.family(name).samples) {
      const { le: _le, ...labels } = sample.labels;
      seen.set(labelKey(labels), labels);
    }
    return [...seen.values()];
  }
}

/** How a counter (or a histogram's `_count`/`_sum`) moved between two scrapes. */
export const delta = (before: Exposition, after: Exposition, name: string, match: Labels = {}): number =>
  after.sum(name, match) - before.sum(name, match);

/** GETs `url` and parses it; fails unless it answers 200 with the 0.0.4 text format. */
export async function scrape(url: string): Promise<Exposition> {
  const response = await fetch(url);
  const text = await response.text();
  assert.is(response.status, 200, `GET ${url}: ${text.slice(0, 200)}`);
  assert.is(response.headers.get('content-type'), CONTENT_TYPE);
  return parseExposition(text);
}

/**
 * Parses the text format. @throws {ExpositionError} naming the line, for anything the format does not allow:
 * a bad name or escape, an unterminated label value, a repeated HELP/TYPE or series, a TYPE after its samples,
 * or a histogram whose buckets are not cumulative or whose `+Inf` bucket differs from its `_count`.
 */
export function parseExposition(text: string): Exposition {
  const families = new Map<string, Family>();
  const series = new Set<string>();
  const typed = new Set<string>();
  const lines = text.split('\n');
  lines.forEach((line, index) => {
    const fail = (why: string): never => {
      throw new ExpositionError(`line ${index + 1}: ${why}: ${JSON.stringify(line)}`);
    };
    if (line.trim() === '') return;
    if (line.startsWith('#')) return readComment(line, families, typed, fail);
    const sample = readSample(line, fail);
    const key = `${sample.name}${labelKey(sample.labels)}`;
    if (series.has(key)) fail('repeated series');
    series.add(key);
    familyFor(sample.name, families, fail).samples.push(sample);
  });
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family);
  return new Exposition(families);
}

function readComment(line: string, families: Map<string, Family>, typed: Set<string>, fail: (why: string) => never): void {
  const match = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
  if (!match) return; // Other comments carry nothing.
  const [, keyword, name = '', rest = ''] = match;
  if (!METRIC_NAME.test(name)) fail('bad metric name');
  const family = families.get(name) ?? { name, type: 'untyped' as MetricType, help: null, samples: [] };
  families.set(name, family);
  if (keyword === 'HELP') {
    if (family.help !== null) fail('second HELP');
    family.help = unescape(rest, false, fail);
    return;
  }
  if (!TYPES.includes(rest as MetricType)) fail('unknown type');
  if (family.samples.length > 0 || typed.has(name)) fail('TYPE after samples, or a second TYPE');
  typed.add(name);
  family.type = rest as MetricType;
}

/** The family a sample belongs to: its own name, or the histogram/summary whose suffixed name it carries. */
function familyFor(name: string, families: Map<string, Family>, fail: (why: string) => never): Family {
  const own = families.get(name);
  if (own && own.type !== 'histogram') return own;
  for (const family of families.values()) {
    if ((SUFFIXES[family.type] ?? []).some((suffix) => family.name + suffix === name)) return family;
  }
  if (own) return fail('a histogram sample without _bucket, _sum or _count');
  const untyped: Family = { name, type: 'untyped', help: null, samples: [] };
  families.set(name, untyped);
  return untyped;
}

function readSample(line: string, fail: (why: string) => never): Sample {
  let i = 0;
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!nameMatch) fail('no metric name');
  const name = (nameMatch as RegExpExecArray)[0];
  i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i += 1;
    for (;;) {
      while (line[i] === ' ') i += 1;
      if (line[i] === '}') break;
      const labelMatch = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
      if (!labelMatch) fail('bad label name');
      const label = (labelMatch as RegExpExecArray)[0];
      if (!LABEL_NAME.test(label) || label in labels) fail(`bad or repeated label ${label}`);
      i += label.length;
      if (line[i] !== '=' || line[i + 1] !== '"') fail(`label ${label} without ="value"`);
      i += 2;
      let raw = '';
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\') {
          raw += line.slice(i, i + 2);
          i += 2;
        } else raw += line[i++];
      }
      if (line[i] !== '"') fail(`unterminated value of label ${label}`);
      labels[label] = unescape(raw, true, fail);
      i += 1;
      if (line[i] === ',') i += 1;
      else if (line[i] !== '}') fail('expected , or } after a label');
    }
    i += 1;
  }
  const [value, timestamp, ...extra] = line.slice(i).trim().split(/\s+/);
  if (value === undefined || extra.length > 0 || (timestamp !== undefined && !/^-?\d+$/.test(timestamp))) fail('bad value or timestamp');
  return { name, labels, value: number(value as string, fail) };
}

function number(text: string, fail: (why: string) => never): number {
  // Prometheus reads values with Go's ParseFloat, which takes NaN and Inf in any case; prom-client writes `Nan`.
  const special = text.toLowerCase();
  if (special === 'nan') return NaN;
  if (['inf', '+inf', 'infinity', '+infinity'].includes(special)) return Infinity;
  if (['-inf', '-infinity'].includes(special)) return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) fail(`bad number ${text}`);
  return Number(text);
}

/** Label values escape `\\`, `\"` and `\n`; HELP text escapes `\\` and `\n` only. */
function unescape(raw: string, labelValue: boolean, fail: (why: string) => never): string {
  return raw.replace(/\\(.?)/g, (_, next: string) => {
    if (next === '\\') return '\\';
    if (next === 'n') return '\n';
    if (next === '"' && labelValue) return '"';
    return fail(`bad escape \\${next}`);
  });
}

function labelKey(labels: Labels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
}

function checkHistogram(family: Family): void {
  const bySeries = new Map<string, { buckets: { le: number; value: number }[]; count?: number }>();
  for (const sample of family.samples) {
    const { le, ...labels } = sample.labels;
    const entry = bySeries.get(labelKey(labels)) ?? { buckets: [] };
    bySeries.set(labelKey(labels), entry);
    if (sample.name === `${family.name}_bucket`) {
      if (le === undefined) throw new ExpositionError(`${family.name}: a bucket without le`);
      entry.buckets.push({ le: le === '+Inf' ? Infinity : Number(le), value: sample.value });
    } else if (sample.name === `${family.name}_count`) entry.count = sample.value;
  }
  for (const [key, { buckets, count }] of bySeries) {
    const sorted = [...buckets].sort((a, b) => a.le - b.le);
    const inf = sorted.at(-1);
    if (!inf || inf.le !== Infinity) throw new ExpositionError(`${family.name}${key}: no +Inf bucket`);
    sorted.forEach((bucket, i) => {
      if (i > 0 && bucket.value < (sorted[i - 1] as { value: number }).value) throw new ExpositionError(`${family.name}${key}: buckets not cumulative`);
    });
    if (inf.value !== count) throw new ExpositionError(`${family.name}${key}: +Inf bucket ${inf.value} but _count ${count}`);
  }
}
