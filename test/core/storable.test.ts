import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { z } from 'zod';
import { jsonProblems, STORABLE_LIMITS, storableText, StorableJsonSchema } from '../../services/core/src/storable.ts';

const test = suite('core: storable JSON and text');

const DEPTH_MESSAGE = /nesting is deeper than 32 levels/;

/** `levels` containers nested in one another, objects (`{a: …}`) or arrays (`[…]`), around `leaf`. */
function nested(levels: number, kind: 'object' | 'array' = 'object', leaf: unknown = 1): unknown {
  let value = leaf;
  for (let i = 0; i < levels; i++) value = kind === 'object' ? { a: value } : [value];
  return value;
}

const messages = (value: unknown, limit?: number) => jsonProblems(value, limit).map((issue) => issue.message);

test('scalars, empty containers and ordinary documents have no problems', () => {
  for (const value of [null, true, false, 0, -0, 1.5, -42, '', 'text', [], {}, { a: [1, 'two', null, { b: false }] }, undefined]) {
    assert.equal(jsonProblems(value), [], JSON.stringify(value));
  }
  assert.equal(jsonProblems([Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, 1e308]), [], 'large but finite numbers are storable');
});

test('nesting: exactly 32 levels of objects or arrays pass, 33 are refused at the 33rd container', () => {
  assert.is(STORABLE_LIMITS.maxDepth, 32);
  for (const kind of ['object', 'array'] as const) {
    assert.equal(jsonProblems(nested(32, kind)), [], `${kind}: 32 levels`);
    assert.equal(jsonProblems(nested(32, kind, 'leaf')), [], `${kind}: a scalar inside 32 levels is no deeper`);
    const issues = jsonProblems(nested(33, kind));
    assert.is(issues.length, 1, `${kind}: 33 levels`);
    // The path leads to the container that is one level too deep.
    assert.equal(issues[0]?.path, Array.from({ length: 32 }, () => (kind === 'object' ? 'a' : 0)));
    assert.match(issues[0]?.message ?? '', DEPTH_MESSAGE);
  }
  // Mixed containers count the same way; an empty container still counts as a level.
  assert.equal(jsonProblems(nested(16, 'array', nested(15, 'object', []))), []);
  assert.equal(messages(nested(16, 'array', nested(16, 'object', []))).length, 1);
  assert.equal(messages(nested(32, 'object', {})).length, 1, 'the 33rd level is refused even when empty');
});

test('very deep input (100,000 levels) is refused quickly, without exhausting the call stack', () => {
  for (const kind of ['object', 'array'] as const) {
    const deep = nested(100_000, kind);
    const started = performance.now();
    const issues = jsonProblems(deep);
    const parsed = StorableJsonSchema.safeParse(deep);
    const elapsed = performance.now() - started;
    assert.is(issues.length, 1);
    assert.is(issues[0]?.path.length, STORABLE_LIMITS.maxDepth);
    assert.match(issues[0]?.message ?? '', DEPTH_MESSAGE);
    assert.is(parsed.success, false);
    // Walking stops at the limit, so this takes well under a millisecond; the bound only catches a full walk.
    assert.ok(elapsed < 1_000, `${kind}: ${elapsed.toFixed(0)} ms`);
  }
});

test('NUL characters are refused in string values and in keys, which are reported as keys', () => {
  assert.equal(jsonProblems({ s: 'a\u0000b' }), [{ path: ['s'], message: 'string must not contain NUL characters' }]);
  assert.equal(jsonProblems('\u0000'), [{ path: [], message: 'string must not contain NUL characters' }]);
  assert.equal(jsonProblems({ 'k\u0000': 'fine' }), [{ path: ['k\u0000'], message: 'key must not contain NUL characters' }]);
  // A bad key and a bad value under it are two problems.
  const both = jsonProblems({ outer: { 'k\u0000': '\u0000' } });
  assert.equal(both.map((issue) => issue.message).sort(), ['key must not contain NUL characters', 'string must not contain NUL characters']);
  for (const issue of both) assert.equal(issue.path, ['outer', 'k\u0000']);
  // The text "\u0000" (backslash, u, zeros) is not a NUL character.
  assert.equal(jsonProblems({ '\\u0000': '\\u0000' }), []);
});

test('lone surrogates are refused in values and keys; well-formed pairs (emoji) are accepted', () => {
  for (const bad of ['\ud800', '\udfff', 'a\ud83d', '\ude00a', '\ude00\ud83d']) {
    assert.equal(messages(bad), ['string must be well-formed Unicode (no lone surrogates)'], JSON.stringify(bad));
    assert.equal(jsonProblems({ [bad]: 1 }), [{ path: [bad], message: 'key must be well-formed Unicode (no lone surrogates)' }]);
  }
  for (const good of ['😀', '\ud83d\ude00', 'a😀b', '𝄞', '👩‍👩‍👧']) {
    assert.equal(jsonProblems({ [good]: [good, { nested: good }] }), [], JSON.stringify(good));
  }
});

test('arrays: problems are reported at numeric indices', () => {
  const issues = jsonProblems(['ok', ['fine', 'bad\u0000']]);
  assert.equal(issues, [{ path: [1, 1], message: 'string must not contain NUL characters' }]);
  assert.type(issues[0]?.path[0], 'number');
});

test('Infinity, -Infinity and NaN are refused wherever they are', () => {
  for (const value of [Infinity, -Infinity, NaN]) {
    assert.equal(messages(value), ['number is too large to store'], String(value));
    assert.equal(jsonProblems({ n: [value] }), [{ path: ['n', 0], message: 'number is too large to store' }]);
  }
  // What JSON.parse makes of a literal beyond double range.
  assert.equal(jsonProblems(JSON.parse('{"n":1e400,"m":-1e400}')).length, 2);
});

test('the report stops at the limit (5 by default); every reported problem is real', () => {
  const values = Array.from({ length: 10 }, (_, i) => `bad ${i}\u0000`);
  const reported = jsonProblems(values);
  assert.is(reported.length, 5);
  for (const issue of reported) assert.ok(values[issue.path[0] as number]?.includes('\u0000'), JSON.stringify(issue.path));
  assert.is(jsonProblems(values, 3).length, 3);
  assert.is(jsonProblems(values, 20).length, 10, 'a higher limit reports every problem');
  assert.is(jsonProblems(values, 0).length, 0);
});

test('the report limit holds for bad keys too, even when one object holds many', () => {
  // Keys are checked as their object is walked; a 1 MiB body can hold ~60,000 such keys, so an unbounded
  // report would turn one request into a response many times its size.
  const keys = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`key ${i}\u0000`, i]));
  assert.is(jsonProblems(keys, 3).length, 3, 'limit 3');
  assert.is(jsonProblems(keys).length, 5, 'default limit');
  assert.is(jsonProblems({ a: keys, b: keys }).length, 5, 'two such objects');
});

test('storableText refuses NUL and lone surrogates and keeps the schema it wraps', () => {
  const text = storableText();
  assert.ok(text.safeParse('plain').success);
  assert.ok(text.safeParse('😀 and ü').success);
  assert.ok(text.safeParse('').success);
  const nul = text.safeParse('a\u0000');
  assert.is(nul.success, false);
  assert.match(nul.error?.issues[0]?.message ?? '', /NUL/);
  const lone = text.safeParse('a\ud800');
  assert.is(lone.success, false);
  assert.match(lone.error?.issues[0]?.message ?? '', /lone surrogates/);
  assert.is(text.safeParse(7).success, false, 'still a string schema');

  const bounded = storableText(z.string().min(1).max(3));
  assert.ok(bounded.safeParse('abc').success);
  assert.is(bounded.safeParse('abcd').success, false, 'max kept');
  assert.is(bounded.safeParse('').success, false, 'min kept');
  assert.is(bounded.safeParse('\u0000').success, false);
});

test('StorableJsonSchema reports each problem at its path, also when nested in another schema', () => {
  assert.ok(StorableJsonSchema.safeParse({ a: ['😀', 1, null] }).success);
  const direct = StorableJsonSchema.safeParse({ a: [1, 'x\u0000'] });
  assert.is(direct.success, false);
  assert.equal(
    direct.error?.issues.map((issue) => ({ path: issue.path, message: issue.message })),
    [{ path: ['a', 1], message: 'string must not contain NUL characters' }],
  );
  const wrapped = z.object({ payload: StorableJsonSchema }).safeParse({ payload: nested(33) });
  assert.is(wrapped.success, false);
  assert.is(wrapped.error?.issues[0]?.path[0], 'payload');
  assert.is(wrapped.error?.issues[0]?.path.length, 1 + STORABLE_LIMITS.maxDepth);
  assert.is(StorableJsonSchema.safeParse(Array.from({ length: 20 }, () => NaN)).error?.issues.length, 5, 'at most the report limit');
});

test.run();
