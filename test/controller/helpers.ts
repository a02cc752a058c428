// What the controller suites share: a world (database, queue) with a fake Kubernetes API server in front of it,
// the real controller started in-process as main.ts wires it, and reads of what only the fake, PostgreSQL or a
// controller's /metrics show.
import type { KubeConfig } from '@kubernetes/client-node';
import pg from 'pg';
import { suite, type Test } from 'uvu';
import { type ControllerService, createControllerService } from '../../services/controller/src/service.ts';
import { Database } from '../../services/core/src/db/database.ts';
import { newId } from '../../services/core/src/ids.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { within } from '../support/fake-apiserver/client-helpers.ts';
import { FakeApiServer, type KubeObject, kubeConfigFor } from '../support/fake-apiserver/index.ts';
import { scrape } from '../support/prometheus.ts';
import { eventually, testLog, TestWorld } from '../support/system.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

// Not 'default': Task resources belong to the tenant named after their namespace, and 'default' is also the default tenant.
export const NS = 'team-a';
export const GROUP = 'conveyor.dev';
export const VERSION = 'v1alpha1';
export const POOLS = 'workerpools.conveyor.dev';
export const TASKS = 'tasks.conveyor.dev';
export const DEPLOYMENTS = 'deployments.apps';
export const LEASES = 'leases.coordination.k8s.io';
const DEFAULT_LEASE = 'conveyor-controller';

/** The controller's settings in every suite: a short lease and fast loops, so that a suite takes seconds. */
const CONTROLLER_ENV = Object.freeze({
  POD_NAMESPACE: NS,
  CONTROLLER_LEASE_MS: '3000',
  TASK_SYNC_INTERVAL_MS: '200',
  REAPER_INTERVAL_MS: '300',
  METRICS_PORT: '0',
});

/** CONTROLLER_LEASE_MS / 5, as service.ts derives it: how often the leader renews and a standby retries. */
export const RENEW_INTERVAL_MS = 600;

export type Controller = ControllerService & { podName: string; stop: () => Promise<void> };

/** How long a stop may take in teardown before the suite gives up on it (and says so) instead of hanging. */
const STOP_BOUND_MS = 20_000;

export class ControllerRig {
  readonly world: TestWorld;
  readonly server: FakeApiServer;
  /** The world's database, created and migrated before any controller starts. */
  readonly database: Database;
  /** A direct connection, to arrange rows as workers would leave them and to read what only PostgreSQL shows. */
  readonly db: pg.Client;
  readonly queue: string;
  readonly #stops: { name: string; stop: () => Promise<unknown> }[] = [];

  private constructor(world: TestWorld, server: FakeApiServer, database: Database, db: pg.Client) {
    this.world = world;
    this.server = server;
    this.database = database;
    this.db = db;
    this.queue = world.env['TASKS_QUEUE'] as string;
  }

  static async create(): Promise<ControllerRig> {
    const world = await TestWorld.create();
    const server = await FakeApiServer.start();
    // Started here rather than by the first controller, so a test can arrange rows before any controller runs.
    const database = new Database(world.config(), 'conveyor-controller-test', testLog);
    const db = new pg.Client({ connectionString: world.env['DATABASE_URL'] as string });
    try {
      await database.start();
      await db.connect();
    } catch (error) {
      // The suite's after hook has no rig to tear down: undo what was set up here.
      await db.end().catch(() => undefined);
      await database.stop().catch(() => undefined);
      await world.teardown().catch(() => undefined);
      await server.stop();
      throw error;
    }
    return new ControllerRig(world, server, database, db);
  }

  /**
   * Starts a controller as main.ts does, on the rig's fake (or on `kubeConfig`, e.g. through a proxy), and
   * registers its stop for teardown. It is not yet leading when this resolves; see {@link waitLeading}.
   */
  async startController(podName: string, overrides: Record<string, string> = {}, kubeConfig: KubeConfig = this.server.kubeConfig(NS)): Promise<Controller> {
    const config = this.world.config({ ...CONTROLLER_ENV, POD_NAME: podName, ...overrides });
    const service = createControllerService(config, kubeConfig, testLog.child({ pod: podName }));
    const stop = () => service.lifecycle.stop();
    this.#stops.push({ name: `controller ${podName}`, stop });
    await service.lifecycle.start();
    return { ...service, podName, stop };
  }

  /**
   * A TCP proxy in front of the fake and a KubeConfig through it, so that one controller alone can be cut off
   * (`cut`) or partitioned (`blackhole`). Closed in teardown.
   */
  async proxiedKubeConfig(): Promise<{ proxy: TcpProxy; kubeConfig: KubeConfig }> {
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(this.server.url).port));
    this.onTeardown('proxy', () => proxy.close());
    // client-node joins paths to the server URL as they are: a trailing slash would make every path `//apis/…`.
    return { proxy, kubeConfig: kubeConfigFor(proxy.rewrite(this.server.url).replace(/\/$/, ''), NS) };
  }

  /** Registers a cleanup that runs, last registered first, before the world is torn down. */
  onTeardown(name: string, stop: () => Promise<unknown>): void {
    this.#stops.push({ name, stop });
  }

  async teardown(): Promise<void> {
    for (const { name, stop } of this.#stops.reverse()) {
      await within(stop(), STOP_BOUND_MS, `${name} to stop`).catch((error: unknown) => {
        process.stderr.write(`controller teardown: ${(error as Error).message}\n`);
      });
    }
    await this.database.stop().catch(() => undefined);
    await this.db.end().catch(() => undefined);
    await this.world.teardown().catch(() => undefined);
    await this.server.stop();
  }

  // --- Arrange.

  /** A worker Deployment (selector app=<name>) and its pods, named as the workers' ids will be. */
  createDeployment(name: string, options: { replicas?: number; pods?: string[] } = {}): void {
    this.server.create(DEPLOYMENTS, deployment(name, options.replicas ?? 0), NS);
    for (const pod of options.pods ?? []) this.server.create('pods', podOf(pod, { app: name }), NS);
  }

  createPool(name: string, spec: Record<string, unknown>): KubeObject {
    return this.server.create(POOLS, workerPool(name, { queue: this.queue, ...spec }), NS);
  }

  createTask(name: string, spec: Record<string, unknown>): KubeObject {
    return this.server.create(TASKS, taskResource(name, spec), NS);
  }

  /**
   * Stores `count` due `pending` tasks in one statement (a poll never sees half of them): backlog for the
   * autoscaler, which nothing publishes while no API runs.
   */
  async insertPending(count: number): Promise<string[]> {
    const ids = Array.from({ length: count }, () => newId());
    await this.db.query(
      `INSERT INTO tasks (id, type, payload, priority, max_attempts, status) SELECT id, 'echo', '{}', 5, 1, $2 FROM unnest($1::uuid[]) AS id`,
      [ids, TaskStatus.pending],
    );
    return ids;
  }

  /** Ends every unfinished task, as workers finishing the backlog would. */
  async finishAll(): Promise<void> {
    await this.db.query('UPDATE tasks SET status = $1, finished_at = now(), updated_at = now() WHERE status = ANY($2::task_status[])', [
      TaskStatus.completed,
      [TaskStatus.pending, TaskStatus.queued, TaskStatus.in_progress],
    ]);
  }

  // --- Inspect.

  replicas(deploymentName: string): number | undefined {
    return (this.server.get(DEPLOYMENTS, NS, deploymentName)?.['spec'] as { replicas?: number } | undefined)?.replicas;
  }

  /** Resolves once the Deployment's spec.replicas is `replicas`. */
  async waitForReplicas(deploymentName: string, replicas: number, timeoutMs = 5000): Promise<void> {
    await this.server.waitFor(DEPLOYMENTS, NS, deploymentName, (d) => (d?.['spec'] as { replicas?: number } | undefined)?.replicas === replicas, timeoutMs);
  }

  /** Resolves with the resource's status once `predicate` holds for it. */
  async waitForStatus(resource: string, name: string, predicate: (status: any) => boolean, timeoutMs = 5000): Promise<any> {
    const object = await this.server.waitFor(resource, NS, name, (o) => o !== undefined && predicate(o['status'] ?? {}), timeoutMs);
    return object?.['status'];
  }

  /** core/v1 Events about the object `name`, oldest first, optionally of one reason. */
  events(name: string, reason?: string): any[] {
    return this.server
      .list('events', NS)
      .filter((e: any) => e.involvedObject?.name === name && (reason === undefined || e.reason === reason))
      .sort((a: any, b: any) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
  }

  lease(name = DEFAULT_LEASE): any {
    return this.server.get(LEASES, NS, name)?.['spec'];
  }
}

/** A suite with a rig of its own (its database, queue and fake API server), torn down after its last test. */
export function rigSuite<Extra extends object = object>(name: string): Test<{ rig: ControllerRig } & Extra> {
  const test = suite<{ rig: ControllerRig } & Extra>(name, {} as { rig: ControllerRig } & Extra);
  test.before(async (ctx) => {
    ctx.rig = await ControllerRig.create();
  });
  test.after(async (ctx) => {
    await ctx.rig?.teardown();
  });
  return test;
}

function deployment(name: string, replicas: number) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'worker', image: 'conveyor-worker:dev' }] } },
    },
  };
}

function podOf(name: string, labels: Record<string, string>) {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels }, spec: { containers: [{ name: 'worker', image: 'conveyor-worker:dev' }] } };
}

function workerPool(name: string, spec: Record<string, unknown>) {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'WorkerPool', metadata: { name }, spec };
}

export function taskResource(name: string, spec: Record<string, unknown>) {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'Task', metadata: { name }, spec };
}

export function condition(status: any, type: string): { status: string; reason: string; message: string; observedGeneration?: number } | undefined {
  return (status?.conditions ?? []).find((c: { type: string }) => c.type === type);
}

/** Resolves once `controller` holds the Lease. */
export function waitLeading(controller: Controller, timeoutMs = 5000): Promise<true> {
  return eventually(async () => controller.leader.leading, timeoutMs, `${controller.podName} to lead`);
}

/** Scrapes `controller`'s probes port and sums the samples of `name` whose labels include `labels` (0 when none). */
export async function readMetric(controller: Controller, name: string, labels: Record<string, string> = {}): Promise<number> {
  return (await scrape(`http://127.0.0.1:${controller.probes.port}/metrics`)).sum(name, labels);
}
