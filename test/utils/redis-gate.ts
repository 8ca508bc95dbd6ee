/** Gate for suites that need a real redis-server (and redis-cli for the cluster); the rule: gate.ts. */
import { redisTools } from '../../src/lab/redis.js';
import { describeNeeding } from './gate.js';
import { redisAvailable, redisMissingBanner } from './redis-banner.js';

export { redisAvailable, redisMissingBanner };

export function describeRedis(name: string, fn: () => void): void {
  describeNeeding({ available: redisAvailable, what: 'redis-server', missing: () => redisTools().missingPackages.join(' and '), banner: redisMissingBanner }, name, fn);
}
