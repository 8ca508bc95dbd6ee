// The fleet recipe in docs/deploy.md against what it names: the metrics table matches the metrics the
// fleet registers, the host and edge configs pass the schema as those roles, the edge unit verifies.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveServeConfig } from '../../../src/cli/serve.js';
import { readRepo, REPO_ROOT, shellWords } from '../../utils/doc-sources.js';

const repoPath = (path: string) => join(REPO_ROOT, path);
const hasTool = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const scratch = mkdtempSync(join(tmpdir(), 'bjg-fleet-docs-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('the fleet recipe in docs/deploy.md', () => {
  it('its "What to monitor" table names exactly the fleet metrics src/fleet/metrics.ts registers', () => {
    const source = readRepo('src/fleet/metrics.ts');
    const registered = new Set([
      ...[...source.matchAll(/`\$\{PREFIX\}(\w+)`/g)].map((m) => m[1]!),
      ...[...source.matchAll(/counter\(registry, '(\w+)'/g)].map((m) => m[1]!),
    ]);
    const section = readRepo('docs/deploy.md').split('### What to monitor')[1]!.split('\n## ')[0]!;
    const documented = new Set([...section.matchAll(/`fleet_(\w+?)(?:\{\w+\})?`/g)].map((m) => m[1]!));
    expect(registered.size).toBeGreaterThanOrEqual(14);
    expect([...documented].sort()).toEqual([...registered].sort());
  });

  it('deploy/fleet-host.json is a host gateway and deploy/fleet-edge.json an edge, both valid', async () => {
    const host = await resolveServeConfig(['--config', repoPath('deploy/fleet-host.json')]);
    const edge = await resolveServeConfig(['--config', repoPath('deploy/fleet-edge.json')]);
    expect(host).not.toBe('help');
    expect(edge).not.toBe('help');
    if (host === 'help' || edge === 'help') return;
    expect(host.fleet).toMatchObject({ redis: 'env:REDIS_URL', hostId: 'hv1', tlsCaFile: expect.any(String) });
    expect(Object.keys(host.qmp ?? {}).length).toBeGreaterThan(0);
    expect(edge.fleet).toMatchObject({ redis: 'env:REDIS_URL', edge: true, tlsCaFile: expect.any(String) });
    expect(edge.qmp).toBeUndefined();
  });

  it('deploy/blockjob-gateway-edge.service runs serve with the edge config and reads the Redis URL from a root-only file', async () => {
    const unit = readRepo('deploy/blockjob-gateway-edge.service');
    const execStart = shellWords(/^ExecStart=(.+)$/m.exec(unit)?.[1] ?? '');
    expect(execStart.slice(0, 3)).toEqual(['/usr/bin/node', '/opt/blockjob-gateway/dist/cli/main.js', 'serve']);
    expect(execStart.slice(3)).toEqual(['--config', '/etc/blockjob-gateway/edge.json']);
    expect(readRepo('docs/deploy.md')).toContain('install -m 0644 deploy/fleet-edge.json /etc/blockjob-gateway/edge.json');
    expect(unit).toMatch(/^EnvironmentFile=\/etc\/blockjob-gateway\/redis\.env$/m);
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
    expect(unit).not.toMatch(/^StateDirectory=/m);
  });

  it.skipIf(!hasTool('systemd-analyze'))('deploy/blockjob-gateway-edge.service passes `systemd-analyze verify` without a warning', () => {
    const local = readRepo('deploy/blockjob-gateway-edge.service').replaceAll('/opt/blockjob-gateway', REPO_ROOT.replace(/\/$/, '')).replace('/usr/bin/node', process.execPath);
    const file = join(scratch, 'blockjob-gateway-edge.service');
    writeFileSync(file, local);
    const result = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('deploy/redis-fleet.conf has AOF, TLS only, and an ACL user limited to the fleet prefix', () => {
    const conf = readRepo('deploy/redis-fleet.conf');
    for (const line of ['appendonly yes', 'appendfsync everysec', 'port 0', 'user default off', 'maxmemory-policy noeviction']) expect(conf).toMatch(new RegExp(`^${line}$`, 'm'));
    expect(conf).toMatch(/^tls-port \d+$/m);
    expect(conf).toMatch(/^user gateway on >\S+ ~bjg:\* &bjg:\* \+@all -@dangerous \+info$/m);
    expect(readRepo('docs/deploy.md')).toContain('~bjg:* &bjg:* +@all -@dangerous +info');
  });

  it('deploy/redis-fleet.conf sizes the AOF rewrite as docs/deploy.md says', () => {
    const size = /^auto-aof-rewrite-min-size (\S+)$/m.exec(readRepo('deploy/redis-fleet.conf'))?.[1];
    expect(size).toBeDefined();
    expect(readRepo('deploy/redis-fleet.conf')).toMatch(/^auto-aof-rewrite-percentage 100$/m);
    expect(readRepo('docs/deploy.md')).toContain(`\`auto-aof-rewrite-min-size ${size}\``);
  });
});
