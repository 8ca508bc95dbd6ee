/**
 * PROTOCOL.md cannot drift from the schemas: every JSON example in it is validated, every message
 * type has its section with an example, and its close code and error code tables equal codes.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CLOSE_CODES,
  clientMessageTypes,
  COMMAND_ERROR_CODES,
  INFO_SCHEMA,
  JOBS_SNAPSHOT_SCHEMA,
  jobsDefaultPage,
  jobsPageLimit,
  parseHttpCommand,
  PROTOCOL_ERROR_CODES,
  schemaRegistry,
  serverMessageTypes,
  validateClientMessage,
  validateServerMessage,
} from '../../../src/protocol/index.js';

const doc = readFileSync(new URL('../../../PROTOCOL.md', import.meta.url), 'utf8');

interface CodeBlock {
  info: string[];
  body: string;
  line: number;
  section: string;
}

function codeBlocks(markdown: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  const lines = markdown.split('\n');
  let section = '';
  for (let i = 0; i < lines.length; i++) {
    const heading = /^#{2,3} (.+)$/.exec(lines[i]!);
    if (heading) section = heading[1]!;
    const open = /^(\s*)```(\S+)(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i]!.trim() !== '```'; i++) body.push(lines[i]!.slice(indent));
    blocks.push({ info: [open[2]!, ...open[3]!.trim().split(/\s+/).filter(Boolean)], body: body.join('\n'), line: start + 1, section });
  }
  return blocks;
}

const blocks = codeBlocks(doc);
const clientTypes = new Set<string>(clientMessageTypes());

function validateMessage(message: unknown): unknown {
  const type = (message as { type?: unknown }).type;
  const result = clientTypes.has(type as string) ? validateClientMessage(message) : validateServerMessage(message);
  return result.ok ? 'valid' : result.error;
}

/** The messages of an exchange block: `→ {...}` client to server, `← {...}` server to client. */
function exchange(block: CodeBlock): Array<{ from: 'client' | 'server'; message: Record<string, unknown> }> {
  return block.body
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const match = /^([→←]) (\{.*\})$/.exec(line);
      if (!match) throw new Error(`PROTOCOL.md:${block.line}: exchange lines start with → or ←: ${line}`);
      return { from: match[1] === '→' ? 'client' : 'server', message: JSON.parse(match[2]!) as Record<string, unknown> };
    });
}

describe('PROTOCOL.md', () => {
  const messageBlocks = blocks.filter((b) => b.info[0] === 'json' && b.info.length === 1);
  const exchangeBlocks = blocks.filter((b) => b.info[0] === 'text');

  it('has JSON examples and exchanges to check', () => {
    expect(messageBlocks.length).toBeGreaterThanOrEqual(clientMessageTypes().length + serverMessageTypes().length);
    expect(exchangeBlocks.length).toBeGreaterThanOrEqual(3);
  });

  it.each(messageBlocks.map((b) => [`line ${b.line}`, b] as const))('example at %s matches its schema', (_at, block) => {
    expect(validateMessage(JSON.parse(block.body))).toBe('valid');
  });

  it.each(exchangeBlocks.map((b) => [`line ${b.line}`, b] as const))('exchange at %s is valid in both directions', (_at, block) => {
    for (const { from, message } of exchange(block)) {
      const result = from === 'client' ? validateClientMessage(message) : validateServerMessage(message);
      expect([message.type, result.ok ? 'valid' : result.error]).toEqual([message.type, 'valid']);
    }
  });

  it.each(exchangeBlocks.map((b) => [`line ${b.line}`, b] as const))('exchange at %s keeps offsets and prev consistent', (_at, block) => {
    const lastOffset = new Map<string, number>();
    for (const { message } of exchange(block)) {
      const since = message.since as Record<string, { offset: number }> | undefined;
      for (const [vm, position] of Object.entries(since ?? {})) lastOffset.set(`${String(message.sub)}/${vm}`, position.offset);
      if (typeof message.offset !== 'number' || typeof message.vm !== 'string') continue;
      const key = `${String(message.sub)}/${message.vm}`;
      if (typeof message.prev === 'number' && lastOffset.has(key)) expect([key, message.prev]).toEqual([key, lastOffset.get(key)]);
      if (typeof message.prev === 'number') expect(message.offset).toBeGreaterThan(message.prev);
      lastOffset.set(key, message.offset);
    }
  });

  it('validates the HTTP examples', () => {
    const snapshots = blocks.filter((b) => b.info[1] === 'http-jobs');
    const commands = blocks.filter((b) => b.info[1] === 'http-command');
    const infos = blocks.filter((b) => b.info[1] === 'http-info');
    expect([snapshots.length, commands.length, infos.length]).toEqual([2, 1, 1]); // the snapshot, and one page of it
    const validateInfo = schemaRegistry().validator(INFO_SCHEMA);
    for (const block of infos) expect([validateInfo(JSON.parse(block.body)), validateInfo.errors]).toEqual([true, null]);
    const validateSnapshot = schemaRegistry().validator(JOBS_SNAPSHOT_SCHEMA);
    for (const block of snapshots) expect([validateSnapshot(JSON.parse(block.body)), validateSnapshot.errors]).toEqual([true, null]);
    for (const block of commands) {
      const [vm, job, action] = block.info.slice(2);
      expect(parseHttpCommand({ vm: vm!, job: job!, action: action! }, block.body, 'doc').ok).toBe(true);
    }
  });

  it("states GET /v1/jobs's default page and maximum as the code has them", () => {
    const section = doc.slice(doc.indexOf('- **`GET /v1/jobs`**'), doc.indexOf('- **`POST /v1/vms/'));
    const n = (value: number) => value.toLocaleString('en-US');
    expect(section).toContain(`\`?limit=N\` VMs (1 to ${n(jobsPageLimit())})`);
    expect(section).toContain(`without \`limit\`, at most ${n(jobsDefaultPage())}`);
  });

  it('has a section with an example for every message type', () => {
    for (const type of [...clientMessageTypes(), ...serverMessageTypes()]) {
      const examples = messageBlocks.filter((b) => b.section === type).map((b) => (JSON.parse(b.body) as { type: string }).type);
      expect([type, examples.length > 0 && examples.every((t) => t === type)]).toEqual([type, true]);
    }
  });

  it('documents exactly the close codes of codes.ts, with their client action', () => {
    const rows = tableRows('Close codes').map(([code, name, meaning, action]) => ({ code: Number(code), name, meaning, action }));
    expect(rows).toEqual(Object.values(CLOSE_CODES));
  });

  it('documents exactly the error codes of the schemas, with their meaning', () => {
    const [protocolRows, commandRows] = [tableRows('Error codes', 0), tableRows('Error codes', 1)];
    expect(Object.fromEntries(protocolRows.map(([code, meaning]) => [unquote(code!), { meaning }]))).toEqual(PROTOCOL_ERROR_CODES);
    expect(Object.fromEntries(commandRows.map(([code, status, meaning]) => [unquote(code!), { httpStatus: Number(status), meaning }]))).toEqual(
      COMMAND_ERROR_CODES,
    );
  });
});

const unquote = (cell: string): string => cell.replace(/^`|`$/g, '');

/** The body rows of the n-th table in a `## section`, as trimmed cells. */
function tableRows(section: string, index = 0): string[][] {
  const start = doc.indexOf(`\n## ${section}\n`);
  const end = doc.indexOf('\n## ', start + 1);
  const text = doc.slice(start, end === -1 ? undefined : end);
  const tables: string[][] = [];
  let previousWasRow = false;
  for (const line of text.split('\n')) {
    const isRow = line.startsWith('|');
    if (isRow && !previousWasRow) tables.push([]);
    if (isRow) tables.at(-1)!.push(line);
    previousWasRow = isRow;
  }
  const table = tables[index];
  if (!table) throw new Error(`no table ${index} in section ${section}`);
  // Skip the header and the |---| line.
  return table.slice(2).map((row) => row.slice(1, -1).split('|').map((cell) => cell.trim()));
}
