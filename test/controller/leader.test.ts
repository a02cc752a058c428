// Leader election between two real controllers on one fake API server: one Lease, one replica acting, and a
// takeover when the leader stops, dies without releasing, or loses the API server.
import type { KubeConfig } from '@kubernetes/client-node';
import * as assert from 'uvu/assert';
import { within } from '../support/fake-apiserver/client-helpers.ts';
import { eventually } from '../support/system.ts';
import type { TcpProxy } from '../support/tcp-proxy.ts';
import { type Controller, type ControllerRig, LEASES, NS, POOLS, readMetric, RENEW_INTERVAL_MS, rigSuite, waitLeading } from './helpers.ts';

const LEASE_SECONDS = 3;
type Ctx = { rig: ControllerRig; started: Controller[]; lease: string };
const test = rigSuite<Ctx>('controller: leader election');

let leases = 0;
test.before.each((ctx) => {
  // A Lease per test, so that one test's dead leader does not hold up the next.
  ctx.lease = `lease-${++leases}`;
  ctx.started = [];
});

test.after.each(async ({ rig, started }) => {
  // Bounded: a stop that hangs must fail this suite, not the whole run.
  await Promise.all(started.map((controller) => within(controller.stop(), 20_000, `${controller.podName} to stop`).catch(() => undefined)));
  for (const pool of rig.server.list(POOLS, NS)) rig.server.delete(POOLS, NS, pool.metadata.name as string);
  await rig.db.query('DELETE FROM tasks');
});

async function start(ctx: Ctx, name: string, kubeConfig?: KubeConfig): Promise<Controller> {
  const controller = await ctx.rig.startController(name, { CONTROLLER_LEASE_NAME: ctx.lease }, kubeConfig);
  ctx.started.push(controller);
  return controller;
}

/** Resolves after the leader has renewed `times` more times: the standby has had as many rounds to try. */
async function renewals(ctx: Ctx, times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    const last = ctx.rig.lease(ctx.lease)?.renewTime;
    await ctx.rig.server.waitFor(LEASES, NS, ctx.lease, (l: any) => l?.spec.renewTime !== last, 3 * RENEW_INTERVAL_MS);
  }
}

/** Samples who leads every 10 ms; `max()` is the most replicas seen leading at once. */
function leaderWatch(controllers: Controller[]) {
  let max = 0;
  const sample = () => {
    max = Math.max(max, controllers.filter((c) => c.leader.leading).length);
  };
  const timer = setInterval(sample, 10);
  return {
    max: () => max,
    stop: () => {
      // One last look: the moment the standby was seen leading may fall between two ticks.
      sample();
      clearInterval(timer);
    },
  };
}

test('exactly one of two replicas holds the Lease, and only that one reconciles and scales', async (ctx) => {
  const { rig } = ctx;
  const a = await start(ctx, 'ctrl-a');
  await waitLeading(a);
  const b = await start(ctx, 'ctrl-b');
  await renewals(ctx, 3);
  assert.is(rig.lease(ctx.lease).holderIdentity, 'ctrl-a');
  assert.equal([a.leader.leading, b.leader.leading], [true, false]);
  assert.equal([await readMetric(a, 'conveyor_controller_leader'), await readMetric(b, 'conveyor_controller_leader')], [1, 0]);

  rig.createDeployment('worker-l1');
  rig.createPool('pool-l1', { workerDeployment: 'worker-l1', tasksPerReplica: 1, pollIntervalSeconds: 1 });
  await rig.insertPending(2);
  await rig.waitForReplicas('worker-l1', 2);
  await rig.waitForStatus(POOLS, 'pool-l1', (s) => s.currentReplicas === 2);
  const reconciles = async (c: Controller) => readMetric(c, 'conveyor_reconcile_duration_seconds_count');
  assert.ok((await reconciles(a)) > 0);
  // The standby's caches are warm (its informers run) but its queues never start a reconcile.
  assert.is(await reconciles(b), 0);
  assert.is(await readMetric(a, 'conveyor_backlog_tasks'), 2);
  assert.is(await readMetric(b, 'conveyor_backlog_tasks'), 0, 'the standby did not even read the backlog');
  assert.is(await readMetric(a, 'conveyor_workerpool_scaling_events_total', { direction: 'up' }), 1);
  assert.is(await readMetric(b, 'conveyor_workerpool_scaling_events_total'), 0);
});

test('a stopping leader releases the Lease; the standby takes over within a renew interval and goes on scaling', async (ctx) => {
  const { rig } = ctx;
  const a = await start(ctx, 'ctrl-a');
  await waitLeading(a);
  const b = await start(ctx, 'ctrl-b');
  rig.createDeployment('worker-l2');
  rig.createPool('pool-l2', { workerDeployment: 'worker-l2', tasksPerReplica: 1, pollIntervalSeconds: 1 });
  await rig.insertPending(1);
  await rig.waitForReplicas('worker-l2', 1);
  const transitions = rig.lease(ctx.lease).leaseTransitions;

  const released = rig.server.waitFor(LEASES, NS, ctx.lease, (l: any) => l?.spec.holderIdentity === '', 10_000).then(() => Date.now());
  await a.stop();
  const releasedAt = await released;
  await eventually(async () => b.leader.leading, 3000, 'the standby to lead');
  const takeoverMs = Date.now() - releasedAt;
  assert.ok(takeoverMs <= 2 * RENEW_INTERVAL_MS, `took over ${takeoverMs} ms after the release; the standby retries every ${RENEW_INTERVAL_MS} ms`);
  process.stdout.write(` [takeover after release ${takeoverMs} ms] `);
  const lease = rig.lease(ctx.lease);
  assert.equal([lease.holderIdentity, lease.leaseTransitions], ['ctrl-b', transitions + 1]);
  assert.is(await readMetric(b, 'conveyor_controller_leader'), 1);

  await rig.insertPending(2);
  await rig.waitForReplicas('worker-l2', 3);
  await rig.waitForStatus(POOLS, 'pool-l2', (s) => s.currentReplicas === 3);
  assert.is(await readMetric(b, 'conveyor_workerpool_scaling_events_total', { direction: 'up' }), 1, 'the new leader scaled');
});

test('a leader that stops without releasing the Lease is replaced once the lease expires, not before', async (ctx) => {
  const { rig } = ctx;
  const a = await start(ctx, 'ctrl-a');
  await waitLeading(a);
  const b = await start(ctx, 'ctrl-b');
  // Right after a renewal, the leader's next write is a renew interval away; stopping now makes the release its
  // next write, and that one fails: the Lease stays held, as when a process is killed.
  await renewals(ctx, 1);
  rig.server.failNext(LEASES, 1, { verb: 'update' });
  await a.leader.stop();
  assert.is(rig.server.pendingFaults(), 0, 'the release was attempted and failed');
  const held = rig.lease(ctx.lease);
  assert.is(held.holderIdentity, 'ctrl-a');
  assert.is(a.leader.leading, false);

  await eventually(async () => b.leader.leading, (LEASE_SECONDS + 3) * 1000, 'the standby to lead');
  const takeoverMs = Date.now() - Date.parse(held.renewTime);
  assert.ok(takeoverMs >= LEASE_SECONDS * 1000, `took over ${takeoverMs} ms after the last renewal, before the lease expired`);
  assert.ok(takeoverMs <= LEASE_SECONDS * 1000 + 2 * RENEW_INTERVAL_MS, `took over ${takeoverMs} ms after the last renewal`);
  process.stdout.write(` [takeover after last renewal ${takeoverMs} ms] `);
  assert.is(rig.lease(ctx.lease).holderIdentity, 'ctrl-b');
});

/** A leader whose API server link breaks (`cut`: refused; `blackhole`: requests hang) and a standby that can reach it. */
async function partitionedLeader(ctx: Ctx, breakLink: (proxy: TcpProxy) => void) {
  const { proxy, kubeConfig } = await ctx.rig.proxiedKubeConfig();
  const a = await start(ctx, 'ctrl-a', kubeConfig);
  await waitLeading(a);
  const b = await start(ctx, 'ctrl-b');
  await renewals(ctx, 1);
  const watch = leaderWatch([a, b]);
  try {
    const brokenAt = Date.now();
    breakLink(proxy);
    await eventually(async () => b.leader.leading, (LEASE_SECONDS + 3) * 1000, 'the standby to lead');
    const takeoverMs = Date.now() - brokenAt;
    watch.stop();
    return { a, takeoverMs, leadersAtOnce: watch.max(), oldLeaderStillLeading: a.leader.leading };
  } finally {
    watch.stop();
    // Refused connections let the old leader's hung requests fail, so that it can stop.
    proxy.cut();
  }
}

test('a leader cut off from the API server steps down before the standby takes over', async (ctx) => {
  const { a, takeoverMs, leadersAtOnce, oldLeaderStillLeading } = await partitionedLeader(ctx, (proxy) => proxy.cut());
  assert.is(oldLeaderStillLeading, false, 'the cut-off replica still leads');
  assert.is(leadersAtOnce, 1, 'never two leaders at once');
  assert.ok(takeoverMs >= LEASE_SECONDS * 1000 - RENEW_INTERVAL_MS, `took over ${takeoverMs} ms after the cut`);
  assert.is(await readMetric(a, 'conveyor_controller_leader'), 0);
});

test('a leader whose API server requests hang (network partition) steps down before the standby takes over', async (ctx) => {
  const { leadersAtOnce, oldLeaderStillLeading } = await partitionedLeader(ctx, (proxy) => proxy.blackhole());
  // A renewal that never answers must not keep a replica leading past its renew deadline (2/3 of the lease).
  assert.is(oldLeaderStillLeading, false, 'the partitioned replica still leads after the standby took over');
  assert.is(leadersAtOnce, 1, 'two replicas led at once');
});

test.run();
