/**
 * What a GatewayClient is given and what it tells: its options, its events, and the options of
 * `synced`. The public types of the client library (re-exported by index.ts).
 */
import type {
  EventMessage,
  JobState,
  ProgressMessage,
  ServerMessage,
  SubscriptionFilter,
  VmMessage,
  VmStatus,
  WelcomeMessage,
} from '../generated/schema-types.js';
import type { ReconnectPolicy } from '../backoff.js';
import type { CallOptions } from './calls.js';
import type { StreamPosition } from './cursors.js';
import type { ClientError } from './errors.js';
import type { ConnectionStatus } from './session.js';
import type { WebSocketFactory } from './socket.js';

export interface GatewayClientOptions {
  /** One gateway URL or several (tried in turn: failover). `ws://HOST:PORT`, `.../v1/ws`, or http(s). */
  urls: string | readonly string[];
  /** The platform's WebSocket when absent (browsers, Node >= 22); Node 20: `nodeWebSocket` from `blockjob-gateway/client/node`. */
  socket?: WebSocketFactory;
  /** Bearer token, or a function read on every (re)connect. */
  token?: string | (() => string | undefined);
  /** Which jobs the live map and the events cover (PROTOCOL.md, subscribe). @default everything */
  filter?: SubscriptionFilter;
  /** `progress` messages at most this often per job; 0 = none. @default the gateway's */
  progressIntervalMs?: number;
  /** An attempt fails when no `welcome` arrives this long after it started. @default 10000 */
  connectTimeoutMs?: number;
  /** Reconnect delays (exponential, capped, jittered). @default { initialDelayMs: 250, maxDelayMs: 15000 } */
  backoff?: ReconnectPolicy;
  /** Commands awaiting their result at once. @default 64 */
  maxPendingCommands?: number;
  /** `waitFor`s at once. @default 1024 */
  maxWaiters?: number;
  /** Concluded and dismissed jobs the live map keeps per VM (oldest go first). @default 100 */
  maxFinishedJobsPerVm?: number;
  /** Resume these VM streams from these positions on the first subscribe (their history is replayed). @default none: a snapshot */
  since?: Record<string, StreamPosition>;
  /** Jobs one VM's snapshot may hold while it is staged until `synced`; past it the client stops. @default 10000 */
  maxSnapshotJobsPerVm?: number;
  /** Aborting it closes the client. */
  signal?: AbortSignal;
  /** Where an exception thrown by an event listener goes. @default console.error */
  onListenerError?: (error: unknown, event: string) => void;
}

export interface SnapshotEvent {
  vm: string;
  jobs: JobState[];
  status?: VmStatus;
}

/** What `on(...)` can listen to. */
export interface GatewayClientEvents {
  status: ConnectionStatus;
  welcome: WelcomeMessage;
  /** A VM's jobs were replaced by a snapshot (first subscribe, or a resume the history could not serve). */
  snapshot: SnapshotEvent;
  /** A job changed state (each exactly once, in stream order); with `leftFilter` it no longer matches the filter and left the map. */
  transition: EventMessage;
  vm: VmMessage;
  progress: { message: ProgressMessage; job: JobState };
  /** Every stream covered by the subscription has caught up; the job map is complete. */
  synced: void;
  /** Every message about the subscription, commands and errors, deduplicated, in order (not pongs or bookmarks): for logs and `watch --json`. */
  message: ServerMessage;
  /** The client stopped for good (a refused connection or subscription); it is closed. */
  error: ClientError;
}

export interface SyncedOptions extends CallOptions {
  /** Reject as soon as every URL failed once, instead of retrying until the timeout. */
  failFast?: boolean;
}
