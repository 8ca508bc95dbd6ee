/**
 * The gateway under test, assembled as `serve` does (JobRegistry + startGateway) in the bench host
 * process, plus the two probes the scenarios read: QMP commands the gateway sent (polling cost)
 * and, per transition, the wall time its QMP message was received (latency origin).
 */
import { startGateway, type RunningGateway } from '../../dist/gateway/server.js';
import { JobRegistry, type JobRegistryOptions, type OwnedMonitor } from '../../dist/jobs/registry.js';
import { QmpClient } from '../../dist/qmp/client.js';
import type { JobTransition } from '../../dist/jobs/types.js';
import { transitionKey } from './transition-key.js';
import type { Resources } from './resources.js';

/** Transitions remembered for latency matching (oldest forgotten first). */
const MAX_REMEMBERED_TRANSITIONS = 200_000;

export interface BenchGateway {
  readonly registry: JobRegistry;
  readonly gateway: RunningGateway;
  /** QMP commands sent by the gateway's monitors since start. */
  qmpCommands(): number;
  /** The same, per QMP command name. */
  qmpCommandsByName(): Record<string, number>;
  /** Wall ms at which the QMP message behind a transition was received, by transitionKey. */
  readonly qmpReceivedAt: Map<string, number>;
  /** Every transition as the engine hands it over (for scenario-specific probes). */
  onTransition(listener: (transition: JobTransition, qmpWall: number | undefined) => void): void;
  /** VMs whose monitor is connected right now. */
  connectedVms(): number;
}

/** What a scenario may set on the engine (jobs.* in the config), and where its transition probe runs. */
export interface BenchGatewayOptions extends Pick<JobRegistryOptions, 'retentionMs'> {
  /**
   * 'after' (default): the probe sees each transition after the gateway has handled it, so its own work
   * (a key and a Map entry per transition) is not inside the latencies measured; 'before': the burst,
   * which stamps a transition's emission before the fan-out starts.
   */
  probe?: 'before' | 'after';
}

export async function startBenchGateway(resources: Resources, addresses: Record<string, string>, options: BenchGatewayOptions = {}): Promise<BenchGateway> {
  const { probe = 'after', ...engine } = options;
  let commands = 0;
  const commandsByName = new Map<string, number>();
  const registry = new JobRegistry({
    ...engine,
    createMonitor: (vm, address): OwnedMonitor => {
      const client = new QmpClient({ address, name: vm });
      const send = client.executeWithMeta.bind(client);
      // execute() goes through executeWithMeta: counting here counts every command once.
      client.executeWithMeta = ((command, args, options) => {
        commands++;
        commandsByName.set(command, (commandsByName.get(command) ?? 0) + 1);
        return send(command, args, options);
      }) as typeof client.executeWithMeta;
      client.start();
      return client;
    },
  });
  resources.defer('job registry', () => registry.close());
  const qmpReceivedAt = new Map<string, number>();
  const listeners: Array<(transition: JobTransition, qmpWall: number | undefined) => void> = [];
  const watch = () => registry.changes$.subscribe((change) => {
    if (change.kind !== 'transition') return;
    const qmpWall = change.qmpReceivedMono === undefined ? undefined : performance.timeOrigin + change.qmpReceivedMono;
    if (qmpWall !== undefined) {
      qmpReceivedAt.set(transitionKey(change.vm, change.job), qmpWall);
      if (qmpReceivedAt.size > MAX_REMEMBERED_TRANSITIONS) qmpReceivedAt.delete(qmpReceivedAt.keys().next().value!);
    }
    for (const listener of listeners) listener(change, qmpWall);
  });
  if (probe === 'before') {
    const subscription = watch();
    resources.defer('transition probe', () => subscription.unsubscribe());
  }
  for (const [vm, address] of Object.entries(addresses)) registry.add(vm, address);
  const gateway = await startGateway({
    source: registry,
    listen: { host: '127.0.0.1', port: 0 },
    maxConnectionsPerToken: 25_000,
    progressIntervalMs: 1000,
    defaultMetrics: false,
  });
  resources.defer('gateway', () => gateway.close({ graceMs: 1000 }));
  if (probe === 'after') {
    const subscription = watch();
    resources.defer('transition probe', () => subscription.unsubscribe());
  }
  return {
    registry,
    gateway,
    qmpCommands: () => commands,
    qmpCommandsByName: () => Object.fromEntries(commandsByName),
    qmpReceivedAt,
    onTransition: (listener) => listeners.push(listener),
    connectedVms: () => registry.snapshot().filter((vm) => vm.status === 'connected').length,
  };
}
