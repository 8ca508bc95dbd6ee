// The lab's pure parts: tool detection and the streaming JSON splitter fed hostile input.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createQcow2Image, detectQemuTools, JsonObjectSplitter, parseJsonObject, startQsd, writePattern } from '../../src/lab/index.js';
import { cleanupLeftoversAfterAll, makeTestDir } from '../utils/qsd.js';

describe('detectQemuTools', () => {
  cleanupLeftoversAfterAll();

  it('finds executables in the given dirs and names the packages of the missing ones', () => {
    const dir = makeTestDir();
    const fake = join(dir, 'qemu-img');
    writeFileSync(fake, '#!/bin/sh\n');
    chmodSync(fake, 0o755);
    writeFileSync(join(dir, 'qemu-io'), 'not executable');
    const detection = detectQemuTools([dir]);
    expect(detection.paths).toEqual({ 'qemu-img': fake });
    expect(detection.missing).toEqual(['qemu-storage-daemon', 'qemu-io']);
    expect(detection.missingPackages).toEqual(['qemu-system-common', 'qemu-utils']);
  });

  it('reports nothing missing when every tool is there', () => {
    const dir = makeTestDir();
    for (const tool of ['qemu-storage-daemon', 'qemu-img', 'qemu-io']) {
      writeFileSync(join(dir, tool), '#!/bin/sh\n');
      chmodSync(join(dir, tool), 0o755);
    }
    expect(detectQemuTools([dir])).toMatchObject({ missing: [], missingPackages: [] });
  });
});

describe('JsonObjectSplitter', () => {
  const all = (splitter: JsonObjectSplitter, chunks: Array<string | Buffer>) => chunks.flatMap((chunk) => splitter.push(chunk));

  it('splits several CRLF-terminated objects in one chunk', () => {
    expect(all(new JsonObjectSplitter(), ['{"a":1}\r\n{"b":{"c":[1,{}]}}\r\n'])).toEqual(['{"a":1}', '{"b":{"c":[1,{}]}}']);
  });

  it('joins one pretty-printed object split at every byte', () => {
    const text = JSON.stringify({ event: 'X', data: { s: 'a } " \\ {', n: [1, 2] } }, null, 4).replace(/\n/g, '\r\n');
    const splitter = new JsonObjectSplitter();
    const out = all(splitter, [...Buffer.from(`${text}\r\n`)].map((byte) => Buffer.from([byte])));
    expect(out).toHaveLength(1);
    expect(parseJsonObject(out[0]!)).toEqual({ event: 'X', data: { s: 'a } " \\ {', n: [1, 2] } });
  });

  it('keeps a multi-byte UTF-8 character split across chunks intact', () => {
    const bytes = Buffer.from('{"desc":"Ärger ✓"}');
    const splitter = new JsonObjectSplitter();
    const out = all(splitter, [bytes.subarray(0, 10), bytes.subarray(10, 11), bytes.subarray(11)]);
    expect(parseJsonObject(out[0]!)).toEqual({ desc: 'Ärger ✓' });
  });

  it('refuses input that is not an object, naming it', () => {
    expect(() => new JsonObjectSplitter().push('[1]')).toThrow(expect.objectContaining({ code: 'QMP_ERR_PROTOCOL', message: 'expected a JSON object, got "["' }));
    expect(() => parseJsonObject('{"a":}')).toThrow(expect.objectContaining({ code: 'QMP_ERR_PROTOCOL', message: 'invalid JSON' }));
  });

  it('bounds an unterminated object', () => {
    const splitter = new JsonObjectSplitter(100);
    splitter.push('{"a":"');
    expect(() => splitter.push('x'.repeat(200))).toThrow(expect.objectContaining({ code: 'QMP_ERR_PROTOCOL', message: 'message longer than 100 characters' }));
  });
});

describe('lab input checks (before any QEMU tool runs)', () => {
  it.each([
    [['ctl'], 'monitor name "ctl" is reserved for the helper'],
    [['1bad'], 'monitor name "1bad" must match'],
    [['gw', 'gw'], 'monitor name "gw" given twice'],
  ])('startQsd refuses monitors %j', async (monitors, message) => {
    await expect(startQsd({ monitors })).rejects.toThrow(expect.objectContaining({ code: 'GW_ERR_LAB', message: expect.stringContaining(message) }));
  });

  it('createQcow2Image and writePattern refuse impossible sizes and bytes', async () => {
    await expect(createQcow2Image('/tmp/x.qcow2', {})).rejects.toThrow('give sizeMiB, a backing file, or both');
    await expect(createQcow2Image('/tmp/x.qcow2', { sizeMiB: 1.5 })).rejects.toThrow('sizeMiB must be a positive integer, got 1.5');
    await expect(writePattern('/tmp/x.qcow2', { offsetMiB: 0, lengthMiB: 1, byte: 256 })).rejects.toThrow('pattern byte must be an integer 0..255, got 256');
    await expect(writePattern('/tmp/x.qcow2', { offsetMiB: -1, lengthMiB: 1, byte: 1 })).rejects.toThrow('pattern needs offsetMiB >= 0 and lengthMiB > 0, got -1/1');
  });
});
