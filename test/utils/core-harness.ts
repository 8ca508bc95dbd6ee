/**
 * GatewayCore without a transport, for unit tests: every core made here is started, and drained and
 * stopped after each test of the file that calls `useCores()` (at its top level).
 */
import { afterEach } from 'vitest';
import { GatewayCore } from '../../src/gateway/core.js';

export function useCores(): (options: ConstructorParameters<typeof GatewayCore>[0]) => Promise<GatewayCore> {
  const cores: GatewayCore[] = [];
  afterEach(() => {
    for (const core of cores.splice(0)) {
      core.drain();
      core.stop();
    }
  });
  return async (options) => {
    const core = new GatewayCore(options);
    cores.push(core);
    await core.start();
    return core;
  };
}
