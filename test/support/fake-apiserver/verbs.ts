// The API verbs on stored objects — get, list, create, update, patch, delete — with kube-apiserver's semantics:
// optimistic concurrency on resourceVersion, generation, status subresource split, finalizers, dry run, and
// no write (no new resourceVersion, no watch event) for an update that changes nothing.
import { alreadyExists, conflict, invalid, notFound, StatusError, type StatusCause } from './errors.ts';
import {
  bumpGeneration,
  changed,
  checkCoordinates,
  decodeBody,
  finalizerCauses,
  nameCauses,
  prepareForCreate,
  prepareForUpdate,
} from './metadata.ts';
import { clone, isObject, rfc3339Now, type KubeObject } from './objects.ts';
import { APPLY_PATCH, JSON_PATCH, jsonPatch, MERGE_PATCH, mergePatch, STRATEGIC_MERGE_PATCH } from './patch.ts';
import { apiVersionOf, resourceKey, type AdmitOptions, type ResourceType } from './resources.ts';
import type { ObjectFilter } from './selectors.ts';
import type { Store } from './store.ts';

export interface WriteOptions extends AdmitOptions {
  dryRun: boolean;
}

/** A stored (or, on dry run, would-be) object and the warnings to send with it. */
export interface WriteResult {
  object: KubeObject;
  warnings: string[];
  created?: boolean;
}

export interface DeleteOptions {
  preconditions?: { uid?: string; resourceVersion?: string };
  dryRun: boolean;
}

export class Verbs {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /** @throws StatusError 404 */
  get(type: ResourceType, namespace: string, name: string): KubeObject {
    const object = this.#store.get(resourceKey(type), namespace, name);
    if (!object) throw notFound(type, name);
    return object;
  }

  list(type: ResourceType, namespace: string | undefined, filter: ObjectFilter): KubeObject[] {
    return this.#store.list(resourceKey(type), namespace).filter(filter);
  }

  /** @throws StatusError 400, 409 AlreadyExists, 422 Invalid */
  create(type: ResourceType, namespace: string, body: unknown, raw: string, options: WriteOptions): WriteResult {
    const object = clone(decodeBody(type, body, raw));
    checkCoordinates(object, namespace, undefined);
    prepareForCreate(type, object);
    const admission = type.admit(object, undefined, 'create', options);
    this.#reject(type, object, [...nameCauses(object), ...admission.causes]);
    const name = object.metadata.name ?? '';
    if (this.#store.get(resourceKey(type), namespace, name)) throw alreadyExists(type, name);
    const stored = options.dryRun ? object : this.#store.write(resourceKey(type), object, undefined);
    return { object: stored, warnings: admission.warnings, created: true };
  }

  /** PUT of the object or its /status. @throws StatusError 400, 404, 409 Conflict, 422 Invalid */
  update(type: ResourceType, namespace: string, name: string, body: unknown, raw: string, statusOnly: boolean, options: WriteOptions): WriteResult {
    const next = clone(decodeBody(type, body, raw));
    checkCoordinates(next, namespace, name);
    const old = this.#store.get(resourceKey(type), namespace, name);
    if (!old) {
      if (type.allowCreateOnUpdate && !statusOnly) return this.create(type, namespace, next, raw, options);
      throw notFound(type, name);
    }
    if (!next.metadata.resourceVersion && !type.allowUnconditionalUpdate) {
      throw invalid(type, name, [{ reason: 'FieldValueInvalid', field: 'metadata.resourceVersion', message: 'Invalid value: 0x0: must be specified for an update' }]);
    }
    return this.#commit(type, old, next, statusOnly, options);
  }

  /** PATCH of the object or its /status. @throws StatusError 400, 404, 409, 415, 422 */
  patch(type: ResourceType, namespace: string, name: string, contentType: string, patch: unknown, statusOnly: boolean, options: WriteOptions): WriteResult {
    const old = this.get(type, namespace, name);
    const next = applyPatch(type, old, contentType, patch) as KubeObject;
    if (!isObject(next) || !isObject(next.metadata)) throw new StatusError(422, 'Invalid', 'the patch removed the object metadata');
    checkCoordinates(next, namespace, name);
    return this.#commit(type, old, next, statusOnly, options);
  }

  /**
   * Deletes at once when no finalizers remain; otherwise marks the object (deletionTimestamp) and keeps it until an
   * update removes the last finalizer. propagationPolicy is ignored: there is no garbage collector here.
   * @throws StatusError 404, 409 on a failed precondition
   */
  delete(type: ResourceType, namespace: string, name: string, options: DeleteOptions): { object: KubeObject; deleted: boolean } {
    const old = this.get(type, namespace, name);
    const { uid, resourceVersion } = options.preconditions ?? {};
    if (uid && uid !== old.metadata.uid) throw conflict(type, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${old.metadata.uid}`);
    if (resourceVersion && resourceVersion !== old.metadata.resourceVersion) {
      throw conflict(type, name, `Precondition failed: ResourceVersion in precondition: ${resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion}`);
    }
    if ((old.metadata.finalizers ?? []).length === 0) {
      return { object: options.dryRun ? old : this.#store.delete(resourceKey(type), old), deleted: true };
    }
    if (old.metadata.deletionTimestamp) return { object: old, deleted: false };
    const marked = clone(old);
    marked.metadata.deletionTimestamp = rfc3339Now();
    marked.metadata.deletionGracePeriodSeconds = 0;
    if (type.hasGeneration) marked.metadata.generation = (old.metadata.generation ?? 0) + 1;
    return { object: options.dryRun ? marked : this.#store.write(resourceKey(type), marked, old), deleted: false };
  }

  #commit(type: ResourceType, old: KubeObject, requested: KubeObject, statusOnly: boolean, options: WriteOptions): WriteResult {
    const name = old.metadata.name ?? '';
    const { resourceVersion, uid } = requested.metadata;
    if (resourceVersion && resourceVersion !== old.metadata.resourceVersion) throw conflict(type, name);
    if (uid && uid !== old.metadata.uid) throw conflict(type, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${old.metadata.uid}`);
    const next = prepareForUpdate(type, requested, old, statusOnly);
    next.metadata.resourceVersion = old.metadata.resourceVersion;
    const admission = type.admit(next, old, statusOnly ? 'status' : 'update', options);
    this.#reject(type, next, [...finalizerCauses(next, old), ...admission.causes]);
    if (!statusOnly) bumpGeneration(type, next, old);
    if (!changed(next, old) || options.dryRun) return { object: changed(next, old) ? next : old, warnings: admission.warnings };
    // Removing the last finalizer of an object being deleted completes the deletion.
    if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) {
      return { object: this.#store.delete(resourceKey(type), next), warnings: admission.warnings };
    }
    return { object: this.#store.write(resourceKey(type), next, old), warnings: admission.warnings };
  }

  #reject(type: ResourceType, object: KubeObject, causes: StatusCause[]): void {
    if (causes.length > 0) throw invalid(type, object.metadata.name ?? '', causes);
  }
}

/** @throws StatusError 400 for a malformed patch, 415 for an unsupported patch type, 422 for one that does not apply */
export function applyPatch(type: ResourceType, target: unknown, contentType: string, patch: unknown): unknown {
  switch (contentType) {
    case MERGE_PATCH:
      return mergePatch(clone(target), patch);
    case JSON_PATCH:
      return jsonPatch(target, patch);
    case STRATEGIC_MERGE_PATCH:
      if (type.custom) throw new StatusError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${JSON_PATCH}, ${MERGE_PATCH}, ${APPLY_PATCH}`);
      return mergePatch(clone(target), patch);
    case APPLY_PATCH:
      throw new StatusError(415, 'UnsupportedMediaType', 'fake-apiserver does not implement server-side apply (application/apply-patch+yaml)');
    default:
      throw new StatusError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${JSON_PATCH}, ${MERGE_PATCH}, ${STRATEGIC_MERGE_PATCH}, ${APPLY_PATCH}`);
  }
}

/** A list response: built-in items lose kind/apiVersion (typed lists omit them), custom resource items keep them. */
export function listBody(type: ResourceType, items: KubeObject[], revision: number): Record<string, unknown> {
  const shown = type.custom ? items : items.map(({ kind: _kind, apiVersion: _apiVersion, ...rest }) => rest);
  return { kind: type.listKind, apiVersion: apiVersionOf(type), metadata: { resourceVersion: String(revision) }, items: shown };
}
