/**
 * What the simulated QEMU answers when it refuses a command: `{"error": {"class", "desc"}}`.
 * The texts are QEMU 7.2's own (job.c, job-qmp.c, blockdev.c, qapi visitors), so clients meet the
 * same refusals as on a real monitor.
 */
import { verbRefusalText, type QemuJobStatus, type QemuVerb } from '../jobs/qemu-rules.js';

export class QmpErrorReply extends Error {
  override name = 'QmpErrorReply';
  constructor(
    readonly qmpClass: 'GenericError' | 'CommandNotFound' | 'DeviceNotActive',
    readonly desc: string,
  ) {
    super(`${qmpClass}: ${desc}`);
  }
}

export const qmpErrors = {
  commandNotFound: (command: string) => new QmpErrorReply('CommandNotFound', `The command ${command} has not been found`),
  capabilitiesFirst: () => new QmpErrorReply('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'"),
  alreadyNegotiated: () => new QmpErrorReply('CommandNotFound', 'Capabilities negotiation is already complete, command ignored'),
  missing: (parameter: string) => new QmpErrorReply('GenericError', `Parameter '${parameter}' is missing`),
  unexpected: (parameter: string) => new QmpErrorReply('GenericError', `Parameter '${parameter}' is unexpected`),
  invalidType: (parameter: string, expected: string) =>
    new QmpErrorReply('GenericError', `Invalid parameter type for '${parameter}', expected: ${expected}`),
  invalidParameter: (parameter: string) => new QmpErrorReply('GenericError', `Invalid parameter '${parameter}'`),
  jobNotFound: () => new QmpErrorReply('GenericError', 'Job not found'),
  blockJobNotFound: (device: string) => new QmpErrorReply('DeviceNotActive', `Block job '${device}' not found`),
  verbRefused: (id: string, status: QemuJobStatus, verb: QemuVerb) => new QmpErrorReply('GenericError', verbRefusalText(id, status, verb)),
  alreadyPaused: () => new QmpErrorReply('GenericError', 'Job is already paused'),
  notPaused: () => new QmpErrorReply('GenericError', "Can't resume a job that was not paused"),
  cancelPaused: (device: string) =>
    new QmpErrorReply('GenericError', `The block job for device '${device}' is currently paused`),
  cannotComplete: (id: string) => new QmpErrorReply('GenericError', `The active block job '${id}' cannot be completed`),
  invalidJobId: (id: string) => new QmpErrorReply('GenericError', `Invalid job ID '${id}'`),
  jobIdInUse: (id: string) => new QmpErrorReply('GenericError', `Job ID '${id}' already in use`),
  nodeNotFound: (device: string, node: string) =>
    new QmpErrorReply('GenericError', `Cannot find device='${device}' nor node_name='${node}'`),
  nodeBusy: (node: string, jobType: string) =>
    new QmpErrorReply('GenericError', `Node '${node}' is busy: block device is in use by block job: ${jobType}`),
  rootNodeName: () => new QmpErrorReply('GenericError', "'node-name' must be specified for the root node"),
  duplicateNode: (node: string) => new QmpErrorReply('GenericError', `Duplicate nodes with node-name='${node}'`),
  noSuchNode: (node: string) => new QmpErrorReply('GenericError', `Failed to find node with node-name='${node}'`),
};
