// Scrapes the controller's probe port while it runs in-process against the fake Kubernetes API server and a
// real PostgreSQL and RabbitMQ: leadership, reconcile timings, a WorkerPool's replicas and its scaling events.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type ControllerService, createControllerService } from '../../services/controller/src/service.ts';
import { FakeApiServer } from '../support/fake-apiserver/index.ts';
import { delta, type Exposition, scrape } from '../support/prometheus.ts';
import { eventually, request, testLog, TestWorld } from '../support/system.ts';

type Ctx = { world: TestWorld; server: FakeApiServer; baseUrl: string; leader: ControllerService; standby: ControllerService | null };
const test = suite<Ctx>('controller: metrics', {} as Ctx);

const NAMESPACE = 'default';
const POOL = `${NAMESPACE}/pool`;
const WORKERS = 'worker';

async function startController(ctx: Ctx, podName: string): Promise<ControllerService> {
  // The shortest Lease the configuration allows, so that a standby takes over quickly once the leader leaves.
  const config = ctx.world.config({ POD_NAME: podName, POD_NAMESPACE: NAMESPACE, CONTROLLER_LEASE_MS: '3000' });
  const controller = createControllerService(config, ctx.server.kubeConfig(NAMESPACE), testLog);
  await controller.lifecycle.start();
  return controller;
}

test.before(async (ctx) => {
  ctx.world = await TestWorld.create();
  // An API without a worker: what it accepts stays queued, which is the backlog the autoscaler reads.
  const api = await ctx.world.startApi();
  ctx.baseUrl = api.baseUrl;
  await eventually(async () => api.broker.connected, 10_000, 'the API to connect to RabbitMQ');
  ctx.server = await FakeApiServer.start();
  ctx.server.create('deployments.apps', {
    metadata: { name: WORKERS },
    spec: { replicas: 0, selector: { matchLabels: { app: WORKERS } }, template: { metadata: { labels: { app: WORKERS } }, spec: { containers: [{ name: 'worker', image: 'conveyor:dev' }] } } },
  }, NAMESPACE);
  ctx.server.create('workerpools.conveyor.dev', {
    apiVersion: 'conveyor.dev/v1alpha1',
    kind: 'WorkerPool',
    metadata: { name: 'pool' },
    spec: { workerDeployment: WORKERS, queue: ctx.world.env['TASKS_QUEUE'], minReplicas: 0, maxReplicas: 5, tasksPerReplica: 2, pollIntervalSeconds: 1, scaleDownStabilizationSeconds: 0 },
  }, NAMESPACE);
  ctx.leader = await startController(ctx, 'controller-a');
  ctx.standby = null;
});

test.after(async (ctx) => {
  await ctx.standby?.lifecycle.stop();
  await ctx.leader?.lifecycle.stop();
  await ctx.server?.stop();
  await ctx.world?.teardown();
});

const probes = (controller: ControllerService) => `http://127.0.0.1:${controller.probes.port}`;
const metricsOf = (controller: ControllerService) => scrape(`${probes(controller)}/metrics`);

/** Scrapes until `ready` holds for the scrape, and returns that scrape. */
function scrapeUntil(controller: ControllerService, ready: (e: Exposition) => boolean, what: string, timeoutMs = 10_000): Promise<Exposition> {
  return eventually(async () => {
    const metrics = await metricsOf(controller);
    return ready(metrics) && metrics;
  }, timeoutMs, what);
}

const replicasOf = (ctx: Ctx) => (ctx.server.get('deployments.apps', NAMESPACE, WORKERS)?.spec as { replicas?: number }).replicas;
const scalePatches = (ctx: Ctx) => ctx.server.count({ verb: 'patch', resource: 'deployments.apps', subresource: 'scale' });

test('the leading controller serves /healthz, /readyz and conveyor_controller_leader 1', async (ctx) => {
  const metrics = await scrapeUntil(ctx.leader, (e) => e.single('conveyor_controller_leader') === 1, 'the controller to lead');
  assert.ok(ctx.leader.leader.leading);
  assert.is(metrics.family('conveyor_controller_leader').type, 'gauge');
  assert.equal((await request(probes(ctx.leader), 'GET', '/healthz')).body, { status: 'ok' });
  // Leading needs only the Kubernetes API; RabbitMQ connects in the background, and until it has, /readyz says so.
  const ready = await eventually(async () => {
    const answer = await request(probes(ctx.leader), 'GET', '/readyz');
    return answer.status === 200 && answer;
  }, 10_000, '/readyz to answer 200');
  assert.equal(ready.body, { status: 'ok' });
  for (const sample of [...metrics.families.values()].flatMap((f) => f.samples)) assert.is(sample.labels['service'], 'controller');
});

test('a WorkerPool reports desired and current replicas and its backlog; each reconcile is timed', async (ctx) => {
  const idle = await scrapeUntil(
    ctx.leader,
    (e) => e.sum('conveyor_workerpool_desired_replicas', { workerpool: POOL }) === 0 && e.samples('conveyor_workerpool_current_replicas', { workerpool: POOL }).length === 1,
    'the idle pool to be reconciled',
  );
  assert.is(idle.single('conveyor_workerpool_current_replicas', { workerpool: POOL }), 0);
  assert.is(idle.single('conveyor_backlog_tasks', { queue: ctx.world.env['TASKS_QUEUE'] as string }), 0);
  assert.is(idle.family('conveyor_reconcile_duration_seconds').type, 'histogram');
  // pollIntervalSeconds 1: the pool is reconciled again every second, and each pass is observed.
  const later = await scrapeUntil(ctx.leader, (e) => delta(idle, e, 'conveyor_reconcile_duration_seconds_count', { loop: 'workerpool', outcome: 'ok' }) >= 2, 'two more reconciles', 5_000);
  assert.ok(delta(idle, later, 'conveyor_reconcile_duration_seconds_sum', { loop: 'workerpool' }) > 0);
  assert.is(delta(idle, later, 'conveyor_reconcile_errors_total'), 0);
});

test('a backlog scales the pool up, its draining back down, each change counted once by direction', async (ctx) => {
  const before = await metricsOf(ctx.leader);
  const patchesBefore = scalePatches(ctx);
  for (let n = 0; n < 5; n++) {
    const res = await request(ctx.baseUrl, 'POST', '/api/v1/tasks', { type: 'echo', payload: { n } });
    assert.is(res.status, 201, res.text);
  }
  // Five queued tasks at two per replica: three replicas.
  await ctx.server.waitFor('deployments.apps', NAMESPACE, WORKERS, (d) => (d?.spec as { replicas?: number } | undefined)?.replicas === 3, 10_000);
  const up = await scrapeUntil(ctx.leader, (e) => e.single('conveyor_workerpool_current_replicas', { workerpool: POOL }) === 3, 'current replicas 3');
  assert.is(up.single('conveyor_workerpool_desired_replicas', { workerpool: POOL }), 3);
  assert.is(up.single('conveyor_backlog_tasks', { queue: ctx.world.env['TASKS_QUEUE'] as string }), 5);
  // The reconciler may have seen only some submits on one pass: every scale write is one event, all of them up.
  const upPatches = scalePatches(ctx) - patchesBefore;
  assert.ok(upPatches >= 1);
  assert.is(delta(before, up, 'conveyor_workerpool_scaling_events_total', { workerpool: POOL, direction: 'up' }), upPatches);
  assert.is(delta(before, up, 'conveyor_workerpool_scaling_events_total', { direction: 'down' }), 0);

  // A worker drains the queue (the autoscaler counts RabbitMQ's ready messages too, so deleting rows would not do).
  await ctx.world.startWorker();
  await ctx.server.waitFor('deployments.apps', NAMESPACE, WORKERS, (d) => (d?.spec as { replicas?: number } | undefined)?.replicas === 0, 10_000);
  const down = await scrapeUntil(ctx.leader, (e) => e.single('conveyor_workerpool_current_replicas', { workerpool: POOL }) === 0, 'current replicas 0');
  assert.is(down.single('conveyor_workerpool_desired_replicas', { workerpool: POOL }), 0);
  // scaleDownStabilizationSeconds 0: one step down, straight to zero.
  assert.is(delta(up, down, 'conveyor_workerpool_scaling_events_total', { workerpool: POOL, direction: 'down' }), 1);
  assert.is(delta(up, down, 'conveyor_workerpool_scaling_events_total', { direction: 'up' }), 0);
  assert.is(replicasOf(ctx), 0);
});

test('the controller reports conveyor_broker_connected 1 and conveyor_database_up 1 while both answer', async (ctx) => {
  assert.is((await request(probes(ctx.leader), 'GET', '/readyz')).status, 200, 'PostgreSQL and RabbitMQ answer the controller');
  const metrics = await metricsOf(ctx.leader);
  assert.is(metrics.single('conveyor_broker_connected'), 1);
  assert.is(metrics.single('conveyor_database_up'), 1);
});

test('a standby reports conveyor_controller_leader 0 while the leader holds the Lease, then 1 and the pool once it leaves', async (ctx) => {
  const standby = await startController(ctx, 'controller-b');
  ctx.standby = standby;
  assert.ok(ctx.leader.leader.leading, 'the first controller still leads');
  assert.is((await metricsOf(standby)).single('conveyor_controller_leader'), 0);
  // A standby keeps its caches warm but must not act: no pool gauges until it leads.
  assert.is((await metricsOf(standby)).samples('conveyor_workerpool_desired_replicas').length, 0);
  await ctx.leader.lifecycle.stop();
  await scrapeUntil(standby, (e) => e.single('conveyor_controller_leader') === 1, 'the standby to take over', 10_000);
  assert.ok(standby.leader.leading);
  await scrapeUntil(standby, (e) => e.samples('conveyor_workerpool_desired_replicas', { workerpool: POOL }).length === 1, 'the new leader to reconcile the pool');
});

test.run();
