// "Recent transitions" on page load, from the gateway's own stream history: a short-lived client
// that resumes a few events back on each VM stream gets them replayed (PROTOCOL.md, resume), so a
// reload does not start with an empty timeline. Read once, then that client closes.
import { GatewayClient } from './lib/client/index.js';

/** VM streams read back at most: as many as one subscribe's `since` may name (the timeline shows 150 lines anyway). */
const MAX_VMS = 256;
/** The subscribe that asks for them stays well under the gateway's 64 KiB frame limit, whatever the names. */
const MAX_SUBSCRIBE_BYTES = 32 * 1024;

/**
 * Which streams to read back: those with history, the ones whose jobs changed state last first (a
 * fleet has more VMs than are worth reading; a `welcome` of one lists none of them).
 * @param {Record<string, { epoch: string, offset: number }>} positions where each VM stream stands now
 * @param {Map<string, number>} latest when each VM's jobs last changed state (ms since the epoch)
 * @param {number} perVm
 */
export function pickStreams(positions, latest, perVm) {
  const candidates = Object.entries(positions).filter(([, at]) => at.offset > 0);
  candidates.sort(([a], [b]) => (latest.get(b) ?? -Infinity) - (latest.get(a) ?? -Infinity));
  const since = {};
  let bytes = 0;
  for (const [vm, at] of candidates.slice(0, MAX_VMS)) {
    const entry = { epoch: at.epoch, offset: Math.max(0, at.offset - perVm) };
    // Each VM is named twice (filter and since): count both, with JSON's punctuation.
    bytes += 2 * JSON.stringify(vm).length + JSON.stringify(entry).length + 3;
    if (bytes > MAX_SUBSCRIBE_BYTES) break;
    since[vm] = entry;
  }
  return since;
}

/**
 * @param {{ positions: Record<string, { epoch: string, offset: number }>, latest?: Map<string, number>, urls: string, token?: () => string | undefined, perVm?: number, timeoutMs?: number }} options
 *   positions: where each stream stood at the page client's first sync; latest: see pickStreams
 * @returns {Promise<object[]>} the replayed `event` and `vm` messages, oldest first per VM
 */
export async function loadRecentTransitions({ positions, latest = new Map(), urls, token, perVm = 30, timeoutMs = 5000 }) {
  const since = pickStreams(positions, latest, perVm);
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
