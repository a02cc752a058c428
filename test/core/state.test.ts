import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  canTransition,
  FINISHED_STATUSES,
  sourcesOf,
  TASK_STATUSES,
  TaskStatus,
  Transition,
  TRANSITIONS,
} from '../../services/core/src/tasks/state.ts';

const test = suite('core: task state machine');

const { pending, queued, in_progress, completed, failed, cancelled } = TaskStatus;
const sorted = (list: readonly string[]) => [...list].sort();

// The lifecycle written out by hand, independently of TRANSITIONS, so that a change to the table is a
// deliberate change to this test too (the database enum, the worker and the API all depend on it).
const EXPECTED: Record<TaskStatus, TaskStatus[]> = {
  pending: [queued, in_progress, cancelled],
  queued: [in_progress, cancelled, pending],
  in_progress: [completed, failed, cancelled, pending],
  completed: [],
  failed: [pending],
  cancelled: [pending],
};

test('TaskStatus lists the six statuses, each named by its own value', () => {
  assert.equal(sorted(TASK_STATUSES), sorted(['pending', 'queued', 'in_progress', 'completed', 'failed', 'cancelled']));
  for (const [key, value] of Object.entries(TaskStatus)) assert.is(key, value);
  assert.ok(Object.isFrozen(TaskStatus));
  assert.ok(Object.isFrozen(TASK_STATUSES));
});

test('TRANSITIONS has a row for every TaskStatus and only TaskStatus targets', () => {
  assert.equal(sorted(Object.keys(TRANSITIONS)), sorted(TASK_STATUSES));
  for (const from of TASK_STATUSES) {
    const targets = TRANSITIONS[from];
    assert.ok(Array.isArray(targets), `${from} has a list of targets`);
    for (const to of targets) assert.ok(TASK_STATUSES.includes(to), `${from} → ${to} targets a known status`);
    assert.is(new Set(targets).size, targets.length, `${from} lists no target twice`);
    assert.not.ok(targets.includes(from), `${from} does not transition to itself`);
  }
  assert.ok(Object.isFrozen(TRANSITIONS));
});

test('TRANSITIONS is the documented lifecycle', () => {
  for (const from of TASK_STATUSES) assert.equal(sorted(TRANSITIONS[from]), sorted(EXPECTED[from]), `edges from ${from}`);
});

test('finished statuses are exactly completed, failed and cancelled; only completed has no way out', () => {
  assert.equal(sorted(FINISHED_STATUSES), sorted([completed, failed, cancelled]));
  assert.equal(TASK_STATUSES.filter((s) => TRANSITIONS[s].length === 0), [completed]);
  // A finished task may only start over (a client's retry), never jump back into a worker's hands.
  for (const status of FINISHED_STATUSES) {
    for (const to of TRANSITIONS[status]) assert.is(to, pending, `${status} → ${to}`);
  }
});

test('every status can reach a finished one', () => {
  for (const start of TASK_STATUSES) {
    const seen = new Set<TaskStatus>([start]);
    const frontier = [start];
    while (frontier.length > 0) {
      for (const next of TRANSITIONS[frontier.pop() as TaskStatus]) {
        if (!seen.has(next)) {
          seen.add(next);
          frontier.push(next);
        }
      }
    }
    assert.ok([...seen].some((s) => FINISHED_STATUSES.includes(s)), `${start} can finish`);
  }
});

test('every named Transition is an edge of TRANSITIONS', () => {
  const names = Object.keys(Transition);
  assert.equal(sorted(names), sorted(['publish', 'claim', 'complete', 'fail', 'retry', 'cancel', 'cancelRunning', 'republish', 'rerun']));
  for (const [name, edge] of Object.entries(Transition)) {
    assert.ok(edge.from.length > 0, `${name} starts somewhere`);
    for (const from of edge.from) assert.ok(TRANSITIONS[from].includes(edge.to), `${name}: ${from} → ${edge.to}`);
    assert.ok(Object.isFrozen(edge) && Object.isFrozen(edge.from), `${name} cannot be changed at run time`);
  }
  assert.equal(Transition.publish, { from: [pending], to: queued });
  assert.equal(Transition.claim, { from: [pending, queued], to: in_progress });
  assert.equal(Transition.complete, { from: [in_progress], to: completed });
  assert.equal(Transition.fail, { from: [in_progress], to: failed });
  assert.equal(Transition.retry, { from: [in_progress], to: pending });
  assert.equal(Transition.cancel, { from: [pending, queued], to: cancelled });
  assert.equal(Transition.cancelRunning, { from: [in_progress], to: cancelled });
  assert.equal(Transition.republish, { from: [queued], to: pending });
  assert.equal(Transition.rerun, { from: [failed, cancelled], to: pending });
});

// An edge no named Transition performs is either dead weight in the table or a status change made
// somewhere with a literal, which the repository's design rules out.
test('every edge of TRANSITIONS is performed by some named Transition', () => {
  const performed = new Set(Object.values(Transition).flatMap((edge) => edge.from.map((from) => `${from} → ${edge.to}`)));
  for (const from of TASK_STATUSES) {
    for (const to of TRANSITIONS[from]) assert.ok(performed.has(`${from} → ${to}`), `${from} → ${to} has a Transition`);
  }
});

test('no cancel path starts from a running task: a worker must stop it first (cancelRunning)', () => {
  assert.not.ok(Transition.cancel.from.includes(in_progress));
  assert.equal(sorted(sourcesOf(cancelled)), sorted([...Transition.cancel.from, ...Transition.cancelRunning.from]));
});

test('canTransition agrees with TRANSITIONS for every pair of statuses', () => {
  for (const from of TASK_STATUSES) {
    for (const to of TASK_STATUSES) {
      assert.is(canTransition(from, to), EXPECTED[from].includes(to), `${from} → ${to}`);
    }
  }
});

test('sourcesOf is TRANSITIONS read backwards', () => {
  const expectedSources: Record<TaskStatus, TaskStatus[]> = {
    pending: [queued, in_progress, failed, cancelled],
    queued: [pending],
    in_progress: [pending, queued],
    completed: [in_progress],
    failed: [in_progress],
    cancelled: [pending, queued, in_progress],
  };
  for (const to of TASK_STATUSES) {
    assert.equal(sorted(sourcesOf(to)), sorted(expectedSources[to]), `sources of ${to}`);
    for (const from of sourcesOf(to)) assert.ok(canTransition(from, to));
  }
});

// The repository builds its SQL from these lists; a stray push (TypeScript's readonly is gone at run time, in a
// cast or in JavaScript) would silently change which rows a status change or the retention sweep may touch.
test('TRANSITIONS and the lists derived from it cannot be changed at run time', () => {
  for (const status of TASK_STATUSES) assert.ok(Object.isFrozen(TRANSITIONS[status]), `TRANSITIONS.${status} is frozen`);
  assert.ok(Object.isFrozen(FINISHED_STATUSES), 'FINISHED_STATUSES is frozen');
  assert.throws(() => (FINISHED_STATUSES as TaskStatus[]).push(pending), TypeError);
  assert.is(FINISHED_STATUSES.length, 3);
});

test.run();
