// FakeApiServer: an in-process Kubernetes API server on 127.0.0.1 (ephemeral port) speaking the real HTTP/JSON
// wire protocol, plus the hooks controller tests need to arrange state, inspect it, await it and break things.
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { KubeConfig } from '@kubernetes/client-node';
import { builtinTypes } from './builtin-types.ts';
import { loadCrdTypes } from './crds.ts';
import { Faults, type FaultOptions } from './faults.ts';
import { handleRequest, type ServerParts } from './handler.ts';
import { kubeConfigFor } from './kubeconfig.ts';
import { clone, isObject, type KubeObject } from './objects.ts';
import { RequestLog, type RequestFilter, type RequestRecord } from './request-log.ts';
import { ResourceRegistry, resourceKey } from './resources.ts';
import { Store } from './store.ts';
import { Verbs, type WriteOptions } from './verbs.ts';
import { WatchHub } from './watch.ts';

export interface FakeApiServerOptions {
  /** Folder of CustomResourceDefinition YAML to serve; default the chart's crds/. */
  crdDir?: string;
}

const HOOK_WRITE: WriteOptions = { dryRun: false, strict: false };

export class FakeApiServer {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #parts: ServerParts;
  #stopping: Promise<void> | undefined;

  private constructor(parts: ServerParts) {
    this.#parts = parts;
    this.#server = createServer((request, response) => void handleRequest(parts, request, response));
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  /** Loads the CRDs and listens on 127.0.0.1 on an ephemeral port. */
  static async start(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const registry = new ResourceRegistry();
    for (const type of [...builtinTypes(), ...(await loadCrdTypes(options.crdDir))]) registry.add(type);
    const store = new Store();
    const parts: ServerParts = { registry, store, verbs: new Verbs(store), watches: new WatchHub(store), faults: new Faults(), log: new RequestLog() };
    const server = new FakeApiServer(parts);
    await new Promise<void>((resolve, reject) => {
      server.#server.once('error', reject);
      server.#server.listen(0, '127.0.0.1', resolve);
    });
    return server;
  }

  get url(): string {
    const address = this.#server.address();
    if (!address || typeof address === 'string') throw new Error('fake-apiserver is not listening');
    return `http://127.0.0.1:${address.port}`;
  }

  /** A client-node KubeConfig for this server, with `namespace` as the context's default. */
  kubeConfig(namespace = 'default'): KubeConfig {
    return kubeConfigFor(this.url, namespace);
  }

  /** Closes watches and connections; idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= new Promise<void>((resolve) => {
      this.#parts.faults.clear();
      this.#parts.watches.closeAll({ abrupt: true });
      this.#server.close(() => resolve());
      for (const socket of this.#sockets) socket.destroy();
    });
    return this.#stopping;
  }

  // --- State: arrange and inspect (resource keys: `pods`, `events`, `events.events.k8s.io`, `deployments.apps`,
  // `leases.coordination.k8s.io`, `workerpools.conveyor.dev`, `tasks.conveyor.dev`; a unique bare plural works too).

  /** The current global resourceVersion. */
  get revision(): number {
    return this.#parts.store.revision;
  }

  /** A copy of the stored object, or undefined. */
  get(resource: string, namespace: string, name: string): KubeObject | undefined {
    const object = this.#parts.store.get(this.#key(resource), namespace, name);
    return object && clone(object);
  }

  /** Copies of the stored objects of `resource`, in one namespace or all. */
  list(resource: string, namespace?: string): KubeObject[] {
    return this.#parts.store.list(this.#key(resource), namespace).map((object) => clone(object));
  }

  /** Creates through the same path as POST (defaults, validation, watch events). @throws StatusError */
  create(resource: string, object: Record<string, unknown>, namespace = 'default'): KubeObject {
    const type = this.#parts.registry.byKey(resource);
    return clone(this.#parts.verbs.create(type, namespace, clone(object), JSON.stringify(object), HOOK_WRITE).object);
  }

  /** Merges `status` into the object's status as a write to /status would (no resourceVersion precondition). @throws StatusError */
  setStatus(resource: string, namespace: string, name: string, status: Record<string, unknown>): KubeObject {
    const type = this.#parts.registry.byKey(resource);
    const current = this.#parts.verbs.get(type, namespace, name);
    const merged = { ...(isObject(current['status']) ? current['status'] : {}), ...status };
    return clone(this.#parts.verbs.patch(type, namespace, name, 'application/merge-patch+json', { status: merged }, type.subresources.status, HOOK_WRITE).object);
  }

  /** What the Deployment controller would report: status.replicas, readyReplicas, … @throws StatusError */
  setDeploymentStatus(namespace: string, name: string, status: { replicas?: number; readyReplicas?: number; availableReplicas?: number; updatedReplicas?: number }): KubeObject {
    const current = this.#parts.verbs.get(this.#parts.registry.byKey('deployments.apps'), namespace, name);
    return this.setStatus('deployments.apps', namespace, name, { observedGeneration: current.metadata.generation, ...status });
  }

  /** Deletes as DELETE would (finalizers keep the object, marked). @throws StatusError */
  delete(resource: string, namespace: string, name: string): void {
    this.#parts.verbs.delete(this.#parts.registry.byKey(resource), namespace, name, { dryRun: false });
  }

  /**
   * Resolves with the object once `predicate` holds for its stored state (checked now and after every change);
   * a deleted object is passed as undefined. @throws Error after `timeoutMs`
   */
  waitFor(resource: string, namespace: string, name: string, predicate: (object: KubeObject | undefined) => boolean, timeoutMs = 5000): Promise<KubeObject | undefined> {
    const key = this.#key(resource);
    const read = () => this.get(key, namespace, name);
    return new Promise((resolve, reject) => {
      const finish = (error?: Error) => {
        clearTimeout(timer);
        unsubscribe();
        if (error) reject(error);
        else resolve(read());
      };
      const unsubscribe = this.#parts.store.subscribe((change) => {
        if (change.resource === key && change.object.metadata.namespace === namespace && change.object.metadata.name === name && predicate(read())) finish();
      });
      const timer = setTimeout(() => finish(new Error(`fake-apiserver: ${key} ${namespace}/${name} did not reach the expected state within ${timeoutMs} ms`)), timeoutMs);
      if (predicate(read())) finish();
    });
  }

  // --- Requests: what clients did.

  requests(filter: RequestFilter = {}): RequestRecord[] {
    return this.#parts.log.find(this.#normalize(filter));
  }

  count(filter: RequestFilter = {}): number {
    return this.#parts.log.count(this.#normalize(filter));
  }

  clearRequests(): void {
    this.#parts.log.clear();
  }

  /** Resolves with the next matching request (a watch: once its stream is open). @throws Error after `timeoutMs` */
  nextRequest(filter: RequestFilter, timeoutMs = 5000): Promise<RequestRecord> {
    return this.#parts.log.next(this.#normalize(filter), timeoutMs);
  }

  /** Open watch streams, of one resource or all. */
  openWatches(resource?: string): number {
    return this.#parts.watches.openCount(resource === undefined ? undefined : this.#key(resource));
  }

  // --- Faults.

  /** The next `count` requests to `resource` (optionally only `verb`/`subresource`) fail with `code` (500). */
  failNext(resource: string, count = 1, options: FaultOptions = {}): void {
    this.#parts.faults.failNext(this.#key(resource), count, options);
  }

  /** Faults set with failNext that no request has used up yet. */
  pendingFaults(): number {
    return this.#parts.faults.pending();
  }

  /** Ends every open watch cleanly (clients reconnect from their resourceVersion); `abrupt` breaks the connections. */
  closeWatches(options: { resource?: string; abrupt?: boolean } = {}): number {
    const resource = options.resource === undefined ? undefined : this.#key(options.resource);
    return this.#parts.watches.closeAll({ abrupt: options.abrupt, resource });
  }

  /** Every request gets 503 until `setUnavailable(false)` or `durationMs` passes; open watches are broken. */
  setUnavailable(unavailable: boolean, durationMs?: number): void {
    if (unavailable && durationMs !== undefined) this.#parts.faults.unavailableFor(durationMs);
    else this.#parts.faults.setUnavailable(unavailable);
    if (unavailable) this.#parts.watches.closeAll({ abrupt: true });
  }

  /** Sends a BOOKMARK at the current resourceVersion on every watch that set allowWatchBookmarks. */
  emitBookmark(): void {
    this.#parts.watches.bookmark();
  }

  /** Compacts history and ends every watch with a 410 Expired ERROR event: informers must relist. */
  expireWatches(): number {
    return this.#parts.watches.expireAll();
  }

  /** Compacts history: a watch from any resourceVersion handed out so far gets 410 Expired. */
  compact(): void {
    this.#parts.store.compact();
  }

  #key(resource: string): string {
    return resourceKey(this.#parts.registry.byKey(resource));
  }

  #normalize(filter: RequestFilter): RequestFilter {
    return filter.resource === undefined ? filter : { ...filter, resource: this.#key(filter.resource) };
  }
}
