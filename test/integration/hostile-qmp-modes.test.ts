/**
 * Issue 15, QMP side, end to end: the gateway CLI (a child process, measured through /proc) follows
 * a real qemu-storage-daemon (`vm1`) and one scripted QMP peer per misbehaviour. Each case turns
 * one peer hostile and, while the attack runs, drives a real mirror on vm1 to ready and pivots it
 * through the gateway. It asserts:
 * - the healthy VM is unaffected: its subscriber gets every transition QEMU reported (an oracle
 *   monitor records QEMU's own JOB_STATUS_CHANGE), with contiguous offsets, and the pivot succeeds;
 * - the hostile VM gets a clear, specific problem: its status (/v1/info), its stable error code
 *   (/metrics qmp_errors_total) and, where it disconnects, the reason its subscriber is told;
 * - the gateway stays bounded and responsive: RSS and descriptors within a bound of the baseline,
 *   every /healthz answered within a bound, event-loop lag (its own /metrics) within a bound.
 * Figures of each case are printed (for docs/reliability.md).
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { QEMU_7_2_SCHEMA_SUBSET } from '../../src/sim/qmp-schema-7.2.js';
import { describeBuilt, runCli, type CliRun } from '../utils/built-cli.js';
import { assertChain, TestClient, type Msg } from '../utils/gateway-support.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, makeTestDir, startQsd, type JobOracle, type Qsd } from '../utils/qsd.js';
import { startScriptedPeer, type CommandHandler, type QmpPeerReply, type ScriptedPeer } from '../utils/scripted-peer.js';
import { waitFor } from '../utils/wait-for.js';

/** waitFor for conditions read over HTTP: at most five requests a second. */
const eventually = (condition: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> =>
  waitFor(async () => (await condition()) || (await new Promise((resolve) => setTimeout(resolve, 200)), false), what, timeoutMs);

/**
 * Bounds, for 2 shared cores under heavy load (load average 20 when they were set; the stalls the
 * attacks found took 2-33 s, the memory 100 MB to GBs). RSS: the peak during a case over the RSS at
 * its start, and over the baseline taken after a warm-up job (the child's heap is not forced to GC,
 * so garbage of earlier cases may still count).
 */
const RSS_GROWTH_MIB = 96;
const RSS_TOTAL_GROWTH_MIB = 192;
const FD_GROWTH = 8;
const HEALTHZ_MS = 5_000;
const LOOP_LAG_MS = 2_000;
/** Warnings a peer can cause at will are logged once a minute per kind: a case writes a handful (6,033 lines in 7 s before). */
const LOG_LINES = 40;
/** The gateway follows at most this many live jobs per VM, plus this many ended ones (monitor-jobs defaults). */
const MAX_JOBS_PER_VM = 1_000 + 100;

const HOSTILE = ['no-greeting', 'garbage', 'huge', 'deep', 'flood-silent', 'flood-answered', 'lies', 'mid-reply', 'slow', 'drip'] as const;
type Hostile = (typeof HOSTILE)[number];

const notFound = (name: string): QmpPeerReply => ({ error: { class: 'CommandNotFound', desc: `The command ${name} has not been found` } });
/** What a well-behaved idle QEMU 7.2 answers. */
const wellBehaved: CommandHandler = (execute) => {
  switch (execute) {
    case 'query-qmp-schema':
      return { return: [...QEMU_7_2_SCHEMA_SUBSET] };
    case 'query-jobs':
    case 'query-block-jobs':
      return { return: [] };
    default:
      return notFound(execute);
  }
};

const event = (name: string, data: Record<string, unknown>): string => `${JSON.stringify({ event: name, data, timestamp: { seconds: Math.floor(Date.now() / 1000), microseconds: 0 } })}\r\n`;

/** Writes what `next()` returns, in batches, while the client reads (paced by the peer's backlog) until stopped. */
function pump(peer: ScriptedPeer, next: () => string, batch = 200): () => void {
  let on = true;
  const tick = (): void => {
    if (!on) return;
    if (peer.negotiated && peer.backlog < 256 * 1024) {
      let text = '';
      for (let i = 0; i < batch; i++) text += next();
      peer.sendRaw(text);
    }
    setTimeout(tick, 5);
  };
  tick();
  return () => (on = false);
}

/** Acts on the current session (if any) and on every session negotiated until stopped. */
function everySession(peer: ScriptedPeer, act: () => void): () => void {
  peer.onNegotiated = () => act();
  if (peer.negotiated) act();
  return () => (peer.onNegotiated = undefined);
}

interface Attack {
  /** Turns the peer hostile; returns how to make it behave again. */
  start(peer: ScriptedPeer): () => void;
  /** The problem the gateway must report for the VM. */
  code: string;
  status: 'connected' | 'disconnected';
  /** What a subscriber of the VM is told when it disconnects. */
  reason?: RegExp;
}

const ATTACKS: Record<Hostile, Attack> = {
  'no-greeting': {
    start(peer) {
      peer.greets = false;
      peer.dropClient();
      return () => (peer.greets = true);
    },
    code: 'QMP_ERR_MONITOR_BUSY',
    status: 'disconnected',
  },
  garbage: {
    // Negotiates, then sends bytes that are not JSON: each session, again and again.
    start: (peer) => everySession(peer, () => peer.sendRaw(Buffer.concat([Buffer.from('not json at all\r\n'), randomBytes(256 * 1024)]))),
    code: 'QMP_ERR_PROTOCOL',
    status: 'disconnected',
    reason: /invalid JSON/,
  },
  huge: {
    // A 16 MiB event (the bound is 4 MiB), every session.
    start: (peer) => everySession(peer, () => peer.sendRaw(event('JOB_STATUS_CHANGE', { id: 'x'.repeat(16 * MiB), status: 'running' }))),
    code: 'QMP_ERR_PROTOCOL',
    status: 'disconnected',
    reason: /message too large/,
  },
  deep: {
    // 4 MiB of nesting (JSON.parse of it once cost ~835 MB), every session.
    start: (peer) => everySession(peer, () => peer.sendRaw(`{"event":"JOB_STATUS_CHANGE","data":{"id":${'['.repeat(4 * MiB - 64)}`)),
    code: 'QMP_ERR_PROTOCOL',
    status: 'disconnected',
    reason: /nested deeper than 64/,
  },
  'flood-silent': {
    // New job ids without end, and no poll ever answered (defects 2 and 5, now beside a real VM).
    start(peer) {
      peer.handler = (execute, args, id, p) => (execute === 'query-jobs' || execute === 'query-block-jobs' ? undefined : wellBehaved(execute, args, id, p));
      let n = 0;
      const stop = pump(peer, () => event('JOB_STATUS_CHANGE', { id: `f${n++}`, status: n % 2 === 0 ? 'created' : 'running' }));
      return () => {
        stop();
        peer.handler = wellBehaved;
      };
    },
    code: 'QMP_ERR_TIMEOUT',
    status: 'disconnected',
    reason: /monitor unresponsive/,
  },
  'flood-answered': {
    // New job ids without end, and every poll lists all of them (thousands of rows).
    start(peer) {
      let n = 0;
      peer.handler = (execute, args, id, p) => {
        const ids = Array.from({ length: Math.min(n, 5_000) }, (_, i) => `g${n - 1 - i}`);
        if (execute === 'query-jobs') return { return: ids.map((job) => ({ id: job, type: 'mirror', status: 'running', 'current-progress': 1, 'total-progress': 2 })) };
        if (execute === 'query-block-jobs') {
          return { return: ids.map((job) => ({ type: 'mirror', device: job, len: 2, offset: 1, busy: true, paused: false, speed: 0, 'io-status': 'ok', ready: false, status: 'running', 'auto-finalize': true, 'auto-dismiss': true })) };
        }
        return wellBehaved(execute, args, id, p);
      };
      const stop = pump(peer, () => event('JOB_STATUS_CHANGE', { id: `g${n++}`, status: 'created' }), 100);
      return () => {
        stop();
        peer.handler = wellBehaved;
      };
    },
    code: 'GW_ERR_TOO_MANY_JOBS',
    status: 'connected',
  },
  lies: {
    // Wrong types, unknown statuses, impossible transitions, polls that contradict the events,
    // replies to ids never sent: none of it is a reason to drop the session.
    start(peer) {
      let n = 0;
      peer.handler = (execute, args, id, p) => {
        if (execute === 'query-jobs') return { return: [{ id: 'l-ready', type: 'mirror', status: 'concluded', 'current-progress': 5, 'total-progress': 2 }, { id: 7, status: [] }] };
        if (execute === 'query-block-jobs') return { return: [{ device: 'l-ready', len: 'long', offset: -1 }] };
        return wellBehaved(execute, args, id, p);
      };
      const lies = [
        () => event('JOB_STATUS_CHANGE', { id: 42, status: 'running' }),
        () => event('JOB_STATUS_CHANGE', { id: `l${n}`, status: 'exploded' }),
        () => event('BLOCK_JOB_READY', { device: `l${n}` }),
        () => event('JOB_STATUS_CHANGE', { id: 'l-ready', status: 'created' }),
        () => event('JOB_STATUS_CHANGE', { id: 'l-ready', status: 'concluded' }),
        () => event('JOB_STATUS_CHANGE', { id: 'l-ready', status: 'running' }),
        () => event('JOB_STATUS_CHANGE', { id: 'l-ready', status: 'ready' }),
        () => event('BLOCK_JOB_COMPLETED', { device: 'l-ready', type: 'mirror', len: 'x', offset: 1, speed: 0 }),
        () => `${JSON.stringify({ return: [], id: `__bjg#${n}` })}\r\n`,
        () => `${JSON.stringify({ return: {}, id: { odd: [n] } })}\r\n`,
        () => `${JSON.stringify({ surprise: true })}\r\n`,
      ];
      // ~2,000 lies a second: this case is about what they make the gateway say; the floods test volume.
      const stop = pump(peer, () => lies[n++ % lies.length]!(), 10);
      return () => {
        stop();
        peer.handler = wellBehaved;
      };
    },
    code: 'QMP_ERR_PROTOCOL',
    status: 'connected',
  },
  'mid-reply': {
    // Negotiates, then closes in the middle of its first reply: every session.
    start(peer) {
      peer.handler = (_execute, _args, id, p) => {
        p.sendRaw(`{"return": [{"id": "m", "type": "mirror", "status": "run`.replace('{', `{"id": ${JSON.stringify(id)}, `));
        setImmediate(() => p.dropClient());
        return undefined;
      };
      peer.dropClient();
      return () => (peer.handler = wellBehaved);
    },
    code: 'QMP_ERR_PROTOCOL',
    status: 'disconnected',
    reason: /stream ended inside a message/,
  },
  slow: {
    // Every answer comes 3 s late (pollTimeoutMs is 1 s).
    start(peer) {
      peer.handler = (execute, args, id, p) => new Promise((resolve) => setTimeout(() => resolve(wellBehaved(execute, args, id, p)), 3_000));
      return () => (peer.handler = wellBehaved);
    },
    code: 'QMP_ERR_TIMEOUT',
    status: 'disconnected',
    reason: /monitor unresponsive/,
  },
  drip: {
    // One byte at a time: a 2 MiB event (under the 4 MiB bound), then the replies behind it.
    start(peer) {
      let on = true;
      let queue = Buffer.from(event('DRIP', { blob: 'd'.repeat(2 * MiB) }));
      let at = 0;
      peer.handler = (execute, args, id, p) => {
        const reply = wellBehaved(execute, args, id, p) as QmpPeerReply;
        queue = Buffer.concat([queue.subarray(at), Buffer.from(`${JSON.stringify({ ...reply, id })}\r\n`)]);
        at = 0;
        return undefined;
      };
      const drip = (): void => {
        if (!on) return;
        if (peer.negotiated && at < queue.length && peer.backlog < 64) peer.sendRaw(queue.subarray(at, ++at));
        setImmediate(drip);
      };
      drip();
      return () => {
        on = false;
        peer.handler = wellBehaved;
      };
    },
    code: 'QMP_ERR_TIMEOUT',
    status: 'disconnected',
    reason: /monitor unresponsive/,
  },
};

/** Transitions of one job incarnation that do not start where the previous one ended. */
function brokenChains(messages: Msg[]): string[] {
  const last = new Map<string, string>();
  const broken: string[] = [];
  for (const m of messages) {
    if (m.type === 'state') last.set(`${m.job.id}#${m.job.incarnation}`, m.job.state);
    if (m.type !== 'event') continue;
    const key = `${m.job.id}#${m.job.incarnation}`;
    const before = last.get(key) ?? null;
    if (m.transition.from !== before) broken.push(`${key}: ${before} then ${m.transition.from} -> ${m.transition.to}`);
    last.set(key, m.transition.to);
  }
  return broken;
}

/** The gateway child's resident memory (MiB) and open descriptors, from /proc. */
function procFigures(pid: number): { rssMiB: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  return { rssMiB: rssKiB / 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

describeQemu('hostile QMP peers beside a real qemu-storage-daemon', () => {
  describeBuilt('gateway CLI under attack', () => {
    cleanupLeftoversAfterAll();
    let qsd: Qsd;
    let oracle: JobOracle;
    let gateway: CliRun;
    let base: string;
    let watcher: TestClient;
    let watcherFrom = 0;
    const peers = new Map<Hostile, ScriptedPeer>();
    let baseline: { rssMiB: number; fds: number };
    const figures: Record<string, unknown>[] = [];

    const getJson = async (path: string): Promise<any> => (await fetch(`${base}${path}`)).json();
    const metrics = async (): Promise<string> => (await fetch(`${base}/metrics`)).text();
    const problems = async (vm: string, code: string): Promise<number> => {
      const line = new RegExp(`^blockjob_gateway_qmp_errors_total\\{vm="${vm}",code="${code}"\\} (\\d+)`, 'm').exec(await metrics());
      return Number(line?.[1] ?? 0);
    };
    const statusOf = async (vm: string): Promise<string> => ((await getJson('/v1/info')).vms as Msg[]).find((v) => v.vm === vm)!.status;

    beforeAll(async () => {
      qsd = await startQsd({ monitors: ['gw', 'oracle'] });
      oracle = await qsd.oracle('oracle');
      for (const name of HOSTILE) peers.set(name, await startScriptedPeer({ handler: wellBehaved }));
      const dir = makeTestDir();
      const config = join(dir, 'gateway.json');
      writeFileSync(config, JSON.stringify({ jobs: { pollTimeoutMs: 1_000, idlePollMs: 1_000, activePollMs: 250 } }));
      const qmp = [`vm1=${qsd.address('gw')}`, ...HOSTILE.map((name) => `${name}=${peers.get(name)!.address}`)].flatMap((flag) => ['--qmp', flag]);
      gateway = runCli(['serve', ...qmp, '--listen', '127.0.0.1:0', '--config', config, '--log-format', 'json', '--log-level', 'warn']);
      const line = await gateway.line(/serving .* \(WebSocket (ws:\/\/[^)]+)\)/);
      const ws = /\(WebSocket (ws:\/\/[^)]+)\)/.exec(line)![1]!;
      base = `http://127.0.0.1:${new URL(ws).port}`;
      await eventually(async () => ((await getJson('/v1/info')).vms as Msg[]).every((v) => v.status === 'connected'), 'every VM connected', 30_000);
      watcher = await TestClient.connect(ws);
      watcher.send({ type: 'subscribe', id: 's', sub: 'vm1', filter: { vms: ['vm1'] } });
      watcherFrom = (await watcher.next((m) => m.type === 'synced' && m.vm === 'vm1')).offset;
      // Warm up (code paths, JIT, a first job's structures), then take the baseline.
      await mirrorAndPivot('warmup');
      baseline = procFigures(gateway.child.pid!);
    }, 120_000);

    afterAll(async () => {
      if (figures.length > 0) console.log(`hostile QMP figures (baseline RSS ${baseline?.rssMiB.toFixed(1)} MiB, ${baseline?.fds} fds):\n${figures.map((f) => JSON.stringify(f)).join('\n')}`);
      watcher?.ws.terminate();
      if (gateway && gateway.child.exitCode === null) {
        gateway.child.kill('SIGTERM');
        await gateway.exited;
      }
      for (const peer of peers.values()) await peer.close();
      await oracle?.close();
      await qsd?.dispose();
    });

    /** A real mirror on vm1 goes to ready and is pivoted through the gateway; its subscriber gets every transition QEMU reported. */
    async function mirrorAndPivot(job: string): Promise<void> {
      await startMirror(qsd, qsd, { jobId: job, dataMiB: 4, speed: 8 * MiB });
      await watcher.next((m) => m.type === 'event' && m.job.id === job && m.transition.to === 'ready', 60_000);
      watcher.send({ type: 'command', id: `c-${job}`, vm: 'vm1', job, action: 'complete', timeoutMs: 30_000 });
      const result = (all: Msg[]) => all.find((m) => m.type === 'result' && m.id === `c-${job}`);
      const dismissed = (all: Msg[]) => all.find((m) => m.type === 'event' && m.job.id === job && m.transition.to === 'dismissed');
      await watcher.until((all) => result(all) !== undefined && dismissed(all) !== undefined, 60_000);
      expect(result(watcher.messages), JSON.stringify(result(watcher.messages))).toMatchObject({ ok: true });
      await oracle.waitForStatus(job, 'null', 30_000);
      const pushed = watcher.messages.filter((m) => m.type === 'event' && m.job.id === job);
      expect(pushed.map((m) => m.transition.to)).toEqual(oracle.statusSequence(job).map((s) => (s === 'null' ? 'dismissed' : s)));
      expect(pushed.find((m) => m.transition.to === 'concluded')!.job).toMatchObject({ outcome: 'completed', pivoted: true });
      watcherFrom = assertChain(watcher.messages, 'vm1', watcherFrom);
      expect(watcher.invalid).toEqual([]);
    }

    /** /healthz latency, and the child's RSS and descriptors, sampled until stopped. */
    function probe(): () => Promise<{ healthzMaxMs: number; healthzCount: number; rssMaxMiB: number; fdsMax: number }> {
      let on = true;
      const seen = { healthzMaxMs: 0, healthzCount: 0, rssMaxMiB: 0, fdsMax: 0 };
      const loop = (async () => {
        while (on) {
          const started = performance.now();
          const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(30_000) });
          expect(res.status).toBe(200);
          await res.arrayBuffer();
          seen.healthzMaxMs = Math.max(seen.healthzMaxMs, performance.now() - started);
          seen.healthzCount++;
          const proc = procFigures(gateway.child.pid!);
          seen.rssMaxMiB = Math.max(seen.rssMaxMiB, proc.rssMiB);
          seen.fdsMax = Math.max(seen.fdsMax, proc.fds);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      })();
      return async () => {
        on = false;
        await loop;
        return seen;
      };
    }

    for (const name of HOSTILE) {
      it(`${name}: a specific problem for the hostile VM; vm1's mirror goes ready and pivots; memory, descriptors and /healthz bounded`, async () => {
        const attack = ATTACKS[name];
        const peer = peers.get(name)!;
        const started = Date.now();
        const codeBefore = await problems(name, attack.code);
        await metrics(); // resets the event-loop lag window
        const spy = await TestClient.connect(base.replace('http', 'ws') + '/v1/ws');
        spy.send({ type: 'subscribe', id: 's', sub: name, filter: { vms: [name] } });
        await spy.next((m) => m.type === 'synced' && m.vm === name);
        const connectionsBefore = peer.connections;
        const rssBefore = procFigures(gateway.child.pid!).rssMiB;
        const logLinesBefore = gateway.stdout.length;
        const stopProbe = probe();
        const behave = attack.start(peer);
        let seen;
        try {
          await eventually(async () => (await problems(name, attack.code)) > codeBefore, `${attack.code} counted for ${name}`, 30_000);
          // A VM that keeps reconnecting flips between the two: what counts is that it is seen down, and why.
          await eventually(async () => (await statusOf(name)) === attack.status, `${name} ${attack.status} in /v1/info`, 30_000);
          if (attack.status === 'disconnected') {
            const told = (all: Msg[]) => all.some((m) => m.type === 'vm' && m.status === 'disconnected' && attack.reason?.test(m.reason ?? '') !== false);
            await spy.until(told, 30_000);
          }
          await mirrorAndPivot(`hm-${name}`);
          if (attack.status === 'connected') expect(await statusOf(name)).toBe('connected');
        } finally {
          behave();
          seen = await stopProbe();
          spy.ws.terminate();
        }
        const lagMs = 1000 * Number(/^blockjob_gateway_nodejs_eventloop_lag_max_seconds (\S+)/m.exec(await metrics())?.[1]);
        const jobs = ((await getJson('/v1/jobs')).vms as Msg[]).find((v) => v.vm === name)!.jobs.length;
        const sessions = peer.connections - connectionsBefore;
        // What the hostile VM's subscriber got is valid protocol, gap-free, and each job's pushed
        // transitions chain (from = the previous to), whatever the peer claimed.
        expect(spy.invalid).toEqual([]);
        assertChain(spy.messages, name, spy.messages.find((m) => m.type === 'synced')!.offset);
        expect(brokenChains(spy.messages)).toEqual([]);
        const row = {
          attack: name,
          seconds: Math.round((Date.now() - started) / 100) / 10,
          problems: (await problems(name, attack.code)) - codeBefore,
          code: attack.code,
          rssGrowthMiB: Math.round((seen.rssMaxMiB - rssBefore) * 10) / 10,
          rssOverBaselineMiB: Math.round((seen.rssMaxMiB - baseline.rssMiB) * 10) / 10,
          fdsGrowth: seen.fdsMax - baseline.fds,
          healthzMaxMs: Math.round(seen.healthzMaxMs),
          healthzCount: seen.healthzCount,
          loopLagMaxMs: Math.round(lagMs),
          jobs,
          sessions,
          logLines: gateway.stdout.length - logLinesBefore,
        };
        figures.push(row);
        expect(seen.rssMaxMiB - rssBefore, JSON.stringify(row)).toBeLessThan(RSS_GROWTH_MIB);
        expect(seen.rssMaxMiB - baseline.rssMiB, JSON.stringify(row)).toBeLessThan(RSS_TOTAL_GROWTH_MIB);
        expect(seen.fdsMax - baseline.fds, JSON.stringify(row)).toBeLessThanOrEqual(FD_GROWTH);
        expect(seen.healthzMaxMs, JSON.stringify(row)).toBeLessThan(HEALTHZ_MS);
        expect(lagMs, JSON.stringify(row)).toBeLessThan(LOOP_LAG_MS);
        expect(jobs).toBeLessThanOrEqual(MAX_JOBS_PER_VM);
        expect(row.logLines, JSON.stringify(row)).toBeLessThanOrEqual(LOG_LINES);
        // Sessions that break at once are retried with a growing delay (issue 15 'also seen'): from
        // 100 ms doubling (jitter 20 %), T ms hold at most log2(T / 80 + 1) retries; a steady
        // 100 ms (before the fix) made ~10 a second.
        expect(sessions, JSON.stringify(row)).toBeLessThanOrEqual(2 + Math.log2((Date.now() - started) / 80 + 1));
      });
    }
  });
});
