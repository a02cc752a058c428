// `?watch=true`: a chunked HTTP response of newline-delimited WatchEvents, as kube-apiserver streams them. A watch
// replays the changes after its resourceVersion (410 Gone ERROR event when that is compacted away), filters by
// selectors turning MODIFIED into ADDED/DELETED when an object enters or leaves the selection, and ends on
// timeoutSeconds. The hub also lets tests end, break or expire every open stream and push bookmarks.
import type { ServerResponse } from 'node:http';
import { expired, type Status } from './errors.ts';
import type { KubeObject } from './objects.ts';
import { apiVersionOf, resourceKey, type ResourceType } from './resources.ts';
import type { ObjectFilter } from './selectors.ts';
import type { Change, Store } from './store.ts';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchOptions {
  type: ResourceType;
  /** undefined for a watch across all namespaces. */
  namespace: string | undefined;
  filter: ObjectFilter;
  /** The resourceVersion parameter (digits or ''): '' or '0' start with the current objects as ADDED events. */
  resourceVersion: string;
  allowBookmarks: boolean;
  sendInitialEvents: boolean;
  timeoutSeconds: number | undefined;
}

class Watcher {
  readonly options: WatchOptions;
  /** The revision this watch has caught up to; what a client resuming from it would send. */
  revision = 0;
  readonly #response: ServerResponse;
  readonly #cleanups: (() => void)[] = [];

  constructor(response: ServerResponse, options: WatchOptions) {
    this.#response = response;
    this.options = options;
  }

  get resource(): string {
    return resourceKey(this.options.type);
  }

  send(type: WatchEventType, object: KubeObject | Status): void {
    if (!this.#response.writableEnded) this.#response.write(`${JSON.stringify({ type, object })}\n`);
  }

  bookmark(revision: number, annotations?: Record<string, string>): void {
    if (!this.options.allowBookmarks) return;
    const metadata = annotations ? { resourceVersion: String(revision), annotations } : { resourceVersion: String(revision) };
    this.send('BOOKMARK', { kind: this.options.type.kind, apiVersion: apiVersionOf(this.options.type), metadata });
  }

  /** Sends `change` as this watch's selection sees it, if it sees it at all. */
  deliver(change: Change): void {
    const { type, namespace, filter } = this.options;
    this.revision = change.revision;
    if (change.resource !== resourceKey(type)) return;
    if (namespace !== undefined && change.object.metadata.namespace !== namespace) return;
    const now = change.type !== 'DELETED' && filter(change.object);
    const before = change.previous !== undefined && filter(change.previous);
    if (change.type === 'DELETED') {
      if (before) this.send('DELETED', change.object);
    } else if (now && before) this.send('MODIFIED', change.object);
    else if (now) this.send('ADDED', change.object);
    else if (before) this.send('DELETED', change.object);
  }

  onEnd(cleanup: () => void): void {
    this.#cleanups.push(cleanup);
  }

  /** Ends the stream cleanly: the client sees the response finish, as on a server-side timeout. */
  end(): void {
    if (!this.#response.writableEnded) this.#response.end();
  }

  /** Breaks the connection mid-stream, as a crashed server or a cut network would. */
  destroy(): void {
    this.#response.socket?.destroy();
    this.#response.destroy();
  }

  cleanup(): void {
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
  }
}

export class WatchHub {
  readonly #store: Store;
  readonly #watchers = new Set<Watcher>();

  constructor(store: Store) {
    this.#store = store;
  }

  /** Open watches, of one resource (`deployments.apps`) or all. */
  openCount(resource?: string): number {
    return [...this.#watchers].filter((watcher) => resource === undefined || watcher.resource === resource).length;
  }

  /** Starts streaming to `response`; returns once the initial events are written. */
  open(response: ServerResponse, options: WatchOptions): void {
    response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private' });
    // Headers go out now so the client's fetch resolves before the first event, as with a real server.
    response.flushHeaders();
    const watcher = new Watcher(response, options);
    watcher.revision = this.#store.revision;
    const start = options.resourceVersion === '' || options.resourceVersion === '0' ? undefined : Number(options.resourceVersion);
    if (start !== undefined && start < this.#store.compactedRevision) {
      watcher.send('ERROR', expired(start, this.#store.compactedRevision).toStatus());
      watcher.end();
      return;
    }
    if (start === undefined || options.sendInitialEvents) this.#sendInitial(watcher);
    if (start !== undefined) for (const change of this.#store.changesSince(start)) watcher.deliver(change);
    // Subscribing in the same tick as the replay leaves no gap for a change to fall into.
    watcher.onEnd(this.#store.subscribe((change) => watcher.deliver(change)));
    this.#watchers.add(watcher);
    watcher.onEnd(() => this.#watchers.delete(watcher));
    if (options.timeoutSeconds !== undefined) {
      const timer = setTimeout(() => watcher.end(), options.timeoutSeconds * 1000);
      watcher.onEnd(() => clearTimeout(timer));
    }
    response.on('close', () => watcher.cleanup());
  }

  #sendInitial(watcher: Watcher): void {
    const { type, namespace, filter } = watcher.options;
    for (const object of this.#store.list(resourceKey(type), namespace)) if (filter(object)) watcher.send('ADDED', object);
    if (watcher.options.sendInitialEvents) watcher.bookmark(this.#store.revision, { 'k8s.io/initial-events-end': 'true' });
  }

  /** Ends every open watch (of one resource, or all): `abrupt` breaks the connections instead. */
  closeAll(options: { resource?: string; abrupt?: boolean } = {}): number {
    const chosen = [...this.#watchers].filter((watcher) => options.resource === undefined || watcher.resource === options.resource);
    for (const watcher of chosen) {
      watcher.cleanup();
      if (options.abrupt) watcher.destroy();
      else watcher.end();
    }
    return chosen.length;
  }

  /** Sends a BOOKMARK at the current revision to every open watch that allowed bookmarks. */
  bookmark(): void {
    for (const watcher of this.#watchers) watcher.bookmark(this.#store.revision);
  }

  /**
   * Compacts the history and ends every open watch with a 410 Gone ERROR event, as a real server does when a
   * watcher falls out of its watch cache window: clients must relist.
   */
  expireAll(): number {
    this.#store.compact();
    const watchers = [...this.#watchers];
    for (const watcher of watchers) {
      watcher.cleanup();
      watcher.send('ERROR', expired(watcher.revision, this.#store.compactedRevision).toStatus());
      watcher.end();
    }
    return watchers.length;
  }
}
