/**
 * Load generator (forked): N WebSocket subscribers on 127.0.0.1, kept in a separate process so the
 * gateway's CPU is measured alone. Speaks the v1 protocol (welcome, subscribe, synced) or, against
 * the bare `ws` baseline, just receives. Frames are counted without parsing; every
 * `sampleEvery`-th delivery is parsed and stamped with its receive time for latency. `lean`
 * subscribers (lean-ws.ts) read raw frames and stamp them when their bytes arrive; the burst uses
 * them for the gateway and the bare baseline alike.
 */
import net from 'node:net';
import WebSocket from 'ws';
import { serveRpc } from '../lib/rpc.js';
import { wallNow } from '../lib/stats.js';
import { transitionKey } from '../lib/transition-key.js';
import { LeanWebSocket } from './lean-ws.js';

const CONNECT_BATCH = 200;
const MAX_SAMPLES = 200_000;
const STATE_PREFIX = Buffer.from('{"type":"state"');
/**
 * Connecting N subscribers may take this long: 2 min, or 20 ms each (19,800 on a loaded 2-core machine
 * took over 2 min), but under the RPC call's own 300 s, so that a stuck connect reports itself.
 */
const connectTimeoutMs = (count: number): number => Math.min(240_000, Math.max(120_000, count * 20));

export interface ConnectArgs {
  url: string;
  count: number;
  /** 'gateway' speaks v1 and subscribes; 'bare' only receives. */
  mode: 'gateway' | 'bare';
  /** The subscribe message's filter (gateway mode). */
  filter?: Record<string, unknown>;
  /** Raw-frame subscribers (lean-ws.ts) instead of `ws` clients. */
  lean?: boolean;
}

/** A delivery sample: the receive time and, for gateway frames, what identifies the transition. */
export interface DeliverySample {
  recv: number;
  key?: string;
  /** Send stamp of a bare frame. */
  sent?: number;
}

interface Subscriber {
  readonly isOpen: () => boolean;
  readonly terminate: () => void;
  /** Resolves once the socket is closed. */
  closed: Promise<void>;
  /** Resolves once the subscription is synced (gateway) or the socket is open (bare). */
  ready: Promise<void>;
  /** Receive time of the first frame containing every `watch` string, since the last watch. */
  watched?: number;
  /** How far the handshake got: a connect that hangs reports where. */
  stage: Stage;
}

type Stage = 'connecting' | 'open' | 'welcome' | 'subscribed' | 'ready' | 'closed';

const subscribers: Subscriber[] = [];
let recording = false;
let deliveries = 0;
let sampleEvery = 16;
let samples: DeliverySample[] = [];
let watch: Buffer[] | undefined;
/** The watched burst: subscribers that saw it, this process's CPU when the last one did, and one frame's text. */
let watchedCount = 0;
let watchCpuAt: NodeJS.CpuUsage | undefined;
let watchCpuMs: number | undefined;
let watchedFrame: string | undefined;
let onAllWatched: (() => void) | undefined;
let closes = 0;

function hasWatched(bytes: Buffer, start: number, end: number, parts: readonly Buffer[]): boolean {
  for (const part of parts) {
    const at = bytes.indexOf(part, start);
    if (at < 0 || at + part.length > end) return false;
  }
  return true;
}

/** A frame received live; `bytes[start, end)` is its payload (valid during the call only). */
function onFrame(subscriber: Subscriber, bytes: Buffer, start: number, end: number, recv: number, mode: ConnectArgs['mode']): void {
  if (watch && subscriber.watched === undefined && hasWatched(bytes, start, end, watch)) {
    subscriber.watched = recv;
    watchedFrame ??= bytes.toString('utf8', start, end);
    if (++watchedCount === subscribers.length) {
      const used = process.cpuUsage(watchCpuAt);
      watchCpuMs = (used.user + used.system) / 1000;
      onAllWatched?.();
    }
  }
  if (!recording) return;
  const text = bytes.toString('utf8', start, end);
  if (mode === 'gateway' && !text.startsWith('{"type":"event"')) return;
  deliveries++;
  if (deliveries % sampleEvery !== 0 || samples.length >= MAX_SAMPLES) return;
  const message = JSON.parse(text);
  if (mode === 'bare') samples.push({ recv, sent: message.t });
  else samples.push({ recv, key: transitionKey(message.vm, message.job) });
}

/**
 * The v1 client side up to synced (gateway mode): the messages before it are parsed, the live ones
 * go to onFrame. Returns the handler of one text message, and `ready` settles with the sync.
 */
function v1Client(args: ConnectArgs, send: (text: string) => void, live: (bytes: Buffer, start: number, end: number, recv: number) => void, at: (stage: Stage) => void) {
  let streams = -1;
  let synced = 0;
  let settle: { resolve: () => void; reject: (error: Error) => void } | undefined;
  const ready = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  ready.then(() => at('ready'), () => undefined);
  const text = (bytes: Buffer, start: number, end: number, recv: number): void => {
    if (args.mode === 'bare' || (streams >= 0 && synced >= streams)) return live(bytes, start, end, recv);
    const message = JSON.parse(bytes.toString('utf8', start, end));
    if (message.type === 'welcome') {
      at('welcome');
      send(JSON.stringify({ type: 'subscribe', id: '1', sub: 's', progress: { intervalMs: 0 }, ...(args.filter ? { filter: args.filter } : {}) }));
    } else if (message.type === 'subscribed') {
      at('subscribed');
      streams = Object.keys(message.streams).length;
      if (streams === 0) settle!.resolve();
    } else if (message.type === 'synced') {
      if (++synced >= streams) settle!.resolve();
    } else if (message.type === 'error') {
      settle!.reject(new Error(`subscribe refused: ${message.code} ${message.message}`));
    }
  };
  const opened = () => {
    at('open');
    if (args.mode === 'bare') settle!.resolve();
  };
  return { text, ready, fail: (error: Error) => settle!.reject(error), opened };
}

function openSubscriber(args: ConnectArgs, index: number): Subscriber {
  let markClosed!: () => void;
  const subscriber = { closed: new Promise<void>((resolve) => (markClosed = resolve)), stage: 'connecting' } as Subscriber;
  const at = (stage: Stage) => void (subscriber.stage = stage);
  const live = (bytes: Buffer, start: number, end: number, recv: number) => onFrame(subscriber, bytes, start, end, recv, args.mode);
  const onClose = (code: number): void => {
    closes++;
    at('closed');
    client.fail(new Error(`subscriber ${index} closed with ${code} before it was ready`));
    markClosed();
  };
  let client: ReturnType<typeof v1Client>;
  if (args.lean) {
    const socket: LeanWebSocket = new LeanWebSocket(args.url, { opened: () => client.opened(), text: (...a) => client.text(...a), closed: onClose });
    client = v1Client(args, (text) => socket.sendText(text), live, at);
    Object.assign(subscriber, { isOpen: () => socket.open, terminate: () => socket.terminate() });
  } else {
    const socket = new WebSocket(args.url, { perMessageDeflate: false });
    client = v1Client(args, (text) => socket.send(text), live, at);
    socket.once('error', (error) => client.fail(error));
    socket.once('close', onClose);
    socket.once('open', () => client.opened());
    socket.on('message', (data) => {
      const recv = wallNow();
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      client.text(bytes, 0, bytes.length, recv);
    });
    Object.assign(subscriber, { isOpen: () => socket.readyState === WebSocket.OPEN, terminate: () => socket.terminate() });
  }
  subscriber.ready = client.ready;
  subscriber.ready.catch(() => undefined);
  return subscriber;
}

function stages(batch: readonly Subscriber[]): string {
  const counts = new Map<Stage, number>();
  for (const s of batch) counts.set(s.stage, (counts.get(s.stage) ?? 0) + 1);
  return [...counts].map(([stage, n]) => `${n} ${stage}`).join(', ');
}

async function connect(args: ConnectArgs): Promise<{ connected: number }> {
  const deadline = Date.now() + connectTimeoutMs(args.count);
  for (let start = 0; start < args.count; start += CONNECT_BATCH) {
    const batch: Subscriber[] = [];
    for (let i = start; i < Math.min(args.count, start + CONNECT_BATCH); i++) batch.push(openSubscriber(args, subscribers.length + batch.length));
    subscribers.push(...batch);
    // Bounded: a subscriber that neither opens nor closes (its connect queued by a server that cannot
    // accept, e.g. out of file descriptors) would otherwise hold the batch forever.
    let ready = 0;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`connecting ${args.count} subscribers took over ${connectTimeoutMs(args.count)} ms (${subscribers.length - batch.length + ready} ready; the last batch by stage: ${stages(batch)})`)), Math.max(0, deadline - Date.now()));
    });
    try {
      await Promise.race([Promise.all(batch.map((s) => s.ready.then(() => void ready++))), late]);
    } finally {
      clearTimeout(timer);
    }
  }
  return { connected: subscribers.length };
}

/**
 * One fresh subscriber to everything: ms from subscribe to the last synced, the states received, and
 * this process's CPU for it. `lean`: a raw-frame client (lean-ws.ts) that parses only welcome,
 * subscribed and synced and counts the states by their first bytes, as the fan-out's subscribers
 * count frames; otherwise a `ws` client that parses every message.
 */
function timeSnapshot(url: string, lean: boolean): Promise<{ ms: number; states: number; cpuMs: number }> {
  return new Promise((resolve, reject) => {
    const cpu = process.cpuUsage();
    let sentAt = 0;
    let streams = -1;
    let synced = 0;
    let states = 0;
    let send: (text: string) => void = () => undefined;
    let close: () => void = () => undefined;
    const text = (bytes: Buffer, start: number, end: number): void => {
      if (bytes.compare(STATE_PREFIX, 0, STATE_PREFIX.length, start, Math.min(end, start + STATE_PREFIX.length)) === 0) {
        states++;
        return;
      }
      const message = JSON.parse(bytes.toString('utf8', start, end));
      if (message.type === 'welcome') {
        sentAt = performance.now();
        send(JSON.stringify({ type: 'subscribe', id: '1', sub: 'snap', progress: { intervalMs: 0 } }));
      } else if (message.type === 'subscribed') streams = Object.keys(message.streams).length;
      else if (message.type === 'synced' && ++synced === streams) {
        const ms = performance.now() - sentAt;
        close();
        const used = process.cpuUsage(cpu);
        resolve({ ms, states, cpuMs: (used.user + used.system) / 1000 });
      } else if (message.type === 'error') reject(new Error(`subscribe refused: ${message.code}`));
    };
    if (lean) {
      const socket = new LeanWebSocket(url, { opened: () => undefined, text, closed: () => undefined });
      send = (t) => socket.sendText(t);
      close = () => socket.terminate();
      return;
    }
    const socket = new WebSocket(url, { perMessageDeflate: false });
    send = (t) => socket.send(t);
    close = () => socket.close();
    socket.once('error', reject);
    socket.on('message', (data) => {
      const bytes = data as Buffer;
      // A parsing client: every message parsed, states included.
      if (bytes.compare(STATE_PREFIX, 0, STATE_PREFIX.length, 0, Math.min(bytes.length, STATE_PREFIX.length)) === 0) JSON.parse(bytes.toString());
      text(bytes, 0, bytes.length);
    });
  });
}

/**
 * The ready scenario's subscriber: per job, when the first frame saying it is ready arrived on the
 * socket (`raw`, before ws parses it) and when ws handed it over as a message (`recv`, the push time).
 */
const readyAt = new Map<string, { recv: number; raw: number }>();
let readySocket: WebSocket | undefined;
/** The transport floor's receive times minus the send times its frames carry. */
const floorLags: number[] = [];
let floorSocket: WebSocket | undefined;

/** A `ws` client whose socket stamps each read: `lastRead()` is when the latest bytes arrived. */
function stampedClient(url: string): { socket: WebSocket; lastRead: () => number } {
  let lastRead = 0;
  const socket = new WebSocket(url, {
    perMessageDeflate: false,
    // As ws's own connect: the request's `path` is the URL's, not a unix socket.
    createConnection: ((options: net.TcpNetConnectOpts) => net.connect({ ...options, path: undefined } as net.NetConnectOpts).prependListener('data', () => (lastRead = wallNow()))) as typeof net.createConnection,
  });
  return { socket, lastRead: () => lastRead };
}

function watchReady(url: string): Promise<null> {
  return new Promise((resolve, reject) => {
    const { socket, lastRead } = stampedClient(url);
    readySocket = socket;
    socket.once('error', reject);
    socket.on('message', (data) => {
      const recv = wallNow();
      const message = JSON.parse(data.toString());
      if (message.type === 'welcome') socket.send(JSON.stringify({ type: 'subscribe', id: '1', sub: 'ready', progress: { intervalMs: 0 } }));
      else if (message.type === 'synced') resolve(null);
      else if (message.type === 'event' && message.job.ready === true && !readyAt.has(message.job.id)) readyAt.set(message.job.id, { recv, raw: lastRead() });
    });
  });
}

/** The floor's receiver: the same client and parse as watchReady, on frames `{"sent":<wall ms>}`; resolves once open. */
function watchFloor(url: string): Promise<null> {
  return new Promise((resolve, reject) => {
    const { socket } = stampedClient(url);
    floorSocket = socket;
    socket.once('error', reject);
    socket.once('open', () => resolve(null));
    socket.on('message', (data) => {
      const recv = wallNow();
      const message = JSON.parse(data.toString());
      if (floorLags.length < MAX_SAMPLES) floorLags.push(recv - message.sent);
    });
  });
}

function watchedResult() {
  const times = subscribers.flatMap((s) => (s.watched === undefined ? [] : [s.watched]));
  return { times, missing: subscribers.length - times.length, cpuMs: watchCpuMs, frame: watchedFrame };
}

serveRpc({
  connect,
  /** One subscriber to everything that records when each job's ready arrives; resolves once synced. */
  watchReady: ({ url }: { url: string }) => watchReady(url),
  readyTimes: () => Object.fromEntries(readyAt),
  /** The transport floor: one `ws` client like watchReady's; resolves once open. */
  watchFloor: ({ url }: { url: string }) => watchFloor(url),
  floorLags: () => floorLags,
  async snapshotTimes({ url, repeats, lean = false }: { url: string; repeats: number; lean?: boolean }) {
    const results = [];
    for (let i = 0; i < repeats; i++) results.push(await timeSnapshot(url, lean));
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
    const result = { deliveries, samples, closes, open: subscribers.filter((s) => s.isOpen()).length };
    samples = [];
    return result;
  },
  /**
   * Start watching for frames containing every string in `parts` (one receive time per subscriber),
   * and this process's CPU from now until the last subscriber has it.
   */
  watch({ parts }: { parts: string[] }) {
    for (const s of subscribers) delete s.watched;
    watch = parts.map((part) => Buffer.from(part));
    watchedCount = 0;
    watchCpuMs = undefined;
    watchedFrame = undefined;
    watchCpuAt = process.cpuUsage();
    return null;
  },
  /** Resolves once every subscriber has the watched frame (or after `timeoutMs`) with how many have not: a short reply. */
  async waitWatched({ timeoutMs }: { timeoutMs: number }) {
    if (watchedCount < subscribers.length) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        onAllWatched = () => (clearTimeout(timer), resolve());
      });
      onAllWatched = undefined;
    }
    return { missing: subscribers.length - watchedCount };
  },
  /** Receive times of the watched frame so far, how many subscribers have not seen it yet, this process's CPU for it. */
  watched: () => watchedResult(),
  async disconnectAll() {
    const closing = subscribers.splice(0).map((s) => (s.terminate(), s.closed));
    await Promise.all(closing);
    watch = undefined;
    return null;
  },
  close() {
    readySocket?.terminate();
    floorSocket?.terminate();
    for (const s of subscribers.splice(0)) s.terminate();
    return null;
  },
});
