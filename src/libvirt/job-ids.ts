/**
 * libvirt's block job ids and what they say (reference libvirt.md §3, §7.4):
 * `<kind>-<disk target>-<source format node>`, e.g. `copy-vda-libvirt-1-format`, and
 * `create-libvirt-N-format` for the images libvirt creates itself. libvirt owns every such id: it
 * drives and dismisses them, so the gateway never sends QMP verbs for them.
 */
import type { BlockJobType } from './types.js';

/** The kinds in libvirt's job ids. */
export type LibvirtJobKind = 'copy' | 'commit' | 'pull' | 'backup';

export interface LibvirtJobId {
  kind: LibvirtJobKind;
  /** The disk's target, e.g. `vda`. */
  disk: string;
  /** The QEMU node the job runs on, e.g. `libvirt-1-format`. */
  node: string;
}

const JOB_ID = /^(copy|commit|pull|backup)-([A-Za-z0-9_.]+?)-(libvirt-\d+-(?:format|storage))$/;
const INTERNAL_ID = /^create-libvirt-\d+-(?:format|storage)$/;

/** Parses a libvirt block job id; undefined for any other id. */
export function parseLibvirtJobId(id: string): LibvirtJobId | undefined {
  const match = JOB_ID.exec(id);
  if (!match) return undefined;
  return { kind: match[1] as LibvirtJobKind, disk: match[2] as string, node: match[3] as string };
}

/** libvirt-internal jobs (creating a copy target or an overlay): hidden unless asked for. */
export const isInternalJobId = (id: string): boolean => INTERNAL_ID.test(id);

/** Ids libvirt owns (its block jobs and its internal ones). */
export const isLibvirtOwnedJobId = (id: string): boolean => parseLibvirtJobId(id) !== undefined || isInternalJobId(id);

/** The job id libvirt gives a job of `type` on `disk` whose top node is `libvirt-<index>-format`. */
export function libvirtJobId(type: BlockJobType, disk: string, index: number): string | undefined {
  const kind = KIND_OF_TYPE[type];
  return kind === undefined ? undefined : `${kind}-${disk}-libvirt-${index}-format`;
}

const KIND_OF_TYPE: Partial<Record<BlockJobType, LibvirtJobKind>> = {
  copy: 'copy',
  commit: 'commit',
  'active-commit': 'commit',
  pull: 'pull',
  backup: 'backup',
};

/** QEMU's job type for libvirt's block job type (what QEMU's events and polls call it). */
export const QEMU_TYPE_OF: Record<BlockJobType, string> = {
  copy: 'mirror',
  'active-commit': 'commit',
  commit: 'commit',
  pull: 'stream',
  backup: 'backup',
  unknown: 'unknown',
};

/** The libvirt kind a QEMU job type can belong to (to match libvirt's verdicts to jobs). */
export function kindOfQemuType(type: string): LibvirtJobKind | undefined {
  switch (type) {
    case 'mirror':
      return 'copy';
    case 'commit':
      return 'commit';
    case 'stream':
      return 'pull';
    case 'backup':
      return 'backup';
    default:
      return undefined;
  }
}

/** The kind of libvirt's block-job-2 type. */
export const kindOfBlockJobType = (type: BlockJobType): LibvirtJobKind | undefined => KIND_OF_TYPE[type];
