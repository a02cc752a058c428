// The structural OpenAPI v3 schema of a CRD version, and the two steps the server runs on a decoded custom
// resource before validating it: pruning unknown fields and defaulting (apiextensions-apiserver `pruning` and
// `defaulting` packages). Both mutate in place, top-down, as the real server does.
import { clone, isObject, type Json } from './objects.ts';

export interface ValidationRule {
  rule: string;
  message?: string;
  fieldPath?: string;
  reason?: string;
}

export interface Schema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  required?: string[];
  enum?: Json[];
  default?: Json;
  nullable?: boolean;
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-embedded-resource'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-validations'?: ValidationRule[];
}

/** `spec.backoff`, `status.conditions[0]`: the field path style of apimachinery's field errors. */
export function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

const ROOT_FIELDS = new Set(['apiVersion', 'kind', 'metadata']);

/**
 * Drops fields the schema does not know (unless x-kubernetes-preserve-unknown-fields) and returns their paths,
 * which the server reports as warnings or, with fieldValidation=Strict, as an error.
 */
export function prune(value: unknown, schema: Schema, path = '', unknown: string[] = []): string[] {
  if (Array.isArray(value)) {
    if (schema.items) value.forEach((item, i) => prune(item, schema.items as Schema, childPath(path, i), unknown));
    return unknown;
  }
  if (!isObject(value)) return unknown;
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true;
  for (const key of Object.keys(value)) {
    // ObjectMeta is handled by the server itself, not by the CRD schema.
    if (path === '' && ROOT_FIELDS.has(key)) continue;
    const property = schema.properties?.[key];
    const additional = schema.additionalProperties;
    if (property) prune(value[key], property, childPath(path, key), unknown);
    else if (isObject(additional)) prune(value[key], additional, childPath(path, key), unknown);
    else if (!preserve && additional !== true) {
      unknown.push(childPath(path, key));
      delete value[key];
    }
  }
  return unknown;
}

/** Removes `null` from fields that are not nullable, which the server does before defaulting. */
export function dropNulls(value: unknown, schema: Schema): void {
  if (Array.isArray(value)) {
    if (schema.items) for (const item of value) dropNulls(item, schema.items);
    return;
  }
  if (!isObject(value)) return;
  for (const [key, child] of Object.entries(value)) {
    const property = schema.properties?.[key] ?? (isObject(schema.additionalProperties) ? schema.additionalProperties : undefined);
    if (!property) continue;
    if (child === null && property.nullable !== true) delete value[key];
    else dropNulls(child, property);
  }
}

/** Fills absent properties that declare a `default`, then descends into them. */
export function applyDefaults(value: unknown, schema: Schema): void {
  if (Array.isArray(value)) {
    if (schema.items) for (const item of value) applyDefaults(item, schema.items);
    return;
  }
  if (!isObject(value)) return;
  for (const [key, property] of Object.entries(schema.properties ?? {})) {
    if (value[key] === undefined && property.default !== undefined) value[key] = clone(property.default);
    if (value[key] !== undefined) applyDefaults(value[key], property);
  }
  const additional = schema.additionalProperties;
  if (isObject(additional)) {
    for (const key of Object.keys(value)) if (!schema.properties?.[key]) applyDefaults(value[key], additional);
  }
}
