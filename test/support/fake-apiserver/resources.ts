// What the fake knows about each resource it serves: URL coordinates, which subresources exist, and the few
// per-type strategy switches of kube-apiserver's registry that change observable behaviour.
import type { StatusCause } from './errors.ts';
import type { KubeObject } from './objects.ts';

export type Operation = 'create' | 'update' | 'status';

/** What admission found: field errors (→ 422) and warnings (→ `Warning` headers). */
export interface Admission {
  causes: StatusCause[];
  warnings: string[];
}

export interface AdmitOptions {
  /** `fieldValidation=Strict`: unknown fields are a 400 instead of being dropped with a warning. */
  strict: boolean;
}

export interface ResourceType {
  /** '' for the core group. */
  group: string;
  version: string;
  plural: string;
  kind: string;
  listKind: string;
  /** Defined by a CRD: list items keep kind/apiVersion, bodies must carry them, strategic merge patch is refused. */
  custom: boolean;
  subresources: { status: boolean; scale: boolean };
  /** metadata.generation is kept and bumped on spec changes. */
  hasGeneration: boolean;
  /** PUT without metadata.resourceVersion is allowed (built-ins) or a 422 (custom resources). */
  allowUnconditionalUpdate: boolean;
  /** PUT of a missing object creates it (core Events only). */
  allowCreateOnUpdate: boolean;
  /** DELETE answers with the object instead of a Status. */
  returnDeletedObject: boolean;
  /** Field selector labels beyond metadata.name and metadata.namespace. */
  fieldLabels: string[];
  /**
   * Mutates `object` as the server's decoding, defaulting and PrepareFor* steps do, then validates it against `old`
   * (undefined on create). Throws a StatusError for a request the server could not even decode.
   */
  admit(object: KubeObject, old: KubeObject | undefined, operation: Operation, options: AdmitOptions): Admission;
}

export function apiVersionOf(type: ResourceType): string {
  return type.group ? `${type.group}/${type.version}` : type.version;
}

/** `pods`, `deployments.apps`, `workerpools.conveyor.dev`: the key hooks and request counts use. */
export function resourceKey(type: ResourceType): string {
  return type.group ? `${type.plural}.${type.group}` : type.plural;
}

/** Looks resources up by URL coordinates or by the key hooks use (`deployments.apps`, or a bare plural if unique). */
export class ResourceRegistry {
  readonly #types: ResourceType[] = [];

  add(type: ResourceType): void {
    this.#types.push(type);
  }

  all(): readonly ResourceType[] {
    return this.#types;
  }

  byPath(group: string, version: string, plural: string): ResourceType | undefined {
    return this.#types.find((type) => type.group === group && type.version === version && type.plural === plural);
  }

  /** @throws Error when the key names no resource or, as a bare plural, more than one. */
  byKey(key: string): ResourceType {
    const exact = this.#types.find((type) => resourceKey(type) === key);
    if (exact) return exact;
    const plural = this.#types.filter((type) => type.plural === key);
    if (plural.length === 1 && plural[0]) return plural[0];
    const known = this.#types.map(resourceKey).join(', ');
    throw new Error(plural.length > 1 ? `"${key}" is ambiguous; use one of ${known}` : `unknown resource "${key}"; known: ${known}`);
  }
}
