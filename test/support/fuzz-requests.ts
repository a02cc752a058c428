// fast-check generators of everything around a body for test/api/fuzz.test.ts: header values, Content-Encoding,
// HTTP framing errors, query strings, path ids on every route, and task lifecycles; each with the helper that
// turns a case into a request or predicts its answer.
import fc from 'fast-check';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { text } from './fuzz-bodies.ts';
import { type Outcome, pct, textVerdict } from './fuzz-model.ts';
import type { RawRequest } from './raw-http.ts';

const TASKS = '/api/v1/tasks';
const KEYS = '/api/v1/keys';

const UUID_VERSIONS = { version: [1, 2, 3, 4, 5, 6, 7, 8] as (1 | 2 | 3 | 4 | 5 | 6 | 7 | 8)[] };

// ---- headers

/** A legal header value: visible ASCII, obs-text (0x80-0xff) and inner spaces or tabs. */
const fieldChar = fc
  .oneof({ weight: 10, arbitrary: fc.integer({ min: 0x21, max: 0x7e }) }, { weight: 2, arbitrary: fc.integer({ min: 0x80, max: 0xff }) }, { weight: 1, arbitrary: fc.constantFrom(0x20, 0x09) })
  .map((code) => String.fromCharCode(code));
const fieldValue = fc.oneof(
  { weight: 5, arbitrary: fc.string({ unit: fieldChar, maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: fieldChar, minLength: 190, maxLength: 210 }) },
  { weight: 2, arbitrary: fc.constantFrom('k-1', 'k-2', ' k-1 ', '') },
);

/** Header values as the server sees them: each trimmed of spaces and tabs, repeats joined with `, `. */
export const joinedHeader = (values: readonly string[]) => values.map((value) => value.replace(/^[ \t]+|[ \t]+$/g, '')).join(', ');

export type Keys = { full: string; reader: string; revoked: string };
type AuthCase = { scheme: string; gap: string; key: 'full' | 'reader' | 'revoked' | 'mutated' | 'junk' | 'none'; junk: string; at: number; trailer: string };

const authCase: fc.Arbitrary<AuthCase> = fc.record({
  scheme: fc.constantFrom('Bearer', 'Bearer', 'bearer', 'BEARER', 'Basic', 'Token', ''),
  gap: fc.constantFrom(' ', ' ', '  ', '\t', ''),
  key: fc.constantFrom('full', 'full', 'full', 'reader', 'revoked', 'mutated', 'junk', 'none'),
  junk: fieldValue,
  at: fc.nat(60),
  trailer: fc.constantFrom('', '', ' ', 'x', ' x'),
});

export function authorization(c: AuthCase, keys: Keys): string | undefined {
  if (c.key === 'none') return undefined;
  let secret = c.key === 'junk' ? c.junk : keys[c.key === 'mutated' ? 'full' : c.key];
  if (c.key === 'mutated') {
    const at = c.at % secret.length;
    secret = secret.slice(0, at) + (secret[at] === 'A' ? 'B' : 'A') + secret.slice(at + 1);
  }
  return `${c.scheme}${c.gap}${secret}${c.trailer}`;
}

/** The scopes an `Authorization` value grants: `Bearer <key>` (any case, spaces) for an active key. */
export function scopesOf(header: string | undefined, keys: Keys): string[] | null {
  if (header === undefined) return null;
  const secret = /^Bearer +(\S+) *$/i.exec(joinedHeader([header]))?.[1];
  if (secret === keys.full) return ['tasks:read', 'tasks:write', 'admin'];
  if (secret === keys.reader) return ['tasks:read'];
  return null;
}

const JSON_TYPES = ['application/json', 'APPLICATION/JSON', 'application/json; charset=utf-8', 'application/json;charset=UTF-8', 'application/x-www-form-urlencoded', 'application/vnd.api+json'];
const OTHER_TYPES = ['text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'text/html; charset=utf-8', 'image/png'];

/** True when the API reads a body with this Content-Type as JSON: none, JSON, or what `curl -d` sends. */
export const readsAsJson = (type: string | undefined) => type === undefined || joinedHeader([type]) === '' || JSON_TYPES.includes(type);

export const headerCase = fc.record({
  auth: authCase,
  contentType: fc.option(
    fc.oneof(fc.constantFrom(...JSON_TYPES, ...OTHER_TYPES), fieldValue.filter((v) => joinedHeader([v]) !== '' && !/json|urlencoded/i.test(v))),
    { nil: undefined },
  ),
  idempotencyKeys: fc.array(fieldValue, { maxLength: 2 }),
  requestId: fc.option(fc.oneof(fieldValue, fc.stringMatching(/^[A-Za-z0-9._:-]{1,130}$/)), { nil: undefined }),
  forwardedProto: fc.option(fc.oneof(fc.constantFrom('https', 'http', 'https, http', ' https ', 'HTTPS', 'http, https'), fieldValue), { nil: undefined }),
  body: fc.record(
    { type: fc.constant('echo'), payload: fc.record({ n: fc.nat() }), idempotencyKey: fc.constantFrom('k-1', 'k-2', 'k-body') },
    { requiredKeys: ['type', 'payload'] },
  ),
});

// ---- Content-Encoding and framing

export type EncodingCase = { encoding: string; data: 'plain' | 'gzip' | 'deflate' | 'raw-deflate' | 'br' | 'truncated' | 'garbage' | 'bomb'; garbage: Uint8Array; cut: number; n: number };

export const encodingCase: fc.Arbitrary<EncodingCase> = fc.record({
  encoding: fc.constantFrom('gzip', 'deflate', 'br', 'identity', '', 'x-gzip', 'compress', 'gzip, identity', 'zstd'),
  data: fc.constantFrom('plain', 'gzip', 'deflate', 'raw-deflate', 'br', 'truncated', 'garbage', 'bomb'),
  garbage: fc.uint8Array({ maxLength: 48 }),
  cut: fc.nat(),
  n: fc.nat(),
});

/** gzip and deflate are read by one zlib decoder that takes either format; br by brotli. */
const DECODES: Record<string, readonly string[]> = { gzip: ['gzip', 'deflate', 'bomb'], deflate: ['gzip', 'deflate', 'bomb'], br: ['br'] };

export function encodingVerdict(c: EncodingCase, body: Buffer, limitBytes: number): Outcome {
  if (c.encoding === 'identity' || c.encoding === '') return textVerdict(body, limitBytes);
  const decodes = DECODES[c.encoding];
  if (!decodes) return { status: 415 };
  if (c.data === 'bomb' && decodes.includes('bomb')) return { status: 413 };
  if (decodes.includes(c.data)) return textVerdict(Buffer.from(JSON.stringify({ type: 'echo', payload: { n: c.n } })), limitBytes);
  // Bytes that do not decode: the client's fault, some 4xx.
  return { status: 'refused' };
}

export type FramingCase = { kind: 'control-byte' | 'bad-header-name' | 'bad-length' | 'length-and-chunked' | 'bad-chunk' | 'short-body' | 'bad-target'; byte: number; junk: string; n: number };

export const framingCase: fc.Arbitrary<FramingCase> = fc.record({
  kind: fc.constantFrom('control-byte', 'bad-header-name', 'bad-length', 'length-and-chunked', 'bad-chunk', 'short-body', 'bad-target'),
  byte: fc.constantFrom(0x00, 0x01, 0x08, 0x0b, 0x0c, 0x1f, 0x7f),
  junk: fc.string({ unit: 'grapheme-ascii', maxLength: 10 }),
  n: fc.integer({ min: 1, max: 50 }),
});

/** Cases whose headers parse, so that the API sees the request and then fails to read its body. */
export const reachesApp = (c: FramingCase) => c.kind === 'bad-chunk' || c.kind === 'short-body';

export function framedRequest(c: FramingCase, key: string, requestId: string): RawRequest {
  const headers: [string, string][] = [['Authorization', `Bearer ${key}`], ['X-Request-Id', requestId], ['Content-Type', 'application/json']];
  const body = `{"type":"echo","payload":"${'x'.repeat(c.n)}"}`;
  const base = { method: 'POST', target: TASKS, headers, body };
  switch (c.kind) {
    case 'control-byte':
      return { ...base, headers: [...headers, ['X-Junk', `a${String.fromCharCode(c.byte)}b`]] };
    case 'bad-header-name':
      return { ...base, headers: [...headers, [`Bad Name${c.junk}`, 'x']] };
    case 'bad-length':
      return { ...base, noContentLength: true, headers: [...headers, ['Content-Length', `${c.n}${c.junk}x`]] };
    case 'length-and-chunked':
      return { ...base, noContentLength: true, headers: [...headers, ['Content-Length', String(c.n)], ['Transfer-Encoding', 'chunked']], body: `${c.n.toString(16)}\r\n${'x'.repeat(c.n)}\r\n0\r\n\r\n` };
    case 'bad-chunk':
      return { ...base, noContentLength: true, headers: [...headers, ['Transfer-Encoding', 'chunked']], body: `${c.junk}zz\r\n${body}\r\n0\r\n\r\n` };
    case 'short-body':
      // Fewer bytes than announced, then the client gives up: the server must not wait for the rest.
      return { ...base, noContentLength: true, headers: [...headers, ['Content-Length', String(Buffer.byteLength(body) + c.n)]], endAfterWrite: true };
    case 'bad-target':
      return { ...base, target: `${TASKS}/a${c.junk.length % 2 === 0 ? ' ' : '\u00ff'}b` };
  }
}

// ---- queries, paths and lifecycles

const PERCENT_JUNK = ['%ff', '%00', '%', '%zz', '%ED%A0%80', '%C0%AF', '%2', '+', '%2B', '%26', '%3D', '%u0041', '%2F', '%20'];
const percentJunk = fc.array(fc.constantFrom(...PERCENT_JUNK), { minLength: 1, maxLength: 3 }).map((parts) => parts.join(''));
const queryText = fc.oneof(text.map(pct), fc.stringMatching(/^[A-Za-z0-9._~!$'()*,;:@/?-]{0,12}$/), percentJunk);
const base64url = (value: string) => Buffer.from(value, 'utf8').toString('base64url');

/** A query string for `GET /api/v1/tasks`; valid cursors are drawn from `cursors`, which the test extends as pages come. */
export function queryCase(cursors: readonly string[]): fc.Arbitrary<string> {
  const name = fc.oneof(
    { weight: 10, arbitrary: fc.constantFrom('status', 'type', 'limit', 'cursor') },
    { weight: 1, arbitrary: fc.constantFrom('tenant', 'limit[]', 'Status', '', '__proto__', 'constructor', 'li%6Dit') },
    { weight: 1, arbitrary: queryText },
  );
  const value = fc.oneof(
    fc.constantFrom(...Object.values(TaskStatus), 'PENDING', 'done'),
    fc.constantFrom('echo', 'sleep', 'fail', 'e%63ho', 'echo%00', '%ff', 'ech'),
    fc.integer({ min: -3, max: 503 }).map(String),
    fc.constantFrom('1e400', '-0', '0x10', '1e2', '%205', '5.5', 'NaN', 'Infinity', '', '9'.repeat(400), '%2B3', '3%20', '0b11', '1_0', '500', '501'),
    fc.nat().map((i) => cursors[i % cursors.length] ?? ''),
    fc.uuid(UUID_VERSIONS).map(base64url),
    fc.uuid(UUID_VERSIONS).map((id) => base64url(id.toUpperCase())),
    fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'), maxLength: 120 }),
    queryText,
  );
  return fc
    .array(fc.tuple(name, value, fc.constantFrom('=', '=', '=', '', '==')), { maxLength: 4 })
    .map((parts) => (parts.length === 0 ? '' : `?${parts.map(([n, v, eq]) => (eq === '' ? n : `${n}${eq}${v}`)).join('&')}`));
}

export type Route = { method: string; path: (segment: string) => string; expect: 'id' | number };

/** Every `:id` route with its method (a 400/404 by id), the same paths with methods they lack (405), OPTIONS and unknown methods (501). */
const ROUTES: Route[] = [
  { method: 'GET', path: (s) => `${TASKS}/${s}`, expect: 'id' },
  { method: 'HEAD', path: (s) => `${TASKS}/${s}`, expect: 'id' },
  { method: 'GET', path: (s) => `${TASKS}/${s}/events`, expect: 'id' },
  { method: 'POST', path: (s) => `${TASKS}/${s}/cancel`, expect: 'id' },
  { method: 'POST', path: (s) => `${TASKS}/${s}/retry`, expect: 'id' },
  { method: 'DELETE', path: (s) => `${TASKS}/${s}`, expect: 'id' },
  { method: 'DELETE', path: (s) => `${KEYS}/${s}`, expect: 'id' },
  { method: 'PUT', path: (s) => `${TASKS}/${s}`, expect: 405 },
  { method: 'PATCH', path: (s) => `${TASKS}/${s}`, expect: 405 },
  { method: 'POST', path: (s) => `${TASKS}/${s}`, expect: 405 },
  { method: 'GET', path: (s) => `${TASKS}/${s}/cancel`, expect: 405 },
  { method: 'PUT', path: (s) => `${KEYS}/${s}`, expect: 405 },
  { method: 'OPTIONS', path: (s) => `${TASKS}/${s}`, expect: 200 },
  { method: 'PROPFIND', path: (s) => `${TASKS}/${s}`, expect: 501 },
  { method: 'PURGE', path: (s) => `${TASKS}/${s}/retry`, expect: 501 },
];

const uuid = fc.uuid(UUID_VERSIONS);
const segment = fc.oneof(
  uuid,
  uuid.map((id) => id.toUpperCase()),
  fc.constantFrom('00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '01900000-0000-7000-8000-000000000000'),
  fc.tuple(uuid, fc.nat(35), fc.constantFrom('g', '0', '9', 'f', '-', '', '00', '%41', 'Z', '%2D', '{', '%7B')).map(([id, at, c]) => id.slice(0, at) + c + id.slice(at + 1)),
  fc.tuple(uuid, fc.constantFrom('0', '9', 'c'), fc.constantFrom('0', 'c', 'f')).map(([id, version, variant]) => `${id.slice(0, 14)}${version}${id.slice(15, 19)}${variant}${id.slice(20)}`),
  fc.tuple(uuid, fc.constantFrom('%00', 'x', '%20', '%2F', '.', '0')).map(([id, tail]) => id + tail),
  text.filter((s) => s.length > 0).map(pct),
  fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,;=:@-]{1,40}$/),
  percentJunk,
  fc.constantFrom('.', '..', '%2e%2e', '%2e'),
  fc.integer({ min: 100, max: 8_000 }).map((n) => 'a'.repeat(n)),
);

export const pathCase = fc.record({ route: fc.constantFrom(...ROUTES), segment });

export const safeDecode = (segment: string) => {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
};

export type LifecycleOp = 'get' | 'events' | 'cancel' | 'retry' | 'delete';
type Live = 'live' | 'cancelled';

export const lifecycleCase = fc.record({
  dueNow: fc.array(fc.boolean(), { minLength: 1, maxLength: 2 }),
  ops: fc.array(fc.record({ op: fc.constantFrom<LifecycleOp>('get', 'events', 'cancel', 'retry', 'delete'), target: fc.nat(3) }), { minLength: 1, maxLength: 8 }),
});

export function lifecycleRequest(op: LifecycleOp, id: string, headers: (readonly [string, string])[]): RawRequest {
  const requests: Record<LifecycleOp, RawRequest> = {
    get: { method: 'GET', target: `${TASKS}/${id}`, headers },
    events: { method: 'GET', target: `${TASKS}/${id}/events`, headers },
    cancel: { method: 'POST', target: `${TASKS}/${id}/cancel`, headers },
    retry: { method: 'POST', target: `${TASKS}/${id}/retry`, headers },
    delete: { method: 'DELETE', target: `${TASKS}/${id}`, headers },
  };
  return requests[op];
}

/**
 * With no worker a task is live (pending or queued) or cancelled: cancel is 200 either way, retry is 202 for a
 * cancelled task and 409 for a live one, delete is 204.
 */
export function lifecycleModel(op: LifecycleOp, state: Live): { status: number; state: Live | 'deleted' } {
  if (op === 'cancel') return { status: 200, state: 'cancelled' };
  if (op === 'retry') return state === 'cancelled' ? { status: 202, state: 'live' } : { status: 409, state };
  if (op === 'delete') return { status: 204, state: 'deleted' };
  return { status: 200, state };
}

export const raceCase = fc.record({
  idempotencyKey: fc.oneof(fc.constantFrom('race-1', 'race-2'), fc.stringMatching(/^[a-z0-9]{1,20}$/)),
  copies: fc.integer({ min: 2, max: 8 }),
});
