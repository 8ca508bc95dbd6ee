/**
 * Prometheus metrics (prom-client), one registry per gateway. Counters the hot path keeps in
 * GatewayStats are read at scrape time; only the delivery-lag histogram is observed live.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { JobSource } from '../jobs/types.js';
import type { GatewayCore } from './core.js';

const PREFIX = 'blockjob_gateway_';

export interface GatewayMetrics {
  readonly registry: Registry;
  readonly contentType: string;
  text(): Promise<string>;
  /** Count a refused upgrade or request (auth, origin, limits). */
  refused(status: number): void;
  /** Stop following the monitors' error streams. */
  close(): void;
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

  // QMP problems per VM (connect failures, busy monitor, protocol errors), from each monitor's errors$.
  const qmpErrors = new Counter({ name: `${PREFIX}qmp_errors_total`, help: 'QMP connection and protocol problems, by VM and error code', labelNames: ['vm', 'code'], registers });
  const source = options.source;
  new Counter({
    name: `${PREFIX}qmp_commands_total`,
    help: 'QMP commands sent to QEMU (polls and job verbs), by VM',
    labelNames: ['vm'],
    registers,
    collect() {
      this.reset();
      for (const vm of source?.vms() ?? []) this.inc({ vm }, source!.monitor(vm)?.commandsSent ?? 0);
    },
  });
  const followed = (options.source?.vms() ?? []).flatMap((vm) => {
    const monitor = options.source!.monitor(vm);
    return monitor ? [monitor.errors$.subscribe((error) => qmpErrors.inc({ vm, code: error.code }))] : [];
  });

  return {
    registry,
    contentType: registry.contentType,
    text: () => registry.metrics(),
    refused: (status) => refusedCounter.inc({ status: String(status) }),
    close: () => {
      for (const subscription of followed.splice(0)) subscription.unsubscribe();
    },
  };
}
