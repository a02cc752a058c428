// Hand-written equivalents of the CEL rules (x-kubernetes-validations) in charts/conveyor/crds. There is no CEL
// interpreter for Node worth depending on, so each rule the CRDs use is spelled out here; loading a CRD with a rule
// not in this table fails, so a new rule cannot silently go unchecked.
import { deepEqual, isObject } from './objects.ts';
import type { ValidationRule } from './schema.ts';

interface RuleEquivalent {
  /** A transition rule (uses oldSelf): evaluated only on update, when there is an old value. */
  transition: boolean;
  /** Returns an error text like CEL's evaluation error, or true/false for the rule's result. */
  holds(self: unknown, oldSelf: unknown): boolean | string;
}

function field(self: unknown, name: string): unknown {
  return isObject(self) ? self[name] : undefined;
}

const RULES: Record<string, RuleEquivalent> = {
  'self.minReplicas <= self.maxReplicas': {
    transition: false,
    holds(self) {
      const min = field(self, 'minReplicas');
      const max = field(self, 'maxReplicas');
      // CEL fails with "no such key" on an absent field; the schema defaults both, so this only shows a CRD bug.
      if (typeof min !== 'number') return 'no such key: minReplicas';
      if (typeof max !== 'number') return 'no such key: maxReplicas';
      return min <= max;
    },
  },
  'self == oldSelf': {
    transition: true,
    holds: (self, oldSelf) => deepEqual(self, oldSelf),
  },
};

/** @throws Error when the rule has no equivalent here. */
export function assertKnownRule(rule: ValidationRule): void {
  if (!RULES[rule.rule]) throw new Error(`fake-apiserver: no hand-written equivalent of CEL rule ${JSON.stringify(rule.rule)}; add one to cel-rules.ts`);
}

/** The failure message for `rule` on `self`, or undefined when it holds (or, for a transition rule, on create). */
export function evaluateRule(rule: ValidationRule, self: unknown, oldSelf: unknown): string | undefined {
  const equivalent = RULES[rule.rule];
  if (!equivalent) throw new Error(`unknown CEL rule ${rule.rule}`);
  if (equivalent.transition && oldSelf === undefined) return undefined;
  const result = equivalent.holds(self, oldSelf);
  if (result === true) return undefined;
  if (typeof result === 'string') return `${result} evaluating rule: ${rule.rule}`;
  return rule.message ?? `failed rule: ${rule.rule}`;
}
