// "Recent transitions" on page load, from the gateway's own stream history: a short-lived client
// that resumes a few events back on each VM stream gets them replayed (PROTOCOL.md, resume), so a
// reload does not start with an empty timeline. Read once, then that client closes.
import { GatewayClient } from './lib/client/index.js';

/**
 * @param {{ welcome: object, urls: string, token?: () => string | undefined, perVm?: number, timeoutMs?: number }} options
 *   welcome: the page client's `welcome` (where each VM stream stands now)
 * @returns {Promise<object[]>} the replayed `event` and `vm` messages, oldest first per VM
 */
export async function loadRecentTransitions({ welcome, urls, token, perVm = 30, timeoutMs = 5000 }) {
  const since = {};
  for (const stream of welcome.vms.slice(0, 256)) {
    if (stream.offset > 0) since[stream.vm] = { epoch: stream.epoch, offset: Math.max(0, stream.offset - perVm) };
  }
  const vms = Object.keys(since);
  if (vms.length === 0) return [];
  const replayed = [];
  // Only the VMs with history: the others would answer with a snapshot, which the page has already.
  const client = new GatewayClient({ urls, token, since, filter: { vms }, progressIntervalMs: 0, onListenerError: () => {} });
  client.on('message', (message) => {
    if (message.type === 'event' || message.type === 'vm') replayed.push(message);
  });
  try {
    client.start();
    await client.synced({ failFast: true, timeoutMs });
  } catch {
    // A slow or refusing gateway only costs the history, never the page.
  } finally {
    client.close();
  }
  return replayed;
}
