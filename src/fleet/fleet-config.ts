/** Resolving the `fleet` config: the Redis URL (possibly from the environment) and this gateway's name. */
import { hostname } from 'node:os';
import { ConfigError } from '../errors.js';
import type { FleetConfig } from '../generated/schema-types.js';
import { configDefaults } from '../generated/config-defaults.js';
import { parseRedisUrl, type RedisTarget } from './connect.js';

export type { FleetConfig };

export type FleetDefaults = typeof configDefaults.fleet;

/** What an unset `fleet` setting means: config.schema.json's `default`s (generated), the one home of those values. */
export function fleetDefaults(): FleetDefaults {
  return configDefaults.fleet;
}

/** The prefix of the fleet's keys and channels. */
export function keyPrefixOf(config: Pick<FleetConfig, 'keyPrefix'>): string {
  return config.keyPrefix ?? fleetDefaults().keyPrefix;
}

/** `env:NAME` reads the URL from the environment, so the password is not in the process list. */
export function redisTargetOf(config: FleetConfig, env: NodeJS.ProcessEnv = process.env): RedisTarget {
  const spec = config.redis;
  if (!spec.startsWith('env:')) return parseRedisUrl(spec);
  const name = spec.slice(4);
  const value = env[name];
  if (!value) throw new ConfigError(`fleet.redis names the environment variable ${name}, which is not set`, 'fleet.redis');
  return parseRedisUrl(value);
}

/**
 * A start-up failure as the operator should read it: a key, channel or command the ACL user may not
 * use (NOPERM) is a configuration error that names what the fleet needs, not an internal one.
 * Anything else comes back as it was.
 */
export function fleetStartError(error: unknown, config: FleetConfig): unknown {
  const message = error instanceof Error ? error.message : '';
  if (!message.startsWith('NOPERM')) return error;
  const prefix = keyPrefixOf(config);
  let at = 'Redis';
  try {
    at = `Redis at ${redisTargetOf(config).redacted}`;
  } catch {
    // the URL was fine a moment ago; without it the message still says what is missing
  }
  return new ConfigError(
    `${at} refused the gateway's ACL user: ${message}. The fleet needs its keys and channels (~${prefix}:* &${prefix}:*) and every command but the dangerous ones, plus INFO, as deploy/redis-fleet.conf grants`,
    'fleet.redis',
  );
}

/** A name Redis keys may carry: the host name, cleaned. */
export function defaultHostId(): string {
  return hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64) || 'host';
}
