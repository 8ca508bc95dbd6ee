/** The QMP layer's public API: the client, its contract, and the pieces it is built from. */
export * from './types.js';
export { QmpClient, COMMAND_ID_PREFIX } from './client.js';
export type { QmpClientOptions } from './client-options.js';
export { defaultConnect } from './transport.js';
export { parseQmpAddress, formatQmpAddress } from './address.js';
export { JsonObjectFramer, DEFAULT_MAX_MESSAGE_BYTES, type JsonFramerOptions, type FramedMessage } from './framing.js';
export { reconnectDelayMs, resolveReconnectPolicy, DEFAULT_RECONNECT_POLICY, type ReconnectPolicy } from '../backoff.js';
export { silentLogger, type Logger } from '../log.js';
