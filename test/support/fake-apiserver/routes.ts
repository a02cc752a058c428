// Maps kube-apiserver's URL layout and HTTP methods onto a resource and a Kubernetes verb:
//   /api/v1/namespaces/NS/PLURAL[/NAME[/SUB]]              core group
//   /apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME[/SUB]]  named groups
//   /api/v1/PLURAL, /apis/GROUP/VERSION/PLURAL              list/watch across namespaces
//   …/watch/…                                               the deprecated watch prefix
import { StatusError } from './errors.ts';
import { resourceKey, type ResourceRegistry, type ResourceType } from './resources.ts';

export interface Route {
  type: ResourceType;
  /** undefined for a request across all namespaces. */
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
  verb: string;
}

function methodNotAllowed(method: string): StatusError {
  return new StatusError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource (${method})`);
}

export function routeNotFound(): StatusError {
  return new StatusError(404, 'NotFound', 'the server could not find the requested resource');
}

/** Splits `/api/v1/...` or `/apis/g/v/...` into group, version and the rest. */
function groupVersion(segments: string[]): { group: string; version: string; rest: string[] } | undefined {
  if (segments[0] === 'api' && segments[1] === 'v1') return { group: '', version: 'v1', rest: segments.slice(2) };
  if (segments[0] === 'apis' && segments.length >= 3) return { group: segments[1] ?? '', version: segments[2] ?? '', rest: segments.slice(3) };
  return undefined;
}

function verbFor(method: string, named: boolean, watch: boolean): string {
  switch (method) {
    case 'GET':
      return watch ? 'watch' : named ? 'get' : 'list';
    case 'POST':
      if (named) break;
      return 'create';
    case 'PUT':
      if (!named) break;
      return 'update';
    case 'PATCH':
      if (!named) break;
      return 'patch';
    case 'DELETE':
      return named ? 'delete' : 'deletecollection';
  }
  throw methodNotAllowed(method);
}

/**
 * The resource request a path and method name, or undefined for a path that is not one (discovery and the like).
 * @throws StatusError 404 for an unknown resource or subresource, 405 for a method the endpoint does not take
 */
export function route(registry: ResourceRegistry, method: string, segments: string[], query: URLSearchParams): Route | undefined {
  const parsed = groupVersion(segments);
  if (!parsed || parsed.rest.length === 0) return undefined;
  let rest = parsed.rest;
  const legacyWatch = rest[0] === 'watch';
  if (legacyWatch) rest = rest.slice(1);
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [plural = '', name, subresource, ...extra] = rest;
  const type = registry.byPath(parsed.group, parsed.version, plural);
  if (!type || extra.length > 0) throw routeNotFound();
  // A namespaced object is addressed only under its namespace; without one only list and watch make sense.
  if (namespace === undefined && name !== undefined) throw routeNotFound();
  if (subresource !== undefined && !(type.subresources as Record<string, boolean>)[subresource]) throw routeNotFound();
  const watch = legacyWatch || query.get('watch') === 'true' || query.get('watch') === '1';
  if (watch && (method !== 'GET' || subresource !== undefined)) throw methodNotAllowed(method);
  const verb = verbFor(method, name !== undefined, watch);
  if (subresource !== undefined && !['get', 'update', 'patch'].includes(verb)) throw methodNotAllowed(method);
  if (namespace === undefined && verb !== 'list' && verb !== 'watch') throw methodNotAllowed(method);
  return { type, namespace, name, subresource, verb };
}

export function routeResource(routeValue: Route | undefined): string {
  return routeValue ? resourceKey(routeValue.type) : '';
}
