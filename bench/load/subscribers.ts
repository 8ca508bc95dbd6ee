/**
 * Load generator (forked): N WebSocket subscribers on 127.0.0.1, kept in a separate process so the
 * gateway's CPU is measured alone. Speaks the v1 protocol (welcome, subscribe, synced) or, against
 * the bare `ws` baseline, just receives. Frames are counted without parsing; every
 * `sampleEvery`-th delivery is parsed and stamped with its receive time for latency.
 */
import WebSocket from 'ws';
import { serveRpc } from '../lib/rpc.js';
import { wallNow } from '../lib/stats.js';
import { transitionKey } from '../lib/transition-key.js';

const CONNECT_BATCH = 200;
const MAX_SAMPLES = 200_000;
/** Connecting N subscribers may take this long: 2 min, or 20 ms each (19,800 on a loaded 2-core machine took over 2 min). */
const connectTimeoutMs = (count: number): number => Math.max(120_000, count * 20);

export interface ConnectArgs {
  url: string;
  count: number;
  /** 'gateway' speaks v1 and subscribes; 'bare' only receives. */
  mode: 'gateway' | 'bare';
  /** The subscribe message's filter (gateway mode). */
  filter?: Record<string, unknown>;
}

/** A delivery sample: the receive time and, for gateway frames, what identifies the transition. */
export interface DeliverySample {
  recv: number;
  key?: string;
  /** Send stamp of a bare frame. */
  sent?: number;
}

interface Subscriber {
  socket: WebSocket;
  /** Resolves once the subscription is synced (gateway) or the socket is open (bare). */
  ready: Promise<void>;
  /** Receive time of the first frame containing every `watch` string, since the last watch. */
  watched?: number;
}

const subscribers: Subscriber[] = [];
let recording = false;
let deliveries = 0;
let sampleEvery = 16;
let samples: DeliverySample[] = [];
let watch: string[] | undefined;
let closes = 0;

function onFrame(subscriber: Subscriber, data: WebSocket.RawData, mode: ConnectArgs['mode']): void {
  if (!recording && !watch) return;
  const recv = wallNow();
  const text = data.toString();
  if (watch && subscriber.watched === undefined && watch.every((part) => text.includes(part))) subscriber.watched = recv;
  if (!recording) return;
  if (mode === 'gateway' && !text.startsWith('{"type":"event"')) return;
  deliveries++;
  if (deliveries % sampleEvery !== 0 || samples.length >= MAX_SAMPLES) return;
  const message = JSON.parse(text);
  if (mode === 'bare') samples.push({ recv, sent: message.t });
  else samples.push({ recv, key: transitionKey(message.vm, message.job) });
}

function openSubscriber(args: ConnectArgs, index: number): Subscriber {
  const socket = new WebSocket(args.url, { perMessageDeflate: false });
  const subscriber = { socket } as Subscriber;
  subscriber.ready = new Promise<void>((resolve, reject) => {
    let streams = -1;
    let synced = 0;
    socket.once('error', reject);
    socket.once('close', (code) => {
      closes++;
      reject(new Error(`subscriber ${index} closed with ${code} before it was ready`));
    });
    if (args.mode === 'bare') socket.once('open', () => resolve());
    socket.on('message', (data) => {
      if (streams >= 0 && synced >= streams) return onFrame(subscriber, data, args.mode);
      if (args.mode === 'bare') return onFrame(subscriber, data, args.mode);
      const message = JSON.parse(data.toString());
      if (message.type === 'welcome') {
        socket.send(JSON.stringify({ type: 'subscribe', id: '1', sub: 's', progress: { intervalMs: 0 }, ...(args.filter ? { filter: args.filter } : {}) }));
      } else if (message.type === 'subscribed') {
        streams = Object.keys(message.streams).length;
        if (streams === 0) resolve();
      } else if (message.type === 'synced') {
        if (++synced >= streams) resolve();
      } else if (message.type === 'error') {
        reject(new Error(`subscribe refused: ${message.code} ${message.message}`));
      }
    });
  });
  subscriber.ready.catch(() => undefined);
  return subscriber;
}

async function connect(args: ConnectArgs): Promise<{ connected: number }> {
  const deadline = Date.now() + connectTimeoutMs(args.count);
  for (let start = 0; start < args.count; start += CONNECT_BATCH) {
    const batch: Subscriber[] = [];
    for (let i = start; i < Math.min(args.count, start + CONNECT_BATCH); i++) batch.push(openSubscriber(args, subscribers.length + batch.length));
    subscribers.push(...batch);
    await Promise.all(batch.map((s) => s.ready));
    if (Date.now() > deadline) throw new Error(`connecting ${args.count} subscribers took over ${connectTimeoutMs(args.count)} ms`);
  }
  return { connected: subscribers.length };
}

/** One fresh subscriber to everything: ms from subscribe to the last synced, and the states received. */
function timeSnapshot(url: string): Promise<{ ms: number; states: number }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false });
    let sentAt = 0;
    let streams = -1;
    let synced = 0;
    let states = 0;
    socket.once('error', reject);
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString());
      if (message.type === 'welcome') {
        sentAt = performance.now();
        socket.send(JSON.stringify({ type: 'subscribe', id: '1', sub: 'snap', progress: { intervalMs: 0 } }));
      } else if (message.type === 'subscribed') streams = Object.keys(message.streams).length;
      else if (message.type === 'state') states++;
      else if (message.type === 'synced' && ++synced === streams) {
        const ms = performance.now() - sentAt;
        socket.close();
        resolve({ ms, states });
      }
    });
  });
}

/** The ready scenario's subscriber: the receive time of the first frame saying each job is ready. */
const readyAt = new Map<string, number>();
let readySocket: WebSocket | undefined;

function watchReady(url: string): Promise<null> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false });
    readySocket = socket;
    socket.once('error', reject);
    socket.on('message', (data) => {
      const recv = wallNow();
      const message = JSON.parse(data.toString());
      if (message.type === 'welcome') socket.send(JSON.stringify({ type: 'subscribe', id: '1', sub: 'ready', progress: { intervalMs: 0 } }));
      else if (message.type === 'synced') resolve(null);
      else if (message.type === 'event' && message.job.ready === true && !readyAt.has(message.job.id)) readyAt.set(message.job.id, recv);
    });
  });
}

serveRpc({
  connect,
  /** One subscriber to everything that records when each job's ready arrives; resolves once synced. */
  watchReady: ({ url }: { url: string }) => watchReady(url),
  readyTimes: () => Object.fromEntries(readyAt),
  async snapshotTimes({ url, repeats }: { url: string; repeats: number }) {
    const results = [];
    for (let i = 0; i < repeats; i++) results.push(await timeSnapshot(url));
    return results;
  },
  startRecording({ every }: { every: number }) {
    deliveries = 0;
    samples = [];
    sampleEvery = Math.max(1, every);
    recording = true;
    return null;
  },
  stopRecording() {
    recording = false;
    const result = { deliveries, samples, closes, open: subscribers.filter((s) => s.socket.readyState === WebSocket.OPEN).length };
    samples = [];
    return result;
  },
  /** Start watching for frames containing every string in `parts` (one receive time per subscriber). */
  watch({ parts }: { parts: string[] }) {
    for (const s of subscribers) delete s.watched;
    watch = parts;
    return null;
  },
  /** Receive times of the watched frame so far, and how many subscribers have not seen it yet. */
  watched() {
    const times = subscribers.flatMap((s) => (s.watched === undefined ? [] : [s.watched]));
    return { times, missing: subscribers.length - times.length };
  },
  async disconnectAll() {
    const closing = subscribers.splice(0).map(
      (s) => new Promise<void>((resolve) => {
        if (s.socket.readyState === WebSocket.CLOSED) return resolve();
        s.socket.once('close', () => resolve());
        s.socket.terminate();
      }),
    );
    await Promise.all(closing);
    watch = undefined;
    return null;
  },
  close() {
    readySocket?.terminate();
    for (const s of subscribers.splice(0)) s.socket.terminate();
    return null;
  },
});
