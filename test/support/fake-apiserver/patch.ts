// The PATCH content types: JSON merge patch (RFC 7386) and JSON patch (RFC 6902). Strategic merge patch is applied
// as a merge patch to the built-ins (lists replace instead of merging by key; index.ts lists such differences), and
// custom resources refuse it with 415, as apiextensions-apiserver does.
import { StatusError, badRequest } from './errors.ts';
import { clone, deepEqual, isObject } from './objects.ts';

export const MERGE_PATCH = 'application/merge-patch+json';
export const JSON_PATCH = 'application/json-patch+json';
export const STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json';
export const APPLY_PATCH = 'application/apply-patch+yaml';

/** RFC 7386: objects merge recursively, null removes, anything else (arrays included) replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return clone(patch);
  const result: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

interface JsonPatchOperation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: unknown;
}

// A JSON patch that cannot be applied is a 422 from kube-apiserver, with the evanphx/json-patch error text.
function unprocessable(message: string): StatusError {
  return new StatusError(422, 'Invalid', message);
}

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw unprocessable(`invalid JSON pointer: ${JSON.stringify(pointer)}`);
  return pointer.slice(1).split('/').map((token) => token.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** The container holding the pointer's last token, and that token. */
function locate(document: unknown, pointer: string): { parent: unknown; key: string } {
  const tokens = parsePointer(pointer);
  const key = tokens.pop();
  if (key === undefined) throw unprocessable('cannot operate on the document root');
  let parent = document;
  for (const token of tokens) {
    parent = Array.isArray(parent) ? parent[Number(token)] : isObject(parent) ? parent[token] : undefined;
    if (parent === undefined) throw unprocessable(`doc is missing path: "${pointer}": missing value`);
  }
  return { parent, key };
}

function arrayIndex(array: unknown[], key: string, inserting: boolean): number {
  if (inserting && key === '-') return array.length;
  const index = Number(key);
  const limit = inserting ? array.length : array.length - 1;
  if (!/^\d+$/.test(key) || index > limit) throw unprocessable(`Unable to access invalid index: ${key}: invalid index referenced`);
  return index;
}

function read(document: unknown, pointer: string): unknown {
  if (pointer === '') return document;
  const { parent, key } = locate(document, pointer);
  const value = Array.isArray(parent) ? parent[arrayIndex(parent, key, false)] : isObject(parent) ? parent[key] : undefined;
  if (value === undefined) throw unprocessable(`doc is missing path: "${pointer}": missing value`);
  return value;
}

function add(document: unknown, pointer: string, value: unknown): void {
  const { parent, key } = locate(document, pointer);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, true), 0, clone(value));
  else if (isObject(parent)) parent[key] = clone(value);
  else throw unprocessable(`doc is missing path: "${pointer}": missing value`);
}

function remove(document: unknown, pointer: string): void {
  const { parent, key } = locate(document, pointer);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, false), 1);
  else if (isObject(parent) && key in parent) delete parent[key];
  else throw unprocessable(`Unable to remove nonexistent key: ${key}: missing value`);
}

function applyOperation(document: unknown, operation: JsonPatchOperation): void {
  switch (operation.op) {
    case 'add':
      return add(document, operation.path, operation.value);
    case 'remove':
      return remove(document, operation.path);
    case 'replace':
      read(document, operation.path);
      remove(document, operation.path);
      return add(document, operation.path, operation.value);
    case 'move': {
      const value = read(document, operation.from ?? '');
      remove(document, operation.from ?? '');
      return add(document, operation.path, value);
    }
    case 'copy':
      return add(document, operation.path, read(document, operation.from ?? ''));
    case 'test':
      if (!deepEqual(read(document, operation.path), operation.value)) throw unprocessable(`testing value ${operation.path} failed: test failed`);
      return;
    default:
      throw unprocessable(`Unexpected kind: ${String((operation as { op: unknown }).op)}`);
  }
}

/** RFC 6902, applied to a copy. @throws StatusError 400 for a body that is no patch, 422 for one that does not apply. */
export function jsonPatch(target: unknown, operations: unknown): unknown {
  if (!Array.isArray(operations)) {
    throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  }
  const document = clone(target);
  for (const operation of operations) {
    if (!isObject(operation) || typeof operation['op'] !== 'string' || typeof operation['path'] !== 'string') {
      throw badRequest(`invalid JSON patch operation: ${JSON.stringify(operation)}`);
    }
    applyOperation(document, operation as unknown as JsonPatchOperation);
  }
  return document;
}
