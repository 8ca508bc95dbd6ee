/**
 * One `--libvirt URI` of `serve`: an RPC client, the job source over it and its control port,
 * ready to combine with other sources. The caller closes it (source, then client).
 */
import { ConfigError } from '../../errors.js';
import type { SourcePorts } from '../control-port.js';
import type { MonitorJobsOptions } from '../monitor-jobs.js';
import { silentLogger, type Logger } from '../../log.js';
import { LibvirtClient } from '../../libvirt/client.js';
import { LibvirtControl } from './control.js';
import { LibvirtSource, type LibvirtSourceOptions } from './source.js';

export interface LibvirtEntry {
  uri: string;
  /** Regular expression a domain name must match (unanchored). */
  domains?: string;
  showInternalJobs?: boolean;
}

export interface OpenedLibvirt extends SourcePorts {
  source: LibvirtSource;
  close(): Promise<void>;
}

/** Builds and starts the source for one libvirt connection (it connects, and reconnects, by itself). */
export function openLibvirtSource(entry: LibvirtEntry, options: { engine?: MonitorJobsOptions; seedOf?: LibvirtSourceOptions['seedOf']; logger?: Logger } = {}): OpenedLibvirt {
  const logger = options.logger ?? silentLogger;
  let domainFilter: RegExp | undefined;
  if (entry.domains !== undefined) {
    try {
      domainFilter = new RegExp(entry.domains);
    } catch (error) {
      throw new ConfigError(`not a regular expression: ${(error as Error).message}`, `libvirt ${entry.uri}: domains`);
    }
  }
  const client = new LibvirtClient({ uri: entry.uri, logger });
  const source = new LibvirtSource(client, {
    ...(domainFilter ? { domainFilter } : {}),
    ...(entry.showInternalJobs ? { showInternalJobs: true } : {}),
    ...(options.engine ? { engine: options.engine } : {}),
    ...(options.seedOf ? { seedOf: options.seedOf } : {}),
    logger,
  });
  source.start();
  return {
    source,
    control: new LibvirtControl(source),
    close: async () => {
      await source.close();
      await client.close();
    },
  };
}
