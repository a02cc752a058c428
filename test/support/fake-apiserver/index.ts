/**
 * An in-process fake Kubernetes API server for the controller's tests: real HTTP on 127.0.0.1, the real URL
 * layouts, JSON bodies and watch streams, so @kubernetes/client-node runs unmodified against it.
 *
 * ```ts
 * const server = await FakeApiServer.start();           // loads charts/conveyor/crds/*.yaml
 * const kc = server.kubeConfig('default');              // KubeConfig → http://127.0.0.1:PORT
 * const apps = kc.makeApiClient(AppsV1Api);
 * server.create('deployments.apps', deployment);       // arrange (validated like a POST)
 * await server.waitFor('deployments.apps', 'default', 'worker', (d) => d?.spec.replicas === 3);
 * server.failNext('workerpools.conveyor.dev', 2);       // faults: 500s, closeWatches(), setUnavailable(), expireWatches()
 * await server.stop();
 * ```
 *
 * Served: core/v1 pods (+status), events; events.k8s.io/v1 events; apps/v1 deployments (+status, +scale);
 * coordination.k8s.io/v1 leases; every namespaced CRD in the chart (+status), validated against its schema.
 *
 * Known differences from kube-apiserver, on purpose: namespaces need not exist; no garbage collector
 * (propagationPolicy is ignored, ownerReferences do nothing); no scheduler/kubelet/Deployment controller (pods stay
 * Pending, Deployment status changes only through `setDeploymentStatus`); pods are deleted at once; strategic merge
 * patch is a JSON merge patch (lists replace instead of merging by key); no server-side apply (415); no managedFields;
 * `limit` is ignored (a server may); core/v1 and events.k8s.io/v1 events are stored apart; built-in types do not
 * prune unknown fields.
 */
export { FakeApiServer, type FakeApiServerOptions } from './server.ts';
export { kubeConfigFor } from './kubeconfig.ts';
export { StatusError, type Status, type StatusCause } from './errors.ts';
export type { KubeObject } from './objects.ts';
export type { RequestFilter, RequestRecord } from './request-log.ts';
export type { FaultOptions } from './faults.ts';
