// The built-in resources the controller uses, with the registry strategy switches of their kube-apiserver
// counterparts (generation, unconditional update, what DELETE answers) and their defaulting and validation.
import {
  assertMicroTimes,
  checkCoreEvent,
  checkDeployment,
  checkEventsV1Event,
  checkLease,
  checkPod,
  defaultPodSpec,
  type Checker,
} from './builtin-validation.ts';
import { isObject, type KubeObject } from './objects.ts';
import type { Operation, ResourceType } from './resources.ts';

type Prepare = (object: KubeObject, operation: Operation) => void;

interface BuiltinOptions {
  group: string;
  version: string;
  plural: string;
  kind: string;
  subresources?: Partial<ResourceType['subresources']>;
  hasGeneration?: boolean;
  allowCreateOnUpdate?: boolean;
  returnDeletedObject?: boolean;
  fieldLabels?: string[];
  microTimes?: string[][];
  prepare?: Prepare;
  check: Checker;
}

function builtin(options: BuiltinOptions): ResourceType {
  const { prepare, check, microTimes = [] } = options;
  return {
    group: options.group,
    version: options.version,
    plural: options.plural,
    kind: options.kind,
    listKind: `${options.kind}List`,
    custom: false,
    subresources: { status: false, scale: false, ...options.subresources },
    hasGeneration: options.hasGeneration ?? false,
    allowUnconditionalUpdate: true,
    allowCreateOnUpdate: options.allowCreateOnUpdate ?? false,
    returnDeletedObject: options.returnDeletedObject ?? false,
    fieldLabels: options.fieldLabels ?? [],
    admit(object, old, operation) {
      assertMicroTimes(object, microTimes);
      prepare?.(object, operation);
      return { causes: check(object, old), warnings: [] };
    },
  };
}

function specOf(object: KubeObject): Record<string, unknown> {
  if (!isObject(object['spec'])) object['spec'] = {};
  return object['spec'] as Record<string, unknown>;
}

const preparePod: Prepare = (pod, operation) => {
  defaultPodSpec(specOf(pod));
  // No scheduler or kubelet runs here: a new pod stays Pending until a test sets its status.
  if (operation === 'create') pod['status'] = { phase: 'Pending', qosClass: 'BestEffort' };
};

const prepareDeployment: Prepare = (deployment) => {
  const spec = specOf(deployment);
  spec['replicas'] ??= 1;
  spec['revisionHistoryLimit'] ??= 10;
  spec['progressDeadlineSeconds'] ??= 600;
  spec['strategy'] ??= { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } };
  const template = isObject(spec['template']) ? spec['template'] : undefined;
  if (template) {
    if (!isObject(template['spec'])) template['spec'] = {};
    defaultPodSpec(template['spec'] as Record<string, unknown>);
  }
  if (!isObject(deployment['status'])) deployment['status'] = {};
};

const involvedObjectLabels = ['kind', 'namespace', 'name', 'uid', 'apiVersion', 'resourceVersion', 'fieldPath'];

/** Fresh definitions (they are plain data, but each server gets its own). */
export function builtinTypes(): ResourceType[] {
  return [
    builtin({
      group: '',
      version: 'v1',
      plural: 'pods',
      kind: 'Pod',
      subresources: { status: true },
      returnDeletedObject: true,
      fieldLabels: ['spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName', 'status.phase', 'status.podIP', 'status.nominatedNodeName'],
      prepare: preparePod,
      check: checkPod,
    }),
    builtin({
      group: '',
      version: 'v1',
      plural: 'events',
      kind: 'Event',
      allowCreateOnUpdate: true,
      fieldLabels: [...involvedObjectLabels.map((label) => `involvedObject.${label}`), 'reason', 'reportingComponent', 'source', 'type'],
      microTimes: [['eventTime'], ['series', 'lastObservedTime']],
      check: checkCoreEvent,
    }),
    builtin({
      group: 'events.k8s.io',
      version: 'v1',
      plural: 'events',
      kind: 'Event',
      allowCreateOnUpdate: true,
      fieldLabels: [...involvedObjectLabels.map((label) => `regarding.${label}`), 'reason', 'reportingController', 'type'],
      microTimes: [['eventTime'], ['series', 'lastObservedTime']],
      check: checkEventsV1Event,
    }),
    builtin({
      group: 'apps',
      version: 'v1',
      plural: 'deployments',
      kind: 'Deployment',
      subresources: { status: true, scale: true },
      hasGeneration: true,
      prepare: prepareDeployment,
      check: checkDeployment,
    }),
    builtin({
      group: 'coordination.k8s.io',
      version: 'v1',
      plural: 'leases',
      kind: 'Lease',
      microTimes: [['spec', 'acquireTime'], ['spec', 'renewTime']],
      check: checkLease,
    }),
  ];
}
