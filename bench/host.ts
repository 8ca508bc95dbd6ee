/**
 * The bench host (forked per scenario, with --expose-gc): runs the gateway under test in this process,
 * so process.cpuUsage() and memory here are the gateway's own, while load generators run in their own
 * forked processes. Answers `run` with the scenario's result; cleans up on close, SIGINT and SIGTERM.
 */
import { cleanupLeftovers } from '../dist/lab/leftovers.js';
import { serveRpc } from './lib/rpc.js';
import { Resources } from './lib/resources.js';
import { SCENARIOS } from './scenarios/index.js';

const resources = new Resources();

async function cleanup(): Promise<null> {
  await resources.closeAll();
  await cleanupLeftovers();
  return null;
}

serveRpc({
  async run({ name, quick }: { name: string; quick: boolean }) {
    const scenario = SCENARIOS[name];
    if (!scenario) throw new Error(`unknown scenario ${name}`);
    try {
      return await scenario({ quick, resources, log: (message) => process.stderr.write(`  ${message}\n`) });
    } finally {
      await cleanup();
    }
  },
  close: cleanup,
});

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(signal, () => void cleanup().finally(() => process.exit(code)));
}
