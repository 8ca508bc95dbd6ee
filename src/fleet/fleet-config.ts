/** Resolving the `fleet` config: the Redis URL (possibly from the environment) and this gateway's name. */
import { hostname } from 'node:os';
import { ConfigError } from '../errors.js';
import type { FleetConfig } from '../generated/schema-types.js';
import { parseRedisUrl, type RedisTarget } from './connect.js';

export type { FleetConfig };

/** `env:NAME` reads the URL from the environment, so the password is not in the process list. */
export function redisTargetOf(config: FleetConfig, env: NodeJS.ProcessEnv = process.env): RedisTarget {
  const spec = config.redis;
  if (!spec.startsWith('env:')) return parseRedisUrl(spec);
  const name = spec.slice(4);
  const value = env[name];
  if (!value) throw new ConfigError(`fleet.redis names the environment variable ${name}, which is not set`, 'fleet.redis');
  return parseRedisUrl(value);
}

/** A name Redis keys may carry: the host name, cleaned. */
export function defaultHostId(): string {
  return hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64) || 'host';
}
