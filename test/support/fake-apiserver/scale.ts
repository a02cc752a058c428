// The Deployment `scale` subresource: an autoscaling/v1 Scale view of the Deployment whose spec.replicas is the
// Deployment's and whose resourceVersion is the Deployment's, so a stale Scale conflicts like a stale Deployment.
import { conflict, invalid } from './errors.ts';
import { clone, isObject, type KubeObject } from './objects.ts';
import type { ResourceType } from './resources.ts';
import { applyPatch, type Verbs, type WriteOptions, type WriteResult } from './verbs.ts';

const SCALE_TYPE: Pick<ResourceType, 'group' | 'kind' | 'plural'> = { group: 'autoscaling', kind: 'Scale', plural: 'scales' };

function selectorString(deployment: KubeObject): string {
  const selector = isObject(deployment['spec']) ? deployment['spec']['selector'] : undefined;
  const matchLabels = isObject(selector) && isObject(selector['matchLabels']) ? selector['matchLabels'] : {};
  return Object.entries(matchLabels)
    .map(([key, value]) => `${key}=${String(value)}`)
    .join(',');
}

export function toScale(deployment: KubeObject): KubeObject {
  const { name, namespace, uid, resourceVersion, creationTimestamp } = deployment.metadata;
  const spec = isObject(deployment['spec']) ? deployment['spec'] : {};
  const status = isObject(deployment['status']) ? deployment['status'] : {};
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name, namespace, uid, resourceVersion, creationTimestamp },
    spec: { replicas: spec['replicas'] ?? 0 },
    status: { replicas: status['replicas'] ?? 0, selector: selectorString(deployment) },
  };
}

/** PUT …/scale. @throws StatusError 404, 409 Conflict on a stale resourceVersion, 422 for bad replicas */
export function updateScale(verbs: Verbs, type: ResourceType, namespace: string, name: string, scale: unknown, options: WriteOptions): WriteResult {
  const deployment = verbs.get(type, namespace, name);
  const meta = isObject(scale) && isObject(scale['metadata']) ? scale['metadata'] : {};
  const replicas = isObject(scale) && isObject(scale['spec']) ? scale['spec']['replicas'] : undefined;
  if (meta['resourceVersion'] && meta['resourceVersion'] !== deployment.metadata.resourceVersion) throw conflict(type, name);
  if (!Number.isInteger(replicas) || (replicas as number) < 0) {
    const detail = replicas === undefined ? 'must be specified' : 'must be greater than or equal to 0';
    throw invalid(SCALE_TYPE as ResourceType, name, [{ reason: 'FieldValueInvalid', field: 'spec.replicas', message: `Invalid value: ${String(replicas ?? 0)}: ${detail}` }]);
  }
  const next = clone(deployment);
  (next['spec'] as Record<string, unknown>)['replicas'] = replicas;
  const result = verbs.update(type, namespace, name, next, '', false, options);
  return { object: toScale(result.object), warnings: result.warnings };
}

/** PATCH …/scale: the patch applies to the Scale view, then as PUT. */
export function patchScale(verbs: Verbs, type: ResourceType, namespace: string, name: string, contentType: string, patch: unknown, options: WriteOptions): WriteResult {
  const current = toScale(verbs.get(type, namespace, name));
  return updateScale(verbs, type, namespace, name, applyPatch(type, current, contentType, patch), options);
}
