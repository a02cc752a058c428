// labelSelector and fieldSelector query parameters, parsed with apimachinery's grammar and errors, so a controller
// whose selector would be rejected (or match nothing) in a cluster finds out here.
import { badRequest } from './errors.ts';
import { valueAt, type KubeObject } from './objects.ts';
import type { ResourceType } from './resources.ts';

export type ObjectFilter = (object: KubeObject) => boolean;

/** Splits on commas that are not inside `in (...)` value lists. */
function splitRequirements(selector: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const char of selector) {
    if (char === '(') depth += 1;
    if (char === ')') depth -= 1;
    if (char === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else current += char;
  }
  parts.push(current);
  return parts.map((part) => part.trim()).filter((part) => part !== '');
}

type LabelTest = (labels: Record<string, string>) => boolean;

const LABEL_KEY = '[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?';
const SET_REQUIREMENT = new RegExp(`^(${LABEL_KEY})\\s+(in|notin)\\s*\\(([^)]*)\\)$`);
const EQUALITY_REQUIREMENT = new RegExp(`^(${LABEL_KEY})\\s*(==|!=|=)\\s*([-A-Za-z0-9_.]*)$`);
const EXISTS_REQUIREMENT = new RegExp(`^(!?)\\s*(${LABEL_KEY})$`);

function labelRequirement(text: string): LabelTest {
  const set = SET_REQUIREMENT.exec(text);
  if (set) {
    const [, key = '', , operator, list = ''] = set;
    const values = list.split(',').map((value) => value.trim());
    return operator === 'in' ? (labels) => key in labels && values.includes(labels[key] ?? '') : (labels) => !(key in labels) || !values.includes(labels[key] ?? '');
  }
  const equality = EQUALITY_REQUIREMENT.exec(text);
  if (equality) {
    const [, key = '', , operator, value = ''] = equality;
    return operator === '!=' ? (labels) => labels[key] !== value : (labels) => labels[key] === value;
  }
  const exists = EXISTS_REQUIREMENT.exec(text);
  if (exists) {
    const [, negate, key = ''] = exists;
    return negate ? (labels) => !(key in labels) : (labels) => key in labels;
  }
  throw badRequest(`unable to parse requirement: found '${text}', expected: valid label selector requirement`);
}

/** @throws StatusError 400 for a selector the server would not parse. */
export function labelFilter(selector: string | null): ObjectFilter {
  if (!selector) return () => true;
  const tests = splitRequirements(selector).map(labelRequirement);
  return (object) => tests.every((test) => test(object.metadata.labels ?? {}));
}

/** @throws StatusError 400 for a malformed selector or a field label the resource does not support. */
export function fieldFilter(selector: string | null, type: ResourceType): ObjectFilter {
  if (!selector) return () => true;
  const supported = ['metadata.name', 'metadata.namespace', ...type.fieldLabels];
  const tests = splitRequirements(selector).map((text) => {
    const match = /^([^!=]+?)\s*(==|!=|=)\s*(.*)$/.exec(text);
    if (!match) throw badRequest(`invalid selector: '${selector}'; can't understand '${text}'`);
    const [, field = '', operator, value = ''] = match;
    if (!supported.includes(field)) throw badRequest(`field label not supported: ${field}`);
    return (object: KubeObject) => {
      const actual = valueAt(object, field);
      const text = actual === undefined || actual === null ? '' : String(actual);
      return operator === '!=' ? text !== value : text === value;
    };
  });
  return (object) => tests.every((test) => test(object));
}
