/**
 * asyncapi.yaml is a valid AsyncAPI 3 document, describes exactly the messages of the unions with
 * payloads that are the schema files themselves, and every example in it validates.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DiagnosticSeverity, fromFile, Parser, type AsyncAPIDocumentInterface } from '@asyncapi/parser';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CLIENT_MESSAGE_SCHEMA,
  messageSchemas,
  SERVER_MESSAGE_SCHEMA,
  validateClientMessage,
  validateServerMessage,
} from '../../../src/gateway/protocol/index.js';

const file = fileURLToPath(new URL('../../../asyncapi.yaml', import.meta.url));

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
const raw = parseYaml(readFileSync(file, 'utf8')) as {
  components: { messages: Record<string, RawMessage> };
  operations: Record<string, RawOperation>;
};

const clientSchemas = messageSchemas(CLIENT_MESSAGE_SCHEMA);
const serverSchemas = messageSchemas(SERVER_MESSAGE_SCHEMA);
const refName = (ref: { $ref: string }): string => ref.$ref.split('/').at(-1)!;

describe('asyncapi.yaml', () => {
  let document: AsyncAPIDocumentInterface | undefined;
  let problems: string[] = [];

  beforeAll(async () => {
    const { document: parsed, diagnostics } = await fromFile(new Parser(), file).parse();
    document = parsed;
    problems = diagnostics
      .filter((d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning)
      .map((d) => `${d.code} at ${d.path.join('.')}: ${d.message}`);
  }, 120_000);

  it('parses with @asyncapi/parser without errors or warnings', () => {
    expect(problems).toEqual([]);
    expect(document?.version()).toBe('3.0.0');
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
    for (const message of document?.messages().all() ?? []) {
      const typeConst = message.payload()?.properties()?.['type']?.const();
      expect([message.name(), typeConst]).toEqual([message.name(), message.name()]);
    }
    expect(document?.messages().all().length).toBe(clientSchemas.size + serverSchemas.size);
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
