import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, imagesEqual, leftoverCount, startQsd, type Qsd } from '../utils/qsd.js';

describeQemu('qemu-storage-daemon lab', () => {
  cleanupLeftoversAfterAll();

  it('starts with named monitors, greets and negotiates on each', async () => {
    const qsd = await startQsd({ monitors: ['gw', 'oracle', 'third'] });
    expect(qsd.address('gw')).toBe(`unix:${qsd.dir}/gw.sock`);
    for (const name of ['gw', 'oracle', 'third']) {
      const raw = await qsd.raw(name);
      const version = (raw.greeting.version as { qemu: { major: number } }).qemu;
      expect(version.major).toBeGreaterThanOrEqual(7);
      expect(await raw.execute('query-jobs')).toEqual([]);
      await raw.close();
    }
    await qsd.dispose();
    expect(existsSync(qsd.dir)).toBe(false);
  });

  it('surfaces a QMP error with its class and desc', async () => {
    const qsd = await startQsd();
    const raw = await qsd.raw('gw');
    await expect(raw.execute('job-cancel', { id: 'nope' })).rejects.toMatchObject({ class: 'GenericError', desc: 'Job not found' });
    await expect(raw.execute('no-such-command')).rejects.toMatchObject({ code: 'QMP_ERR_COMMAND', class: 'CommandNotFound' });
    await qsd.dispose();
  });

  it('reports a second client on a taken monitor as busy', async () => {
    const qsd = await startQsd();
    const first = await qsd.raw('gw');
    await expect(qsd.raw('gw', { greetingTimeoutMs: 300 })).rejects.toMatchObject({ code: 'QMP_ERR_MONITOR_BUSY' });
    await first.close();
    await qsd.dispose();
  });

  it('runs a mirror to completion and the oracle records QEMU\'s status sequence', async () => {
    const qsd = await startQsd();
    await qsd.createImage('src', { sizeMiB: 16, pattern: { offsetMiB: 0, lengthMiB: 8, byte: 0xaa } });
    await qsd.createImage('dst', { sizeMiB: 16 });
    await qsd.addQcow2Node('src', 'src');
    await qsd.addQcow2Node('dst', 'dst');
    const oracle = await qsd.oracle();
    await qsd.execute('blockdev-mirror', { 'job-id': 'm0', device: 'src', target: 'dst', sync: 'full' });
    await oracle.waitForStatus('m0', 'ready');
    await qsd.execute('job-complete', { id: 'm0' });
    await oracle.waitForStatus('m0', 'null');
    expect(oracle.statusSequence('m0')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    expect(oracle.jobEvents('m0').map((event) => event.event)).toContain('BLOCK_JOB_COMPLETED');
    await oracle.close();
    await qsd.stop();
    expect(await imagesEqual(qsd.imagePath('src'), qsd.imagePath('dst'))).toBe(true);
    await qsd.dispose();
  });

  it('injects an I/O error through blkdebug', async () => {
    const qsd = await startQsd();
    await qsd.createImage('src', { sizeMiB: 8, pattern: { offsetMiB: 0, lengthMiB: 4, byte: 1 } });
    await qsd.createImage('dst', { sizeMiB: 8 });
    await qsd.addQcow2Node('src', 'src');
    await qsd.addQcow2Node('dst', 'dst', { blkdebug: { injectError: [{ event: 'write_aio', errno: 5, once: true }] } });
    const oracle = await qsd.oracle();
    await qsd.execute('blockdev-mirror', { 'job-id': 'e0', device: 'src', target: 'dst', sync: 'full', 'on-target-error': 'report' });
    await oracle.waitForStatus('e0', 'null');
    const completed = oracle.jobEvents('e0').find((event) => event.event === 'BLOCK_JOB_COMPLETED');
    expect(completed?.data.error).toBe('Input/output error');
    expect(oracle.statusSequence('e0')).toEqual(['created', 'running', 'aborting', 'concluded', 'null']);
    await qsd.dispose();
  });

  it('restarts on the same sockets with its nodes re-added, and kill ends it', async () => {
    const qsd: Qsd = await startQsd();
    await qsd.createImage('disk', { sizeMiB: 4 });
    await qsd.addQcow2Node('disk', 'disk');
    const firstPid = qsd.pid;
    const killed = await qsd.kill();
    expect(killed.signal).toBe('SIGKILL');
    await qsd.restart();
    expect(qsd.pid).not.toBe(firstPid);
    const raw = await qsd.raw('gw');
    const nodes = await raw.execute<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true });
    expect(nodes.map((node) => node['node-name'])).toContain('disk');
    await raw.close();
    const exit = await qsd.stop();
    expect(exit.code).toBe(0);
    await qsd.dispose();
  });
});

describe('lab leftovers', () => {
  it('is empty once every daemon has been disposed', () => {
    expect(leftoverCount()).toBe(0);
  });
});
