// The fake's etcd: objects by resource and namespace/name, one global resourceVersion counter shared by every
// resource (as etcd's revision is), and a bounded history of changes that watches replay from. Stored objects are
// frozen, so a verb that forgot to copy before changing one fails loudly instead of corrupting what clients read.
import type { KubeObject } from './objects.ts';

export type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** One committed change: the object as of `revision`, and (for MODIFIED/DELETED) as it was before. */
export interface Change {
  revision: number;
  resource: string;
  type: ChangeType;
  object: KubeObject;
  previous: KubeObject | undefined;
}

export type ChangeListener = (change: Change) => void;

// The watch cache's window: older revisions are compacted away and a watch from them gets 410 Gone.
const HISTORY_LIMIT = 10_000;

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function objectKey(namespace: string | undefined, name: string | undefined): string {
  return `${namespace ?? ''}/${name ?? ''}`;
}

export class Store {
  // Start well above 0: "0" means "any version" to the list and watch verbs.
  #revision = 1000;
  #compactedRevision = 0;
  readonly #objects = new Map<string, Map<string, KubeObject>>();
  readonly #history: Change[] = [];
  readonly #listeners = new Set<ChangeListener>();

  /** The latest revision; list responses report it as metadata.resourceVersion. */
  get revision(): number {
    return this.#revision;
  }

  /** Watches from a resourceVersion below this get 410 Gone. */
  get compactedRevision(): number {
    return this.#compactedRevision;
  }

  get(resource: string, namespace: string, name: string): KubeObject | undefined {
    return this.#objects.get(resource)?.get(objectKey(namespace, name));
  }

  /** Objects of `resource`, in one namespace or all, in etcd key order (namespace, then name). */
  list(resource: string, namespace?: string): KubeObject[] {
    const all = [...(this.#objects.get(resource)?.entries() ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return all.map(([, object]) => object).filter((object) => namespace === undefined || object.metadata.namespace === namespace);
  }

  /** Stores `object` (which must not be shared) at a new revision and tells the watchers. */
  write(resource: string, object: KubeObject, previous: KubeObject | undefined): KubeObject {
    this.#revision += 1;
    object.metadata.resourceVersion = String(this.#revision);
    const stored = deepFreeze(object);
    let objects = this.#objects.get(resource);
    if (!objects) this.#objects.set(resource, (objects = new Map()));
    objects.set(objectKey(stored.metadata.namespace, stored.metadata.name), stored);
    this.#commit({ revision: this.#revision, resource, type: previous ? 'MODIFIED' : 'ADDED', object: stored, previous });
    return stored;
  }

  /** Removes the object; the DELETED change carries its last state at a new revision, as the real server's does. */
  delete(resource: string, object: KubeObject): KubeObject {
    this.#revision += 1;
    const last = deepFreeze({ ...structuredClone(object), metadata: { ...structuredClone(object.metadata), resourceVersion: String(this.#revision) } });
    this.#objects.get(resource)?.delete(objectKey(object.metadata.namespace, object.metadata.name));
    this.#commit({ revision: this.#revision, resource, type: 'DELETED', object: last, previous: object });
    return last;
  }

  /** Changes after `revision`, oldest first. */
  changesSince(revision: number): Change[] {
    return this.#history.filter((change) => change.revision > revision);
  }

  subscribe(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Forgets the history up to now and moves the revision on (as writes to other resources would), so any
   * resourceVersion a client holds is too old to watch from.
   */
  compact(): void {
    this.#revision += 1;
    this.#compactedRevision = this.#revision;
    this.#history.length = 0;
  }

  #commit(change: Change): void {
    this.#history.push(change);
    if (this.#history.length > HISTORY_LIMIT) {
      const dropped = this.#history.splice(0, this.#history.length - HISTORY_LIMIT);
      this.#compactedRevision = dropped.at(-1)?.revision ?? this.#compactedRevision;
    }
    for (const listener of this.#listeners) listener(change);
  }
}
