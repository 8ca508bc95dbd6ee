/**
 * The protocol's JSON Schemas (schemas/*.schema.json, the single source of truth) loaded into one
 * ajv instance (the messages of /v1/ws and the bodies of GET /v1/jobs and /v1/info). Loading is lazy and happens once; each validator is compiled once, on first use.
 *
 * Only the schemas reachable from the roots (the two message unions) are loaded, by following their
 * `$ref`s, so unrelated schemas in the folder (config, ...) cannot break protocol validation.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type AnySchemaObject, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';

/** schemas/ beside package.json: two levels up from both src/protocol and dist/protocol. */
export const SCHEMA_DIR = fileURLToPath(new URL('../../schemas/', import.meta.url));

export const CLIENT_MESSAGE_SCHEMA = 'client-message.schema.json';
export const SERVER_MESSAGE_SCHEMA = 'server-message.schema.json';
/** Body of GET /v1/jobs. */
export const JOBS_SNAPSHOT_SCHEMA = 'http-jobs.schema.json';
/** Body of GET /v1/info. */
export const INFO_SCHEMA = 'http-info.schema.json';
const ROOT_SCHEMAS = [CLIENT_MESSAGE_SCHEMA, SERVER_MESSAGE_SCHEMA, JOBS_SNAPSHOT_SCHEMA, INFO_SCHEMA];

export interface SchemaRegistry {
  readonly ajv: Ajv;
  /** Loaded schema documents by file name (= `$id`). */
  readonly documents: ReadonlyMap<string, AnySchemaObject>;
  /** The compiled validator of a schema file or `file#/pointer`, compiled on first use. */
  validator(ref: string): ValidateFunction;
}

let registry: SchemaRegistry | undefined;

export function schemaRegistry(): SchemaRegistry {
  registry ??= createRegistry();
  return registry;
}

function createRegistry(): SchemaRegistry {
  const documents = loadReachable(ROOT_SCHEMAS);
  const ajv = new Ajv({
    allErrors: true,
    discriminator: true,
    strict: true,
    // `then: { required: ["speed"] }` names a property declared beside the `if`, not inside `then`.
    strictRequired: false,
    // job-state uses `"type": ["number", "null"]`.
    allowUnionTypes: true,
    // Read by scripts/gen-types.mjs (json-schema-to-typescript); no meaning for validation.
    keywords: ['tsType'],
  });
  // ajv-formats is CommonJS: under NodeNext its default import is module.exports, whose .default is the plugin.
  ajvFormats.default(ajv, ['date-time']);
  for (const [file, schema] of documents) ajv.addSchema(schema, file);
  const compiled = new Map<string, ValidateFunction>();
  return {
    ajv,
    documents,
    validator(ref) {
      let validate = compiled.get(ref);
      if (!validate) {
        validate = ajv.getSchema(ref);
        if (!validate) throw new Error(`no schema ${ref} in ${SCHEMA_DIR}`);
        compiled.set(ref, validate);
      }
      return validate;
    },
  };
}

export function loadReachable(roots: readonly string[]): Map<string, AnySchemaObject> {
  const documents = new Map<string, AnySchemaObject>();
  const pending = [...roots];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (documents.has(file)) continue;
    const schema = JSON.parse(readFileSync(SCHEMA_DIR + file, 'utf8')) as AnySchemaObject;
    documents.set(file, schema);
    for (const ref of externalRefs(schema)) pending.push(ref);
  }
  return documents;
}

/** File names of the cross-file `$ref`s in a schema (`other.schema.json` or `other.schema.json#/...`). */
function externalRefs(node: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(node)) {
    for (const item of node) externalRefs(item, found);
  } else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string' && !value.startsWith('#')) found.add(value.split('#')[0]!);
      else externalRefs(value, found);
    }
  }
  return found;
}
