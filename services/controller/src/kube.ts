import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';

export const GROUP = 'conveyor.dev';
export const VERSION = 'v1alpha1';
export const TASK_FINALIZER = 'conveyor.dev/cancel-task';

/** The API clients the controller uses, built once from one KubeConfig. */
export type Kube = Readonly<{
  config: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  custom: CustomObjectsApi;
  coordination: CoordinationV1Api;
}>;

export function createKube(config: KubeConfig): Kube {
  return Object.freeze({
    config,
    core: config.makeApiClient(CoreV1Api),
    apps: config.makeApiClient(AppsV1Api),
    custom: config.makeApiClient(CustomObjectsApi),
    coordination: config.makeApiClient(CoordinationV1Api),
  });
}

/** client-node sends JSON Patch by default; these options make a call a JSON merge patch. */
export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export const keyOf = (namespace: string | undefined, name: string | undefined) => `${namespace ?? ''}/${name ?? ''}`;

export function splitKey(key: string): { namespace: string; name: string } {
  const [namespace = '', name = ''] = key.split('/');
  return { namespace, name };
}

export const statusCode = (error: unknown): number | undefined => (error as { code?: number }).code;

/** A condition as Kubernetes conventions shape it; `lastTransitionTime` moves only when `status` changes. */
export type Condition = { type: string; status: 'True' | 'False' | 'Unknown'; reason: string; message: string; lastTransitionTime?: string; observedGeneration?: number };

export function setCondition(existing: readonly Condition[] | undefined, next: Condition): Condition[] {
  const others = (existing ?? []).filter((c) => c.type !== next.type);
  const previous = (existing ?? []).find((c) => c.type === next.type);
  const lastTransitionTime = previous && previous.status === next.status ? previous.lastTransitionTime : new Date().toISOString();
  return [...others, { ...next, lastTransitionTime: lastTransitionTime ?? new Date().toISOString() }];
}

/** Merge-patches the `status` subresource of one of our custom resources, stamping the generation it reflects. */
export async function patchStatus(kube: Kube, plural: string, object: KubernetesObject, status: Record<string, unknown>): Promise<void> {
  const generation = object.metadata?.generation;
  await kube.custom.patchNamespacedCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      namespace: object.metadata?.namespace ?? 'default',
      plural,
      name: object.metadata?.name ?? '',
      body: { status: { ...status, ...(generation ? { observedGeneration: generation } : {}) } },
    },
    mergePatch,
  );
}
