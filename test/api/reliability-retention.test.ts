import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { apiSuite, eventually, request } from '../support/system.ts';
import { getTask, inFuture, submit, TASKS, taskIn, withWorker } from './reliability-helpers.ts';

// A sweep every second of everything finished more than a second ago.
const test = apiSuite('api: retention', { TASK_RETENTION: '1s', RETENTION_INTERVAL_MS: '1000' });
const { pending, completed, failed } = TaskStatus;

const swept = (baseUrl: string, id: string) =>
  eventually(async () => (await request(baseUrl, 'GET', `${TASKS}/${id}`)).status === 404, 6_000, `task ${id} to be swept`);

test('finished tasks go once past TASK_RETENTION; retentionMs 0 or longer keeps them; unfinished ones stay', async ({ world, baseUrl }) => {
  const waiting = await submit(baseUrl, { type: 'echo', runAt: inFuture(3_600_000) });
  const [forever, hour, done, broke] = await withWorker(world, {}, async () => {
    // Kept tasks finish first, so the sweep that removes the later ones has already judged them.
    const forever = await submit(baseUrl, { type: 'echo', payload: 'forever', retentionMs: 0 });
    const hour = await submit(baseUrl, { type: 'echo', payload: 'hour', retentionMs: 3_600_000 });
    const kept = [await taskIn(baseUrl, forever.id, completed, 5_000), await taskIn(baseUrl, hour.id, completed, 5_000)];
    const done = await submit(baseUrl, { type: 'echo', payload: 'default' });
    const broke = await submit(baseUrl, { type: 'fail' });
    return [...kept, await taskIn(baseUrl, done.id, completed, 5_000), await taskIn(baseUrl, broke.id, failed, 5_000)];
  });
  assert.is(forever?.retentionMs, 0);
  assert.is(hour?.retentionMs, 3_600_000);
  assert.is(done?.retentionMs, null);

  await swept(baseUrl, done?.id as string);
  await swept(baseUrl, broke?.id as string);
  // `waiting` is older than the retention too, but not finished.
  assert.equal(await getTask(baseUrl, forever?.id as string), forever);
  assert.equal(await getTask(baseUrl, hour?.id as string), hour);
  assert.is((await getTask(baseUrl, waiting.id)).status, pending);
});

// Last in the file: if it breaks the sweep, it breaks it for every task in this database.
test('a task kept for an extremely long time is refused or kept, and the sweep goes on for the others', async ({ world, baseUrl }) => {
  const res = await request(baseUrl, 'POST', TASKS, { type: 'echo', retentionMs: 1e15 });
  assert.ok(res.status === 201 || res.status === 422, `${res.status}: ${res.text}`);
  const later = await withWorker(world, {}, async () => {
    if (res.status === 201) await taskIn(baseUrl, res.body.id, completed, 5_000);
    const later = await submit(baseUrl, { type: 'echo' });
    return taskIn(baseUrl, later.id, completed, 5_000);
  });
  await swept(baseUrl, later.id);
  if (res.status === 201) assert.is((await getTask(baseUrl, res.body.id)).status, completed);
});

test.run();
