// fast-check generators of request bodies for test/api/fuzz.test.ts: task and key bodies near the valid shape,
// payloads the API must store unchanged, runAt values across the whole valid range, and raw texts (as small
// descriptions, so that a counterexample reads well, written out by rawBytes).
import fc from 'fast-check';
import { storable } from './fuzz-model.ts';

const DAY = 86_400_000;
const PROTO_KEYS = ['__proto__', 'constructor', 'prototype'];

const one = (unit: 'grapheme-ascii' | 'grapheme' | 'binary-ascii' | 'binary') => fc.string({ unit, minLength: 1, maxLength: 1 });

/** Mostly printable ASCII, some Unicode, now and then a control character (NUL too), a lone surrogate or a prototype name. */
const unit = fc.oneof(
  { weight: 12, arbitrary: one('grapheme-ascii') },
  { weight: 3, arbitrary: one('grapheme') },
  { weight: 1, arbitrary: one('binary-ascii') },
  { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code)) },
  { weight: 1, arbitrary: fc.constantFrom('\u0000', '\uffff', '\ufeff', '\u2028', '"', '\\', ...PROTO_KEYS) },
);
/** Only characters PostgreSQL can store, odd ones included. */
const cleanUnit = fc.oneof(
  { weight: 8, arbitrary: one('grapheme-ascii') },
  { weight: 3, arbitrary: one('grapheme') },
  { weight: 1, arbitrary: one('binary').filter((c) => c !== '\u0000') },
  { weight: 1, arbitrary: fc.constantFrom('\uffff', '\ufeff', '\u2028', '\t', '\n', '\u{10FFFF}', 'constructor', 'prototype', 'toString') },
);
export const text = fc.string({ unit, maxLength: 24 });
const cleanText = fc.string({ unit: cleanUnit, maxLength: 24 });

const numberEdge = fc.constantFrom(0, -0, 0.1, 1e21, 1e-7, 1e308, -1e308, Number.MAX_VALUE, Number.MIN_VALUE, 2 ** 53 + 1, -(2 ** 53) - 1);
const number = fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), numberEdge);

function json(strings: fc.Arbitrary<string>, keys: fc.Arbitrary<string>): fc.Arbitrary<unknown> {
  return fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small', maxDepth: 4 }, fc.constant(null), fc.boolean(), number, strings, tie('array'), tie('object')),
    array: fc.array(tie('value'), { maxLength: 4 }),
    object: fc.dictionary(keys, tie('value'), { maxKeys: 4, noNullPrototype: true }),
  })).value;
}

function nest(value: unknown, depth: number, inArrays: boolean): unknown {
  let nested = value;
  for (let level = 0; level < depth; level++) nested = inArrays ? [nested] : { n: nested };
  return nested;
}

/** `inner`, usually as is, sometimes wrapped in 25-40 arrays or objects (around the 32-level limit). */
const nested = (inner: fc.Arbitrary<unknown>) =>
  fc
    .tuple(inner, fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 25, max: 40 }) }), fc.boolean())
    .map(([value, depth, inArrays]) => nest(value, depth, inArrays));

const junk = fc.oneof(
  fc.constantFrom(null, true, false, '', '5', [], {}, -1, 0.5, 1e308, 2 ** 53 + 1, Number.NaN, Number.POSITIVE_INFINITY),
  number,
  text,
);

/** Mostly a valid value, sometimes an edge just past the limit, sometimes anything. */
function near(valid: fc.Arbitrary<unknown>, ...edges: unknown[]): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: 6, arbitrary: valid }, { weight: 1, arbitrary: fc.constantFrom(...edges) }, { weight: 1, arbitrary: junk });
}

/** Per field, whether it is sent (percent of the time); shrinking leaves fields out. */
const presence = (percent: Record<string, number>) =>
  fc.record(Object.fromEntries(Object.entries(percent).map(([field, p]) => [field, fc.integer({ min: 1, max: 100 }).map((n) => n > 100 - p)])));

const extraKeys = fc.oneof(
  { weight: 5, arbitrary: fc.constant({}) },
  { weight: 1, arbitrary: fc.dictionary(fc.oneof(text, fc.constantFrom(...PROTO_KEYS, 'Type', 'toString')), junk, { maxKeys: 2 }) },
);

function assemble(fields: Record<string, unknown>, sent: Record<string, boolean>, extras: Record<string, unknown>): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(fields)) if (sent[field]) body[field] = value;
  // defineProperty, so that a `__proto__` key becomes an own property, as JSON.parse makes it.
  for (const [key, value] of Object.entries(extras)) Object.defineProperty(body, key, { value, enumerable: true, writable: true, configurable: true });
  return body;
}

/** `instant` in ISO 8601 as seen from `offset` (minutes east of UTC, or Z), with `digits` after the milliseconds; null past year 9999. */
function isoAt(instant: number, offset: number | 'Z', digits: string): string | null {
  const minutes = offset === 'Z' ? 0 : offset;
  const local = new Date(instant + minutes * 60_000);
  const year = local.getUTCFullYear();
  if (Number.isNaN(year) || year < 0 || year > 9999) return null;
  const p = (n: number, width = 2) => String(n).padStart(width, '0');
  const zone = offset === 'Z' ? 'Z' : `${offset < 0 ? '-' : '+'}${p(Math.floor(Math.abs(offset) / 60))}:${p(Math.abs(offset) % 60)}`;
  const date = `${p(year, 4)}-${p(local.getUTCMonth() + 1)}-${p(local.getUTCDate())}`;
  const time = `${p(local.getUTCHours())}:${p(local.getUTCMinutes())}:${p(local.getUTCSeconds())}.${p(local.getUTCMilliseconds(), 3)}${digits}`;
  return `${date}T${time}${zone}`;
}

const offset = fc.oneof(fc.constant('Z' as const), fc.integer({ min: -(23 * 60 + 59), max: 23 * 60 + 59 }));
const subMillisecond = fc.oneof(
  fc.constant(''),
  fc.constantFrom('5', '9995', '99999', '0001', '4999'),
  fc.stringMatching(/^\d{1,7}$/),
  fc.stringMatching(/^\d{20,60}$/),
);
const isoBetween = (min: string, max: string) =>
  fc
    .tuple(fc.integer({ min: Date.parse(min), max: Date.parse(max) }), offset, subMillisecond)
    .map(([instant, zone, digits]) => isoAt(instant, zone, digits))
    .filter((value): value is string => value !== null);

const INVALID_RUN_AT = [
  'tomorrow', '', '2024-13-01T00:00:00Z', '2023-02-29T00:00:00Z', '2024-01-01T24:00:00Z', '2024-01-01 00:00:00Z', '2024-01-01T00:00:00',
  '2024-01-01T00:00Z', '2024-01-01T00:00:00+24:00', '2024-01-01T00:00:00.Z', '+002024-01-01T00:00:00Z', '0000-06-01T00:00:00Z', '2024-01-01t00:00:00z',
];

const payloadFor: Record<string, fc.Arbitrary<unknown>> = {
  echo: nested(json(text, fc.oneof(text, fc.constantFrom(...PROTO_KEYS)))),
  sleep: fc.record({ ms: near(fc.integer({ min: 0, max: 600_000 }), -1, 600_001, 1.5, '10') }),
  fail: fc.record({ message: near(text, 'x'.repeat(10_001), '') }, { requiredKeys: [] }),
};

const settings = {
  priority: near(fc.integer({ min: 0, max: 9 }), -1, 10, 4.5, '5'),
  maxAttempts: near(fc.integer({ min: 1, max: 100 }), 0, 101, 2.5),
  backoff: near(
    fc.record(
      { type: fc.constantFrom('exponential', 'fixed'), delayMs: fc.integer({ min: 0, max: DAY }), maxDelayMs: fc.integer({ min: 0, max: DAY }), jitter: fc.boolean() },
      { requiredKeys: [] },
    ),
    { type: 'linear' }, { delayMs: -1 }, { delayMs: 2_000, maxDelayMs: 1_000 }, { jitter: 'yes' }, { delayMs: DAY + 1 }, { extra: 1 }, [],
  ),
  runAt: near(isoBetween('1971-01-01T00:00:00Z', '2100-01-01T00:00:00Z'), ...INVALID_RUN_AT),
  timeoutMs: near(fc.integer({ min: 1, max: DAY }), 0, DAY + 1, 1.5),
  idempotencyKey: near(fc.oneof(fc.constantFrom('k-1', 'k-2', 'ключ', 'k\u00e9'), fc.string({ unit, minLength: 1, maxLength: 30 })), '', 'k'.repeat(201)),
  retentionMs: near(fc.integer({ min: 0, max: 100 * 365 * DAY }), -1, 100 * 365 * DAY + 1, 0.5),
};

const taskBody = fc.constantFrom('echo', 'sleep', 'fail').chain((type) =>
  fc
    .tuple(
      fc.record({
        type: near(fc.constant(type), 'ECHO', 'echo ', 'transcode', ''),
        payload: fc.oneof({ weight: 4, arbitrary: payloadFor[type] as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: payloadFor['echo'] as fc.Arbitrary<unknown> }),
        ...settings,
      }),
      presence({ type: 97, payload: 75, priority: 30, maxAttempts: 30, backoff: 25, runAt: 25, timeoutMs: 25, idempotencyKey: 20, retentionMs: 25 }),
      extraKeys,
    )
    .map(([fields, sent, extras]) => assemble(fields, sent, extras)),
);

/** A `POST /api/v1/tasks` body: mostly near the valid shape, sometimes any JSON, sometimes an array of bodies. */
export const jsonBody = fc.oneof(
  { weight: 10, arbitrary: taskBody },
  { weight: 1, arbitrary: json(text, fc.oneof(text, fc.constantFrom(...PROTO_KEYS))) },
  { weight: 1, arbitrary: fc.array(taskBody, { maxLength: 2 }) },
);

const cleanJson = json(cleanText, fc.oneof(cleanText, fc.constantFrom('constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf')));

/** A body every payload of which the API must store and give back unchanged. */
export const validPayloadBody = fc.oneof(
  { weight: 4, arbitrary: nested(cleanJson).filter(storable).map((payload) => ({ type: 'echo', payload })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 600_000 }).map((ms) => ({ type: 'sleep', payload: { ms } })) },
  { weight: 1, arbitrary: fc.option(cleanText, { nil: undefined }).map((message) => ({ type: 'fail', payload: message === undefined ? {} : { message } })) },
);

const EDGE_INSTANTS = [
  '0001-01-01T00:00:00.000Z', '0001-01-01T00:59:59.999Z', '0049-12-31T23:59:59.999Z', '0050-01-01T00:00:00.000Z', '0099-12-31T23:59:59.999Z',
  '0100-01-01T00:00:00.000Z', '1969-12-31T23:59:59.999Z', '9999-12-31T23:59:59.000Z', '9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z',
].map((iso) => Date.parse(iso));

/** A valid task due anywhere in 0001-9999, often at the ends of that range, in any offset and precision. */
export const runAtBody = fc
  .oneof(
    fc.tuple(fc.integer({ min: Date.parse('0001-01-01T00:00:00Z'), max: Date.parse('9999-12-31T23:59:59.999Z') }), offset, subMillisecond),
    fc.tuple(
      fc.constantFrom(...EDGE_INSTANTS),
      fc.oneof(fc.constant('Z' as const), offset),
      fc.oneof(fc.constant(''), fc.constantFrom('5', '9995', '99999', '0001', '4999'), subMillisecond),
    ),
  )
  .map(([instant, zone, digits]) => isoAt(instant, zone, digits))
  .filter((runAt): runAt is string => runAt !== null)
  .map((runAt) => ({ type: 'echo', payload: {}, runAt }));

// ---- raw texts

const NUMBER_LITERALS = [
  '1e400', '-1e400', '-0', '0e0', '-0.0', '9007199254740993', '1e308', '1.7976931348623157e308', '1.7976931348623159e308', '5e-324', '2e-324',
  '1e-400', '1E+2', '123456789012345678901234567890', '00', '01', '.5', '1.', '+1', '0x10', 'NaN', 'Infinity', '-', '1e', '1_000', '4.0', '9.000000000000001',
];
const numberLiteral = fc.oneof(
  fc.constantFrom(...NUMBER_LITERALS),
  fc
    .tuple(fc.constantFrom('', '-'), fc.stringMatching(/^[1-9]\d{0,30}$/), fc.constantFrom('', '.5', '.000001'), fc.constantFrom('', 'e308', 'e-308', 'e400', 'E-400', 'e+21'))
    .map((parts) => parts.join('')),
);
const ESCAPES = [
  '\\u0000', '\\ud800', '\\udbff', '\\udc00', '\\udfff', '\\ud83d\\ude00', '\\ud83d', '\\ude00', '\\u005f', '\\"', '\\\\', '\\/', '\\b', '\\n',
  '\\u2028', '\\uffff', '\\uFEFF', 'a', 'é', '\\x41', '\\u12', '\t', '\\U0041', '__proto__', '\\u005f\\u005fproto\\u005f\\u005f', 'constructor',
];
const PROTO_SPELLINGS = ['__proto__', '\\u005f_proto__', '__pro\\u0074o__', '\\u005F\\u005Fproto\\u005F\\u005F', 'constructor', 'prototype', '__proto__ ', '__PROTO__'];
const BASES = [
  '{"type":"echo","payload":{"a":[1,2,{"b":"c"}]},"priority":3}',
  '{"type":"sleep","payload":{"ms":5}}',
  '{"type":"fail","payload":{"message":"m"},"backoff":{"type":"fixed","delayMs":5}}',
  '[{"type":"echo"}]',
];

export type RawShape =
  | { kind: 'literal'; where: 'payload' | 'priority' | 'ms' | 'retentionMs' | 'array'; literal: string }
  | { kind: 'deep'; depth: number; open: '[' | '{"a":'; where: 'payload' | 'top' | 'priority' }
  | { kind: 'escapes'; where: 'value' | 'key' | 'idempotencyKey' | 'type' | 'message'; parts: string[] }
  | { kind: 'bytes'; where: 'value' | 'key' | 'idempotencyKey'; bytes: number[] }
  | { kind: 'proto'; key: string; where: 'top' | 'payload' | 'nested' | 'array'; value: string }
  | { kind: 'duplicates'; entries: [string, string][] }
  | { kind: 'truncated'; base: number; cut: number }
  | { kind: 'framed'; prefix: string; base: number; suffix: string }
  | { kind: 'junk'; text: string }
  | { kind: 'size'; delta: number };

/** Descriptions of raw bodies (kept small, so that a counterexample reads well); {@link rawBytes} writes them out. */
export const rawBody = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('literal'), where: fc.constantFrom('payload', 'priority', 'ms', 'retentionMs', 'array'), literal: numberLiteral }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('deep'),
      depth: fc.oneof(fc.integer({ min: 28, max: 36 }), fc.integer({ min: 1, max: 10_000 }), fc.constant(10_000)),
      open: fc.constantFrom('[', '{"a":'),
      where: fc.constantFrom('payload', 'top', 'priority'),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('escapes'),
      where: fc.constantFrom('value', 'key', 'idempotencyKey', 'type', 'message'),
      parts: fc.array(fc.constantFrom(...ESCAPES), { minLength: 1, maxLength: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('bytes'),
      where: fc.constantFrom('value', 'key', 'idempotencyKey'),
      bytes: fc.array(fc.oneof(fc.integer({ min: 0x80, max: 0xff }), fc.constantFrom(0x00, 0x1f, 0x41, 0xc0, 0xc1, 0xe0, 0xed, 0xf0, 0xf4, 0xf5)), { minLength: 1, maxLength: 10 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('proto'),
      key: fc.constantFrom(...PROTO_SPELLINGS),
      where: fc.constantFrom('top', 'payload', 'nested', 'array'),
      value: fc.constantFrom('{"polluted":true}', '1', 'null', '{"toString":"x"}', '{"prototype":{"polluted":1}}'),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('duplicates'),
      entries: fc.array(
        fc.tuple(
          fc.constantFrom('type', 'payload', 'priority', 'idempotencyKey', 'maxAttempts'),
          fc.constantFrom('"echo"', '"sleep"', '{"ms":5}', '{"a":1,"a":[2]}', '3', '10', '"k-dup"', 'null', '[]'),
        ),
        { minLength: 1, maxLength: 6 },
      ),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncated'), base: fc.nat(BASES.length - 1), cut: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('framed'),
      prefix: fc.constantFrom('\ufeff', ' ', '\n\t', '', '\u00a0', '\u0000'),
      base: fc.nat(BASES.length - 1),
      suffix: fc.constantFrom('', ' ', '\n', 'x', '}', ',', '\u0000', '//c', '\ufeff'),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('junk'), text }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('size'), delta: fc.integer({ min: -2, max: 2 }) }) },
) as fc.Arbitrary<RawShape>;

/** The bytes of a raw body; `limitBytes` sizes the `size` case around the body limit. */
export function rawBytes(shape: RawShape, limitBytes: number): Buffer {
  const echo = (payload: string) => `{"type":"echo","payload":${payload}}`;
  switch (shape.kind) {
    case 'literal': {
      const { literal: n } = shape;
      const texts = { payload: echo(n), priority: `{"type":"echo","priority":${n}}`, ms: `{"type":"sleep","payload":{"ms":${n}}}`, retentionMs: `{"type":"echo","retentionMs":${n}}`, array: echo(`[${n},${n}]`) };
      return Buffer.from(texts[shape.where]);
    }
    case 'deep': {
      const close = shape.open === '[' ? ']' : '}';
      const value = shape.open.repeat(shape.depth) + (shape.open === '[' ? '' : '1') + close.repeat(shape.depth);
      return Buffer.from(shape.where === 'top' ? value : shape.where === 'payload' ? echo(value) : `{"type":"echo","priority":${value}}`);
    }
    case 'escapes':
    case 'bytes': {
      const inner = shape.kind === 'escapes' ? Buffer.from(shape.parts.join('')) : Buffer.from(shape.bytes);
      const around = {
        value: ['{"type":"echo","payload":{"s":"', '"}}'],
        key: ['{"type":"echo","payload":{"', '":1}}'],
        idempotencyKey: ['{"type":"echo","idempotencyKey":"', '"}'],
        type: ['{"type":"', '"}'],
        message: ['{"type":"fail","payload":{"message":"', '"}}'],
      }[shape.where];
      return Buffer.concat([Buffer.from(around[0] as string), inner, Buffer.from(around[1] as string)]);
    }
    case 'proto': {
      const entry = `"${shape.key}":${shape.value}`;
      const texts = { top: `{"type":"echo",${entry}}`, payload: echo(`{${entry}}`), nested: echo(`{"a":[{"b":{${entry}}}]}`), array: echo(`[{${entry}}]`) };
      return Buffer.from(texts[shape.where]);
    }
    case 'duplicates':
      return Buffer.from(`{${shape.entries.map(([key, value]) => `"${key}":${value}`).join(',')}}`);
    case 'truncated': {
      const base = BASES[shape.base] as string;
      return Buffer.from(base.slice(0, shape.cut % base.length));
    }
    case 'framed':
      return Buffer.from(shape.prefix + (BASES[shape.base] as string) + shape.suffix);
    case 'junk':
      return Buffer.from(shape.text);
    case 'size': {
      const frame = echo('""');
      return Buffer.from(echo(`"${'x'.repeat(limitBytes + shape.delta - frame.length)}"`));
    }
  }
}

// ---- keys

const tenant = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/);

/** A `POST /api/v1/keys` body near the valid shape. */
export const keyBody = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .tuple(
        fc.record({
          tenant: near(tenant, 'Acme', '-a', 'a-', 'a'.repeat(64), 'ä', 'a_b', '', 'a\u0000'),
          scopes: near(fc.array(fc.constantFrom('tasks:read', 'tasks:write', 'admin'), { minLength: 1, maxLength: 10 }), [], Array(11).fill('admin'), ['root'], 'admin', [null], ['admin', 'ADMIN']),
          name: near(text, 'n'.repeat(201), ''),
        }),
        presence({ tenant: 95, scopes: 95, name: 50 }),
        extraKeys,
      )
      .map(([fields, sent, extras]) => assemble(fields, sent, extras)),
  },
  { weight: 1, arbitrary: json(text, fc.oneof(text, fc.constantFrom(...PROTO_KEYS))) },
);
