// ObjectMeta rules shared by every resource: names, system-owned fields on create and update, generation and the
// finalizer rule, after apimachinery's ValidateObjectMeta and the generic registry's BeforeCreate/BeforeUpdate.
import { randomUUID } from 'node:crypto';
import { badRequest, StatusError, type StatusCause } from './errors.ts';
import { clone, deepEqual, generatedName, rfc3339Now, specPart, type KubeObject } from './objects.ts';
import { apiVersionOf, type ResourceType } from './resources.ts';

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_SUBDOMAIN_ERROR =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/**
 * Checks a request body's apiVersion/kind against the URL. Built-ins may omit them (the typed decoder fills them);
 * a custom resource body must carry kind, or the server cannot decode it.
 * @throws StatusError 400
 */
export function decodeBody(type: ResourceType, body: unknown, raw: string): KubeObject {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest(`the body of the request was in an unknown format - accepted media types include: application/json, application/yaml`);
  const object = body as KubeObject;
  const apiVersion = apiVersionOf(type);
  if (type.custom && !object.kind) throw badRequest(`Object 'Kind' is missing in '${raw}'`);
  if (object.apiVersion !== undefined && object.apiVersion !== apiVersion) {
    throw badRequest(`the API version in the data (${object.apiVersion}) does not match the expected API version (${apiVersion})`);
  }
  if (object.kind !== undefined && object.kind !== type.kind) throw badRequest(`the kind in the data (${object.kind}) does not match the expected kind (${type.kind})`);
  object.apiVersion = apiVersion;
  object.kind = type.kind;
  if (typeof object.metadata !== 'object' || object.metadata === null) object.metadata = {};
  return object;
}

/** @throws StatusError 400 when the body names another namespace or object than the URL. */
export function checkCoordinates(object: KubeObject, namespace: string, name: string | undefined): void {
  const meta = object.metadata;
  if (meta.namespace !== undefined && meta.namespace !== '' && meta.namespace !== namespace) {
    throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
  }
  meta.namespace = namespace;
  if (name !== undefined && meta.name !== undefined && meta.name !== name) {
    throw badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${name})`);
  }
  if (name !== undefined) meta.name = name;
}

export function nameCauses(object: KubeObject): StatusCause[] {
  const name = object.metadata.name;
  if (!name) return [{ reason: 'FieldValueRequired', field: 'metadata.name', message: 'Required value: name or generateName is required' }];
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    return [{ reason: 'FieldValueInvalid', field: 'metadata.name', message: `Invalid value: ${JSON.stringify(name)}: ${DNS_SUBDOMAIN_ERROR}` }];
  }
  return [];
}

/**
 * Sets what the server owns on create: name from generateName, uid, creationTimestamp, generation, no status for a
 * type with a status subresource. A client-set resourceVersion is the storage layer's (500) error upstream too.
 */
export function prepareForCreate(type: ResourceType, object: KubeObject): void {
  const meta = object.metadata;
  if (meta.resourceVersion) throw new StatusError(500, 'InternalError', 'Internal error occurred: resourceVersion should not be set on objects to be created');
  if (!meta.name && meta.generateName) meta.name = generatedName(meta.generateName);
  meta.uid = randomUUID();
  meta.creationTimestamp = rfc3339Now();
  delete meta.deletionTimestamp;
  delete meta.deletionGracePeriodSeconds;
  if (type.hasGeneration) meta.generation = 1;
  else delete meta.generation;
  if (type.subresources.status) delete object['status'];
}

/**
 * Carries the system-owned fields of `old` into `next`, and narrows the change to what the endpoint may change:
 * the main resource ignores .status, /status changes only .status.
 */
export function prepareForUpdate(type: ResourceType, next: KubeObject, old: KubeObject, statusOnly: boolean): KubeObject {
  if (statusOnly) return { ...clone(old), status: next['status'] };
  const meta = next.metadata;
  for (const field of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation'] as const) {
    if (old.metadata[field] === undefined) delete meta[field];
    else (meta as Record<string, unknown>)[field] = old.metadata[field];
  }
  if (type.subresources.status) {
    if (old['status'] === undefined) delete next['status'];
    else next['status'] = clone(old['status']);
  }
  return next;
}

/** Bumps metadata.generation when anything but metadata and status changed. */
export function bumpGeneration(type: ResourceType, next: KubeObject, old: KubeObject): void {
  if (type.hasGeneration && !deepEqual(specPart(next), specPart(old))) next.metadata.generation = (old.metadata.generation ?? 0) + 1;
}

export function finalizerCauses(next: KubeObject, old: KubeObject): StatusCause[] {
  if (!old.metadata.deletionTimestamp) return [];
  const added = (next.metadata.finalizers ?? []).filter((finalizer) => !(old.metadata.finalizers ?? []).includes(finalizer));
  if (added.length === 0) return [];
  const message = `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => JSON.stringify(f)).join(', ')}}`;
  return [{ reason: 'FieldValueForbidden', field: 'metadata.finalizers', message }];
}

/** True when `next` differs from `old` in anything but resourceVersion: an unchanged write is not stored. */
export function changed(next: KubeObject, old: KubeObject): boolean {
  const strip = (object: KubeObject) => ({ ...object, metadata: { ...object.metadata, resourceVersion: undefined } });
  return !deepEqual(strip(next), strip(old));
}
