// The slice of kube-apiserver's built-in defaulting and validation (pkg/apis/*/validation) that a controller
// can trip over: pod and Deployment basics, Lease and Event rules, and MicroTime decoding. Messages follow upstream.
import { badRequest, type StatusCause } from './errors.ts';
import { deepEqual, isObject, type KubeObject } from './objects.ts';
import { show } from './validation.ts';

export type Checker = (object: KubeObject, old: KubeObject | undefined) => StatusCause[];

function required(field: string): StatusCause {
  return { reason: 'FieldValueRequired', field, message: 'Required value' };
}

function invalidValue(field: string, value: unknown, detail: string): StatusCause {
  return { reason: 'FieldValueInvalid', field, message: `Invalid value: ${show(value)}: ${detail}` };
}

function record(value: unknown): Record<string, unknown> {
  return isObject(value) ? value : {};
}

// metav1.MicroTime is decoded with exactly this layout, so `Date#toISOString()` (3 digits) is a 400: the reason
// client-node ships `V1MicroTime`, whose toISOString pads to 6 digits.
const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/;

/** @throws StatusError 400, as the server's JSON decoder fails on a MicroTime not in RFC 3339 with 6 fraction digits. */
export function assertMicroTimes(object: KubeObject, paths: string[][]): void {
  for (const path of paths) {
    let value: unknown = object;
    for (const part of path) value = record(value)[part];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string' || !MICRO_TIME.test(value)) {
      const layout = '2006-01-02T15:04:05.000000Z07:00';
      throw badRequest(`${object.kind} in version "${object.apiVersion.split('/').pop()}" cannot be handled as a ${object.kind}: parsing time ${JSON.stringify(value)} as "${layout}": cannot parse ${JSON.stringify(String(value))} as ".000000"`);
    }
  }
}

/** The defaults the server fills in a pod spec, so that a GET→PUT round trip compares equal. */
export function defaultPodSpec(spec: Record<string, unknown>): void {
  spec['restartPolicy'] ??= 'Always';
  spec['dnsPolicy'] ??= 'ClusterFirst';
  spec['terminationGracePeriodSeconds'] ??= 30;
  spec['schedulerName'] ??= 'default-scheduler';
  spec['securityContext'] ??= {};
  for (const container of Array.isArray(spec['containers']) ? spec['containers'] : []) {
    if (!isObject(container)) continue;
    const image = String(container['image'] ?? '');
    container['imagePullPolicy'] ??= image.endsWith(':latest') || !/:[^/]+$/.test(image) ? 'Always' : 'IfNotPresent';
    container['terminationMessagePath'] ??= '/dev/termination-log';
    container['terminationMessagePolicy'] ??= 'File';
  }
}

function checkContainers(spec: unknown, path: string): StatusCause[] {
  const containers = record(spec)['containers'];
  if (!Array.isArray(containers) || containers.length === 0) return [required(`${path}.containers`)];
  return containers.flatMap((container, i) => {
    const causes: StatusCause[] = [];
    if (!record(container)['name']) causes.push(required(`${path}.containers[${i}].name`));
    if (!record(container)['image']) causes.push(required(`${path}.containers[${i}].image`));
    return causes;
  });
}

function withoutImages(spec: unknown): unknown {
  const copy = structuredClone(record(spec));
  for (const container of Array.isArray(copy['containers']) ? copy['containers'] : []) if (isObject(container)) delete container['image'];
  return copy;
}

export const checkPod: Checker = (pod, old) => {
  const causes = checkContainers(pod['spec'], 'spec');
  if (old && !deepEqual(withoutImages(pod['spec']), withoutImages(old['spec']))) {
    const message = 'Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)';
    causes.push({ reason: 'FieldValueForbidden', field: 'spec', message });
  }
  return causes;
};

function selectorMatches(selector: Record<string, unknown>, labels: Record<string, unknown>): boolean {
  return Object.entries(record(selector['matchLabels'])).every(([key, value]) => labels[key] === value);
}

export const checkDeployment: Checker = (deployment, old) => {
  const spec = record(deployment['spec']);
  const causes: StatusCause[] = [];
  const replicas = spec['replicas'];
  if (!Number.isInteger(replicas) || (replicas as number) < 0) causes.push(invalidValue('spec.replicas', replicas, 'must be greater than or equal to 0'));
  const selector = spec['selector'];
  const template = record(spec['template']);
  if (!isObject(selector)) causes.push(required('spec.selector'));
  else if (!selectorMatches(selector, record(record(template['metadata'])['labels']))) {
    causes.push(invalidValue('spec.template.metadata.labels', record(record(template['metadata'])['labels']), '`selector` does not match template `labels`'));
  }
  causes.push(...checkContainers(template['spec'], 'spec.template.spec'));
  if (old && !deepEqual(selector, record(old['spec'])['selector'])) causes.push(invalidValue('spec.selector', selector, 'field is immutable'));
  return causes;
};

export const checkLease: Checker = (lease) => {
  const spec = record(lease['spec']);
  const causes: StatusCause[] = [];
  const duration = spec['leaseDurationSeconds'];
  if (duration !== undefined && (!Number.isInteger(duration) || (duration as number) <= 0)) causes.push(invalidValue('spec.leaseDurationSeconds', duration, 'must be greater than 0'));
  const transitions = spec['leaseTransitions'];
  if (transitions !== undefined && (!Number.isInteger(transitions) || (transitions as number) < 0)) causes.push(invalidValue('spec.leaseTransitions', transitions, 'must be greater than or equal to 0'));
  return causes;
};

/** Rules of a new-style event (events.k8s.io/v1, or a core/v1 Event that sets eventTime). */
function checkNewStyleEvent(event: KubeObject, controllerField: string): StatusCause[] {
  const causes: StatusCause[] = [];
  if (!event['eventTime']) causes.push(required('eventTime'));
  for (const field of [controllerField, 'reportingInstance', 'action', 'reason']) {
    const value = event[field];
    if (typeof value !== 'string' || value === '') causes.push(required(field));
    else if (field !== controllerField && value.length > 128) causes.push({ reason: 'FieldValueTooLong', field, message: 'Too long: may not be more than 128 bytes' });
  }
  if (event['type'] !== 'Normal' && event['type'] !== 'Warning') {
    causes.push({ reason: 'FieldValueNotSupported', field: 'type', message: `Unsupported value: ${show(event['type'] ?? '')}: supported values: "Normal", "Warning"` });
  }
  return causes;
}

export const checkCoreEvent: Checker = (event) => {
  if (event['eventTime']) return checkNewStyleEvent(event, 'reportingComponent');
  const involved = record(event['involvedObject']);
  const namespace = involved['namespace'];
  if (typeof namespace === 'string' && namespace !== '' && namespace !== event.metadata.namespace) {
    return [invalidValue('involvedObject.namespace', namespace, 'does not match event.namespace')];
  }
  return [];
};

export const checkEventsV1Event: Checker = (event) => checkNewStyleEvent(event, 'reportingController');
