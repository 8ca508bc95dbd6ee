/**
 * Argument specs of the QMP commands the simulator implements, checked the way QEMU's QAPI
 * visitors check them (missing and unexpected parameters, wrong scalar types) before any side effect.
 */
import { qmpErrors } from './errors.js';

type Scalar = 'str' | 'int' | 'bool' | 'any';

interface CommandSpec {
  required: Record<string, Scalar>;
  optional: Record<string, Scalar>;
}

const jobStartCommon: Record<string, Scalar> = {
  'job-id': 'str',
  speed: 'int',
  'auto-finalize': 'bool',
  'auto-dismiss': 'bool',
  'filter-node-name': 'str',
};

const mirrorLike: Record<string, Scalar> = {
  ...jobStartCommon,
  'on-source-error': 'str',
  'on-target-error': 'str',
};

export const COMMAND_SPECS: Record<string, CommandSpec> = {
  qmp_capabilities: { required: {}, optional: { enable: 'any' } },
  'query-version': { required: {}, optional: {} },
  'query-qmp-schema': { required: {}, optional: {} },
  'query-jobs': { required: {}, optional: {} },
  'query-block-jobs': { required: {}, optional: {} },
  quit: { required: {}, optional: {} },
  // blockdev-add is a flat union over dozens of drivers: only the root keys are checked here.
  'blockdev-add': { required: { driver: 'str' }, optional: {} },
  'blockdev-del': { required: { 'node-name': 'str' }, optional: {} },
  'blockdev-mirror': {
    required: { device: 'str', target: 'str', sync: 'str' },
    optional: { ...mirrorLike, replaces: 'str', granularity: 'int', 'buf-size': 'int', 'copy-mode': 'str' },
  },
  'blockdev-backup': {
    required: { device: 'str', target: 'str', sync: 'str' },
    optional: { ...mirrorLike, bitmap: 'str', 'bitmap-mode': 'str', compress: 'bool', 'x-perf': 'any' },
  },
  'block-stream': {
    required: { device: 'str' },
    optional: { ...jobStartCommon, base: 'str', 'base-node': 'str', 'backing-file': 'str', bottom: 'str', 'on-error': 'str' },
  },
  'block-commit': {
    required: { device: 'str' },
    optional: {
      ...jobStartCommon, base: 'str', 'base-node': 'str', top: 'str', 'top-node': 'str', 'backing-file': 'str', 'on-error': 'str',
    },
  },
  'job-complete': { required: { id: 'str' }, optional: {} },
  'job-cancel': { required: { id: 'str' }, optional: {} },
  'job-pause': { required: { id: 'str' }, optional: {} },
  'job-resume': { required: { id: 'str' }, optional: {} },
  'job-finalize': { required: { id: 'str' }, optional: {} },
  'job-dismiss': { required: { id: 'str' }, optional: {} },
  'block-job-cancel': { required: { device: 'str' }, optional: { force: 'bool' } },
  'block-job-complete': { required: { device: 'str' }, optional: {} },
  'block-job-pause': { required: { device: 'str' }, optional: {} },
  'block-job-resume': { required: { device: 'str' }, optional: {} },
  'block-job-set-speed': { required: { device: 'str', speed: 'int' }, optional: {} },
  'block-job-finalize': { required: { id: 'str' }, optional: {} },
  'block-job-dismiss': { required: { id: 'str' }, optional: {} },
};

const TYPE_NAMES: Record<Scalar, string> = { str: 'string', int: 'integer', bool: 'boolean', any: 'any' };

function checkType(name: string, value: unknown, type: Scalar): void {
  const ok =
    type === 'any' ||
    (type === 'str' && typeof value === 'string') ||
    (type === 'int' && Number.isSafeInteger(value)) ||
    (type === 'bool' && typeof value === 'boolean');
  if (!ok) throw qmpErrors.invalidType(name, TYPE_NAMES[type]);
}

/** Throws QEMU's refusal for bad arguments; the command must exist in COMMAND_SPECS. */
export function checkArguments(command: string, args: Record<string, unknown>): void {
  const spec = COMMAND_SPECS[command];
  if (!spec) throw qmpErrors.commandNotFound(command);
  for (const [name, type] of Object.entries(spec.required)) {
    if (!(name in args)) throw qmpErrors.missing(name);
    checkType(name, args[name], type);
  }
  if (command === 'blockdev-add') return;
  for (const [name, value] of Object.entries(args)) {
    if (name in spec.required) continue;
    const type = spec.optional[name];
    if (!type) throw qmpErrors.unexpected(name);
    checkType(name, value, type);
  }
}
