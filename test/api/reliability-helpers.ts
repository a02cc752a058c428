// What the reliability suites share (each is an apiSuite): workers started and stopped per test, and HTTP
// shorthands that check their own status codes.
import pg from 'pg';
import * as assert from 'uvu/assert';
import type { Task } from '../../services/core/src/tasks/model.ts';
import type { WorkerService } from '../../services/worker/src/service.ts';
import { getTask, settled, taskIn, type HttpResult, request, type TestWorld } from '../support/system.ts';

export const TASKS = '/api/v1/tasks';
const PROBLEM = 'application/problem+json';

/**
 * Runs `body` with a worker, then stops it, so that the next test starts with none. Port 0 keeps several
 * workers' probe servers apart; a short shutdown timeout keeps a failed test from holding the suite for 25 s.
 */
export async function withWorker<T>(world: TestWorld, env: Record<string, string>, body: (worker: WorkerService) => Promise<T>): Promise<T> {
  const worker = await world.startWorker({ METRICS_PORT: '0', SHUTDOWN_TIMEOUT_MS: '1000', ...env });
  try {
    return await body(worker);
  } finally {
    await worker.lifecycle.stop();
  }
}

export async function submit(baseUrl: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Task> {
  const res = await request<Task>(baseUrl, 'POST', TASKS, body, headers);
  assert.is(res.status, 201, res.text);
  return res.body;
}

export function assertProblem(res: HttpResult, status: number, detail: RegExp): void {
  assert.is(res.status, status, res.text);
  assert.ok(res.headers.get('content-type')?.startsWith(PROBLEM), `content-type ${res.headers.get('content-type')}`);
  assert.is(res.body.status, status);
  assert.type(res.body.title, 'string');
  assert.match(res.body.detail, detail);
}

export const time = (iso: string | null | undefined): number => {
  const parsed = Date.parse(iso ?? '');
  assert.ok(Number.isFinite(parsed), `not a timestamp: ${iso}`);
  return parsed;
};

export const inFuture = (ms: number) => new Date(Date.now() + ms).toISOString();

export async function countRows(db: pg.Client): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM tasks');
  return rows[0]?.n ?? 0;
}

export { getTask, settled, taskIn };
