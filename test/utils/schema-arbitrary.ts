/**
 * fast-check arbitraries drawn from the protocol's JSON Schemas (the draft-07 subset they use:
 * $ref, const, enum, type, string length and pattern, integer bounds, objects with required,
 * additionalProperties, propertyNames and maxProperties, allOf of if/then/else on consts, anyOf,
 * arrays with bounds and uniqueItems), so the fuzz follows the schemas rather than a copy of them.
 * `nearMisses` turns a valid value into one-mistake variants, each with the JSON Pointer the
 * validator must name.
 */
import fc from 'fast-check';
import type { AnySchemaObject } from 'ajv';
import { schemaRegistry } from '../../src/protocol/schemas.js';

type Schema = AnySchemaObject | boolean;
/** A schema and the document its local `#/...` refs resolve against. */
interface Located {
  schema: AnySchemaObject;
  file: string;
}

const registry = schemaRegistry();

/** Follows `$ref`s ("file.json", "file.json#/definitions/x", "#/definitions/x") to a schema. */
export function resolve(schema: AnySchemaObject, file: string): Located {
  let current: Located = { schema, file };
  while (typeof current.schema.$ref === 'string') {
    const [target, pointer = ''] = current.schema.$ref.split('#');
    const doc = target ? target : current.file;
    const root = registry.documents.get(doc);
    if (!root) throw new Error(`unknown schema ${doc}`);
    const found = pointer
      .split('/')
      .filter(Boolean)
      .reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], root);
    current = { schema: found as AnySchemaObject, file: doc };
  }
  return current;
}

export function schemaFile(file: string): Located {
  const schema = registry.documents.get(file);
  if (!schema) throw new Error(`unknown schema ${file}`);
  return { schema, file };
}

/** One character: mostly printable ASCII, sometimes JSON's and Unicode's awkward ones. */
const char = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.constantFrom('"', '\\', '\n', '\u0000', '\u2028', 'é', 'ß', '😀', '\ufeff') },
);

const MAX_32 = 2 ** 31 - 1;

function integerIn(min: number, max: number): fc.Arbitrary<number> {
  if (min >= -MAX_32 && max <= MAX_32) return fc.integer({ min, max });
  return fc.oneof(
    fc.integer({ min: Math.max(min, -MAX_32), max: Math.min(max, MAX_32) }),
    fc.maxSafeInteger().filter((n) => n >= min && n <= max),
    fc.constantFrom(min, max),
  );
}

/** Values valid against the schema. */
export function arbitraryOf(located: Located): fc.Arbitrary<unknown> {
  const { schema, file } = resolve(located.schema, located.file);
  if ('const' in schema) return fc.constant(schema.const);
  if (Array.isArray(schema.enum)) return fc.constantFrom(...(schema.enum as unknown[]));
  if (Array.isArray(schema.anyOf)) return fc.oneof(...(schema.anyOf as AnySchemaObject[]).map((s) => arbitraryOf({ schema: s, file })));
  if (Array.isArray(schema.oneOf)) return fc.oneof(...(schema.oneOf as AnySchemaObject[]).map((s) => arbitraryOf({ schema: s, file })));
  switch (schema.type) {
    case 'boolean':
      return fc.boolean();
    case 'integer':
      return integerIn(schema.minimum ?? -Number.MAX_SAFE_INTEGER, schema.maximum ?? Number.MAX_SAFE_INTEGER);
    case 'string': {
      const minLength: number = schema.minLength ?? 0;
      const maxLength: number = schema.maxLength ?? 40;
      const length = (s: string): boolean => [...s].length >= minLength && [...s].length <= maxLength;
      if (typeof schema.pattern === 'string') return fc.stringMatching(new RegExp(schema.pattern)).filter(length);
      return fc.string({ unit: char, minLength, maxLength: Math.min(maxLength, minLength + 24) });
    }
    case 'array': {
      const items = arbitraryOf({ schema: schema.items as AnySchemaObject, file });
      const constraints = { minLength: schema.minItems ?? 0, maxLength: Math.min(schema.maxItems ?? 4, (schema.minItems ?? 0) + 4) };
      return schema.uniqueItems ? fc.uniqueArray(items, { ...constraints, selector: (v) => JSON.stringify(v) }) : fc.array(items, constraints);
    }
    case 'object':
      return objectOf(schema, file);
  }
  throw new Error(`schema-arbitrary: unsupported schema in ${file}: ${JSON.stringify(schema).slice(0, 120)}`);
}

function objectOf(schema: AnySchemaObject, file: string): fc.Arbitrary<unknown> {
  const properties = (schema.properties ?? {}) as Record<string, Schema>;
  const required = new Set<string>(schema.required ?? []);
  const named = Object.fromEntries(
    Object.entries(properties)
      .filter(([, s]) => s !== false)
      .map(([key, s]) => [key, arbitraryOf({ schema: s as AnySchemaObject, file })]),
  );
  // Every property drawn (to fill in what a conditional requires), and which optional ones to keep.
  const all = fc.record(named);
  const keep = fc.subarray(Object.keys(named).filter((k) => !required.has(k)));
  const extra =
    schema.additionalProperties && typeof schema.additionalProperties === 'object'
      ? fc.dictionary(
          arbitraryOf({ schema: (schema.propertyNames ?? { type: 'string', maxLength: 16 }) as AnySchemaObject, file }) as fc.Arbitrary<string>,
          arbitraryOf({ schema: schema.additionalProperties as AnySchemaObject, file }),
          { maxKeys: Math.min(schema.maxProperties ?? 4, 4) },
        )
      : fc.constant({});
  return fc.tuple(all, keep, extra).map(([full, kept, more]) => {
    const value: Record<string, unknown> = { ...more };
    for (const key of Object.keys(full)) if (required.has(key) || kept.includes(key)) value[key] = full[key];
    for (const rule of (schema.allOf ?? []) as AnySchemaObject[]) applyConditional(rule, value, full);
    return value;
  });
}

/** allOf: { if: { properties: { k: { const } } }, then/else: { required } | { properties: { k: false } } }. */
function applyConditional(rule: AnySchemaObject, value: Record<string, unknown>, full: Record<string, unknown>): void {
  const conditions = Object.entries((rule.if?.properties ?? {}) as Record<string, AnySchemaObject>);
  const holds = conditions.every(([key, s]) => !(key in value) || value[key] === s.const);
  const branch = (holds ? rule.then : rule.else) as AnySchemaObject | undefined;
  if (!branch) return;
  for (const key of (branch.required ?? []) as string[]) value[key] = full[key];
  for (const [key, s] of Object.entries((branch.properties ?? {}) as Record<string, Schema>)) if (s === false) delete value[key];
}

/** A value with exactly one mistake, and the JSON Pointer of the field the validator must name. */
export interface NearMiss {
  value: unknown;
  path: string;
  mistake: string;
}

const escape = (key: string): string => key.replace(/~/g, '~0').replace(/\//g, '~1');

/** A value that no schema of this kind accepts. */
function wrongTypeFor(schema: AnySchemaObject): unknown {
  if ('const' in schema || Array.isArray(schema.enum)) return { not: 'this' };
  switch (schema.type) {
    case 'string':
      return 7;
    case 'integer':
      return 1.5;
    case 'boolean':
      return 'yes';
    case 'array':
      return {};
    case 'object':
      return [];
    default:
      return null;
  }
}

/** A value of the right type that breaks one of the schema's bounds (length, pattern, range, enum), if it has one. */
function outOfBounds(schema: AnySchemaObject): unknown {
  if (Array.isArray(schema.enum)) return `not-${String(schema.enum[0])}`;
  if (schema.type === 'string' && typeof schema.maxLength === 'number') return 'x'.repeat(schema.maxLength + 1);
  if (schema.type === 'string' && (schema.minLength ?? 0) > 0) return '';
  if (schema.type === 'integer' && typeof schema.minimum === 'number') return schema.minimum - 1;
  if (schema.type === 'integer' && typeof schema.maximum === 'number') return schema.maximum + 1;
  return undefined;
}

/** Every one-mistake variant of a valid value: a required field dropped, an unknown one added, a field of the wrong type or out of bounds. */
export function nearMisses(value: unknown, located: Located, at = ''): NearMiss[] {
  const { schema, file } = resolve(located.schema, located.file);
  const out: NearMiss[] = [];
  if (Array.isArray(value) && schema.type === 'array') {
    value.forEach((item, index) => {
      const items: Located = { schema: schema.items as AnySchemaObject, file };
      out.push({ value: replaceAt(value, index, wrongTypeFor(resolve(items.schema, file).schema)), path: `${at}/${index}`, mistake: 'item of the wrong type' });
      for (const inner of nearMisses(item, items, `${at}/${index}`)) out.push({ ...inner, value: replaceAt(value, index, inner.value) });
    });
    return out;
  }
  if (value === null || typeof value !== 'object' || schema.type !== 'object') return out;
  const object = value as Record<string, unknown>;
  const properties = (schema.properties ?? {}) as Record<string, Schema>;
  for (const key of (schema.required ?? []) as string[]) {
    const { [key]: _dropped, ...rest } = object;
    out.push({ value: rest, path: `${at}/${escape(key)}`, mistake: `required ${key} missing` });
  }
  if (schema.additionalProperties === false) {
    out.push({ value: { ...object, zzUnknown: 1 }, path: `${at}/zzUnknown`, mistake: 'unknown property' });
  }
  for (const [key, child] of Object.entries(object)) {
    const childSchema = properties[key] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
    if (!childSchema || typeof childSchema === 'boolean') continue;
    const childLocated = resolve(childSchema, file);
    // An anyOf is reported at its own path with the alternatives: a wrong type there still names it.
    out.push({ value: { ...object, [key]: wrongTypeFor(childLocated.schema) }, path: `${at}/${escape(key)}`, mistake: `${key} of the wrong type` });
    const beyond = outOfBounds(childLocated.schema);
    if (beyond !== undefined) out.push({ value: { ...object, [key]: beyond }, path: `${at}/${escape(key)}`, mistake: `${key} out of bounds` });
    for (const inner of nearMisses(child, childLocated, `${at}/${escape(key)}`)) out.push({ ...inner, value: { ...object, [key]: inner.value } });
  }
  return out;
}

function replaceAt(array: unknown[], index: number, item: unknown): unknown[] {
  const copy = [...array];
  copy[index] = item;
  return copy;
}
