import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { newId } from '../../services/core/src/ids.ts';

const test = suite('core: ids');

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const millisOf = (id: string) => Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16);

test('ids are UUIDv7 stamped with the time they were made', () => {
  const before = Date.now();
  const id = newId();
  const after = Date.now();
  assert.match(id, UUID_V7);
  assert.ok(millisOf(id) >= before && millisOf(id) <= after, `${id} is stamped ${millisOf(id)}, made between ${before} and ${after}`);
});

test('ids made one after another sort in the order they were made, also within one millisecond, and never repeat', () => {
  // Far more ids than one draw of random bytes covers, most of them within the same millisecond as others.
  const ids = Array.from({ length: 50_000 }, newId);
  assert.equal([...ids].sort(), ids);
  assert.is(new Set(ids).size, ids.length);
  const perMillisecond = ids.length / (millisOf(ids.at(-1) as string) - millisOf(ids[0] as string) + 1);
  assert.ok(perMillisecond > 1, 'the run covered ids made within one millisecond');
  for (const id of ids) if (!UUID_V7.test(id)) assert.unreachable(`${id} is not a UUIDv7`);
});

test('the random part differs from id to id', () => {
  // Two ids of one millisecond share the stamp and the counter's neighbourhood; the last 48 bits are random.
  const tails = new Set(Array.from({ length: 1_000 }, () => newId().slice(-12)));
  assert.is(tails.size, 1_000);
});

test.run();
