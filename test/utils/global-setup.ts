// Runs once per `vitest run`: the one place where a missing QEMU is announced, so the banner is
// printed once rather than per test file.
import { qemuMissingBanner } from './qemu-banner.js';

export default function setup(): void {
  const banner = qemuMissingBanner();
  if (banner) process.stderr.write(`\n${banner}\n\n`);
}
