// Helpers for tests that drive the fake through client-node: read a failed call's Status, record informer and
// watch events and await them (bounded, never by sleeping).
import { ApiException, Watch, type Informer, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { Status } from './errors.ts';

import { within } from '../wait.ts';

export { within };

/**
 * The HTTP code and Status of a call expected to fail. client-node 1.x throws `ApiException` whose `body` is the
 * response text, not the parsed Status. @throws Error when the call succeeds or fails otherwise
 */
export async function apiError(call: Promise<unknown>): Promise<{ code: number; status: Status }> {
  try {
    await call;
  } catch (error) {
    if (!(error instanceof ApiException)) throw error;
    return { code: error.code, status: JSON.parse(String(error.body)) as Status };
  }
  throw new Error('expected the API call to fail');
}

export interface Recorded {
  type: string;
  object: any;
}

/** Events in arrival order; `waitFor` finds one at or after a mark, including one that arrived before the call. */
export class EventRecorder {
  readonly events: Recorded[] = [];
  readonly #waiters = new Set<() => void>();

  push(type: string, object: unknown): void {
    this.events.push({ type, object });
    for (const wake of [...this.#waiters]) wake();
  }

  /** Where the next event will land; pass it to waitFor to ignore what came before. */
  mark(): number {
    return this.events.length;
  }

  waitFor(type: string, predicate: (object: any) => boolean = () => true, from = 0, timeoutMs = 5000): Promise<Recorded> {
    const find = () => this.events.slice(from).find((event) => event.type === type && predicate(event.object));
    const found = find();
    if (found) return Promise.resolve(found);
    let wake: () => void = () => undefined;
    const arrival = new Promise<Recorded>((resolve) => {
      wake = () => {
        const event = find();
        if (event) resolve(event);
      };
      this.#waiters.add(wake);
    });
    return within(arrival, timeoutMs, `a ${type} event`).finally(() => this.#waiters.delete(wake));
  }
}

/** Records an informer's add/update/delete/connect/error callbacks as events of those names. */
export function recordInformer<T extends KubernetesObject>(informer: Informer<T>): EventRecorder {
  const recorder = new EventRecorder();
  for (const verb of ['add', 'update', 'delete'] as const) informer.on(verb, (object) => recorder.push(verb, object));
  informer.on('connect', () => recorder.push('connect', undefined));
  informer.on('error', (error) => recorder.push('error', error));
  return recorder;
}

export interface RecordedWatch {
  /** ADDED, MODIFIED, DELETED, BOOKMARK, ERROR as sent, then `done` (object: the error or null) when it ends. */
  recorder: EventRecorder;
  abort(): void;
}

/** Opens a client-node Watch on `path` and records what it delivers. */
export async function recordWatch(config: KubeConfig, path: string, query: Record<string, string | number | boolean | undefined>): Promise<RecordedWatch> {
  const recorder = new EventRecorder();
  const controller = await new Watch(config).watch(
    path,
    query,
    (type, object) => recorder.push(type, object),
    (error) => recorder.push('done', error ?? null),
  );
  return { recorder, abort: () => controller.abort() };
}
