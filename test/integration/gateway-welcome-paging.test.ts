/**
 * A large fleet's `welcome` is bounded (issue 12): it lists the VM streams a token may read only up to
 * the schema's bound and always says how many there are; `GET /v1/jobs?limit=&after=` pages through
 * them in name order, a default page without `limit`. Real `ws` and HTTP on loopback; every message is checked against its schema.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { jobsDefaultPage, jobsPageLimit, welcomeVmLimit } from '../../src/protocol/messages.js';
import { Leftovers } from '../utils/gateway-support.js';
import { FakeJobSource } from '../utils/fake-source.js';
import { bearer, testTokens } from '../utils/tokens.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

const tokens = testTokens({ name: 'ops', scopes: ['read', 'control'] }, { name: 'two', scopes: ['read'], vms: ['vm7', 'vm1000'] });

async function fleetGateway(count: number) {
  const names = Array.from({ length: count }, (_, i) => `vm${i}`);
  const source = new FakeJobSource(names);
  const gateway = await leftovers.gateway({ source, tokens });
  source.transition('vm7', 'j1', 'running');
  return { names, gateway };
}

describe('welcome and GET /v1/jobs with more VMs than a welcome lists', () => {
  it('counts the VMs instead of listing more than the bound; a token limited to a few gets them listed', async () => {
    const limit = welcomeVmLimit();
    expect(limit).toBe(1000);
    const { gateway } = await fleetGateway(limit + 1);

    const ops = await leftovers.client(gateway.wsUrl, bearer('ops-secret'));
    const big = await ops.next((m) => m.type === 'welcome');
    expect(big).toMatchObject({ vms: [], vmCount: limit + 1 });
    expect(JSON.stringify(big).length).toBeLessThan(200);

    const two = await leftovers.client(gateway.wsUrl, bearer('two-secret'));
    const small = await two.next((m) => m.type === 'welcome');
    expect(small.vmCount).toBe(2);
    expect(small.vms.map((v: { vm: string }) => v.vm).sort()).toEqual(['vm1000', 'vm7']);
    expect(small.vms.find((v: { vm: string }) => v.vm === 'vm7')).toMatchObject({ offset: 1, status: 'connected' });
    expect([...ops.invalid, ...two.invalid]).toEqual([]);
  });

  it('pages through every VM in name order with limit/after and next, and refuses a malformed page', async () => {
    const { names, gateway } = await fleetGateway(1001);
    const get = async (query: string, token = 'ops-secret') => {
      const res = await fetch(`${gateway.url}/v1/jobs${query}`, bearer(token));
      return { status: res.status, body: (await res.json()) as { vms: { vm: string; offset: number; jobs: unknown[] }[]; next?: string; error?: string } };
    };

    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    for (;;) {
      const { status, body } = await get(`?limit=400${after === undefined ? '' : `&after=${encodeURIComponent(after)}`}`);
      expect(status).toBe(200);
      pages++;
      expect(body.vms.length).toBeLessThanOrEqual(400);
      seen.push(...body.vms.map((v) => v.vm));
      if (body.next === undefined) break;
      expect(body.next).toBe(body.vms[body.vms.length - 1]!.vm);
      after = body.next;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual([...names].sort());
    // The page after a name that is not (or no longer) a VM: the boundary holds.
    expect((await get('?limit=2&after=vm0a')).body.vms.map((v) => v.vm)).toEqual(['vm1', 'vm10']);
    expect((await get('?limit=1&after=vm6')).body).toMatchObject({ vms: [{ vm: 'vm60' }], next: 'vm60' });
    // Without limit: the default page (bounded like a welcome), and next for the rest; after alone pages on.
    const first = await get('');
    expect(first.status).toBe(200);
    expect(jobsDefaultPage()).toBe(1000);
    expect(first.body.vms.map((v) => v.vm)).toEqual([...names].sort().slice(0, jobsDefaultPage()));
    expect(first.body.next).toBe(first.body.vms.at(-1)!.vm);
    expect((await get(`?after=${encodeURIComponent(first.body.next!)}`)).body).toEqual({ vms: [expect.objectContaining({ vm: [...names].sort().at(-1) })] });
    // A token that sees fewer VMs than a page gets them all and no next (what small gateways always saw).
    expect((await get('', 'two-secret')).body).toEqual({ vms: [expect.objectContaining({ vm: 'vm1000' }), expect.objectContaining({ vm: 'vm7', offset: 1 })] });
    // A limited token pages through its own VMs only.
    expect((await get('?limit=1', 'two-secret')).body).toMatchObject({ vms: [{ vm: 'vm1000' }], next: 'vm1000' });
    expect((await get('?limit=1&after=vm1000', 'two-secret')).body).toEqual({ vms: [expect.objectContaining({ vm: 'vm7', offset: 1 })] });

    for (const bad of ['?limit=0', '?limit=abc', '?limit=1.5', `?limit=${jobsPageLimit() + 1}`, '?limit=&after=vm1']) {
      const { status, body } = await get(bad);
      expect([bad, status]).toEqual([bad, 400]);
      expect(body.error).toMatch(/limit/);
    }
  });
});
