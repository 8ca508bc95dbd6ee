// The missing-Redis banner, free of vitest imports so global-setup can print it too.
import { redisTools } from '../../src/lab/redis.js';
import { inCi, missingBanner } from './banner.js';

export { inCi };

/** True when redis-server and redis-cli are both installed. */
export const redisAvailable = redisTools().missing.length === 0;

/** What is missing and how to install it; empty when nothing is. */
export function redisMissingBanner(): string {
  const { missing, missingPackages } = redisTools();
  if (missing.length === 0) return '';
  return missingBanner('Redis', `missing ${missing.join(', ')}`, [`Install: apt-get install -y ${missingPackages.join(' ')}`]);
}
