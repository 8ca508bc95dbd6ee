/**
 * Resume at random cut points (fast-check) on a real in-process gateway over loopback ws: a source
 * emits a random stream of transitions and VM status changes on two VMs, with a random history
 * bound. A reference subscriber sees everything. A client resumes with `since` at a random cut (also
 * past the history, ahead of the head, with an unknown epoch, or without naming a VM), and the public
 * client loses its socket at a random point and resumes by itself. Either the missed messages
 * arrive exactly (those the reference saw after the cut, each once, `prev` contiguous) and then
 * the live ones, or a snapshot with the reason the history gives, and the state it shows is the
 * source's. FUZZ_RUNS / 10 runs (at least 10) each.
 */
import fc from 'fast-check';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { GatewayClient } from '../../src/client/index.js';
import { adaptNodeWebSocket } from '../../src/client/node.js';
import type { WebSocketFactory } from '../../src/client/socket.js';
import type { RunningGateway } from '../../src/gateway/server.js';
import type { JobStatusName, VmStatus } from '../../src/jobs/types.js';
import type { ServerMessage } from '../../src/generated/schema-types.js';
import { FakeJobSource } from '../utils/fake-source.js';
import { Leftovers, TestClient, assertChain, type Msg } from '../utils/gateway-support.js';
import { waitFor } from '../utils/wait-for.js';

const runs = Math.max(10, Math.floor(Number(process.env.FUZZ_RUNS ?? 200) / 10));
const VMS = ['vm1', 'vm2'] as const;
type Vm = (typeof VMS)[number];
const STATES: JobStatusName[] = ['created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending', 'aborting', 'concluded', 'dismissed'];

type Step = { vm: Vm; job: string; state: JobStatusName } | { vm: Vm; status: VmStatus };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ vm: fc.constantFrom(...VMS), job: fc.constantFrom('j0', 'j1', 'j2'), state: fc.constantFrom(...STATES) }) },
  { weight: 1, arbitrary: fc.record({ vm: fc.constantFrom(...VMS), status: fc.constantFrom<VmStatus>('connected', 'disconnected') }) },
);
const phase = fc.array(step, { maxLength: 24 });

function play(source: FakeJobSource, steps: Step[]): void {
  for (const s of steps) {
    if ('status' in s) source.setStatus(s.vm, s.status);
    else source.transition(s.vm, s.job, s.state);
  }
}

/** What identifies a numbered message across subscriptions. */
const key = (m: Msg): string => `${m.type}@${m.offset}<${m.prev}:${m.type === 'event' ? `${m.job.id}=${m.transition.to}` : m.status}`;
const numbered = (messages: Msg[], vm: string, sub: string): Msg[] => messages.filter((m) => m.sub === sub && m.vm === vm && (m.type === 'event' || m.type === 'vm'));

/** Each VM's head now, read from a fresh subscription's answer, once the reference has seen up to it. */
async function barrier(ref: TestClient, probe: number): Promise<Record<Vm, number>> {
  ref.send({ type: 'subscribe', id: `probe${probe}`, sub: `probe${probe}`, progress: { intervalMs: 0 } });
  const answer = await ref.next((m) => m.type === 'subscribed' && m.sub === `probe${probe}`);
  ref.send({ type: 'unsubscribe', id: `u${probe}`, sub: `probe${probe}` });
  const heads = { vm1: answer.streams.vm1.offset as number, vm2: answer.streams.vm2.offset as number };
  await ref.until((all) => VMS.every((vm) => heads[vm] === 0 || all.some((m) => m.sub === 'ref' && m.vm === vm && m.offset === heads[vm])));
  return heads;
}

/** The source's jobs of a VM as `id=state`, sorted. */
const jobsOf = (source: FakeJobSource, vm: string): string[] =>
  source.snapshot().find((s) => s.vm === vm)!.jobs.map((j) => `${j.id}=${j.state}`).sort();

async function setup(leftovers: Leftovers, historyEntries: number): Promise<{ source: FakeJobSource; gateway: RunningGateway; ref: TestClient; epochs: Record<Vm, string> }> {
  const source = new FakeJobSource([...VMS]);
  const gateway = await leftovers.gateway({ source, historyLimits: { maxEntries: historyEntries } });
  const ref = await leftovers.client(gateway.wsUrl);
  ref.send({ type: 'subscribe', id: 'ref', sub: 'ref', progress: { intervalMs: 0 } });
  const subscribed = await ref.next((m) => m.type === 'subscribed' && m.sub === 'ref');
  return { source, gateway, ref, epochs: { vm1: subscribed.streams.vm1.epoch, vm2: subscribed.streams.vm2.epoch } };
}

type Cut = { kind: 'inside'; fraction: number } | { kind: 'ahead' } | { kind: 'unknown-epoch' } | { kind: 'omitted' };
const cut: fc.Arbitrary<Cut> = fc.oneof(
  { weight: 6, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }).map((fraction): Cut => ({ kind: 'inside', fraction })) },
  { weight: 1, arbitrary: fc.constant<Cut>({ kind: 'ahead' }) },
  { weight: 1, arbitrary: fc.constant<Cut>({ kind: 'unknown-epoch' }) },
  { weight: 1, arbitrary: fc.constant<Cut>({ kind: 'omitted' }) },
);

describe('resume at random cut points (fast-check, real gateway on loopback)', () => {
  const leftovers = new Leftovers();
  afterEach(() => leftovers.dispose());

  it('a resume with `since` gets exactly the missed messages, then the live ones; or a snapshot with the right reason', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 30 }), phase, phase, phase, fc.record({ vm1: cut, vm2: cut }), async (history, seen, missed, live, cuts) => {
        const { source, gateway, ref, epochs } = await setup(leftovers, history);
        play(source, seen);
        const before = await barrier(ref, 1);
        play(source, missed);
        const heads = await barrier(ref, 2);

        // Where the resuming client says it was, per VM (a random point of what it could have seen).
        const since: Record<string, { epoch: string; offset: number }> = {};
        const position = (vm: Vm): number => Math.floor((cuts[vm] as { fraction: number }).fraction * before[vm]);
        for (const vm of VMS) {
          const c = cuts[vm];
          if (c.kind === 'inside') since[vm] = { epoch: epochs[vm], offset: position(vm) };
          if (c.kind === 'ahead') since[vm] = { epoch: epochs[vm], offset: heads[vm] + 1 };
          if (c.kind === 'unknown-epoch') since[vm] = { epoch: 'not-this-epoch', offset: 0 };
        }
        const client = await leftovers.client(gateway.wsUrl);
        client.send({ type: 'subscribe', id: 's', sub: 's', since, progress: { intervalMs: 0 } });
        const subscribed = await client.next((m) => m.type === 'subscribed' && m.sub === 's');
        await client.until((all) => VMS.every((vm) => all.some((m) => m.type === 'synced' && m.sub === 's' && m.vm === vm)));

        for (const vm of VMS) {
          const stream = subscribed.streams[vm];
          const c = cuts[vm];
          expect(stream.offset).toBe(heads[vm]);
          const replayed = numbered(client.messages.filter((m) => client.messages.indexOf(m) < client.messages.findIndex((x) => x.type === 'synced' && x.vm === vm && x.sub === 's')), vm, 's');
          // The history holds the last `history` entries: a cut before them cannot be replayed.
          const covered = c.kind === 'inside' && position(vm) >= Math.max(0, heads[vm] - history);
          if (covered) {
            expect(stream).toMatchObject({ mode: 'recovered', epoch: epochs[vm] });
            const want = numbered(ref.messages, vm, 'ref').filter((m) => m.offset > position(vm) && m.offset <= heads[vm]);
            expect(replayed.map(key)).toEqual(want.map(key));
            expect(assertChain(replayed, vm, position(vm))).toBe(heads[vm]);
          } else {
            const reason = { inside: 'offset_too_old', ahead: 'offset_ahead', 'unknown-epoch': 'unknown_epoch', omitted: undefined }[c.kind];
            expect(stream.mode).toBe('snapshot');
            expect(stream.reason).toBe(reason);
            expect(replayed).toEqual([]);
            const states = client.messages.filter((m) => m.type === 'state' && m.sub === 's' && m.vm === vm).map((m) => `${m.job.id}=${m.job.state}`).sort();
            expect(states).toEqual(jobsOf(source, vm));
          }
        }

        // Live after the cut: exactly what the reference got, contiguous, nothing twice.
        play(source, live);
        const end = await barrier(ref, 3);
        await client.until((all) => VMS.every((vm) => end[vm] === heads[vm] || all.some((m) => m.sub === 's' && m.vm === vm && m.offset === end[vm])));
        for (const vm of VMS) {
          const after = numbered(client.messages, vm, 's').filter((m) => m.offset > heads[vm]);
          expect(after.map(key)).toEqual(numbered(ref.messages, vm, 'ref').filter((m) => m.offset > heads[vm]).map(key));
          const offsets = numbered(client.messages, vm, 's').map((m) => m.offset);
          expect(new Set(offsets).size).toBe(offsets.length);
        }
        expect(client.invalid).toEqual([]);
        await leftovers.dispose();
      }),
      { numRuns: runs },
    );
  });

  it('the public client that loses its socket at a random point resumes by itself: every transition once, in order, or a snapshot it says why', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 30 }), phase, phase, phase, async (history, seen, missed, live) => {
        const { source, gateway, ref } = await setup(leftovers, history);
        // The ws adapter of the client, keeping the raw socket so the test can cut it like a network would.
        const raw: WebSocket[] = [];
        const socket: WebSocketFactory = (url, protocols) => {
          const ws = new WebSocket(url, protocols);
          raw.push(ws);
          return adaptNodeWebSocket(ws);
        };
        const client = new GatewayClient({ urls: gateway.url, socket, progressIntervalMs: 0, backoff: { initialDelayMs: 10, maxDelayMs: 50 } });
        leftovers.add(async () => client.close());
        const messages: ServerMessage[] = [];
        const transitions: string[] = [];
        client.on('message', (m) => messages.push(m));
        client.on('transition', (e) => transitions.push(`${e.vm}@${e.epoch}:${e.offset}`));
        client.start();
        await client.synced({ timeoutMs: 20_000 });

        play(source, seen);
        const before = await barrier(ref, 1);
        await waitFor(() => VMS.every((vm) => client.since[vm]?.offset === before[vm]), 'the client at the first heads');
        raw.at(-1)!.terminate();
        play(source, missed);
        const heads = await barrier(ref, 2);
        await waitFor(() => messages.filter((m) => m.type === 'subscribed').length === 2 && VMS.every((vm) => client.since[vm]?.offset === heads[vm]), () => `the resumed client at ${JSON.stringify(heads)}: ${JSON.stringify(client.since)}`);
        play(source, live);
        const end = await barrier(ref, 3);
        await waitFor(() => VMS.every((vm) => client.since[vm]?.offset === end[vm]), 'the client at the last heads');

        const resumed = messages.filter((m) => m.type === 'subscribed').at(-1)!;
        expect(transitions.length).toBe(new Set(transitions).size);
        for (const vm of VMS) {
          const stream = resumed.type === 'subscribed' ? resumed.streams[vm]! : undefined;
          const covered = before[vm] >= Math.max(0, heads[vm] - history);
          expect(stream).toMatchObject(covered ? { mode: 'recovered', offset: heads[vm] } : { mode: 'snapshot', reason: 'offset_too_old', offset: heads[vm] });
          // Numbered messages chain from the first one, except across a snapshot, which restarts at its offset.
          const mine = messages.filter((m): m is Extract<ServerMessage, { offset: number; vm: string }> => (m.type === 'event' || m.type === 'vm') && m.vm === vm);
          const theirs = numbered(ref.messages, vm, 'ref');
          const want = covered ? theirs : theirs.filter((m) => m.offset <= before[vm] || m.offset > heads[vm]);
          expect(mine.map((m) => key(m as Msg))).toEqual(want.map(key));
          // The live map shows the source's jobs (ended ones may have left it).
          const running = (list: string[]): string[] => list.filter((j) => !/=(concluded|dismissed)$/.test(j));
          expect(running(client.jobs(vm).map((j) => `${j.id}=${j.state}`).sort())).toEqual(running(jobsOf(source, vm)));
        }
        await leftovers.dispose();
      }),
      { numRuns: runs },
    );
  });
});
