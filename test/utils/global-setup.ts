// Runs once per `vitest run` (main project): the one place where a missing QEMU or Redis is announced, so each
// banner is printed once rather than per test file.
import { qemuMissingBanner } from './qemu-banner.js';
import { redisMissingBanner } from './redis-banner.js';

export default function setup(): void {
  for (const banner of [qemuMissingBanner(), redisMissingBanner()]) {
    if (banner) process.stderr.write(`\n${banner}\n\n`);
  }
}
