/**
 * The simulator against QEMU itself: each transcript in test/fixtures was recorded from a real
 * qemu-storage-daemon 7.2 (test/utils/record-transcript.ts). The same commands are replayed to the
 * simulator, each sent once the simulator has produced as many messages as QEMU had before it, and
 * the simulator's answer must be the same sequence: greeting, replies (ids, errors verbatim, job
 * statuses in query answers) and events (names, job ids, statuses, offset == len or not).
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { JsonObjectFramer } from '../../../src/qmp/framing.js';
import { startSimulator, type Simulator } from '../../../src/sim/index.js';
import { fixturePath, loadTranscript, type TranscriptMessage } from '../../utils/transcript.js';

const MiB = 1024 * 1024;

/** What must match between QEMU and the simulator (timestamps and exact progress numbers need not). */
function normalize(message: Record<string, unknown>): unknown {
  if ('QMP' in message) return { greeting: message['QMP'] };
  if ('event' in message) {
    const data = (message['data'] ?? {}) as Record<string, unknown>;
    if (message['event'] === 'JOB_STATUS_CHANGE') return { event: 'JOB_STATUS_CHANGE', id: data['id'], status: data['status'] };
    const { offset, len, ...rest } = data;
    return { event: message['event'], ...rest, len, converged: offset === len };
  }
  if ('error' in message) return { id: message['id'], error: message['error'], keys: Object.keys(message) };
  const value = message['return'];
  const rows = Array.isArray(value)
    ? value.map((row: Record<string, unknown>) => ({
        keys: Object.keys(row).sort(),
        id: row['id'] ?? row['device'],
        status: row['status'],
        ready: row['ready'],
      }))
    : value;
  return { id: message['id'], return: rows, keys: Object.keys(message) };
}

class ReplayClient {
  readonly received: Record<string, unknown>[] = [];
  private readonly socket: net.Socket;
  private waiters: (() => void)[] = [];

  constructor(path: string) {
    this.socket = net.connect(path);
    const framer = new JsonObjectFramer(
      (message) => {
        this.received.push(message);
        for (const wake of this.waiters.splice(0)) wake();
      },
      (error) => {
        throw error;
      },
    );
    this.socket.on('data', (chunk: Buffer) => framer.push(chunk));
  }

  send(message: Record<string, unknown>): void {
    this.socket.write(JSON.stringify(message));
  }

  /** Resolves true once `count` messages arrived, false after the timeout (the comparison then shows what differs). */
  async waitForCount(count: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return true;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Replays the `out` messages of a transcript, pacing each on the inbound count QEMU had reached. */
async function replay(sim: Simulator, messages: TranscriptMessage[]): Promise<Record<string, unknown>[]> {
  const client = new ReplayClient(sim.address('vm1').slice('unix:'.length));
  try {
    let inbound = 0;
    for (const entry of messages) {
      if (entry.dir === 'in') {
        inbound++;
        continue;
      }
      if (!(await client.waitForCount(inbound, 10_000))) return client.received;
      client.send(entry.msg);
    }
    await client.waitForCount(inbound, 10_000);
    // Anything extra the simulator says (a second READY, a stray event) must show up as a mismatch.
    await new Promise((resolve) => setTimeout(resolve, 100));
    return client.received;
  } finally {
    client.close();
  }
}

const cases: { fixture: string; sizeMiB: number }[] = [
  { fixture: 'mirror-complete', sizeMiB: 32 },
  { fixture: 'mirror-cancel', sizeMiB: 32 },
  { fixture: 'mirror-ready-window', sizeMiB: 32 },
  { fixture: 'backup-blip', sizeMiB: 16 },
  { fixture: 'command-errors', sizeMiB: 32 },
];

describe('simulator replays QEMU 7.2 transcripts', () => {
  let sim: Simulator | undefined;
  afterEach(async () => {
    await sim?.close();
    sim = undefined;
  });

  for (const { fixture, sizeMiB } of cases) {
    it(`${fixture}: same replies and events as real QEMU`, async () => {
      const transcript = loadTranscript(fixturePath(fixture));
      sim = await startSimulator({ vms: 1, nodeSizeBytes: sizeMiB * MiB, readyWindowMs: 150 });
      const vm = sim.vm('vm1');
      vm.execute('blockdev-add', { driver: 'null-co', 'node-name': 'src' });
      vm.execute('blockdev-add', { driver: 'null-co', 'node-name': 'dst' });

      const received = await replay(sim, transcript.messages);

      const expected = transcript.messages.filter((m) => m.dir === 'in').map((m) => normalize(m.msg));
      expect(received.map(normalize)).toEqual(expected);
    });
  }
});
