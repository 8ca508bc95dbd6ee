import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const shared = { testTimeout: 60_000, hookTimeout: 60_000 };
// docs/examples import the package by name, as a user's code does; under test that name is the source.
const alias = [
  { find: /^blockjob-gateway\/client$/, replacement: fileURLToPath(new URL('./src/client/index.ts', import.meta.url)) },
  { find: /^blockjob-gateway\/client\/node$/, replacement: fileURLToPath(new URL('./src/client/node.ts', import.meta.url)) },
];

export default defineConfig({
  test: {
    // Real QEMU daemons and sockets: keep parallelism modest on a 2-core machine.
    maxWorkers: 2,
    projects: [
      { resolve: { alias }, test: { ...shared, name: 'main', globalSetup: ['test/utils/global-setup.ts'], include: ['test/**/*.test.ts'], exclude: ['test/libvirt/**', '**/node_modules/**'] } },
      // One privileged libvirtd per machine, shared by these files: one file at a time, so a test that
      // restarts the daemon never pulls it from under another file's test.
      { test: { ...shared, name: 'libvirt', globalSetup: ['test/utils/libvirt-global-setup.ts'], include: ['test/libvirt/**/*.test.ts'], fileParallelism: false, testTimeout: 120_000, hookTimeout: 120_000 } },
    ],
  },
});
