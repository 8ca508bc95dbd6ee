/**
 * Fleet metrics on the gateway's /metrics registry (src/gateway/metrics.ts owns the rest), under
 * names of their own: `qmp_*` stays about QMP. Gauges and counters are read from the fleet's stats at
 * scrape time; only the two latency histograms are observed live. docs/deploy.md says what to watch.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { FleetEdge } from './edge.js';
import type { FleetHost } from './host.js';
import type { FleetStats } from './stats.js';

const PREFIX = 'blockjob_gateway_fleet_';
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

function common(registry: Registry, stats: FleetStats, up: () => boolean): void {
  const registers = [registry];
  new Gauge({ name: `${PREFIX}redis_up`, help: '1 while this gateway reaches Redis', registers, collect() { this.set(up() ? 1 : 0); } });
  const latency = new Histogram({
    name: `${PREFIX}redis_latency_seconds`,
    help: 'Round trip of the fleet\'s Redis calls, by operation (failed calls included)',
    labelNames: ['op'],
    buckets: LATENCY_BUCKETS,
    registers,
  });
  stats.onRedisLatency = (op, seconds) => latency.observe({ op }, seconds);
}

/** Read-at-scrape counter from a number the stats keep. */
function counter(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({ name: `${PREFIX}${name}`, help, registers: [registry], collect() { this.reset(); this.inc(read()); } });
}

export function registerHostMetrics(registry: Registry, host: FleetHost): void {
  const stats = host.stats;
  const registers = [registry];
  common(registry, stats, () => host.redisUp());
  new Gauge({
    name: `${PREFIX}unacked_events`,
    help: 'Stream events appended locally that Redis has not acknowledged yet (bounded by fleet.maxBuffered)',
    registers,
    collect() { this.set(host.publisher.status().buffered); },
  });
  const lag = new Histogram({
    name: `${PREFIX}publish_lag_seconds`,
    help: 'From appending a stream event locally to Redis acknowledging it',
    buckets: LATENCY_BUCKETS,
    registers,
  });
  stats.onPublishLag = (seconds) => lag.observe(seconds);
  new Gauge({
    name: `${PREFIX}vms`,
    help: "This host's VMs by lease state: owned (published), not_owned (another host holds the lease), resyncing (Redis's copy being restarted)",
    labelNames: ['lease'],
    registers,
    collect() {
      const s = host.publisher.status();
      this.set({ lease: 'owned' }, s.owned);
      this.set({ lease: 'not_owned' }, s.notOwned.length);
      this.set({ lease: 'resyncing' }, s.resyncing.length);
    },
  });
  new Counter({
    name: `${PREFIX}lease_renewals_total`,
    help: 'Lease renewals, by result: ok, lost (expired or taken: the VM is claimed again), error (Redis call failed)',
    labelNames: ['result'],
    registers,
    collect() {
      this.reset();
      for (const [result, n] of Object.entries(stats.renewals)) this.inc({ result }, n);
    },
  });
  counter(registry, 'lease_renew_calls_total', 'Redis calls made to renew leases (one per tick and Redis node, however many VMs)', () => stats.renewCalls);
  counter(registry, 'commands_served_total', 'Commands forwarded by edges that this host ran', () => stats.commandsServed);
}

export function registerEdgeMetrics(registry: Registry, edge: FleetEdge): void {
  const stats = edge.stats;
  const feed = edge.feed;
  const registers = [registry];
  common(registry, stats, () => feed.redisConnected);
  new Gauge({ name: `${PREFIX}edge_streams`, help: 'VM streams this edge follows', registers, collect() { this.set(feed.vms().length); } });
  new Gauge({
    name: `${PREFIX}edge_stale_vms`,
    help: 'VMs this edge shows not connected or with stale jobs (its host or Redis out of reach)',
    registers,
    collect() {
      this.set(feed.snapshot().filter((s) => s.status !== 'connected' || s.jobs.some((j) => j.stale)).length);
    },
  });
  counter(registry, 'edge_notices_total', 'Stream events received on the notify channels', () => feed.counters.notices);
  counter(registry, 'edge_catchups_total', 'XRANGE catch-ups after a missed notice', () => feed.counters.catchUps);
  counter(registry, 'edge_loads_total', 'VM loads (discovery, reload after a new epoch)', () => feed.counters.loads);
  counter(registry, 'edge_resyncs_total', "Resyncs of every VM (head, status, jobs) after the notify connection came back or a host's beats were missed", () => feed.counters.resyncs);
  counter(registry, 'edge_resume_head_reads_total', "Reads of Redis's heads before answering resumes (one per tick of resumes)", () => feed.counters.vouches);
  counter(registry, 'edge_beat_behind_total', 'VM heads a host heartbeat listed that this edge had not reached (notices lost)', () => feed.beats.counters.behind);
  counter(registry, 'edge_beat_changed_total', "VMs a host heartbeat flagged with status or jobs changed outside the stream (reloaded: a lost `s` or `x` notice moves no head)", () => feed.beats.counters.changed);
  counter(registry, 'edge_beats_missed_total', "Gaps in a host's heartbeat sequence (every VM of the host checked against Redis)", () => feed.beats.counters.missed);
  new Counter({
    name: `${PREFIX}commands_forwarded_total`,
    help: "Commands forwarded to their VM's host gateway, by result (ok, or the error code)",
    labelNames: ['result'],
    registers,
    collect() {
      this.reset();
      for (const [result, n] of stats.forwarded) this.inc({ result }, n);
    },
  });
  new Counter({
    name: `${PREFIX}commands_outcome_unknown_total`,
    help: 'Forwarded commands answered outcome_unknown, by cause: no_ack (the host did not acknowledge in time), no_answer (no result within the budget)',
    labelNames: ['cause'],
    registers,
    collect() {
      this.reset();
      for (const [cause, n] of Object.entries(stats.outcomeUnknown)) this.inc({ cause }, n);
    },
  });
}
