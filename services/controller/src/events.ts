import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../../core/src/log.ts';
import type { Kube } from './kube.ts';

export const COMPONENT = 'conveyor-controller';

/** Records a Kubernetes Event about `object` (shown by `kubectl describe`). Failures are logged, never thrown. */
export async function recordEvent(
  kube: Kube,
  object: KubernetesObject,
  event: { type: 'Normal' | 'Warning'; reason: string; message: string },
  log: Logger,
): Promise<void> {
  const namespace = object.metadata?.namespace ?? 'default';
  const now = new Date();
  try {
    await kube.core.createNamespacedEvent({
      namespace,
      body: {
        metadata: { name: `${object.metadata?.name}.${now.getTime().toString(16)}${Math.random().toString(16).slice(2, 6)}`, namespace },
        involvedObject: {
          apiVersion: object.apiVersion,
          kind: object.kind,
          name: object.metadata?.name,
          namespace,
          uid: object.metadata?.uid,
        },
        type: event.type,
        reason: event.reason,
        message: event.message,
        source: { component: COMPONENT },
        reportingComponent: COMPONENT,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
  } catch (error) {
    log.warn({ reason: event.reason, err: (error as Error).message }, 'could not record an event');
  }
}
