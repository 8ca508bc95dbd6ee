/**
 * The gateway: the v1 push protocol (core), its `ws` transport, HTTP endpoints, auth, metrics, and
 * the stream history behind resume. `startGateway` assembles them; the pieces are exported for
 * embedding in another http server or transport.
 */
export { startGateway, isLoopback, type GatewayServerOptions, type RunningGateway } from './server.js';
export {
  GatewayCore,
  type CommandContext,
  type CommandHandler,
  type ConnectionContext,
  type ConnectionHooks,
  type GatewayCoreOptions,
  type GatewaySocket,
  type ResultMessage,
  type VmJobs,
} from './core.js';
export type { BackpressureOptions, InboundLimits } from './connection.js';
export { ANONYMOUS, TokenAuthenticator, canControl, canRead, tokenFromRequest, type Principal, type Scope } from './auth.js';
export { createHttpHandler, statusForCommandError, type HttpHandlerOptions } from './http.js';
export { createMetrics, type GatewayMetrics } from './metrics.js';
export { useWebSocket, type WsAdapter, type WsAdapterOptions } from './use/ws.js';
export { StreamHub } from './stream/hub.js';
export { progressEvent, streamEvent } from './stream/events.js';
export type { FeedSink, JobKeys, ProgressEvent, StreamEvent, StreamFeed, TransitionKeys } from './stream/feed.js';
export { MemoryStreamHistory, newEpoch, DEFAULT_HISTORY_MAX_AGE_MS, DEFAULT_HISTORY_MAX_ENTRIES } from './history/memory.js';
export type { HistoryEntry, HistoryLimits, HistoryRead, MaybePromise, ResetReason, StreamHistory, StreamPosition } from './history/types.js';
export { GatewayStats } from './stats.js';
