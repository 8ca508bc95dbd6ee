/** An edge gateway: no monitors of its own, every VM in Redis, commands forwarded to their owners. */
import type { GatewayHealth } from '../gateway/http.js';
import type { HistoryLimits } from '../gateway/history/types.js';
import type { Logger } from '../log.js';
import { hostname } from 'node:os';
import { EdgeCommands } from './commands.js';
import { connectOrFail, connectRedis, duplicateRedis, whenReady } from './connect.js';
import { EdgeFeed } from './edge-feed.js';
import { fleetDefaults, keyPrefixOf, redisTargetOf, type FleetConfig } from './fleet-config.js';
import { FleetHistory } from './history.js';
import { StartDeadline, type Stage } from './start-deadline.js';
import type { FleetStats } from './stats.js';
import { FleetStore } from './store.js';

export interface FleetEdge {
  readonly edgeId: string;
  readonly feed: EdgeFeed;
  readonly commands: EdgeCommands;
  readonly stats: FleetStats;
  /**
   * Runs a stage of the start under its one deadline (`fleet.startTimeoutMs`, from startFleetEdge on):
   * the feed's subscribe and load run under it, and serve's own stages (the reply channel).
   */
  readonly stage: Stage;
  /** The start is done: its deadline no longer applies. */
  started(): void;
  /** Told when the edge loses or regains Redis (serve closes live connections on loss). */
  onRedis(listener: (up: boolean) => void): void;
  health(): GatewayHealth;
  close(): Promise<void>;
}

export async function startFleetEdge(config: FleetConfig, options: { logger: Logger; historyLimits?: HistoryLimits }): Promise<FleetEdge> {
  const log = options.logger;
  const target = redisTargetOf(config);
  const edgeId = config.edgeId ?? `${hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 40)}-${process.pid}`;
  const deadline = new StartDeadline(`edge ${edgeId} (Redis at ${target.redacted})`, config.startTimeoutMs ?? fleetDefaults().startTimeoutMs);
  const redis = connectRedis(target, { connectionName: `bjg-edge-${edgeId}`, ...(config.tlsCaFile ? { tlsCaFile: config.tlsCaFile } : {}) });
  redis.on('error', () => undefined);
  const subscriber = duplicateRedis(redis);
  subscriber.on('error', () => undefined);
  try {
    await deadline.stage('connect to Redis', connectOrFail(redis, target, undefined, config.tlsCaFile));
    await deadline.stage('connect the notify subscriber', whenReady(subscriber));
  } catch (error) {
    deadline.end();
    subscriber.disconnect();
    redis.disconnect();
    throw error;
  }
  const store = new FleetStore(redis, keyPrefixOf(config));
  const history = new FleetHistory(store, { ...(options.historyLimits ? { limits: options.historyLimits } : {}) });
  const listeners: ((up: boolean) => void)[] = [];
  const feed = new EdgeFeed(store, subscriber, history, { logger: log, onRedis: (up) => listeners.forEach((l) => l(up)), stage: deadline.stage });
  const commands = new EdgeCommands(store, subscriber, {
    edge: edgeId,
    ...(config.commandAckMs !== undefined ? { ackTimeoutMs: config.commandAckMs } : {}),
    knows: (vm) => feed.knows(vm),
    logger: log,
  });
  log.info({ redis: target.redacted, edge: edgeId }, 'fleet: edge gateway');
  return {
    edgeId,
    feed,
    commands,
    stats: store.stats,
    stage: deadline.stage,
    started: () => deadline.end(),
    onRedis: (listener) => listeners.push(listener),
    health: () => ({ ready: feed.redisConnected, monitors: false, degraded: feed.redisConnected ? [] : ['redis unreachable: every VM shown stale'] }),
    async close() {
      deadline.end();
      commands.close();
      feed.stop(); // the gateway stops it too, but a failed start may never have handed it one
      redis.disconnect();
    },
  };
}
