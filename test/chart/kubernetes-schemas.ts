// Validation of rendered manifests against Kubernetes 1.33, without a cluster:
// - built-in kinds: the OpenAPI schemas of Kubernetes 1.33 shipped (compiled) in kubernetes-models 4.5
//   (types, required fields, enums), plus an unknown-field check, since those schemas allow any extra field
//   while the API server (strict field validation) refuses them. Field names come from the models of
//   @kubernetes/client-node.
// - custom resources: the openAPIV3Schema of their CRD from charts/conveyor/crds/, unknown fields refused.
import * as k8s from '@kubernetes/client-node';
import { Ajv } from 'ajv';
import type { Manifest } from './helm.ts';

type Attribute = { name: string; baseName: string; type: string };
type ModelClass = { getAttributeTypeMap(): Attribute[] };
type Crd = Manifest & { spec: { group: string; names: { kind: string }; versions: { name: string; schema: { openAPIV3Schema: Schema } }[] } };
type Schema = Record<string, any>;

const models = k8s as unknown as Record<string, ModelClass | undefined>;

function modelOf(typeName: string): ModelClass | undefined {
  const model = models[typeName];
  return typeof model?.getAttributeTypeMap === 'function' ? model : undefined;
}

/** The client-node model name of a built-in kind: `apps/v1` Deployment → V1Deployment. */
function modelNameOf(manifest: Manifest): string {
  const version = manifest.apiVersion.split('/').pop() as string;
  return `${version[0]?.toUpperCase()}${version.slice(1)}${manifest.kind}`;
}

/** Paths of fields that the model of `typeName` (recursively) does not have. */
export function unknownFields(value: unknown, typeName: string, path: string): string[] {
  if (value === null || value === undefined) return [];
  const array = /^Array<(.+)>$/.exec(typeName);
  if (array) return Array.isArray(value) ? value.flatMap((item, index) => unknownFields(item, array[1] as string, `${path}[${index}]`)) : [];
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(typeName);
  if (map) {
    return typeof value === 'object' ? Object.entries(value).flatMap(([key, item]) => unknownFields(item, map[1] as string, `${path}.${key}`)) : [];
  }
  const model = modelOf(typeName);
  if (!model || typeof value !== 'object') return [];
  const attributes = new Map(model.getAttributeTypeMap().map((attribute) => [attribute.baseName, attribute.type]));
  return Object.entries(value).flatMap(([key, item]) => {
    const type = attributes.get(key);
    return type === undefined ? [`${path}.${key}`] : unknownFields(item, type, `${path}.${key}`);
  });
}

/**
 * Problems of one built-in manifest against the Kubernetes 1.33 schema, as readable strings; empty when valid.
 * @throws when kubernetes-models has no such kind in 1.33.
 */
export async function builtInProblems(manifest: Manifest): Promise<string[]> {
  const module = (await import(`kubernetes-models/${manifest.apiVersion}/${manifest.kind}`)) as Record<string, any>;
  const Model = module[manifest.kind] as new (data: unknown) => { validate(): void };
  const problems: string[] = [];
  try {
    new Model(manifest).validate();
  } catch (error) {
    problems.push((error as Error).message);
  }
  const modelName = modelNameOf(manifest);
  if (!modelOf(modelName)) throw new Error(`@kubernetes/client-node has no model ${modelName} for the unknown-field check`);
  problems.push(...unknownFields(manifest, modelName, manifest.kind).map((path) => `unknown field ${path}`));
  return problems;
}

/** Kubernetes' prune-or-refuse semantics as JSON Schema: objects refuse fields they do not declare. */
function strict(schema: Schema): Schema {
  if (typeof schema !== 'object' || schema === null) return schema;
  const copy: Schema = Array.isArray(schema) ? schema.map(strict) : Object.fromEntries(Object.entries(schema).map(([key, value]) => [key, strict(value)]));
  if (!Array.isArray(schema) && schema['properties'] && !schema['x-kubernetes-preserve-unknown-fields'] && schema['additionalProperties'] === undefined) {
    copy['additionalProperties'] = false;
  }
  return copy;
}

function crdAjv(): Ajv {
  const ajv = new Ajv({ strict: false, allErrors: true });
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isSafeInteger(n) });
  ajv.addFormat('date-time', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i);
  return ajv;
}

/** Validates custom resources against the CRDs they belong to. */
export class CustomResourceValidator {
  readonly #validators = new Map<string, ReturnType<Ajv['compile']>>();

  constructor(crds: readonly Crd[]) {
    const ajv = crdAjv();
    for (const crd of crds) {
      for (const version of crd.spec.versions) {
        const key = `${crd.spec.group}/${version.name}/${crd.spec.names.kind}`;
        this.#validators.set(key, ajv.compile(strict(version.schema.openAPIV3Schema)));
      }
    }
  }

  /** True when a CRD declares this manifest's group, version and kind. */
  declares(manifest: Manifest): boolean {
    return this.#validators.has(`${manifest.apiVersion}/${manifest.kind}`);
  }

  problems(manifest: Manifest): string[] {
    const validate = this.#validators.get(`${manifest.apiVersion}/${manifest.kind}`);
    if (!validate) return [`no CRD declares ${manifest.apiVersion} ${manifest.kind}`];
    if (validate(manifest)) return [];
    return (validate.errors ?? []).map((error) => `${error.instancePath || '/'} ${error.message} ${JSON.stringify(error.params)}`);
  }
}

/** Problems of one manifest: against its CRD when it is a custom resource, else against Kubernetes 1.33. */
export async function manifestProblems(manifest: Manifest, customResources: CustomResourceValidator): Promise<string[]> {
  return customResources.declares(manifest) ? customResources.problems(manifest) : builtInProblems(manifest);
}

const FORBIDDEN_KEYWORDS = ['$ref', '$schema', 'definitions', 'dependencies', 'additionalItems', 'patternProperties', 'id'];

/**
 * Why a CRD schema is not structural (the API server's rules, abridged): every node has a type unless it
 * preserves unknown fields or is int-or-string; no `properties` beside `additionalProperties`; arrays have
 * items; map-type lists name keys that their items require; no keywords CRDs forbid; logic combinators
 * carry no types; defaults fit their own node.
 */
export function structuralProblems(schema: Schema, path = 'openAPIV3Schema'): string[] {
  const problems: string[] = [];
  const untyped = schema['x-kubernetes-preserve-unknown-fields'] === true || schema['x-kubernetes-int-or-string'] === true;
  if (!schema['type'] && !untyped) problems.push(`${path}: no type`);
  for (const keyword of FORBIDDEN_KEYWORDS) if (keyword in schema) problems.push(`${path}: ${keyword} is not allowed`);
  if (schema['properties'] && schema['additionalProperties'] !== undefined) problems.push(`${path}: properties and additionalProperties together`);
  if (schema['type'] === 'array' && !schema['items']) problems.push(`${path}: array without items`);
  if (schema['x-kubernetes-list-type'] === 'map') {
    const keys: string[] = schema['x-kubernetes-list-map-keys'] ?? [];
    const required: string[] = schema['items']?.['required'] ?? [];
    if (keys.length === 0) problems.push(`${path}: list-type map without list-map-keys`);
    for (const key of keys) {
      if (!required.includes(key) && schema['items']?.['properties']?.[key]?.['default'] === undefined) problems.push(`${path}: map key ${key} is neither required nor defaulted`);
    }
  }
  for (const combinator of ['allOf', 'anyOf', 'oneOf', 'not']) {
    const branches = [schema[combinator] ?? []].flat() as Schema[];
    for (const branch of branches) if ('type' in branch || 'default' in branch) problems.push(`${path}.${combinator}: type or default inside a combinator`);
  }
  if (path === 'openAPIV3Schema') {
    const metadata = (schema['properties']?.['metadata'] ?? {}) as Schema;
    const restricted = Object.keys(metadata['properties'] ?? {}).filter((name) => name !== 'name' && name !== 'generateName');
    if (restricted.length > 0 || Object.keys(metadata).some((key) => key !== 'type' && key !== 'properties')) {
      problems.push(`${path}.metadata: only its type, name and generateName may be specified`);
    }
  }
  if (schema['default'] !== undefined) {
    const { default: value, ...rest } = schema;
    if (!crdAjv().validate(rest, value)) problems.push(`${path}: default ${JSON.stringify(value)} does not fit its schema`);
  }
  for (const [name, child] of Object.entries((schema['properties'] ?? {}) as Record<string, Schema>)) problems.push(...structuralProblems(child, `${path}.${name}`));
  if (schema['items']) problems.push(...structuralProblems(schema['items'], `${path}[]`));
  if (typeof schema['additionalProperties'] === 'object') problems.push(...structuralProblems(schema['additionalProperties'], `${path}{}`));
  return problems;
}

export type { Crd };
