import { type KubernetesObject, makeInformer, type ObjectCache } from '@kubernetes/client-node';
import type { Logger } from '../../core/src/log.ts';
import { GROUP, type Kube, keyOf, VERSION } from './kube.ts';

const INITIAL_RESTART_MS = 1_000;
const MAX_RESTART_MS = 30_000;
const QUIET_RESET_MS = 60_000;

export type Watched = { plural: string; onKey: (key: string) => void; onDelete: (key: string) => void };

/**
 * An informer (list, then watch) on one custom resource in one namespace. Every add, update and delete
 * becomes a key for a reconcile queue. A failed watch (API server down, 410 Gone) restarts with a relist
 * after a backoff that doubles up to 30 s.
 */
export class ResourceInformer<T extends KubernetesObject> {
  readonly #informer;
  readonly #log: Logger;
  #backoff = INITIAL_RESTART_MS;
  #lastErrorAt = 0;
  #stopped = false;
  #restart: NodeJS.Timeout | null = null;

  constructor(kube: Kube, namespace: string, watched: Watched, log: Logger) {
    this.#log = log.child({ component: `informer-${watched.plural}` });
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${watched.plural}`;
    this.#informer = makeInformer<T>(kube.config, path, () =>
      kube.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: watched.plural }),
    );
    const enqueue = (object: T) => watched.onKey(keyOf(object.metadata?.namespace, object.metadata?.name));
    this.#informer.on('add', enqueue);
    this.#informer.on('update', enqueue);
    this.#informer.on('delete', (object: T) => watched.onDelete(keyOf(object.metadata?.namespace, object.metadata?.name)));
    this.#informer.on('error', (error: unknown) => this.#scheduleRestart(error));
  }

  get cache(): ObjectCache<T> {
    return this.#informer;
  }

  /** Resolves once the first list is in the cache. */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#informer.start();
  }

  #scheduleRestart(error: unknown): void {
    if (this.#stopped || this.#restart) return;
    // client-node's start() resolves even when its list or watch then fails, so success cannot be seen there:
    // the backoff starts over only after a quiet spell without errors.
    const now = Date.now();
    if (now - this.#lastErrorAt > QUIET_RESET_MS) this.#backoff = INITIAL_RESTART_MS;
    this.#lastErrorAt = now;
    const wait = this.#backoff;
    this.#backoff = Math.min(MAX_RESTART_MS, this.#backoff * 2);
    this.#log.warn({ err: (error as Error)?.message ?? String(error), retryInMs: wait }, 'watch failed, restarting');
    this.#restart = setTimeout(() => {
      this.#restart = null;
      if (this.#stopped) return;
      this.#informer.start().catch((failure: unknown) => this.#scheduleRestart(failure));
    }, wait);
  }

  /** Every key in the cache, to enqueue them all on becoming leader. */
  keys(): string[] {
    return this.#informer.list().map((object) => keyOf(object.metadata?.namespace, object.metadata?.name));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#restart) clearTimeout(this.#restart);
    this.#restart = null;
    await this.#informer.stop();
  }
}
