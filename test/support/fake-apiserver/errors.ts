// The API server answers every failure with a `Status` object (kind Status, apiVersion v1). client-node 1.x
// surfaces it as `ApiException { code, body }` with `body` the raw JSON text, so messages and reasons here follow
// what kube-apiserver writes, to let the controller's error handling be tested against the real shapes.
import type { ResourceType } from './resources.ts';

export type StatusReason =
  | 'BadRequest'
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'Expired'
  | 'MethodNotAllowed'
  | 'UnsupportedMediaType'
  | 'InternalError'
  | 'ServiceUnavailable'
  | 'Timeout'
  | 'TooManyRequests'
  | 'Forbidden';

/** One field error inside an `Invalid` Status (`details.causes[]`). */
export interface StatusCause {
  reason: string;
  message: string;
  field: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
}

export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: StatusReason;
  details?: StatusDetails;
  code: number;
}

/** A failure that the HTTP layer writes out as a Status with `code` as the HTTP status. */
export class StatusError extends Error {
  readonly code: number;
  readonly reason: StatusReason;
  readonly details: StatusDetails | undefined;

  constructor(code: number, reason: StatusReason, message: string, details?: StatusDetails) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.details = details;
  }

  toStatus(): Status {
    const status: Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason, code: this.code };
    if (this.details) status.details = this.details;
    return status;
  }
}

/** `pods`, or `deployments.apps`: how the server names a resource in messages. */
export function qualifiedName(type: ResourceType): string {
  return type.group ? `${type.plural}.${type.group}` : type.plural;
}

function resourceDetails(type: ResourceType, name: string): StatusDetails {
  return type.group ? { name, group: type.group, kind: type.plural } : { name, kind: type.plural };
}

export function notFound(type: ResourceType, name: string): StatusError {
  return new StatusError(404, 'NotFound', `${qualifiedName(type)} "${name}" not found`, resourceDetails(type, name));
}

export function alreadyExists(type: ResourceType, name: string): StatusError {
  return new StatusError(409, 'AlreadyExists', `${qualifiedName(type)} "${name}" already exists`, resourceDetails(type, name));
}

export function conflict(type: ResourceType, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again'): StatusError {
  return new StatusError(409, 'Conflict', `Operation cannot be fulfilled on ${qualifiedName(type)} "${name}": ${why}`, resourceDetails(type, name));
}

export function badRequest(message: string): StatusError {
  return new StatusError(400, 'BadRequest', message);
}

/** 422 with one line per cause, formatted like apimachinery's `field.ErrorList` aggregate. */
export function invalid(type: ResourceType, name: string, causes: StatusCause[]): StatusError {
  const lines = causes.map((cause) => `${cause.field}: ${cause.message}`);
  const summary = lines.length === 1 ? lines[0] : `[${lines.join(', ')}]`;
  const kind = type.group ? `${type.kind}.${type.group}` : type.kind;
  const details: StatusDetails = { name, kind: type.kind, causes };
  if (type.group) details.group = type.group;
  return new StatusError(422, 'Invalid', `${kind} "${name}" is invalid: ${summary}`, details);
}

export function expired(requested: number, oldest: number): StatusError {
  return new StatusError(410, 'Expired', `too old resource version: ${requested} (${oldest})`);
}

export function internalError(message: string): StatusError {
  return new StatusError(500, 'InternalError', `Internal error occurred: ${message}`, { causes: [{ reason: '', message, field: '' }] });
}

export function serviceUnavailable(): StatusError {
  return new StatusError(503, 'ServiceUnavailable', 'the server is currently unable to handle the request');
}
