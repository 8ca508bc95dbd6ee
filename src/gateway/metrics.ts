/**
 * Prometheus metrics (prom-client), one registry per gateway. Counters the hot path keeps in
 * GatewayStats, and the source's per-VM info and jobs, are read at scrape time (so VMs added after
 * start are covered); only the delivery-lag histogram is observed live.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { JobSource, VmInfo } from '../jobs/types.js';
import type { GatewayCore } from './core.js';

const PREFIX = 'blockjob_gateway_';

export interface GatewayMetrics {
  readonly registry: Registry;
  readonly contentType: string;
  text(): Promise<string>;
  /** Count a refused upgrade or request (auth, origin, limits). */
  refused(status: number): void;
}

export function createMetrics(core: GatewayCore, options: { defaultMetrics?: boolean; source?: JobSource } = {}): GatewayMetrics {
  const registry = new Registry();
  const stats = core.stats;
  const registers = [registry];
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: PREFIX });

  new Gauge({ name: `${PREFIX}ws_connections`, help: 'Open WebSocket connections', registers, collect() { this.set(stats.connections); } });
  new Gauge({ name: `${PREFIX}ws_subscriptions`, help: 'Active subscriptions', registers, collect() { this.set(stats.subscriptions); } });
  new Counter({
    name: `${PREFIX}ws_messages_sent_total`,
    help: 'Messages sent to WebSocket clients, by message type',
    labelNames: ['type'],
    registers,
    collect() {
      this.reset();
      for (const [type, c] of stats.sentByType) this.inc({ type }, c.messages);
    },
  });
  new Counter({
    name: `${PREFIX}ws_bytes_sent_total`,
    help: 'Payload bytes sent to WebSocket clients, by message type',
    labelNames: ['type'],
    registers,
    collect() {
      this.reset();
      for (const [type, c] of stats.sentByType) this.inc({ type }, c.bytes);
    },
  });
  new Counter({
    name: `${PREFIX}ws_conflated_total`,
    help: 'Progress messages replaced by a newer one for a slow client',
    registers,
    collect() {
      this.reset();
      this.inc(stats.conflatedTotal);
    },
  });
  new Counter({
    name: `${PREFIX}ws_disconnects_total`,
    help: 'Closed WebSocket connections, by close code',
    labelNames: ['code'],
    registers,
    collect() {
      this.reset();
      for (const [code, n] of stats.disconnects) this.inc({ code: String(code) }, n);
    },
  });
  new Counter({
    name: `${PREFIX}ws_resumes_total`,
    help: 'Streams subscribed with `since`, by outcome (recovered or snapshot)',
    labelNames: ['mode'],
    registers,
    collect() {
      this.reset();
      this.inc({ mode: 'recovered' }, stats.resumes.recovered);
      this.inc({ mode: 'snapshot' }, stats.resumes.snapshot);
    },
  });
  const refusedCounter = new Counter({ name: `${PREFIX}refused_total`, help: 'Refused upgrades and requests, by HTTP status or close code', labelNames: ['status'], registers });
  new Gauge({
    name: `${PREFIX}monitor_up`,
    help: '1 while the VM monitor is connected',
    labelNames: ['vm'],
    registers,
    collect() {
      this.reset();
      for (const [vm, status] of core.monitorStatuses()) this.set({ vm }, status === 'connected' ? 1 : 0);
    },
  });
  new Gauge({
    name: `${PREFIX}stream_offset`,
    help: 'Head offset of each VM stream',
    labelNames: ['vm'],
    registers,
    collect() {
      this.reset();
      for (const [vm, position] of core.streamPositions()) this.set({ vm }, position.offset);
    },
  });
  const lag = new Histogram({
    name: `${PREFIX}delivery_lag_seconds`,
    help: 'From receiving the QMP message to handing the transition to every subscriber socket',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  stats.onDeliveryLag = (seconds) => lag.observe(seconds);

  // Per-VM facts come from the source at scrape time, so VMs added after start are covered too.
  const source = options.source;
  new Counter({
    name: `${PREFIX}qmp_errors_total`,
    help: 'QMP connection and protocol problems, by VM and error code',
    labelNames: ['vm', 'code'],
    registers,
    collect() {
      this.reset();
      for (const info of infos(source)) for (const [code, n] of Object.entries(info.problems)) this.inc({ vm: info.vm, code }, n);
    },
  });
  new Counter({
    name: `${PREFIX}qmp_commands_total`,
    help: 'QMP commands sent to QEMU (polls and job verbs), by VM',
    labelNames: ['vm'],
    registers,
    collect() {
      this.reset();
      for (const info of infos(source)) this.inc({ vm: info.vm }, info.commandsSent);
    },
  });
  new Gauge({
    name: `${PREFIX}jobs`,
    help: 'Jobs the gateway follows, by VM, type and state',
    labelNames: ['vm', 'type', 'state'],
    registers,
    collect() {
      this.reset();
      for (const { vm, jobs } of source?.snapshot() ?? []) for (const job of jobs) this.inc({ vm, type: job.type, state: job.state });
    },
  });

  return {
    registry,
    contentType: registry.contentType,
    text: () => registry.metrics(),
    refused: (status) => refusedCounter.inc({ status: String(status) }),
  };
}

function infos(source: JobSource | undefined): VmInfo[] {
  return (source?.vms() ?? []).flatMap((vm) => source!.info(vm) ?? []);
}
