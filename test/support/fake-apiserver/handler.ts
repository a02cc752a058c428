// One HTTP request: route it, apply injected faults, run the verb, and write JSON (or a Status on failure) —
// the one place errors become responses, as in Koa's `ctx.onerror`.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { discoveryDocument } from './discovery.ts';
import { badRequest, internalError, StatusError } from './errors.ts';
import type { Faults } from './faults.ts';
import { isObject } from './objects.ts';
import type { RequestLog, RequestRecord } from './request-log.ts';
import { resourceKey, type ResourceRegistry } from './resources.ts';
import { route, routeNotFound, type Route } from './routes.ts';
import { patchScale, toScale, updateScale } from './scale.ts';
import { fieldFilter, labelFilter, type ObjectFilter } from './selectors.ts';
import type { Store } from './store.ts';
import { listBody, type Verbs, type WriteOptions } from './verbs.ts';
import type { WatchHub } from './watch.ts';

export interface ServerParts {
  registry: ResourceRegistry;
  store: Store;
  verbs: Verbs;
  watches: WatchHub;
  faults: Faults;
  log: RequestLog;
}

interface Reply {
  code: number;
  body: unknown;
  warnings?: string[];
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (error) {
    throw badRequest(`couldn't get version/kind; json parse error: ${(error as Error).message}`);
  }
}

function send(response: ServerResponse, reply: Reply): void {
  const text = typeof reply.body === 'string';
  const headers: Record<string, string | string[]> = { 'content-type': text ? 'text/plain; charset=utf-8' : 'application/json' };
  if (reply.warnings?.length) headers['warning'] = reply.warnings.map((warning) => `299 - ${JSON.stringify(warning)}`);
  response.writeHead(reply.code, headers);
  response.end(text ? reply.body : JSON.stringify(reply.body));
}

function filterFor(routeValue: Route, query: URLSearchParams): ObjectFilter {
  const byLabel = labelFilter(query.get('labelSelector'));
  const byField = fieldFilter(query.get('fieldSelector'), routeValue.type);
  const name = routeValue.name;
  return (object) => (name === undefined || object.metadata.name === name) && byLabel(object) && byField(object);
}

function list(parts: ServerParts, routeValue: Route, query: URLSearchParams): Reply {
  const requested = query.get('resourceVersion') ?? '';
  const revision = parts.store.revision;
  if (requested !== '' && requested !== '0') {
    const wanted = Number(requested);
    if (!Number.isInteger(wanted)) throw badRequest(`invalid resource version: ${requested}`);
    if (wanted > revision) throw new StatusError(504, 'Timeout', `Timeout: Too large resource version: ${wanted}, current: ${revision}`);
    // No snapshots are kept: an exact list of a past revision is as gone as a compacted one.
    if (query.get('resourceVersionMatch') === 'Exact' && wanted !== revision) {
      throw new StatusError(410, 'Expired', `The resourceVersion for the provided list is too old.`);
    }
  }
  const items = parts.verbs.list(routeValue.type, routeValue.namespace, filterFor(routeValue, query));
  return { code: 200, body: listBody(routeValue.type, items, revision) };
}

function deleteReply(parts: ServerParts, routeValue: Route, name: string, raw: string, options: WriteOptions): Reply {
  const body = raw ? parseJson(raw) : {};
  const deleteOptions = isObject(body) ? body : {};
  const dryRun = options.dryRun || (Array.isArray(deleteOptions['dryRun']) && deleteOptions['dryRun'].includes('All'));
  const preconditions = isObject(deleteOptions['preconditions']) ? (deleteOptions['preconditions'] as { uid?: string; resourceVersion?: string }) : undefined;
  const { type } = routeValue;
  const result = parts.verbs.delete(type, routeValue.namespace ?? '', name, { preconditions, dryRun });
  if (!result.deleted || type.returnDeletedObject) return { code: 200, body: result.object };
  const details: Record<string, string> = { name, kind: type.plural, uid: result.object.metadata.uid ?? '' };
  if (type.group) details['group'] = type.group;
  return { code: 200, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details } };
}

function deleteCollection(parts: ServerParts, routeValue: Route, query: URLSearchParams, options: WriteOptions): Reply {
  const chosen = parts.verbs.list(routeValue.type, routeValue.namespace, filterFor(routeValue, query));
  const items = chosen.map((object) => parts.verbs.delete(routeValue.type, object.metadata.namespace ?? '', object.metadata.name ?? '', { dryRun: options.dryRun }).object);
  return { code: 200, body: listBody(routeValue.type, items, parts.store.revision) };
}

function execute(parts: ServerParts, routeValue: Route, query: URLSearchParams, raw: string, contentType: string): Reply {
  const { type, subresource } = routeValue;
  const namespace = routeValue.namespace ?? '';
  const name = routeValue.name ?? '';
  const options: WriteOptions = { dryRun: query.getAll('dryRun').includes('All'), strict: query.get('fieldValidation') === 'Strict' };
  const statusOnly = subresource === 'status';
  switch (routeValue.verb) {
    case 'get': {
      const object = parts.verbs.get(type, namespace, name);
      return { code: 200, body: subresource === 'scale' ? toScale(object) : object };
    }
    case 'list':
      return list(parts, routeValue, query);
    case 'create': {
      const result = parts.verbs.create(type, namespace, parseJson(raw), raw, options);
      return { code: 201, body: result.object, warnings: result.warnings };
    }
    case 'update': {
      const result = subresource === 'scale' ? updateScale(parts.verbs, type, namespace, name, parseJson(raw), options) : parts.verbs.update(type, namespace, name, parseJson(raw), raw, statusOnly, options);
      return { code: result.created ? 201 : 200, body: result.object, warnings: result.warnings };
    }
    case 'patch': {
      const patch = parseJson(raw);
      const result = subresource === 'scale' ? patchScale(parts.verbs, type, namespace, name, contentType, patch, options) : parts.verbs.patch(type, namespace, name, contentType, patch, statusOnly, options);
      return { code: 200, body: result.object, warnings: result.warnings };
    }
    case 'delete':
      return deleteReply(parts, routeValue, name, raw, options);
    case 'deletecollection':
      return deleteCollection(parts, routeValue, query, options);
    default:
      throw routeNotFound();
  }
}

function openWatch(parts: ServerParts, routeValue: Route, query: URLSearchParams, response: ServerResponse): void {
  const timeout = query.get('timeoutSeconds');
  const resourceVersion = query.get('resourceVersion') ?? '';
  if (resourceVersion !== '' && !/^\d+$/.test(resourceVersion)) throw badRequest(`invalid resource version: ${resourceVersion}`);
  if (timeout !== null && !/^\d+$/.test(timeout)) throw badRequest(`invalid timeoutSeconds: ${timeout}`);
  parts.watches.open(response, {
    type: routeValue.type,
    namespace: routeValue.namespace,
    filter: filterFor(routeValue, query),
    resourceVersion,
    allowBookmarks: query.get('allowWatchBookmarks') === 'true',
    sendInitialEvents: query.get('sendInitialEvents') === 'true',
    timeoutSeconds: timeout === null ? undefined : Number(timeout),
  });
}

function reply(parts: ServerParts, record: RequestRecord, segments: string[], url: URL, raw: string, response: ServerResponse): Reply | undefined {
  const routeValue = route(parts.registry, record.method, segments, url.searchParams);
  if (routeValue) {
    Object.assign(record, { verb: routeValue.verb, resource: resourceKey(routeValue.type), subresource: routeValue.subresource, namespace: routeValue.namespace, name: routeValue.name });
  }
  const fault = parts.faults.take(record);
  if (fault) throw fault;
  if (!routeValue) {
    if (record.method === 'GET' && ['healthz', 'readyz', 'livez'].includes(segments[0] ?? '')) return { code: 200, body: 'ok' };
    const document = record.method === 'GET' ? discoveryDocument(parts.registry, segments) : undefined;
    if (document === undefined) throw routeNotFound();
    return { code: 200, body: document };
  }
  if (routeValue.verb !== 'watch') return execute(parts, routeValue, url.searchParams, raw, record.contentType ?? '');
  openWatch(parts, routeValue, url.searchParams, response);
  return undefined;
}

/** Answers one request; never throws. */
export async function handleRequest(parts: ServerParts, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://127.0.0.1');
  const contentType = request.headers['content-type']?.split(';')[0]?.trim();
  const record: RequestRecord = { method: request.method ?? 'GET', verb: '', resource: '', subresource: undefined, namespace: undefined, name: undefined, query: Object.fromEntries(url.searchParams), contentType, code: 200 };
  try {
    const segments = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const raw = await readBody(request);
    const result = reply(parts, record, segments, url, raw, response);
    if (result) send(response, result);
    record.code = result?.code ?? 200;
  } catch (error) {
    const failure = error instanceof StatusError ? error : internalError((error as Error).message);
    if (!response.headersSent) send(response, { code: failure.code, body: failure.toStatus() });
    record.code = failure.code;
  }
  parts.log.add(record);
}
