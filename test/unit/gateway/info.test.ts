/** GET /v1/info's body from the source's per-VM info: backend and versions, and what `simulated` means. */
import { expect, it } from 'vitest';
import { gatewayInfo } from '../../../src/gateway/info.js';
import type { VmInfo } from '../../../src/jobs/types.js';
import { INFO_SCHEMA, schemaRegistry } from '../../../src/protocol/schemas.js';

const info = (vm: string, fields: Partial<VmInfo>): VmInfo => ({ vm, status: 'connected', backend: 'qmp', commandsSent: 0, problems: {}, ...fields });

it('describes each VM by its backend and versions, and is valid against http-info.schema.json', () => {
  const infos = new Map([
    ['vm1', info('vm1', { qemu: { major: 7, minor: 2, micro: 22 } })],
    ['dom1', info('dom1', { backend: 'libvirt', qemu: { major: 8, minor: 0, micro: 0 }, libvirt: { major: 9, minor: 0, micro: 0 } })],
    ['vm2', info('vm2', { status: 'connecting' })],
  ]);
  const body = gatewayInfo({}, { info: (vm) => infos.get(vm) }, [...infos.values()].map(({ vm, status }) => ({ vm, status })), { maxPayloadBytes: 65536 });
  expect(body.vms).toEqual([
    { vm: 'vm1', status: 'connected', source: 'qmp', qemu: '7.2.22' },
    { vm: 'dom1', status: 'connected', source: 'libvirt', qemu: '8.0.0', libvirt: '9.0.0' },
    { vm: 'vm2', status: 'connecting', source: 'qmp', qemu: null },
  ]);
  expect(body.simulated).toBe(false);
  const validate = schemaRegistry().validator(INFO_SCHEMA);
  expect([validate(body), validate.errors ?? null]).toEqual([true, null]);
});

it('is simulated when told so, or when every VM runs on the simulator', () => {
  const sim = { info: (vm: string) => info(vm, { backend: 'simulated' }) };
  const vms = [{ vm: 'vm1', status: 'connected' as const }];
  expect(gatewayInfo({}, sim, vms, {}).simulated).toBe(true);
  expect(gatewayInfo({ simulated: false }, sim, vms, {}).simulated).toBe(false);
  expect(gatewayInfo({ simulated: true }, { info: (vm: string) => info(vm, {}) }, vms, {}).simulated).toBe(true);
  expect(gatewayInfo({}, undefined, vms, {}).vms).toEqual([{ vm: 'vm1', status: 'connected', source: 'fleet', qemu: null }]);
});
