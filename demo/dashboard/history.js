// "Recent transitions" on page load, from the gateway's own stream history: a short-lived
// subscription that resumes a few events back on each VM stream gets them replayed (PROTOCOL.md,
// resume), so a reload does not start with an empty timeline. Read once, then the socket closes.

/**
 * @param {{ url: string | URL, protocols: string[], perVm?: number, timeoutMs?: number }} options
 * @returns {Promise<object[]>} the replayed `event` and `vm` messages, oldest first per VM
 */
export function loadRecentTransitions({ url, protocols, perVm = 30, timeoutMs = 5000 }) {
  return new Promise((resolve) => {
    const replayed = [];
    let ws;
    let waiting = 0;
    const done = () => {
      clearTimeout(timer);
      try {
        ws?.close(1000);
      } catch {
        // already closed
      }
      resolve(replayed);
    };
    // A slow or refusing gateway only costs the history, never the page.
    const timer = setTimeout(done, timeoutMs);
    try {
      ws = new WebSocket(url, protocols);
    } catch {
      done();
      return;
    }
    ws.onerror = done;
    ws.onclose = done;
    ws.onmessage = (frame) => {
      let message;
      try {
        message = JSON.parse(frame.data);
      } catch {
        return;
      }
      if (message.type === 'welcome') {
        const since = {};
        for (const stream of message.vms.slice(0, 256)) {
          if (stream.offset > 0) since[stream.vm] = { epoch: stream.epoch, offset: Math.max(0, stream.offset - perVm) };
        }
        waiting = Object.keys(since).length;
        if (waiting === 0) return done();
        // Only the VMs with history: the others would answer with a snapshot, which the page has already.
        ws.send(JSON.stringify({ type: 'subscribe', id: 'recent', sub: 'recent', filter: { vms: Object.keys(since) }, since, progress: { intervalMs: 0 } }));
      } else if (message.type === 'event' || message.type === 'vm') {
        replayed.push(message);
      } else if (message.type === 'synced' && --waiting === 0) {
        done();
      } else if (message.type === 'error') {
        done();
      }
    };
  });
}
