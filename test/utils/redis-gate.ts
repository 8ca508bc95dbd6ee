/**
 * Gate for suites that need a real redis-server (and redis-cli for the cluster). Outside CI a
 * missing tool skips the suite with a telling name (global-setup prints the banner once); in CI
 * (CI=true) it is one failing test, because a green run that silently skipped Redis proves nothing.
 */
import { describe, it } from 'vitest';
import { inCi, redisAvailable, redisMissingBanner } from './redis-banner.js';
import { redisTools } from '../../src/lab/redis.js';

export { redisAvailable, redisMissingBanner };

export function describeRedis(name: string, fn: () => void): void {
  if (redisAvailable) {
    describe(name, fn);
  } else if (inCi) {
    describe(name, () => {
      it('needs redis-server, which is missing on this CI machine', () => {
        throw new Error(redisMissingBanner());
      });
    });
  } else {
    describe.skip(`${name} [skipped: needs ${redisTools().missingPackages.join(' and ')}]`, fn);
  }
}
