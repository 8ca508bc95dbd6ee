/**
 * Records QMP transcripts from the real qemu-storage-daemon into test/fixtures/*.jsonl (format in
 * transcript.ts), so the scripted peer can replay true QEMU 7.2 sequences. Re-run after a QEMU
 * upgrade and review the diff:
 *
 *   npx tsc --outDir /tmp/bjg-rec --module nodenext --moduleResolution nodenext --target es2022 \
 *     --skipLibCheck --types node test/utils/record-transcript.ts
 *   node /tmp/bjg-rec/test/utils/record-transcript.js test/fixtures
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { cleanupLeftovers, startQsd, type Qsd, type RawQmp } from '../../src/lab/index.js';
import type { TranscriptMessage, TranscriptMeta } from './transcript.js';

interface Scenario {
  name: string;
  description: string;
  /** Sets up images and nodes through the helper's own monitor (not recorded). */
  prepare(qsd: Qsd): Promise<void>;
  /** Drives the recorded connection. */
  run(qmp: RawQmp): Promise<void>;
}

const untilStatus = (qmp: RawQmp, id: string, status: string): Promise<unknown> =>
  qmp.waitForEvent((event) => event.event === 'JOB_STATUS_CHANGE' && event.data.id === id && event.data.status === status, 60_000);

async function mirrorNodes(qsd: Qsd, sizeMiB: number): Promise<void> {
  await qsd.createImage('src', { sizeMiB, pattern: { offsetMiB: 0, lengthMiB: sizeMiB / 2, byte: 0xaa } });
  await qsd.createImage('dst', { sizeMiB });
  await qsd.addQcow2Node('src', 'src');
  await qsd.addQcow2Node('dst', 'dst');
}

const scenarios: Scenario[] = [
  {
    name: 'mirror-complete',
    description: 'blockdev-mirror sync=full (32 MiB, 16 MiB data, speed 32 MiB/s), query-block-jobs/query-jobs in ready, job-complete, to null',
    prepare: (qsd) => mirrorNodes(qsd, 32),
    async run(qmp) {
      await qmp.execute('blockdev-mirror', { 'job-id': 'mirror0', device: 'src', target: 'dst', sync: 'full', speed: 32 * 1024 * 1024 });
      await qmp.execute('query-block-jobs');
      await qmp.execute('query-jobs');
      await untilStatus(qmp, 'mirror0', 'ready');
      await qmp.execute('query-block-jobs');
      await qmp.execute('query-jobs');
      await qmp.execute('job-complete', { id: 'mirror0' });
      await untilStatus(qmp, 'mirror0', 'null');
    },
  },
  {
    name: 'mirror-ready-window',
    description: 'blockdev-mirror of 32 MiB of data at 16 MiB/s, query-block-jobs every 25 ms: offset == len with ready=false before JSC ready',
    async prepare(qsd) {
      await qsd.createImage('src', { sizeMiB: 32, pattern: { offsetMiB: 0, lengthMiB: 32, byte: 0x5a } });
      await qsd.createImage('dst', { sizeMiB: 32 });
      await qsd.addQcow2Node('src', 'src');
      await qsd.addQcow2Node('dst', 'dst');
    },
    async run(qmp) {
      await qmp.execute('blockdev-mirror', { 'job-id': 'mirror2', device: 'src', target: 'dst', sync: 'full', speed: 16 * 1024 * 1024 });
      const ready = untilStatus(qmp, 'mirror2', 'ready');
      let isReady = false;
      void ready.then(() => (isReady = true));
      let sawWindow = 0;
      // The polls show the window: offset == len while ready is still false, for up to ~1 s at this speed.
      for (let polls = 0; !isReady && polls < 2000; polls++) {
        const [job] = await qmp.execute<Array<{ len: number; offset: number; ready: boolean }>>('query-block-jobs');
        if (job && job.offset === job.len && !job.ready) sawWindow++;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      await ready;
      if (sawWindow === 0) throw new Error('mirror-ready-window: no poll saw offset == len with ready=false; re-run');
      await qmp.execute('query-block-jobs');
      await qmp.execute('job-cancel', { id: 'mirror2' });
      await untilStatus(qmp, 'mirror2', 'null');
    },
  },
  {
    name: 'mirror-cancel',
    description: 'speed-limited blockdev-mirror cancelled before ready with job-cancel (aborting, BLOCK_JOB_CANCELLED, concluded, null)',
    prepare: (qsd) => mirrorNodes(qsd, 32),
    async run(qmp) {
      await qmp.execute('blockdev-mirror', { 'job-id': 'mirror1', device: 'src', target: 'dst', sync: 'full', speed: 1024 * 1024 });
      await qmp.execute('query-jobs');
      await qmp.execute('job-cancel', { id: 'mirror1' });
      await untilStatus(qmp, 'mirror1', 'null');
    },
  },
  {
    name: 'backup-blip',
    description: 'blockdev-backup sync=full: created, running, the internal paused/running blip, then to null',
    prepare: (qsd) => mirrorNodes(qsd, 16),
    async run(qmp) {
      await qmp.execute('blockdev-backup', { 'job-id': 'backup0', device: 'src', target: 'dst', sync: 'full' });
      await untilStatus(qmp, 'backup0', 'null');
    },
  },
  {
    name: 'command-errors',
    description: 'typical refusals: unknown command, unknown job (job-* and block-job-*), bad argument, complete on a running job',
    prepare: (qsd) => mirrorNodes(qsd, 32),
    async run(qmp) {
      const refuse = (command: string, args?: Record<string, unknown>): Promise<unknown> => qmp.execute(command, args).catch(() => undefined);
      await refuse('no-such-command');
      await refuse('job-cancel', { id: 'nope' });
      await refuse('block-job-cancel', { device: 'nope' });
      await refuse('query-jobs', { bogus: 1 });
      await qmp.execute('blockdev-mirror', { 'job-id': 'slow', device: 'src', target: 'dst', sync: 'full', speed: 1024 * 1024 });
      await refuse('job-complete', { id: 'slow' });
      await qmp.execute('job-cancel', { id: 'slow' });
      await untilStatus(qmp, 'slow', 'null');
    },
  },
];

async function record(scenario: Scenario, outDir: string): Promise<void> {
  const qsd = await startQsd({ monitors: ['rec'] });
  try {
    await scenario.prepare(qsd);
    const lines: TranscriptMessage[] = [];
    const t0 = performance.now();
    const qmp = await qsd.raw('rec', {
      trace: (dir, msg) => lines.push({ kind: 'msg', dir, t: Math.round((performance.now() - t0) * 10) / 10, msg }),
    });
    await scenario.run(qmp);
    await qmp.close();
    const version = (qmp.greeting.version ?? {}) as { qemu?: { major: number; minor: number; micro: number }; package?: string };
    const meta: TranscriptMeta = {
      kind: 'meta',
      scenario: scenario.name,
      qemu: version.qemu ? `${version.qemu.major}.${version.qemu.minor}.${version.qemu.micro}` : 'unknown',
      package: version.package ?? '',
      recordedAt: new Date().toISOString(),
      description: scenario.description,
    };
    const file = join(outDir, `${scenario.name}.jsonl`);
    writeFileSync(file, [meta, ...lines].map((line) => JSON.stringify(line)).join('\n') + '\n');
    process.stdout.write(`${file}: ${lines.length} messages\n`);
  } finally {
    await qsd.dispose();
  }
}

async function main(): Promise<void> {
  const outDir = resolve(process.argv[2] ?? 'test/fixtures');
  const only = process.argv.slice(3);
  try {
    for (const scenario of scenarios) if (only.length === 0 || only.includes(scenario.name)) await record(scenario, outDir);
  } finally {
    await cleanupLeftovers();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
