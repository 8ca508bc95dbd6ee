/**
 * Load generator (forked): WebSocket subscribers of a fleet edge, each with its own token limited to
 * its VMs (so `welcome` lists only those) and a subscription filtered to them. Counts event frames;
 * every `sampleEvery`-th is parsed for latency: receive time minus the event's `ts` (the instant the
 * simulated host received it; `ts` has millisecond resolution).
 */
import WebSocket from 'ws';
import { watchLoop, type Stalls } from '../lib/loop-watch.js';
import { serveRpc } from '../lib/rpc.js';
import { startWindowProfile } from '../lib/window-profile.js';
import { wallNow } from '../lib/stats.js';

const BATCH = 200;
const sockets: WebSocket[] = [];
let recording = false;
let deliveries = 0;
let sampleEvery = 8;
let samples: number[] = [];
let stopWatch: (() => Stalls) | undefined;
let stopProfile: (() => Promise<void>) | undefined;

function open(url: string, token: string, vms: string[]): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
    ws.once('error', reject);
    ws.on('message', (data) => {
      const text = data.toString();
      if (text.startsWith('{"type":"synced"')) resolve(ws);
      if (!recording || !text.startsWith('{"type":"event"')) return;
      deliveries++;
      if (deliveries % sampleEvery === 0) samples.push(wallNow() - Date.parse((JSON.parse(text) as { ts: string }).ts));
    });
    ws.once('open', () => ws.send(JSON.stringify({ type: 'subscribe', id: '1', sub: 's', filter: { vms }, progress: { intervalMs: 0 } })));
  });
}

serveRpc({
  async connect({ url, subscribers }: { url: string; subscribers: { token: string; vms: string[] }[] }) {
    for (let i = 0; i < subscribers.length; i += BATCH) {
      sockets.push(...(await Promise.all(subscribers.slice(i, i + BATCH).map((s) => open(url, s.token, s.vms)))));
    }
    return sockets.length;
  },
  async startRecording({ every, profile }: { every: number; profile?: boolean }) {
    if (profile) stopProfile = await startWindowProfile('fleet-subscribers-window');
    sampleEvery = every;
    deliveries = 0;
    samples = [];
    recording = true;
    stopWatch = watchLoop();
    return null;
  },
  async stopRecording() {
    recording = false;
    await stopProfile?.();
    stopProfile = undefined;
    const stalls = stopWatch?.();
    stopWatch = undefined;
    return { deliveries, samples, stalls };
  },
  disconnectAll() {
    for (const s of sockets.splice(0)) s.terminate();
    return null;
  },
});
