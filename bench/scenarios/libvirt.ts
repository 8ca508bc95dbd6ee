/**
 * (6) Ready-notification latency through libvirt, on a real libvirtd and one TCG domain. The same
 * domain is served twice by one gateway: as the libvirt VM (QEMU's events via libvirt's
 * passthrough, no XML change) and as a QMP VM `direct` over an extra monitor that only this
 * benchmark adds (`<qemu:commandline>`). For each copy (virsh blockcopy, finished without a pivot),
 * against QEMU's own JOB_STATUS_CHANGE(ready) timestamp (seen by `virsh qemu-monitor-event`):
 *  - push via libvirt and push via the direct monitor: a subscriber receives the transition to ready;
 *  - `virsh blockjob --wait`'s way: libvirt's block job info every 0.5 s (random phase), done at
 *    cur == end (libvirt shows cur = end - 1 until QEMU's ready).
 */
import { rm } from 'node:fs/promises';
import WebSocket from 'ws';
import { startGateway } from '../../dist/gateway/server.js';
import { combineSources } from '../../dist/jobs/combine.js';
import { openLibvirtSource } from '../../dist/jobs/libvirt/open.js';
import { JobRegistry } from '../../dist/jobs/registry.js';
import { createLabDomain } from '../../dist/lab/libvirt-domain.js';
import { acquireLibvirtd } from '../../dist/lab/libvirtd.js';
import { QemuEventObserver } from '../../dist/lab/virsh-observer.js';
import { virsh } from '../../dist/lab/libvirt-domain.js';
import { LibvirtClient } from '../../dist/libvirt/client.js';
import { sleep, waitFor } from '../lib/resources.js';
import { ms, type Scenario } from '../lib/scenario.js';
import { summarize, wallNow } from '../lib/stats.js';

const POLL_INTERVAL_MS = 500;
const BANDWIDTH_MIB = 16;
const JOB = 'copy-vda-libvirt-1-format';
const JOB_TIMEOUT_MS = 60_000;

interface Sample {
  qemuReady?: number;
  viaLibvirt?: number;
  viaDirect?: number;
  virshPoll?: number;
}

export const libvirt: Scenario = async ({ quick, resources, log }) => {
  const target = quick ? 8 : 30;
  const daemon = await acquireLibvirtd();
  resources.defer('libvirtd lease', () => daemon.release());
  // 8 MiB of data: each copy reaches ready in about half a second at 16 MiB/s.
  const domain = await createLabDomain('bench', { extraQmp: true, diskMiB: 16, pattern: { offsetMiB: 0, lengthMiB: 8, byte: 0x5a } });
  resources.defer('domain', () => domain.destroy());
  const observer = new QemuEventObserver();
  resources.defer('virsh observer', () => observer.stop());
  await observer.ready(domain.name);

  const registry = new JobRegistry({});
  resources.defer('job registry', () => registry.close());
  registry.add('direct', `unix:${domain.qmpSocket!}`);
  const opened = openLibvirtSource({ uri: 'qemu:///system', domains: `^${domain.name}$` });
  resources.defer('libvirt source', () => opened.close());
  const combined = combineSources([{ source: registry, control: registry.control }, opened]);
  resources.defer('combined sources', async () => combined.close());
  const gateway = await startGateway({ source: combined.source, listen: { host: '127.0.0.1', port: 0 }, defaultMetrics: false, progressIntervalMs: 1000 });
  resources.defer('gateway', () => gateway.close({ graceMs: 1000 }));

  const poller = new LibvirtClient({ uri: 'qemu:///system' });
  resources.defer('poller client', () => poller.close());
  poller.start();
  await waitFor('the poller connection', () => poller.state === 'ready', 30_000);
  const dom = await poller.lookupDomainByName(domain.name);

  let current: Sample | undefined;
  const subscriber = new WebSocket(gateway.wsUrl, { perMessageDeflate: false });
  resources.defer('push subscriber', () => subscriber.terminate());
  const connected = new Set<string>();
  subscriber.on('message', (data) => {
    const recv = wallNow();
    const message = JSON.parse(data.toString());
    if (message.type === 'welcome') subscriber.send(JSON.stringify({ type: 'subscribe', id: '1', sub: 'ready', progress: { intervalMs: 0 } }));
    else if (message.type === 'vm' && message.status === 'connected') connected.add(message.vm);
    else if (message.type === 'synced') connected.add(message.vm);
    else if (message.type === 'event' && message.transition.to === 'ready' && message.transition.from !== 'standby' && current) {
      if (message.vm === 'direct') current.viaDirect ??= recv;
      else if (message.vm === domain.name) current.viaLibvirt ??= recv;
    }
  });
  await waitFor('both views of the domain connected', () => connected.has('direct') && connected.has(domain.name), 30_000);

  const samples: Sample[] = [];
  for (let i = 0; i < target; i++) {
    const sample: Sample = {};
    current = sample;
    const from = observer.records.length;
    const copy = domain.path(`copy${i}.qcow2`);
    await virsh(['blockcopy', domain.name, 'vda', copy, '--transient-job', '--bandwidth', String(BANDWIDTH_MIB)]);
    const ready = observer.waitFor((r) => observer.records.indexOf(r) >= from && r.event === 'JOB_STATUS_CHANGE' && r.data.id === JOB && r.data.status === 'ready', JOB_TIMEOUT_MS);
    // virsh blockjob --wait: libvirt's job info every 0.5 s, from a random phase, done at cur == end.
    void ready.then((r) => (sample.qemuReady = r.qemuSeconds * 1000));
    await sleep(Math.random() * POLL_INTERVAL_MS);
    while (sample.virshPoll === undefined) {
      const info = await poller.getBlockJobInfo(dom, 'vda').catch(() => null);
      if (info && info.end > 0 && info.cur === info.end) sample.virshPoll = wallNow();
      else await sleep(POLL_INTERVAL_MS);
    }
    await ready;
    await waitFor(`copy ${i}: ready pushed for both views`, () => sample.viaLibvirt !== undefined && sample.viaDirect !== undefined, JOB_TIMEOUT_MS);
    // Finish without a pivot (the domain keeps its disk), and wait for libvirt to dismiss the job.
    await virsh(['blockjob', domain.name, 'vda', '--abort']);
    await observer.waitFor((r) => observer.records.indexOf(r) >= from && r.event === 'JOB_STATUS_CHANGE' && r.data.id === JOB && r.data.status === 'null', JOB_TIMEOUT_MS);
    await rm(copy, { force: true });
    samples.push(sample);
    if ((i + 1) % 10 === 0) log(`libvirt: ${i + 1}/${target} copies`);
  }
  current = undefined;

  const lag = (pick: (s: Sample) => number | undefined) => summarize(samples.map((s) => pick(s)! - s.qemuReady!));
  const viaLibvirt = lag((s) => s.viaLibvirt);
  const viaDirect = lag((s) => s.viaDirect);
  const virshPoll = lag((s) => s.virshPoll);
  const gap = viaLibvirt.p50 - viaDirect.p50;
  const line = (s: typeof viaLibvirt) => `p50 ${ms(s.p50)} / p95 ${ms(s.p95)} / p99 ${ms(s.p99)} / max ${ms(s.max)} ms`;
  return {
    name: 'libvirt',
    rows: [
      { metric: `push via libvirt: QEMU ready -> subscriber (${viaLibvirt.count} copies)`, value: line(viaLibvirt), samples: `${samples.length} copies` },
      { metric: 'push via a direct QMP monitor (same domain)', value: line(viaDirect), samples: `${samples.length} copies` },
      { metric: 'libvirt - direct at p50', value: `${ms(gap)} ms`, samples: `${samples.length} copies`, goal: '<= 2 ms', met: gap <= 2 },
      { metric: 'virsh blockjob --wait way (0.5 s poll, cur == end)', value: line(virshPoll), samples: `${samples.length} copies` },
    ],
    raw: { samples, viaLibvirt, viaDirect, virshPoll, gapP50: gap, pollIntervalMs: POLL_INTERVAL_MS, bandwidthMiB: BANDWIDTH_MIB },
  };
};
