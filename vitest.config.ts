import { defineConfig } from 'vitest/config';

const shared = { testTimeout: 60_000, hookTimeout: 60_000 };

export default defineConfig({
  test: {
    // Real QEMU daemons and sockets: keep parallelism modest on a 2-core machine.
    maxWorkers: 2,
    projects: [
      { test: { ...shared, name: 'main', globalSetup: ['test/utils/global-setup.ts'], include: ['test/**/*.test.ts'], exclude: ['test/libvirt/**', '**/node_modules/**'] } },
      // One privileged libvirtd per machine, shared by these files: one file at a time, so a test that
      // restarts the daemon never pulls it from under another file's test.
      { test: { ...shared, name: 'libvirt', globalSetup: ['test/utils/libvirt-global-setup.ts'], include: ['test/libvirt/**/*.test.ts'], fileParallelism: false, testTimeout: 120_000, hookTimeout: 120_000 } },
    ],
  },
});
