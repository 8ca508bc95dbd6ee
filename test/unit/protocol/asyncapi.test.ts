/**
 * asyncapi.yaml is a valid AsyncAPI 3 document, describes exactly the messages of the unions with
 * payloads that are the schema files themselves, and every example in it validates.
 *
 * Validity is checked with ajv against the official AsyncAPI 3.0.0 JSON Schema (@asyncapi/specs) plus
 * a walk that resolves every $ref, not with @asyncapi/parser: the parser pulls in a telemetry
 * package (through its linter dependency), which this project keeps out of its dependency tree.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import specs from '@asyncapi/specs';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import {
  CLIENT_MESSAGE_SCHEMA,
  messageSchemas,
  SERVER_MESSAGE_SCHEMA,
  validateClientMessage,
  validateServerMessage,
} from '../../../src/protocol/index.js';

const file = fileURLToPath(new URL('../../../asyncapi.yaml', import.meta.url));
const root = new URL('../../../', import.meta.url);

interface RawMessage {
  name: string;
  payload: { schemaFormat: string; schema: { $ref: string } };
  examples?: Array<{ name?: string; payload: { type?: string } }>;
}
interface RawOperation {
  action: 'send' | 'receive';
  messages: Array<{ $ref: string }>;
  reply?: { messages: Array<{ $ref: string }> };
}
const document = parseYaml(readFileSync(file, 'utf8')) as unknown;
const raw = document as {
  components: { messages: Record<string, RawMessage> };
  operations: Record<string, RawOperation>;
};

const clientSchemas = messageSchemas(CLIENT_MESSAGE_SCHEMA);
const serverSchemas = messageSchemas(SERVER_MESSAGE_SCHEMA);
const refName = (ref: { $ref: string }): string => ref.$ref.split('/').at(-1)!;

/** Every `$ref` in the document with the JSON path where it occurs. */
function refsIn(node: unknown, path: string[] = []): Array<{ ref: string; at: string }> {
  if (Array.isArray(node)) return node.flatMap((item, i) => refsIn(item, [...path, String(i)]));
  if (node === null || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([key, value]) =>
    key === '$ref' && typeof value === 'string' ? [{ ref: value, at: path.join('.') }] : refsIn(value, [...path, key]),
  );
}

/** Follows a local JSON pointer (`#/a/b`) through the document; undefined when it dangles. */
function pointer(ref: string): unknown {
  return ref
    .slice(2)
    .split('/')
    .map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~'))
    .reduce<unknown>((node, part) => (node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined), document);
}

const schemaFile = (ref: string): Record<string, unknown> =>
  JSON.parse(readFileSync(fileURLToPath(new URL(ref, root)), 'utf8')) as Record<string, unknown>;

describe('asyncapi.yaml', () => {
  it('validates against the AsyncAPI 3.0.0 JSON Schema', () => {
    const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
    const ajv = addFormats(new Ajv({ strict: false, allErrors: true }));
    const validate = ajv.compile(specs.schemasWithoutId['3.0.0'] as object);
    const valid = validate(document);
    expect(valid ? [] : validate.errors?.map((e) => `${e.instancePath} ${e.message}`)).toEqual([]);
    expect(raw).toMatchObject({ asyncapi: '3.0.0' });
  });

  it('resolves every $ref: local pointers to a node, files to a schema in schemas/', () => {
    const dangling = refsIn(document).filter(({ ref }) =>
      ref.startsWith('#/') ? pointer(ref) === undefined : !/^\.\/schemas\/[\w.-]+\.schema\.json$/.test(ref) || !existsSync(new URL(ref, root)),
    );
    expect(dangling).toEqual([]);
  });

  it('describes exactly the message types of the unions, each by its schema file', () => {
    const expected = Object.fromEntries([...clientSchemas, ...serverSchemas].map(([type, schema]) => [type, `./schemas/${schema}`]));
    const described = Object.fromEntries(Object.entries(raw.components.messages).map(([key, m]) => [key, m.payload.schema.$ref]));
    expect(described).toEqual(expected);
    for (const [key, message] of Object.entries(raw.components.messages)) {
      expect([key, message.name, message.payload.schemaFormat]).toEqual([key, key, 'application/schema+json;version=draft-07']);
    }
  });

  it('resolves each payload to the schema file (its type const)', () => {
    const consts = Object.entries(raw.components.messages).map(([key, m]) => {
      const type = (schemaFile(m.payload.schema.$ref)['properties'] as Record<string, { const?: string }> | undefined)?.['type'];
      return [key, type?.const];
    });
    expect(consts).toEqual(Object.keys(raw.components.messages).map((key) => [key, key]));
    expect(consts.length).toBe(clientSchemas.size + serverSchemas.size);
  });

  it('lets clients send exactly the client messages, and the gateway send every server message', () => {
    const received = Object.values(raw.operations).filter((o) => o.action === 'receive').flatMap((o) => o.messages.map(refName));
    const sent = Object.values(raw.operations).flatMap((o) => [
      ...(o.action === 'send' ? o.messages.map(refName) : []),
      ...(o.reply?.messages.map(refName) ?? []),
    ]);
    expect(new Set(received)).toEqual(new Set(clientSchemas.keys()));
    expect(new Set(sent)).toEqual(new Set(serverSchemas.keys()));
  });

  const examples = Object.entries(raw.components.messages).flatMap(([key, message]) =>
    (message.examples ?? []).map((example, i) => [`${key} #${i + 1}${example.name ? ` (${example.name})` : ''}`, key, example.payload] as const),
  );

  it('has an example for every message', () => {
    expect(new Set(examples.map(([, key]) => key))).toEqual(new Set(Object.keys(raw.components.messages)));
  });

  it.each(examples)('example %s validates against its schema', (_name, key, payload) => {
    expect(payload.type).toBe(key);
    const result = clientSchemas.has(key) ? validateClientMessage(payload) : validateServerMessage(payload);
    expect(result.ok ? 'valid' : result.error).toBe('valid');
  });
});
