// The discovery documents (/version, /api, /apis, /api/v1, /apis/GROUP/VERSION) built from what the fake serves,
// so client-node's KubernetesObjectApi, which resolves plurals through discovery, works too.
import type { ResourceRegistry } from './resources.ts';

function verbsOf(): string[] {
  return ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
}

/** The document for `segments` (the path split on '/'), or undefined when the path is not a discovery path. */
export function discoveryDocument(registry: ResourceRegistry, segments: string[]): unknown {
  const types = registry.all();
  const [root, group, version] = segments;
  if (root === 'version' && segments.length === 1) {
    return { major: '1', minor: '33', gitVersion: 'v1.33.0-conveyor-fake', platform: 'linux/amd64' };
  }
  if (root === 'api' && segments.length === 1) {
    return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] };
  }
  if (root === 'apis' && segments.length === 1) {
    const groups = [...new Set(types.filter((type) => type.group).map((type) => type.group))].map((name) => {
      const versions = [...new Set(types.filter((type) => type.group === name).map((type) => type.version))].map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
      return { name, versions, preferredVersion: versions[0] };
    });
    return { kind: 'APIGroupList', apiVersion: 'v1', groups };
  }
  const isCore = root === 'api' && segments.length === 2;
  const isGroup = root === 'apis' && segments.length === 3;
  if (!isCore && !isGroup) return undefined;
  const [wantedGroup, wantedVersion] = isCore ? ['', group] : [group, version];
  const served = types.filter((type) => type.group === wantedGroup && type.version === wantedVersion);
  if (served.length === 0) return undefined;
  const resources = served.flatMap((type) => {
    const main = { name: type.plural, singularName: type.kind.toLowerCase(), namespaced: true, kind: type.kind, verbs: verbsOf() };
    const subresources = Object.entries(type.subresources)
      .filter(([, on]) => on)
      .map(([sub]) => ({ name: `${type.plural}/${sub}`, singularName: '', namespaced: true, kind: sub === 'scale' ? 'Scale' : type.kind, verbs: ['get', 'patch', 'update'] }));
    return [main, ...subresources];
  });
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: isCore ? 'v1' : `${group}/${version}`, resources };
}
