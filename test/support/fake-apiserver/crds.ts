// Serves custom resources from the chart's own CustomResourceDefinitions, so the controller's tests exercise the
// CRDs that ship: pruning, defaults, OpenAPI validation and the CEL rules, as apiextensions-apiserver applies them.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { assertKnownRule } from './cel-rules.ts';
import { badRequest, type StatusCause } from './errors.ts';
import { isObject, type KubeObject } from './objects.ts';
import type { ResourceType } from './resources.ts';
import { applyDefaults, dropNulls, prune, type Schema } from './schema.ts';
import { validateRules, validateValue } from './validation.ts';

/** The chart's CRD folder, found from this file so tests work from any working directory. */
export const CHART_CRDS_DIR = join(import.meta.dirname, '../../../charts/conveyor/crds');

interface CrdVersion {
  name: string;
  served: boolean;
  subresources?: { status?: unknown; scale?: unknown };
  schema?: { openAPIV3Schema?: Schema };
}

interface Crd {
  kind: string;
  spec: { group: string; scope: string; names: { kind: string; plural: string; listKind?: string }; versions: CrdVersion[] };
}

function assertRulesKnown(schema: Schema): void {
  for (const rule of schema['x-kubernetes-validations'] ?? []) assertKnownRule(rule);
  for (const child of Object.values(schema.properties ?? {})) assertRulesKnown(child);
  if (schema.items) assertRulesKnown(schema.items);
  if (isObject(schema.additionalProperties)) assertRulesKnown(schema.additionalProperties as Schema);
}

function admitCustom(schema: Schema) {
  return (object: KubeObject, old: KubeObject | undefined, _operation: unknown, options: { strict: boolean }) => {
    const unknown = prune(object, schema);
    if (options.strict && unknown.length > 0) {
      throw badRequest(`strict decoding error: ${unknown.map((path) => `unknown field "${path}"`).join(', ')}`);
    }
    dropNulls(object, schema);
    applyDefaults(object, schema);
    const causes: StatusCause[] = [];
    validateValue(object, schema, '', causes);
    validateRules(object, schema, '', old, causes);
    return { causes, warnings: unknown.map((path) => `unknown field "${path}"`) };
  };
}

/** One ResourceType per served version of a namespaced CRD. @throws Error for a CRD this fake cannot serve. */
export function typesFromCrd(crd: Crd): ResourceType[] {
  const { group, names, scope, versions } = crd.spec;
  if (scope !== 'Namespaced') throw new Error(`fake-apiserver serves namespaced CRDs only; ${names.plural}.${group} is ${scope}`);
  return versions
    .filter((version) => version.served)
    .map((version) => {
      const schema = version.schema?.openAPIV3Schema;
      if (!schema) throw new Error(`${names.plural}.${group}/${version.name} has no openAPIV3Schema`);
      assertRulesKnown(schema);
      return {
        group,
        version: version.name,
        plural: names.plural,
        kind: names.kind,
        listKind: names.listKind ?? `${names.kind}List`,
        custom: true,
        subresources: { status: version.subresources?.status !== undefined, scale: false },
        hasGeneration: true,
        allowUnconditionalUpdate: false,
        allowCreateOnUpdate: false,
        returnDeletedObject: true,
        fieldLabels: [],
        admit: admitCustom(schema),
      };
    });
}

/** Reads every CustomResourceDefinition in `dir` (default: the chart's crds/). */
export async function loadCrdTypes(dir = CHART_CRDS_DIR): Promise<ResourceType[]> {
  const files = (await readdir(dir)).filter((file) => /\.ya?ml$/.test(file)).sort();
  const types: ResourceType[] = [];
  for (const file of files) {
    for (const document of parseAllDocuments(await readFile(join(dir, file), 'utf8'))) {
      const crd = document.toJS() as Crd | null;
      if (crd?.kind === 'CustomResourceDefinition') types.push(...typesFromCrd(crd));
    }
  }
  return types;
}
