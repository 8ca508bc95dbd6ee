/**
 * The `npm start` demo, assembled: a fleet of VMs (real qemu-storage-daemons, or the simulator where
 * QEMU is missing), the job engine following one monitor per VM, job control, the gateway with the
 * dashboard, the driver keeping jobs going, and a line per transition in the terminal.
 */
import { fileURLToPath } from 'node:url';
import type { Subscription } from 'rxjs';
import { makeJobController, type JobController } from '../gateway/control/index.js';
import { startGateway, type RunningGateway } from '../gateway/server.js';
import { JobRegistry } from '../jobs/registry.js';
import { silentLogger, type Logger } from '../log.js';
import { DemoDriver } from './driver.js';
import { missingQemu, startQemuFleet, startSimulatedFleet, type Fleet, type FleetMode } from './fleet.js';
import { transitionPrinter } from './terminal.js';

export interface DemoOptions {
  /** @default 3 */
  vms?: number;
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 8080 (0 picks a free port) */
  port?: number;
  /** Use the simulator even where QEMU is installed. */
  simulate?: boolean;
  /** Run the job driver. @default true */
  drive?: boolean;
  /** Where the transition lines and notices go. @default stdout */
  print?: (line: string) => void;
  /** @default stdout is a TTY */
  color?: boolean;
  /** For the gateway and job control (warnings such as a refused QMP command). @default silent */
  logger?: Logger;
}

export interface RunningDemo {
  readonly mode: FleetMode;
  readonly url: string;
  readonly fleet: Fleet;
  readonly registry: JobRegistry;
  readonly gateway: RunningGateway;
  /** Stops everything it started and removes every temp dir. Idempotent. */
  close(): Promise<void>;
}

/** The dashboard's static files, next to the package's src/ and dist/. */
export const DASHBOARD_DIR = fileURLToPath(new URL('../../demo/dashboard/', import.meta.url));

export async function startDemo(options: DemoOptions = {}): Promise<RunningDemo> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const color = options.color ?? process.stdout.isTTY === true;
  const missing = missingQemu();
  if (missing && !options.simulate) {
    print(
      `${missing.tools.join(', ')} not found: install the Debian package${missing.packages.length > 1 ? 's' : ''} ` +
        `${missing.packages.join(' ')} for real QEMU; running the built-in QMP simulator instead (SIMULATED).`,
    );
  }
  const simulated = options.simulate === true || missing !== undefined;
  const fleet = simulated ? await startSimulatedFleet(options.vms ?? 3) : await startQemuFleet(options.vms ?? 3);

  const registry = new JobRegistry();
  let controller: JobController | undefined;
  let gateway: RunningGateway | undefined;
  let driver: DemoDriver | undefined;
  let printing: Subscription | undefined;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await driver?.stop();
      printing?.unsubscribe();
      await gateway?.close({ graceMs: 1000 });
      controller?.close();
      await registry.close();
      await fleet.close();
    })());

  try {
    printing = registry.changes$.subscribe(transitionPrinter(print, color));
    for (const vm of fleet.vms) registry.add(vm.name, vm.gatewayAddress, { backend: simulated ? 'simulated' : 'qmp' });
    const logger = options.logger ?? silentLogger;
    controller = makeJobController({ source: registry, control: registry.control, logger });
    gateway = await startGateway({
      source: registry,
      commandHandler: controller.handle,
      listen: { host: options.host ?? '127.0.0.1', port: options.port ?? 8080 },
      dashboardDir: DASHBOARD_DIR,
      info: { simulated, demo: true },
      logger,
    });
    if (options.drive !== false) {
      driver = new DemoDriver({ vms: fleet.vms, source: registry, control: controller.handle, warn: (text) => print(`! ${text}`) });
      driver.start();
    }
  } catch (error) {
    await close();
    throw error;
  }
  return { mode: fleet.mode, url: gateway.url, fleet, registry, gateway, close };
}
