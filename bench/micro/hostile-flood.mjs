// CPU per malformed job event through the whole engine path of one VM (socket read, framing, QMP
// classify, the job engine's parse, the VM's problem count, the throttled log): a local peer speaks
// QMP (greeting, capabilities, empty polls) and then writes malformed JOB_STATUS_CHANGE events (a
// number for the job id) in batches. The gateway side is a JobRegistry in this process; CPU by
// process.cpuUsage over the flood, divided by the events the VM counted as QMP_ERR_PROTOCOL.
// Usage: node bench/micro/hostile-flood.mjs [DIST_DIR] [EVENTS]. Compare builds in A/B pairs.
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = resolve(process.argv[2] ?? 'dist');
const total = Number(process.argv[3] ?? 200_000);
const { JobRegistry } = await import(pathToFileURL(`${dist}/jobs/registry.js`).href);

const dir = mkdtempSync(join(tmpdir(), 'bjg-flood-'));
const path = join(dir, 'qmp.sock');
const greeting = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: '' }, capabilities: [] } };
const lie = (i) => `{"event":"JOB_STATUS_CHANGE","data":{"id":${i},"status":"running"},"timestamp":{"seconds":1,"microseconds":0}}\r\n`;
let peer;
const server = net.createServer((socket) => {
  peer = socket;
  socket.write(`${JSON.stringify(greeting)}\r\n`);
  let buffered = '';
  socket.on('data', (chunk) => {
    buffered += chunk.toString();
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (!line.trim()) continue;
      const { execute, id } = JSON.parse(line);
      const value = execute === 'query-qmp-schema' ? undefined : execute === 'qmp_capabilities' ? {} : [];
      socket.write(`${JSON.stringify(value === undefined ? { error: { class: 'CommandNotFound', desc: 'no schema' }, id } : { return: value, id })}\r\n`);
    }
  });
});
await new Promise((ok) => server.listen(path, ok));

const registry = new JobRegistry({ pollIntervalMs: 60_000 });
registry.add('vm1', `unix:${path}`);
const problems = () => registry.info('vm1')?.problems?.QMP_ERR_PROTOCOL ?? 0;
const until = async (check, what) => {
  for (const deadline = Date.now() + 60_000; !check(); ) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((ok) => setTimeout(ok, 5));
  }
};
await until(() => registry.info('vm1')?.status === 'connected', 'connected');

async function flood(n) {
  const start = problems();
  const before = process.cpuUsage();
  const batch = 1_000;
  for (let sent = 0; sent < n; sent += batch) {
    let text = '';
    for (let i = 0; i < batch; i++) text += lie(sent + i);
    if (!peer.write(text)) await new Promise((ok) => peer.once('drain', ok));
  }
  await until(() => problems() - start >= n, `${n} malformed events counted`);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

await flood(20_000); // warm-up: JIT
const samples = [];
for (let i = 0; i < 3; i++) samples.push(await flood(total));
samples.sort((a, b) => a - b);
console.log(`${dist}: CPU per malformed event, whole engine path: ${samples[1].toFixed(2)} us (median of 3 x ${total}; min ${samples[0].toFixed(2)}, max ${samples[2].toFixed(2)})`);
await registry.close();
server.close();
rmSync(dir, { recursive: true, force: true });
