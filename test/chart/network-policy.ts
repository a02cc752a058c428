// A NetworkPolicy evaluator for rendered manifests, with the semantics of networking.k8s.io/v1: a pod selected
// by no policy of a type is open in that direction; once selected, a connection must match a rule of one of the
// selecting policies; a connection between two pods needs both the source's egress and the destination's
// ingress. Named ports resolve against the destination pod's container ports. ipBlocks match by IP address.
import type { Manifest } from './helm.ts';

export type LabelSelector = { matchLabels?: Record<string, string>; matchExpressions?: { key: string; operator: string; values?: string[] }[] };
type Peer = { podSelector?: LabelSelector; namespaceSelector?: LabelSelector; ipBlock?: { cidr: string; except?: string[] } };
type PolicyPort = { port?: number | string; endPort?: number; protocol?: string };
type Rule = { from?: Peer[]; to?: Peer[]; ports?: PolicyPort[] };
type ContainerPort = { name?: string; containerPort: number; protocol?: string };

/** A pod (labels, namespace, the namespace's labels, named ports) or an address outside the cluster. */
export type Endpoint = {
  ip: string;
  pod?: { namespace: string; namespaceLabels: Record<string, string>; labels: Record<string, string>; ports: ContainerPort[] };
};

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

/** Whether labels satisfy a LabelSelector (an empty selector selects everything). */
export function selects(selector: LabelSelector, labels: Record<string, string>): boolean {
  const byLabel = Object.entries(selector.matchLabels ?? {}).every(([key, value]) => labels[key] === value);
  const byExpression = (selector.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
    if (operator === 'In') return key in labels && values.includes(labels[key] as string);
    if (operator === 'NotIn') return !(key in labels) || !values.includes(labels[key] as string);
    if (operator === 'Exists') return key in labels;
    if (operator === 'DoesNotExist') return !(key in labels);
    throw new Error(`unknown operator ${operator}`);
  });
  return byLabel && byExpression;
}

function ipv4(address: string): number {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((part) => !Number.isInteger(part) || part < 0 || part > 255)) throw new Error(`not an IPv4 address: ${address}`);
  return parts.reduce((value, part) => value * 256 + part, 0);
}

export function inCidr(address: string, cidr: string): boolean {
  const [base = '', bits = '32'] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  return Math.floor(ipv4(address) / size) === Math.floor(ipv4(base) / size);
}

/** Whether `endpoint` is one of the peers a rule of a policy in `namespace` names (no peers: everyone). */
function peersMatch(peers: Peer[] | undefined, endpoint: Endpoint, namespace: string): boolean {
  if (!peers || peers.length === 0) return true;
  return peers.some((peer) => {
    if (peer.ipBlock) return inCidr(endpoint.ip, peer.ipBlock.cidr) && !(peer.ipBlock.except ?? []).some((cidr) => inCidr(endpoint.ip, cidr));
    const pod = endpoint.pod;
    if (!pod) return false;
    const namespaceOk = peer.namespaceSelector ? selects(peer.namespaceSelector, pod.namespaceLabels) : pod.namespace === namespace;
    return namespaceOk && (!peer.podSelector || selects(peer.podSelector, pod.labels));
  });
}

/** Whether a rule's ports admit `port`/`protocol` on `destination` (no ports: every port). */
function portsMatch(ports: PolicyPort[] | undefined, destination: Endpoint, port: number, protocol: Protocol): boolean {
  if (!ports || ports.length === 0) return true;
  return ports.some((rule) => {
    if ((rule.protocol ?? 'TCP') !== protocol) return false;
    if (rule.port === undefined) return true;
    if (typeof rule.port === 'string') {
      const named = destination.pod?.ports.find((candidate) => candidate.name === rule.port && (candidate.protocol ?? 'TCP') === protocol);
      return named?.containerPort === port;
    }
    return port >= rule.port && port <= (rule.endPort ?? rule.port);
  });
}

type Direction = 'Ingress' | 'Egress';

/** The policies of `direction` that select `endpoint`'s pod. */
function selecting(policies: readonly Manifest[], endpoint: Endpoint, direction: Direction, releaseNamespace: string): Manifest[] {
  const pod = endpoint.pod;
  if (!pod) return [];
  return policies.filter((policy) => {
    const spec = policy['spec'];
    const types: string[] = spec.policyTypes ?? (spec.egress ? ['Ingress', 'Egress'] : ['Ingress']);
    return (policy.metadata.namespace ?? releaseNamespace) === pod.namespace && types.includes(direction) && selects(spec.podSelector ?? {}, pod.labels);
  });
}

/**
 * Whether the NetworkPolicies among `manifests` let `source` open a connection to `destination` on `port`.
 * Policies without a namespace belong to `releaseNamespace` (helm template leaves it out).
 */
export function allowed(manifests: readonly Manifest[], releaseNamespace: string, source: Endpoint, destination: Endpoint, port: number, protocol: Protocol = 'TCP'): boolean {
  const policies = manifests.filter((manifest) => manifest.kind === 'NetworkPolicy');
  const egress = selecting(policies, source, 'Egress', releaseNamespace);
  const egressOk = egress.length === 0 || egress.some((policy) =>
    ((policy['spec'].egress ?? []) as Rule[]).some((rule) => peersMatch(rule.to, destination, policy.metadata.namespace ?? releaseNamespace) && portsMatch(rule.ports, destination, port, protocol)),
  );
  const ingress = selecting(policies, destination, 'Ingress', releaseNamespace);
  const ingressOk = ingress.length === 0 || ingress.some((policy) =>
    ((policy['spec'].ingress ?? []) as Rule[]).some((rule) => peersMatch(rule.from, source, policy.metadata.namespace ?? releaseNamespace) && portsMatch(rule.ports, destination, port, protocol)),
  );
  return egressOk && ingressOk;
}
