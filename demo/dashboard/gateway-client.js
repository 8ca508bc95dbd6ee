// The dashboard's protocol client (PROTOCOL.md, v1): one WebSocket, one subscription to everything,
// automatic reconnect with backoff, and resume with `since` so a reconnect replays exactly what was
// missed (recovered) or replaces a VM's jobs in one step (snapshot). Nothing is applied twice: stream
// messages at or below the last seen offset are dropped, and a gap (prev != last seen) resubscribes.

const WS_PATH = '/v1/ws';
/** The protocol name the gateway selects (PROTOCOL.md): a browser refuses a handshake that selects none. */
const SUBPROTOCOL = 'blockjob-gateway.v1';
const BACKOFF_INITIAL_MS = 250;
const BACKOFF_MAX_MS = 5000;
const PING_EVERY_MS = 15000;
const PONG_WITHIN_MS = 10000;
const PROGRESS_INTERVAL_MS = 500;
const COMMAND_TIMEOUT_MS = 600000;
const MAX_RESUME_POSITIONS = 256;
/** Close codes after which reconnecting cannot help without the user. */
const FATAL_CLOSE = new Map([
  [4401, 'the token was refused'],
  [4403, 'this token may not see these VMs'],
]);

export class GatewayClient {
  /**
   * @param {object} options
   * @param {() => string | undefined} options.token  read on every (re)connect
   * @param {object} options.on  callbacks: status, welcome, snapshot, transition, vm, progress, authRequired, problem
   */
  constructor({ token, on }) {
    this.token = token;
    this.on = on;
    /** vm -> { epoch, offset } of the last stream message applied */
    this.positions = new Map();
    /** vm -> Map(jobKey -> job) while a snapshot for that VM is being received */
    this.staging = new Map();
    this.pending = new Map();
    this.sub = undefined;
    this.subCount = 0;
    this.commandCount = 0;
    this.attempt = 0;
    this.ws = undefined;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.ws?.close(1000, 'bye');
  }

  /** Send a job command; resolves with the `result` message. */
  command(fields) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.resolve(localFailure('not connected to the gateway'));
    }
    const id = `c${++this.commandCount}`;
    const message = { type: 'command', id, timeoutMs: COMMAND_TIMEOUT_MS, ...fields };
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      ws.send(JSON.stringify(message));
    });
  }

  connect() {
    if (this.stopped) return;
    const token = this.token();
    const url = new URL(WS_PATH, location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    this.on.status(this.attempt === 0 ? 'connecting' : 'reconnecting', this.attempt === 0 ? 'Connecting…' : 'Reconnecting…');
    let ws;
    try {
      ws = new WebSocket(url, token ? [SUBPROTOCOL, `bearer.${token}`] : [SUBPROTOCOL]);
    } catch (err) {
      this.on.problem(`cannot open a WebSocket: ${err.message}`);
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (frame) => this.receive(frame.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      clearInterval(this.pingTimer);
      clearTimeout(this.pongTimer);
      this.failPending('the connection dropped before the answer; the job state shows what happened');
      if (this.stopped) return;
      const fatal = FATAL_CLOSE.get(event.code);
      if (fatal) {
        this.on.status('offline', `Disconnected: ${fatal}`);
        if (event.code === 4401) this.on.authRequired();
        return;
      }
      if (!opened) {
        // The upgrade failed: a 401 looks like a network error to a browser, so ask over HTTP.
        void this.probeAuth(token).then((needsToken) => {
          if (needsToken) {
            this.on.status('offline', 'A token is required');
            this.on.authRequired();
          } else {
            this.scheduleReconnect();
          }
        });
        return;
      }
      this.scheduleReconnect(event.code);
    };
  }

  scheduleReconnect(code) {
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
    this.attempt++;
    const why = code === 1001 ? 'gateway restarting' : code === 4508 ? 'too slow, resuming' : 'connection lost';
    this.on.status('reconnecting', `Reconnecting in ${Math.max(1, Math.round(delay / 1000))} s (${why})`);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  async probeAuth(token) {
    try {
      const response = await fetch('/v1/jobs', { headers: token ? { Authorization: `Bearer ${token}` } : {} });
      return response.status === 401;
    } catch {
      return false;
    }
  }

  send(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  subscribe() {
    // The protocol takes up to 256 positions; VMs beyond that simply get a snapshot.
    const since = {};
    for (const [vm, position] of [...this.positions].slice(0, MAX_RESUME_POSITIONS)) since[vm] = position;
    this.sub = `dash${++this.subCount}`;
    this.staging.clear();
    const message = { type: 'subscribe', id: this.sub, sub: this.sub, progress: { intervalMs: PROGRESS_INTERVAL_MS } };
    if (Object.keys(since).length > 0) message.since = since;
    this.send(message);
  }

  /** A gap in a stream: drop the subscription and resume from the last applied position. */
  resubscribe() {
    if (this.sub) this.send({ type: 'unsubscribe', id: `u${this.subCount}`, sub: this.sub });
    this.subscribe();
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      this.on.problem('the gateway sent something that is not JSON');
      return;
    }
    switch (message.type) {
      case 'welcome':
        this.attempt = 0;
        this.on.welcome(message);
        this.on.status('live', 'Live');
        this.startHeartbeat();
        this.subscribe();
        return;
      case 'pong':
        clearTimeout(this.pongTimer);
        return;
      case 'result': {
        const resolve = this.pending.get(message.id);
        this.pending.delete(message.id);
        resolve?.(message);
        return;
      }
      case 'error':
        this.on.problem(`${message.code}: ${message.message}`);
        if (message.sub && message.sub === this.sub) this.retrySubscribeLater();
        return;
    }
    if (message.sub !== this.sub) return; // a subscription we already left
    switch (message.type) {
      case 'subscribed':
        for (const [vm, stream] of Object.entries(message.streams ?? {})) {
          if (stream.mode === 'snapshot') {
            this.staging.set(vm, new Map());
          } else {
            this.positions.set(vm, { epoch: stream.epoch, offset: this.positions.get(vm)?.offset ?? stream.offset });
          }
        }
        return;
      case 'state':
        this.staging.get(message.vm)?.set(jobKey(message.job), message.job);
        return;
      case 'synced': {
        const jobs = this.staging.get(message.vm) ?? new Map();
        this.staging.delete(message.vm);
        this.positions.set(message.vm, { epoch: message.epoch, offset: message.offset });
        this.on.snapshot(message.vm, jobs, message.status);
        return;
      }
      case 'event':
      case 'vm':
        if (!this.accept(message)) return;
        if (message.type === 'event') this.on.transition(message);
        else this.on.vm(message);
        return;
      case 'bookmark':
        if (this.positions.get(message.vm)?.epoch === message.epoch) {
          this.positions.set(message.vm, { epoch: message.epoch, offset: message.offset });
        }
        return;
      case 'progress':
        this.on.progress(message);
        return;
      default:
        return;
    }
  }

  /** Exactly-once application of stream messages: skip duplicates, resubscribe on a gap. */
  accept(message) {
    const last = this.positions.get(message.vm);
    if (last && last.epoch === message.epoch && message.offset <= last.offset) return false; // seen already
    if (!last || last.epoch !== message.epoch || message.prev !== last.offset) {
      this.resubscribe();
      return false;
    }
    this.positions.set(message.vm, { epoch: message.epoch, offset: message.offset });
    return true;
  }

  retrySubscribeLater() {
    clearTimeout(this.subscribeTimer);
    this.subscribeTimer = setTimeout(() => this.subscribe(), 2000);
  }

  startHeartbeat() {
    clearInterval(this.pingTimer);
    let pings = 0;
    this.pingTimer = setInterval(() => {
      const ws = this.ws;
      if (!ws) return;
      this.send({ type: 'ping', id: `p${++pings}` });
      clearTimeout(this.pongTimer);
      // A silent network (laptop sleep, dead NAT) never closes the socket by itself.
      this.pongTimer = setTimeout(() => ws.close(4000, 'no pong'), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  failPending(text) {
    for (const resolve of this.pending.values()) resolve(localFailure(text, 'outcome_unknown'));
    this.pending.clear();
  }
}

export function jobKey(job) {
  return `${job.id}#${job.incarnation}`;
}

function localFailure(message, code = 'not_connected') {
  return { type: 'result', ok: false, error: { code, message } };
}
