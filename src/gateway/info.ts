/**
 * GET /v1/info: what this gateway is and what it runs against (schemas/http-info.schema.json).
 * Served by every gateway, so the dashboard and `watch` can label simulated data and show versions.
 */
import type { GatewayInfo, VmInfo } from '../generated/schema-types.js';
import type { JobSource } from '../jobs/types.js';
import { PROTOCOL_VERSION } from '../protocol/messages.js';
import { packageVersion } from '../version.js';

export interface DeploymentFacts {
  /** The jobs come from the built-in QMP simulator. @default false */
  simulated?: boolean;
  /** The `npm start` demo. @default false */
  demo?: boolean;
  /** How a VM is followed and its versions. @default the source's `info(vm)` (backend, QEMU version) */
  describeVm?: (vm: string) => Pick<VmInfo, 'source' | 'qemu'> & Partial<Pick<VmInfo, 'libvirt'>>;
}

type Version = { major: number; minor: number; micro: number };
const versionText = (v: Version | undefined): string | null => (v ? `${v.major}.${v.minor}.${v.micro}` : null);

/** Per VM from the source's info: its backend and the versions it reported, null before it was reached. */
export function sourceVmDescriber(source: Pick<JobSource, 'info'>): NonNullable<DeploymentFacts['describeVm']> {
  return (vm) => {
    const info = source.info(vm);
    return {
      source: info?.backend ?? 'unknown',
      qemu: versionText(info?.qemu),
      ...(info?.backend === 'libvirt' ? { libvirt: versionText(info.libvirt) } : {}),
    };
  };
}

export function gatewayInfo(
  facts: DeploymentFacts,
  /** Absent for a gateway fed by another's streams (fleet): then nothing here knows the versions. */
  source: Pick<JobSource, 'info'> | undefined,
  vms: ReadonlyArray<{ vm: string; status: VmInfo['status'] }>,
  limits: GatewayInfo['limits'],
): GatewayInfo {
  const describe = facts.describeVm ?? (source ? sourceVmDescriber(source) : () => ({ source: 'fleet' as const, qemu: null }));
  const described = vms.map(({ vm, status }) => ({ vm, status, ...describe(vm) }));
  return {
    gateway: { name: 'blockjob-gateway', version: packageVersion(), protocol: PROTOCOL_VERSION },
    simulated: facts.simulated ?? (described.length > 0 && described.every((v) => v.source === 'simulated')),
    demo: facts.demo ?? false,
    vms: described,
    limits,
  };
}
