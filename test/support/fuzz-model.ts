// What the API should answer to an input, worked out from its documented contract and limits (the OpenAPI
// schemas, the README) rather than from its code, for the property-based tests in test/api/fuzz.test.ts. Also
// the log sink those tests read the API's errors from.
import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';

const DAY = 86_400_000;
const TYPES = ['echo', 'fail', 'sleep'];
const SUBMIT_FIELDS = ['type', 'payload', 'priority', 'maxAttempts', 'backoff', 'runAt', 'timeoutMs', 'idempotencyKey', 'retentionMs'];
const BACKOFF_FIELDS = ['type', 'delayMs', 'maxDelayMs', 'jitter'];
const MAX_DEPTH = 32;
const DEFAULT_FAIL_MESSAGE = 'task failed on purpose';
/** An RFC 9562 UUID of version 1-8, or the nil or max UUID. */
export const UUID = /^([0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}|0{8}-0{4}-0{4}-0{4}-0{12}|f{8}-f{4}-f{4}-f{4}-f{12})$/i;
/** Anything shaped 8-4-4-4-12 hex, which a stricter parser may still refuse. */
export const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TENANT = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const ISO_TIME = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:Z|([+-])(\d\d):(\d\d))$/;

/** What an answer must be: created (201, or 200 for a repeated idempotency key), a given 4xx, or some 4xx. */
export type Outcome =
  /** `mayRefuse`: the input is at the edge of what can be stored, and a 422 is as good an answer as a 201. */
  | { status: 'created'; body: Record<string, unknown>; payload: unknown; mayRefuse?: boolean }
  | { status: 400 | 401 | 403 | 413 | 415 | 422 }
  | { status: 'refused' };

/** What the test saw: tasks answered 201 (with the payload answered), tasks answered 204 to DELETE, keys created. */
export type Ledger = {
  tasks: Map<string, { tenant: string; type: string; payload: unknown }>;
  deleted: Set<string>;
  keysIssued: number;
  /** `tenant NUL key` → the id of the task the key created. */
  idempotency: Map<string, string>;
};

export const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
/** Text PostgreSQL stores: no NUL, no lone surrogate. */
export const goodText = (text: string): boolean => !text.includes('\u0000') && text.isWellFormed();
const int = (value: unknown, min: number, max: number): boolean =>
  typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
const optional = (value: unknown, ok: (value: unknown) => boolean): boolean => value === undefined || ok(value);

/** Percent-encodes the UTF-8 bytes of `text` except the unreserved characters (a lone surrogate becomes U+FFFD). */
export function pct(text: string): string {
  return [...Buffer.from(text, 'utf8')]
    .map((byte) => (/[A-Za-z0-9._~-]/.test(String.fromCharCode(byte)) ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`))
    .join('');
}

/** A JSON value the API can store: nested at most 32 levels, strings and keys without NUL or lone surrogates, finite numbers. */
export function storable(value: unknown): boolean {
  const stack = [{ value, depth: 0 }];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const { value: current, depth } = next;
    if (typeof current === 'string' && !goodText(current)) return false;
    if (typeof current === 'number' && !Number.isFinite(current)) return false;
    if (current === null || typeof current !== 'object') continue;
    if (depth >= MAX_DEPTH) return false;
    for (const [key, child] of Object.entries(current)) {
      if (!goodText(key)) return false;
      stack.push({ value: child, depth: depth + 1 });
    }
  }
  return true;
}

function hasProtoKey(value: unknown): boolean {
  const stack = [value];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    if (next === null || typeof next !== 'object') continue;
    if (Object.hasOwn(next, '__proto__')) return true;
    stack.push(...Object.values(next));
  }
  return false;
}

const MALFORMED = Symbol('malformed');

/**
 * A request body as the API reads it: UTF-8 (a BOM dropped, invalid bytes replaced), empty as `{}`, an object
 * or array only, and no `__proto__` key anywhere (refused as a prototype-poisoning attempt).
 */
function parseJsonBody(bytes: Buffer): unknown {
  const text = new TextDecoder().decode(bytes);
  if (text === '') return {};
  if (!/^[\x20\x09\x0a\x0d]*[[{]/.test(text)) return MALFORMED;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return MALFORMED;
  }
  return hasProtoKey(value) ? MALFORMED : value;
}

/**
 * The instant (epoch ms, sub-milliseconds dropped) an RFC 3339 date-time names, or null when it is not one.
 * Worked out by hand: V8's Date.parse misreads long fractions (…00.0000000000000001Z is 10 ms).
 */
export function instantOf(value: string): number | null {
  const match = ISO_TIME.exec(value);
  if (!match) return null;
  const [y, mo, d, h, mi, s] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const [oh, om] = [Number(match[9] ?? 0), Number(match[10] ?? 0)];
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1] ?? 0;
  if (d < 1 || d > days || h > 23 || mi > 59 || s > 59 || oh > 23 || om > 59) return null;
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, Number((match[7] ?? '').padEnd(3, '0').slice(0, 3)));
  return date.getTime() - (match[8] === '-' ? -1 : 1) * (oh * 60 + om) * 60_000;
}

function runAtOk(value: unknown): boolean {
  const instant = typeof value === 'string' ? instantOf(value) : null;
  if (instant === null) return false;
  const year = new Date(instant).getUTCFullYear();
  return year >= 1 && year <= 9999;
}

/**
 * A valid runAt that PostgreSQL cannot take as written, which the API may refuse: an offset beyond ±15:59, a local
 * year 0000 (the instant being in year 1), or sub-millisecond digits in the last millisecond of 9999 (which
 * PostgreSQL rounds into year 10000).
 */
function runAtAtEdge(value: unknown): boolean {
  const match = typeof value === 'string' ? ISO_TIME.exec(value) : null;
  if (!match) return false;
  const lastMs = Date.parse('9999-12-31T23:59:59.999Z');
  return Number(match[9] ?? 0) > 15 || match[1] === '0000' || ((match[7]?.length ?? 0) > 3 && (instantOf(value as string) ?? 0) >= lastMs);
}

/** JSON with object keys sorted, to compare values whatever their key order (and whatever keys they hold). */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    isObject(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

function backoffOk(value: unknown): boolean {
  if (!isObject(value) || Object.keys(value).some((key) => !BACKOFF_FIELDS.includes(key))) return false;
  const { type = 'exponential', delayMs = 1_000, maxDelayMs = 300_000, jitter = true } = value;
  return (
    (type === 'exponential' || type === 'fixed') &&
    int(delayMs, 0, DAY) &&
    int(maxDelayMs, 0, DAY) &&
    typeof jitter === 'boolean' &&
    (delayMs as number) <= (maxDelayMs as number)
  );
}

function payloadFits(type: string, payload: unknown): boolean {
  if (!storable(payload)) return false;
  if (type === 'echo') return true;
  if (!isObject(payload)) return false;
  const keys = Object.keys(payload);
  if (type === 'sleep') return keys.length === 1 && keys[0] === 'ms' && int(payload['ms'], 0, 600_000);
  const message = payload['message'];
  return keys.every((key) => key === 'message') && optional(message, (m) => typeof m === 'string' && m.length <= 10_000);
}

/** The outcome of submitting `value` (already parsed), with the `Idempotency-Key` header's value when one was sent. */
export function submitVerdict(value: unknown, idempotencyHeader = ''): Outcome {
  if (!isObject(value)) return { status: 422 };
  let body = value;
  if (idempotencyHeader !== '') {
    if (body['idempotencyKey'] !== undefined && body['idempotencyKey'] !== idempotencyHeader) return { status: 422 };
    body = { ...body, idempotencyKey: idempotencyHeader };
  }
  const type = body['type'];
  const valid =
    Object.keys(body).every((key) => SUBMIT_FIELDS.includes(key)) &&
    typeof type === 'string' &&
    TYPES.includes(type) &&
    optional(body['priority'], (v) => int(v, 0, 9)) &&
    optional(body['maxAttempts'], (v) => int(v, 1, 100)) &&
    optional(body['backoff'], backoffOk) &&
    optional(body['runAt'], runAtOk) &&
    optional(body['timeoutMs'], (v) => int(v, 1, DAY)) &&
    optional(body['idempotencyKey'], (v) => typeof v === 'string' && v.length >= 1 && v.length <= 200 && goodText(v)) &&
    optional(body['retentionMs'], (v) => int(v, 0, 100 * 365 * DAY));
  const payload = body['payload'] === undefined ? {} : body['payload'];
  if (!valid || !payloadFits(type as string, payload)) return { status: 422 };
  const expected = type === 'fail' ? { message: DEFAULT_FAIL_MESSAGE, ...(payload as object) } : payload;
  return { status: 'created', body, payload: expected, mayRefuse: runAtAtEdge(body['runAt']) };
}

/** The outcome of a `POST /api/v1/tasks` body of these bytes. */
export function textVerdict(bytes: Buffer, limitBytes: number, idempotencyHeader = ''): Outcome {
  if (bytes.length > limitBytes) return { status: 413 };
  const value = parseJsonBody(bytes);
  return value === MALFORMED ? { status: 400 } : submitVerdict(value, idempotencyHeader);
}

/** The outcome of a `POST /api/v1/keys` body of these bytes. */
export function keyVerdict(bytes: Buffer, limitBytes: number): Outcome {
  if (bytes.length > limitBytes) return { status: 413 };
  const body = parseJsonBody(bytes);
  if (body === MALFORMED) return { status: 400 };
  if (!isObject(body)) return { status: 422 };
  const { tenant, scopes, name } = body;
  const valid =
    Object.keys(body).every((key) => ['tenant', 'scopes', 'name'].includes(key)) &&
    typeof tenant === 'string' &&
    TENANT.test(tenant) &&
    Array.isArray(scopes) &&
    scopes.length >= 1 &&
    scopes.length <= 10 &&
    scopes.every((scope) => ['tasks:read', 'tasks:write', 'admin'].includes(scope)) &&
    optional(name, (n) => typeof n === 'string' && n.length <= 200 && goodText(n));
  return valid ? { status: 'created', body, payload: null } : { status: 422 };
}

export type ListQuery = { status?: string; type?: string; limit: number; before?: string };

/** The filter a `GET /api/v1/tasks` query string (without `?`) asks for, or null when it must be refused (400). */
export function listVerdict(search: string): ListQuery | null {
  const values = new Map<string, string[]>();
  for (const [name, value] of new URLSearchParams(search)) values.set(name, [...(values.get(name) ?? []), value]);
  for (const [name, given] of values) if (!['status', 'type', 'limit', 'cursor'].includes(name) || given.length > 1) return null;
  const [status, type, limit, cursor] = ['status', 'type', 'limit', 'cursor'].map((name) => values.get(name)?.[0]);
  if (status !== undefined && !(Object.values(TaskStatus) as string[]).includes(status)) return null;
  if (type !== undefined && !(type.length >= 1 && type.length <= 100 && goodText(type))) return null;
  const count = limit === undefined ? 50 : Number(limit);
  if (!int(count, 1, 500)) return null;
  const query: ListQuery = { limit: count };
  if (status !== undefined) query.status = status;
  if (type !== undefined) query.type = type;
  if (cursor !== undefined) {
    // A cursor is opaque; the API issues base64url-encoded task ids.
    const before = Buffer.from(cursor, 'base64url').toString('utf8');
    if (cursor.length > 100 || !UUID.test(before)) return null;
    query.before = before.toLowerCase();
  }
  return query;
}

export type LogLine = Record<string, unknown> & { level: number; msg?: string; requestId?: string };
type Waiter = { predicate: (line: LogLine) => boolean; resolve: (line: LogLine) => void };

/** A pino logger for the API under test that keeps its error lines and its per-request lines. */
export class ServerLog {
  readonly logger: Logger;
  readonly #errors: LogLine[] = [];
  readonly #requests = new Map<string, LogLine>();
  readonly #waiters = new Set<Waiter>();
  #ids = 0;

  constructor() {
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        for (const text of chunk.toString('utf8').split('\n')) if (text) this.#take(JSON.parse(text) as LogLine);
        done();
      },
    });
    // debug: the API logs one `request` line per request when it is done with it, which tests can wait for.
    this.logger = pino({ level: 'debug' }, sink);
  }

  #take(line: LogLine): void {
    if (line.level >= 50) this.#errors.push(line);
    if (line.msg === 'request' && typeof line.requestId === 'string') this.#requests.set(line.requestId, line);
    for (const waiter of this.#waiters) {
      if (!waiter.predicate(line)) continue;
      this.#waiters.delete(waiter);
      waiter.resolve(line);
    }
  }

  nextId(): number {
    this.#ids += 1;
    return this.#ids;
  }

  errors(): LogLine[] {
    return [...this.#errors];
  }

  errorsFor(requestId: string): LogLine[] {
    return this.#errors.filter((line) => line.requestId === requestId);
  }

  /** The errors logged for a request, for a failure message. */
  describe(requestId: string): string {
    const lines = this.errorsFor(requestId);
    if (lines.length === 0) return '(no error line)';
    return lines
      .map((line) => {
        const err = (line['err'] ?? {}) as { type?: string; message?: string; code?: string; stack?: string };
        const stack = (err.stack ?? '').split('\n').slice(1, 4).join('\n');
        return `${line.msg ?? ''}: ${err.type ?? 'Error'}: ${err.message ?? ''} (code ${err.code ?? '-'})\n${stack}`;
      })
      .join('\n');
  }

  /**
   * The first `request` line (already logged or still to come) matching `predicate`.
   * @throws after `timeoutMs`.
   */
  waitFor(predicate: (line: LogLine) => boolean, timeoutMs: number, what: string): Promise<LogLine> {
    const seen = [...this.#requests.values()].find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const waiter: Waiter = {
        predicate,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      this.#waiters.add(waiter);
    });
  }
}
