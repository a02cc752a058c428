import { setTimeout as delay } from 'node:timers/promises';
import { type CoordinationV1Api, V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../../core/src/log.ts';

export type LeaderOptions = {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  /** How long a lease lasts without renewal; a standby takes over after it. */
  leaseDurationMs: number;
  /** How often the leader renews and a standby retries. */
  renewIntervalMs: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
};

const statusCode = (error: unknown): number | undefined => (error as { code?: number }).code;

/**
 * Leader election on a `coordination.k8s.io` Lease, so that two controller replicas never act at once. The
 * holder renews every `renewIntervalMs`; if it cannot renew within the lease duration it stops leading before
 * anyone else may start. Writes use the Lease's resourceVersion, so two candidates never both win a round.
 */
export class LeaderElector {
  readonly #options: LeaderOptions;
  readonly #log: Logger;
  #leading = false;
  #lastRenew = 0;
  #stopped = false;
  #loop: Promise<void> | null = null;
  readonly #wake = new AbortController();

  constructor(options: LeaderOptions, log: Logger) {
    this.#options = options;
    this.#log = log.child({ component: 'leader', identity: options.identity });
  }

  get leading(): boolean {
    return this.#leading;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      // A round that gets no answer (a silent partition) counts as lost once the renew interval is over: the
      // step-down below must not wait on a request that may never return.
      const round = this.#tryAcquireOrRenew().catch((error: unknown) => {
        this.#log.debug({ err: (error as Error).message }, 'lease round failed');
        return false;
      });
      const held = await Promise.race([round, delay(this.#options.renewIntervalMs, false, { ref: false })]);
      if (held) this.#lastRenew = Date.now();
      // Step down well before a standby may take over (it waits the whole lease duration), as client-go's renew deadline does.
      const expired = Date.now() - this.#lastRenew > (this.#options.leaseDurationMs * 2) / 3;
      if (held && !this.#leading) this.#setLeading(true);
      else if (!held && this.#leading && expired) this.#setLeading(false);
      if (this.#stopped) break;
      await delay(this.#options.renewIntervalMs, undefined, { signal: this.#wake.signal }).catch(() => undefined);
    }
  }

  #setLeading(leading: boolean): void {
    this.#leading = leading;
    this.#log.info(leading ? 'became leader' : 'lost leadership');
    if (leading) this.#options.onStartedLeading();
    else this.#options.onStoppedLeading();
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, name, identity, leaseDurationMs } = this.#options;
    const now = new V1MicroTime();
    let lease: V1Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (error) {
      if (statusCode(error) !== 404) throw error;
      await api.createNamespacedLease({
        namespace,
        body: {
          metadata: { name, namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000), acquireTime: now, renewTime: now, leaseTransitions: 0 },
        },
      });
      return true;
    }
    const spec = lease.spec ?? {};
    const renewed = spec.renewTime ? new Date(spec.renewTime).getTime() : 0;
    const duration = (spec.leaseDurationSeconds ?? 0) * 1000;
    const mine = spec.holderIdentity === identity;
    const free = !spec.holderIdentity || renewed + duration < Date.now();
    if (!mine && !free) return false;
    lease.spec = {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
      renewTime: now,
      ...(mine ? {} : { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }),
    };
    try {
      await api.replaceNamespacedLease({ name, namespace, body: lease });
      return true;
    } catch (error) {
      if (statusCode(error) === 409) return false;
      throw error;
    }
  }

  /** Stops campaigning; a leader releases the Lease so a standby can take over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake.abort();
    await this.#loop;
    if (!this.#leading) return;
    this.#setLeading(false);
    const { api, namespace, name, identity, renewIntervalMs } = this.#options;
    const release = async () => {
      const lease = await api.readNamespacedLease({ name, namespace });
      if (lease.spec?.holderIdentity !== identity) return;
      lease.spec = { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 };
      await api.replaceNamespacedLease({ name, namespace, body: lease });
    };
    const timeout = delay(renewIntervalMs, 'timeout' as const, { ref: false });
    const outcome = await Promise.race([release().then(() => 'released' as const), timeout]).catch((error: unknown) => error);
    if (outcome !== 'released') {
      this.#log.warn({ err: outcome instanceof Error ? outcome.message : outcome }, 'could not release the lease; it will expire');
    }
  }
}
