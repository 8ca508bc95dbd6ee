/**
 * `blockjob-gateway/client`: the public client library (browser-safe: nothing from Node). In Node 20,
 * pass `socket: nodeWebSocket` from `blockjob-gateway/client/node`. See docs/client.md.
 */
export { GatewayClient } from './gateway-client.js';
export { wasReady } from './waiters.js';
export type { CallOptions } from './calls.js';
export type { WaitTarget } from './waiters.js';
export type { CommandRequest } from './commands.js';
export type { GatewayClientEvents, GatewayClientOptions, SnapshotEvent, SyncedOptions } from './options.js';
export type { ConnectionStatus } from './session.js';
export { endpoint } from './session.js';
export type { StreamPosition } from './cursors.js';
export { isEnded, VERB_STATES } from '../protocol/job-rules.js';
export { describeCause, type WebSocketFactory, type WebSocketLike } from './socket.js';
export * from './errors.js';
export type {
  CommandAction,
  EventMessage,
  JobState,
  JobStatusName,
  ProgressMessage,
  ResultMessage,
  ServerMessage,
  SubscriptionFilter,
  VmMessage,
  VmStatus,
  WelcomeMessage,
} from '../generated/schema-types.js';
