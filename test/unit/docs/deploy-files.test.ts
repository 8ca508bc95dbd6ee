// The example deployment files in deploy/ and the snippets in docs/deploy.md are what the code and
// the tools accept: the config validates, the tokens load and match the documented sha256 recipe,
// the systemd unit passes systemd-analyze, the libvirt XML parses with the qemu namespace.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile, validateConfig } from '../../../src/cli/config.js';
import { resolveServeConfig } from '../../../src/cli/serve.js';
import { ConfigError } from '../../../src/errors.js';
import { TokenAuthenticator } from '../../../src/gateway/auth.js';
import { startGateway } from '../../../src/gateway/server.js';
import { JobRegistry } from '../../../src/jobs/registry.js';
import { codeBlocks, DEPLOY_FILES, INSTALLED_PATHS, markedBlock, qmpArguments, readRepo, REPO_ROOT, shellWords } from '../../utils/doc-sources.js';

const repoPath = (path: string) => `${REPO_ROOT}${path}`;
const scratch = mkdtempSync(join(tmpdir(), 'bjg-docs-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const hasTool = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

describe('deploy/gateway.json', () => {
  it('validates against schemas/config.schema.json and names VMs with monitor addresses', async () => {
    const config = await loadConfigFile(repoPath(DEPLOY_FILES.config));
    expect(Object.keys(config.qmp ?? {}).length).toBeGreaterThan(0);
    for (const address of Object.values(config.qmp ?? {})) expect(address).toMatch(/^unix:\/run\/blockjob-gateway\/[\w.-]+\.qmp$/);
    // Its relative tokens path lands where the install steps put the tokens file.
    expect(config.tokens).toBe(repoPath('deploy/tokens.json'));
    expect(INSTALLED_PATHS['/etc/blockjob-gateway/tokens.json']).toBe(DEPLOY_FILES.tokens);
  });

  it('a non-loopback listen in it is backed by a tokens file', async () => {
    const config = await loadConfigFile(repoPath(DEPLOY_FILES.config));
    expect(config.listen).not.toMatch(/^127\.|^localhost:|^\[::1\]:/);
    expect(config.tokens).toBeDefined();
    expect(config.insecure).not.toBe(true);
  });

  it('the config error deploy.md quotes is the one a bad value gets', async () => {
    const quoted = /`error \[GW_ERR_CONFIG\]: (\S+): (\/[^`]+)`/.exec(readRepo('docs/deploy.md'));
    expect(quoted).not.toBeNull();
    const [, , message] = quoted!;
    const bad = join(scratch, 'bad.json');
    writeFileSync(bad, JSON.stringify({ qmp: { vm1: 'unix:/run/vm1.qmp' }, limits: { maxPayloadBytes: 10 } }));
    const error = await loadConfigFile(bad).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(`${bad}: ${message}`);
  });

  it('the non-loopback refusal deploy.md quotes is what the gateway says without tokens', async () => {
    const quoted = /`(refusing to serve on non-loopback address) \.\.\.\s+(without a tokens file)`/.exec(readRepo('docs/deploy.md').replace(/\n\s*/g, ' '));
    expect(quoted).not.toBeNull();
    const registry = new JobRegistry();
    const error = await startGateway({ source: registry, listen: { host: '0.0.0.0', port: 0 } }).catch((e: unknown) => e);
    await registry.close();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain(quoted![1]);
    expect((error as Error).message).toContain(quoted![2]);
  });
});

describe('deploy/tokens.example.json and the sha256 recipe', () => {
  const exampleTokens = () => {
    const sentence = /digests are those of the tokens `([^`]+)` and\s+`([^`]+)`/.exec(readRepo('docs/deploy.md'));
    expect(sentence).not.toBeNull();
    return [sentence![1]!, sentence![2]!];
  };

  it('loads with the real token parser, and each documented example token authenticates as its entry', async () => {
    const auth = await TokenAuthenticator.fromFile(repoPath(DEPLOY_FILES.tokens));
    const file = JSON.parse(readRepo(DEPLOY_FILES.tokens)) as { tokens: Array<{ name: string; scopes: string[]; vms?: string[] }> };
    const tokens = exampleTokens();
    expect(tokens).toHaveLength(file.tokens.length);
    tokens.forEach((token, i) => {
      const principal = auth.authenticate(token);
      expect(principal?.name).toBe(file.tokens[i]!.name);
      expect([...principal!.scopes]).toEqual(file.tokens[i]!.scopes);
      expect(principal!.vms === null ? undefined : [...principal!.vms]).toEqual(file.tokens[i]!.vms);
    });
    expect(auth.authenticate('not-a-token')).toBeNull();
  });

  it('the documented `printf %s TOKEN | sha256sum` prints the digest the example file holds', () => {
    const recipe = /`(printf %s (\S+) \| sha256sum)`/.exec(readRepo('docs/deploy.md'));
    expect(recipe).not.toBeNull();
    const [, command, token] = recipe!;
    const digest = execFileSync('bash', ['-c', command!], { encoding: 'utf8' }).split(/\s+/)[0];
    const file = JSON.parse(readRepo(DEPLOY_FILES.tokens)) as { tokens: Array<{ sha256: string }> };
    expect(file.tokens[exampleTokens().indexOf(token!)]?.sha256).toBe(digest);
  });

  it("the token recipe block runs and its digest authenticates the token it made", () => {
    const block = markedBlock('docs/deploy.md', 'token-recipe');
    const output = execFileSync('bash', ['-euo', 'pipefail', '-c', `${block.text}\necho "token:$token"`], { encoding: 'utf8' });
    const digest = /^([0-9a-f]{64})\s+-$/m.exec(output)?.[1];
    const token = /^token:(.+)$/m.exec(output)?.[1];
    expect(digest).toBeDefined();
    expect(token).toMatch(/^[A-Za-z0-9]{30,}$/);
    const auth = TokenAuthenticator.fromJson({ tokens: [{ name: 'made', sha256: digest, scopes: ['read'] }] });
    expect(auth.authenticate(token)?.name).toBe('made');
  });

  it('the inline libvirt config of deploy.md passes the config schema', () => {
    const inline = codeBlocks('docs/deploy.md').filter((b) => b.lang === 'json' && b.text.includes('"libvirt"'));
    expect(inline.length).toBeGreaterThan(0);
    for (const block of inline) expect(validateConfig(JSON.parse(block.text), 'deploy.md').libvirt?.length).toBeGreaterThan(0);
  });

  it('the inline tokens file of deploy.md has the shape the parser accepts', () => {
    const inline = codeBlocks('docs/deploy.md').filter((b) => b.lang === 'json' && b.text.includes('"tokens"'));
    expect(inline.length).toBeGreaterThan(0);
    for (const block of inline) {
      const json = JSON.parse(block.text.replace('<hex SHA-256 of the token>', 'a'.repeat(64))) as unknown;
      expect(() => TokenAuthenticator.fromJson(json)).not.toThrow();
    }
  });
});

describe('deploy/blockjob-gateway.service', () => {
  const unit = readRepo(DEPLOY_FILES.unit);
  const execStart = shellWords(/^ExecStart=(.+)$/m.exec(unit)?.[1] ?? '');

  it('its ExecStart runs `serve` with flags the real CLI accepts', async () => {
    expect(execStart.slice(0, 3)).toEqual(['/usr/bin/node', '/opt/blockjob-gateway/dist/cli/main.js', 'serve']);
    const args = execStart.slice(3).map((word) => (INSTALLED_PATHS[word] ? repoPath(INSTALLED_PATHS[word]!) : word));
    const config = await resolveServeConfig(args);
    expect(config).not.toBe('help');
  });

  it('drains on the signal serve drains on, and has the sections systemd needs', () => {
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
    expect(readRepo('src/cli/serve.ts')).toContain("'SIGTERM'");
    for (const section of ['[Unit]', '[Service]', '[Install]']) expect(unit).toContain(`\n${section}\n`);
    expect(unit).not.toMatch(/^MemoryDenyWriteExecute=yes/m); // V8 needs writable code pages
  });

  it.skipIf(!hasTool('systemd-analyze'))('passes `systemd-analyze verify` without a warning', () => {
    // Point it at this checkout and this node, so the executables it checks exist.
    const local = unit.replaceAll('/opt/blockjob-gateway', REPO_ROOT.replace(/\/$/, '')).replace('/usr/bin/node', process.execPath);
    const file = join(scratch, 'blockjob-gateway.service');
    writeFileSync(file, local);
    const result = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });
});

describe('the extra QMP monitor in each deployment', () => {
  it('every -qmp argument shown is the unix socket form with server=on,wait=off', () => {
    const found = qmpArguments();
    const where = new Set(found.map((f) => f.where.replace(/ \(libvirt\)$/, '')));
    for (const file of ['README.md', 'docs/deploy.md', DEPLOY_FILES.libvirt, DEPLOY_FILES.proxmox]) expect(where, `${file} shows a -qmp`).toContain(file);
    for (const { where, value } of found) expect(value, where).toMatch(/^unix:\/run\/blockjob-gateway\/[\w.-]+\.qmp,server=on,wait=off$/);
  });

  it('the Proxmox file is an args: line, and its qm set command says the same', () => {
    const conf = readRepo(DEPLOY_FILES.proxmox);
    const args = /^args: (.+)$/m.exec(conf)?.[1];
    const qmSet = /qm set (\d+) --args '([^']+)'/.exec(readRepo('docs/deploy.md'));
    expect(args).toBeDefined();
    expect(qmSet?.[2]).toBe(args);
    expect(conf).toContain(`qm set ${qmSet![1]} --args '${args}'`);
    expect(conf.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#'))).toHaveLength(1);
  });

  const python = hasTool('python3');
  it.skipIf(!python)('the libvirt XML (file and doc snippet) is well-formed and uses the qemu namespace', () => {
    const snippets = [readRepo(DEPLOY_FILES.libvirt), ...['docs/deploy.md', 'README.md'].flatMap((file) => codeBlocks(file).filter((b) => b.lang === 'xml').map((b) => b.text))];
    expect(snippets.length).toBeGreaterThanOrEqual(3);
    const parse = `
import json, sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.read())
ns = '{http://libvirt.org/schemas/domain/qemu/1.0}'
line = root.find(ns + 'commandline')
print(json.dumps({'root': root.tag, 'args': [a.get('value') for a in line.findall(ns + 'arg')] if line is not None else None}))`;
    for (const xml of snippets) {
      const parsed = JSON.parse(execFileSync('python3', ['-c', parse], { input: xml, encoding: 'utf8' })) as { root: string; args: string[] | null };
      expect(parsed.root).toBe('domain');
      expect(parsed.args).toHaveLength(2);
      expect(parsed.args![0]).toBe('-qmp');
      expect(parsed.args![1]).toMatch(/^unix:.+,server=on,wait=off$/);
    }
  });
});

describe('README.md deployment sections repeat the checked examples', () => {
  const readme = () => readRepo('README.md');

  it('its systemd excerpt is lines of deploy/blockjob-gateway.service', () => {
    const excerpts = codeBlocks('README.md').filter((b) => b.lang === 'ini');
    expect(excerpts.length).toBe(1);
    const unitLines = new Set(readRepo(DEPLOY_FILES.unit).split('\n'));
    for (const line of excerpts[0]!.text.split('\n').filter((l) => l.trim() !== '')) expect(unitLines, line).toContain(line);
  });

  it("its qemu-storage-daemon monitor arguments are the qsd-example's, which test/qemu runs", () => {
    const inline = /`(--chardev socket,[^`]+ --monitor chardev=\w+)`/.exec(readme())?.[1];
    expect(inline).toBeDefined();
    expect(shellWords(markedBlock('docs/deploy.md', 'qsd-example').text.replace(/\\\n\s*/g, ' ')).join(' ')).toContain(inline);
  });

  it("its script lines are lines of deploy.md's script-example, which test/qemu runs", () => {
    const run = new Set(markedBlock('docs/deploy.md', 'script-example').text.split('\n'));
    const shown = codeBlocks('README.md')
      .filter((b) => b.lang === 'sh')
      .flatMap((b) => b.text.split('\n'))
      .filter((line) => /^blockjob-gateway (wait|complete|cancel|pause|resume) /.test(line));
    expect(shown.length).toBeGreaterThan(0);
    for (const line of shown) expect(run, line).toContain(line);
  });

  it('its libvirt snippet parses like the deploy file (well-formed, qemu namespace, -qmp pair)', () => {
    const xml = codeBlocks('README.md').filter((b) => b.lang === 'xml');
    expect(xml).toHaveLength(1);
    expect(xml[0]!.text).toContain("xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'");
  });
});
