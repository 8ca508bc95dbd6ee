/**
 * Issue 15, WebSocket/HTTP attackers against `blockjob-gateway serve` (a child process) in front of a
 * real qemu-storage-daemon, while a mirror's transitions flow (user pauses and resumes through the
 * gateway's HTTP commands): slow readers, abandoned connections, slowloris. Each attack asserts the
 * gateway's descriptors return to their baseline, its RSS stays bounded, /healthz answers during the
 * attack, and a healthy `ws` subscriber keeps answering and gets every stream event, in order.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { startMirror } from '../../src/lab/jobs.js';
import { registerLeftover, type Qsd } from '../../src/lab/index.js';
import { describeBuilt } from '../utils/built-cli.js';
import { serveCli, type ServedGateway } from '../utils/cli-gateway.js';
import { assertChain, TestClient, type Msg } from '../utils/gateway-support.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, makeTestDir, startQsd } from '../utils/qsd.js';
import { TrickleClient, upgradeRequest } from '../utils/raw-ws.js';
import { waitFor } from '../utils/wait-for.js';

// Longer than a slow reader's read-confirmation wait (MAX_SOFT_MS), else the heartbeat would end it first.
const HEARTBEAT_MS = 5_000;
const HEADERS_TIMEOUT_MS = 2_000;
const SOFT = 16_384;
const MAX_SOFT_MS = 1_000;

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const fdsOf = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;
const rssMiBOf = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

describeQemu('WebSocket and HTTP attackers against serve (real QEMU)', () => {
  cleanupLeftoversAfterAll();

  describeBuilt('slow readers, abandoned connections, slowloris', () => {
    let qsd: Qsd;
    let gateway: ServedGateway;
    let pid: number;
    let healthy: TestClient;
    let baselineFds: number;
    let baselineRss: number;
    let flowing = true;
    let flow: Promise<void>;
    let transitionsAsked = 0;
    let flowError: unknown;
    /** Per event the healthy subscriber got: ms from the gateway's `ts` to its arrival (one machine, one clock). */
    const latencies: number[] = [];
    let quiet: number[] = [];
    const cleanup: (() => void)[] = [];
    afterEach(() => {
      for (const dispose of cleanup.splice(0)) dispose();
    });

    const http = (path: string, body?: string) => request(gateway.port, path, body);
    const metric = async (pattern: RegExp): Promise<number> => Number(pattern.exec((await http('/metrics')).text)?.[1] ?? 0);

    /** While `attack` runs: /healthz polled (every answer must be 200) and the healthy client pinged. */
    async function whileAttacked<T>(
      attack: () => Promise<T>,
    ): Promise<{ result: T; healthzMaxMs: number; pingMaxMs: number; peakFds: number; peakRssMiB: number; latency: string }> {
      const firstEvent = latencies.length;
      let stop = false;
      let healthzMaxMs = 0;
      let pingMaxMs = 0;
      let peakFds = 0;
      let peakRssMiB = 0;
      let pings = 0;
      const watch = (async () => {
        while (!stop) {
          const started = performance.now();
          const res = await http('/healthz');
          expect(res.status).toBe(200);
          healthzMaxMs = Math.max(healthzMaxMs, performance.now() - started);
          const sent = performance.now();
          const id = `hp${pings++}`;
          healthy.send({ type: 'ping', id });
          await healthy.until((all) => all.some((m) => m.type === 'pong' && m.id === id), 10_000);
          pingMaxMs = Math.max(pingMaxMs, performance.now() - sent);
          peakFds = Math.max(peakFds, fdsOf(pid));
          peakRssMiB = Math.max(peakRssMiB, rssMiBOf(pid));
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      try {
        const result = await attack();
        const during = latencies.slice(firstEvent);
        // The healthy subscriber's delivery lag (gateway saw the change -> client got it) stays small.
        expect(during.length).toBeGreaterThan(0);
        expect(Math.max(...during)).toBeLessThan(5_000);
        return { result, healthzMaxMs, pingMaxMs, peakFds, peakRssMiB, latency: `healthy delivery lag p50 ${quantile(during, 0.5)} / max ${Math.max(...during)} ms over ${during.length} events (before the attacks: p50 ${quantile(quiet, 0.5)} / max ${Math.max(...quiet)} ms)` };
      } finally {
        stop = true;
        await watch;
      }
    }

    /** Until the descriptors are back; the command flow and /healthz may hold one HTTP connection each. */
    async function backToBaseline(): Promise<number> {
      const started = performance.now();
      await expect.poll(() => fdsOf(pid), { timeout: 30_000, interval: 100 }).toBeLessThanOrEqual(baselineFds + 2);
      return performance.now() - started;
    }

    beforeAll(async () => {
      qsd = await startQsd();
      const dir = makeTestDir('bjt-hws-');
      const config = join(dir, 'gateway.json');
      writeFileSync(
        config,
        JSON.stringify({
          heartbeatMs: HEARTBEAT_MS,
          limits: { headersTimeoutMs: HEADERS_TIMEOUT_MS, inboundRatePerSecond: 1000, inboundBurst: 1000 },
          backpressure: { softBytes: SOFT, hardBytes: 65_536, maxSoftMs: MAX_SOFT_MS },
        }),
      );
      gateway = await serveCli(qsd, ['--listen', '127.0.0.1:0', '--config', config]);
      pid = gateway.run.child.pid!;
      healthy = await TestClient.connect(gateway.ws);
      registerLeftover({ label: 'healthy client', dispose: () => healthy.ws.terminate(), disposeNow: () => healthy.ws.terminate() });
      healthy.ws.on('message', (data) => {
        const m = JSON.parse(String(data)) as Msg;
        if (m.type === 'event') latencies.push(Date.now() - Date.parse(m.ts as string));
      });
      await healthy.next((m) => m.type === 'welcome');
      healthy.send({ type: 'subscribe', id: 's', sub: 'all', progress: { intervalMs: 0 } });
      await healthy.next((m) => m.type === 'synced');
      // A mirror that stays until cancelled; user pauses and resumes through the gateway make its stream move.
      await startMirror(qsd, qsd, { jobId: 'm', speed: 64 * 1024, dataMiB: 32 });
      await healthy.next((m) => m.type === 'event' && m.job.id === 'm' && m.transition.to === 'running', 60_000);
      const command = async (action: 'pause' | 'resume') => {
        const res = await http(`/v1/vms/vm1/jobs/m/${action}`, '{}');
        expect(res.status, `${action}: ${res.text}`).toBe(200);
        transitionsAsked++;
      };
      const latestState = (all: Msg[]) => all.findLast((m) => m.type === 'event' && m.job?.id === 'm')?.job?.state;
      flow = (async () => {
        while (flowing) {
          await command('pause');
          // A mirror of a sparse image is soon ready: then a pause is standby.
          await healthy.until((all) => ['paused', 'standby'].includes(latestState(all) ?? ''), 10_000);
          await command('resume');
          await healthy.until((all) => ['running', 'ready'].includes(latestState(all) ?? ''), 10_000);
        }
      })().catch((error: unknown) => {
        flowError = error;
      });
      // The baseline holds the flow's own HTTP connection and some quiet deliveries: one pause and resume done.
      await waitFor(() => transitionsAsked >= 2 || flowError !== undefined, () => 'the command flow to pause and resume once', 30_000);
      expect(flowError).toBeUndefined();
      baselineFds = Math.min(fdsOf(pid), fdsOf(pid), fdsOf(pid));
      quiet = latencies.slice();
      baselineRss = rssMiBOf(pid);
    }, 90_000);

    afterAll(async () => {
      flowing = false;
      await flow;
      await qsd?.execute('block-job-cancel', { device: 'm', force: true }).catch(() => {});
    });

    it('slow readers: 20 clients reading at a trickle are cut with 4508; the healthy subscriber keeps up', async () => {
      const before4508 = await metric(/blockjob_gateway_ws_disconnects_total\{code="4508"\} (\d+)/);
      const { result: readers, healthzMaxMs, pingMaxMs, peakFds, peakRssMiB, latency } = await whileAttacked(async () => {
        const readers = await Promise.all(Array.from({ length: 20 }, () => TrickleClient.open(gateway.port, '/v1/ws', 100, 100)));
        for (const [i, r] of readers.entries()) r.sendText(JSON.stringify({ type: 'subscribe', id: 's', sub: `t${i}` }));
        cleanup.push(() => readers.forEach((r) => r.destroy()));
        await expect.poll(() => metric(/blockjob_gateway_ws_disconnects_total\{code="4508"\} (\d+)/), { timeout: 60_000, interval: 250 }).toBe(before4508 + 20);
        return readers;
      });
      for (const r of readers) r.destroy();
      const reapMs = await backToBaseline();
      console.log(
        `slow readers: peak ${peakFds} fds (baseline ${baselineFds}), back in ${Math.round(reapMs)} ms; RSS peak ${peakRssMiB.toFixed(1)} MiB (baseline ${baselineRss.toFixed(1)}); /healthz max ${Math.round(healthzMaxMs)} ms; healthy ping max ${Math.round(pingMaxMs)} ms; ${transitionsAsked} commands so far; ${latency}`,
      );
      expect(peakFds).toBeGreaterThanOrEqual(baselineFds + 18);
      expect(peakRssMiB - baselineRss).toBeLessThan(64);
      // Each reader got a gap-free prefix of the stream before the cut.
      for (const r of readers) {
        const messages = r.log.texts.map((t) => JSON.parse(t) as Record<string, unknown>);
        assertChain(messages as never, 'vm1', 0);
      }
      assertHealthyComplete();
    }, 110_000);

    it('abandoned connections: 40 clients of a stopped process are reaped by the heartbeat', async () => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', ABANDONER, gateway.ws, '40'], { stdio: ['ignore', 'pipe', 'inherit'], cwd: REPO });
      const kill = (): void => {
        child.kill('SIGKILL');
      };
      registerLeftover({ label: `abandoner pid ${child.pid}`, dispose: kill, disposeNow: kill });
      cleanup.push(kill);
      const { healthzMaxMs, pingMaxMs, peakFds, latency, result: reapMs } = await whileAttacked(async () => {
        await new Promise<void>((resolve, reject) => {
          child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
          child.once('exit', (code) => reject(new Error(`abandoner exited ${code}`)));
        });
        // The baseline may include one in-flight HTTP command of the flow (see backToBaseline).
        expect(fdsOf(pid)).toBeGreaterThanOrEqual(baselineFds + 38);
        // No FIN, no RST, no pong: the process is frozen with its sockets open.
        child.kill('SIGSTOP');
        return backToBaseline();
      });
      kill();
      console.log(`abandoned: 40 connections of a SIGSTOPped process reaped in ${Math.round(reapMs)} ms (heartbeat ${HEARTBEAT_MS} ms); peak ${peakFds} fds; /healthz max ${Math.round(healthzMaxMs)} ms; healthy ping max ${Math.round(pingMaxMs)} ms; ${latency}`);
      // Two heartbeats by the rule, plus the 4508 read check; generous for a loaded machine.
      expect(reapMs).toBeLessThan(4 * HEARTBEAT_MS);
      assertHealthyComplete();
    }, 80_000);

    it('slowloris: 200 requests and upgrades sent a byte at a time are closed by the header timeout', async () => {
      const sockets: Socket[] = [];
      const { healthzMaxMs, pingMaxMs, peakFds, latency, result: closedMs } = await whileAttacked(async () => {
        const started = performance.now();
        const closedAt: number[] = [];
        for (let i = 0; i < 200; i++) {
          const text = i % 2 === 0 ? upgradeRequest(gateway.port, '/v1/ws') : `GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:${gateway.port}\r\nX-Pad: ${'a'.repeat(200)}\r\n\r\n`;
          const socket = connect(gateway.port, '127.0.0.1');
          socket.on('error', () => {});
          socket.on('close', () => closedAt.push(performance.now() - started));
          let sent = 0;
          const timer = setInterval(() => {
            if (socket.destroyed || sent >= text.length - 4) return clearInterval(timer); // never the final blank line
            socket.write(text[sent++]!);
          }, 100);
          socket.once('close', () => clearInterval(timer));
          sockets.push(socket);
          cleanup.push(() => socket.destroy());
        }
        await expect.poll(() => fdsOf(pid), { timeout: 10_000, interval: 50 }).toBeGreaterThanOrEqual(baselineFds + 150);
        await expect.poll(() => closedAt.length, { timeout: 30_000, interval: 100 }).toBe(200);
        return Math.max(...closedAt);
      });
      for (const s of sockets) s.destroy();
      const reapMs = await backToBaseline();
      console.log(`slowloris: 200 connections all closed by the gateway within ${Math.round(closedMs)} ms (headers timeout ${HEADERS_TIMEOUT_MS} ms); peak ${peakFds} fds, baseline again after ${Math.round(reapMs)} ms; /healthz max ${Math.round(healthzMaxMs)} ms; healthy ping max ${Math.round(pingMaxMs)} ms; ${latency}`);
      expect(peakFds).toBeGreaterThanOrEqual(baselineFds + 150);
      // Closed by the gateway (the clients never stop on their own): the timeout plus its 1 s check beat.
      expect(closedMs).toBeLessThan(HEADERS_TIMEOUT_MS + 8_000);
      assertHealthyComplete();
    }, 60_000);

    /** The healthy subscriber is still open and has every stream event up to the gateway's head. */
    function assertHealthyComplete(): void {
      expect(healthy.closeCode).toBeUndefined();
      expect(healthy.invalid).toEqual([]);
      const last = assertChain(healthy.messages, 'vm1', lastSynced());
      expect(last).toBe(lastOffset(healthy.messages));
      expect(flowError).toBeUndefined();
      expect(transitionsAsked).toBeGreaterThan(0);
    }

    function lastSynced(): number {
      return healthy.ofType('synced', 'all')[0]!.offset as number;
    }
  });
});

/** One HTTP request on its own connection (no keep-alive pool holding descriptors in the gateway). */
function request(port: number, path: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, method: body === undefined ? 'GET' : 'POST', agent: false, timeout: 10_000, headers: body === undefined ? {} : { 'Content-Type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${path}: no answer within 10 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function lastOffset(messages: Msg[]): number {
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i]!.vm === 'vm1' && typeof messages[i]!.offset === 'number') return messages[i]!.offset!;
  return 0;
}

/** A child process that opens N subscribed WebSocket connections, says "ready", and is then frozen by the test. */
const ABANDONER = `
import WebSocket from 'ws';
const [url, n] = process.argv.slice(-2);
let synced = 0;
for (let i = 0; i < Number(n); i++) {
  const ws = new WebSocket(url);
  ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', id: 's', sub: 'a' })));
  ws.on('message', (data) => { if (String(data).includes('"type":"synced"') && ++synced === Number(n)) console.log('ready'); });
  ws.on('error', () => {});
}
`;
