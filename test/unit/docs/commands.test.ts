// Every command line the docs show is run or parsed by something real, so the docs cannot rot:
// `blockjob-gateway` lines go through the real CLI parsers, marked blocks are run by the test named
// in MARKED_BLOCKS, and any other command must be one of the kinds listed here, with the reason.
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/main.js';
import { gatewayUrl } from '../../../src/cli/remote.js';
import { resolveServeConfig } from '../../../src/cli/serve.js';
import {
  allDocs,
  codeBlocks,
  gatewayCommands,
  INSTALLED_PATHS,
  MARKED_BLOCKS,
  OWNED_DOCS,
  readRepo,
  REPO_ROOT,
  shellCommands,
  shellWords,
  SHELL_LANGS,
} from '../../utils/doc-sources.js';

/** Commands the docs show but no test runs, and why. Anything else in a shell block fails the check. */
const NOT_RUN: Readonly<Record<string, string>> = {
  'apt-get': 'installs system packages (.ci/run does it in CI)',
  useradd: 'needs root; part of the systemd install steps',
  install: 'needs root; part of the systemd install steps',
  systemctl: 'needs a running systemd; the unit itself is checked with systemd-analyze verify',
  journalctl: 'reads the journal of an installed service',
};

/** Kinds checked elsewhere: program -> the check that covers it. */
const CHECKED_ELSEWHERE: Readonly<Record<string, string>> = {
  'blockjob-gateway': 'parsed below by the real CLI',
  npx: 'npx blockjob-gateway: parsed below by the real CLI',
  npm: 'the npm script must exist (below)',
  'qemu-system-x86_64': 'its -qmp argument is started as a qemu-storage-daemon chardev (test/qemu/docs-deploy.test.ts)',
  qm: 'its -qmp argument is started as a qemu-storage-daemon chardev (test/qemu/docs-deploy.test.ts)',
  printf: 'the sha256 recipe is run and compared with the example tokens (deploy-files.test.ts)',
};

function program(command: string): string {
  const words = shellWords(command).filter((word) => !/^[A-Z_][A-Z0-9_]*=/.test(word));
  return words[0] === 'sudo' ? (words[1] ?? '') : (words[0] ?? '');
}

const shellBlocksOf = (file: string) => codeBlocks(file).filter((block) => SHELL_LANGS.has(block.lang));

describe('docs: every shell command is accounted for', () => {
  for (const file of OWNED_DOCS) {
    it(`${file}: each command is run by a marked test, checked, or listed as not run`, () => {
      const unaccounted: string[] = [];
      for (const block of shellBlocksOf(file)) {
        if (block.marker !== undefined) {
          expect(MARKED_BLOCKS, `${file}:${block.line} marker ${block.marker}`).toHaveProperty(block.marker);
          continue;
        }
        for (const command of shellCommands(block.text)) {
          const name = program(command);
          if (!(name in NOT_RUN) && !(name in CHECKED_ELSEWHERE)) unaccounted.push(`${file}:${block.line}: ${command}`);
        }
      }
      expect(unaccounted, 'add a check for these commands (or list them in NOT_RUN with the reason)').toEqual([]);
    });
  }

  it('each marker names a test file that really uses it', () => {
    for (const [marker, testFile] of Object.entries(MARKED_BLOCKS)) {
      expect(readRepo(testFile), `${testFile} should run the block marked ${marker}`).toContain(`'${marker}'`);
    }
  });

  it('npm commands name scripts that exist', () => {
    const scripts = (JSON.parse(readRepo('package.json')) as { scripts: Record<string, string> }).scripts;
    const builtIn = new Set(['ci', 'install', 'prune']);
    for (const file of OWNED_DOCS) {
      for (const block of shellBlocksOf(file)) {
        for (const command of shellCommands(block.text).filter((c) => program(c) === 'npm')) {
          const words = shellWords(command).filter((word) => !/^[A-Z_][A-Z0-9_]*=/.test(word) && word !== 'sudo');
          const verb = words[1]!;
          if (builtIn.has(verb)) continue;
          const script = verb === 'run' ? words[2]! : verb;
          expect(scripts, `${file}:${block.line}: ${command}`).toHaveProperty(script);
        }
      }
    }
  });
});

describe('docs: blockjob-gateway command lines parse with the real CLI', () => {
  afterEach(() => vi.restoreAllMocks());

  const commands = allDocs().flatMap((file) => gatewayCommands(file));

  it('the docs show commands to check', () => {
    expect(commands.length).toBeGreaterThanOrEqual(8);
  });

  for (const { file, line, command, argv } of commands) {
    it(`${file}:${line}: ${command}`, async () => {
      const args = argv.map((word) => INSTALLED_PATHS[word] ?? word);
      if (args[0] === 'serve') {
        // The real flag parser, config loader and schema validation; the example config stands in for /etc.
        const config = await resolveServeConfig(args.slice(1).map((word) => (INSTALLED_PATHS[word] ? `${REPO_ROOT}${INSTALLED_PATHS[word]}` : word)));
        expect(config).not.toBe('help');
        const resolved = config as { qmp?: object; libvirt?: unknown[]; fleet?: { edge?: boolean } };
        // An edge serves the fleet from Redis; everything else names its VMs (QMP) or libvirt connections.
        if (resolved.fleet?.edge) expect(resolved.qmp).toBeUndefined();
        else expect(Object.keys(resolved.qmp ?? {}).length + (resolved.libvirt ?? []).length).toBeGreaterThan(0);
        return;
      }
      // Client commands: strict flag parsing runs before --help is honoured, so exit 0 means every flag parsed.
      const written: string[] = [];
      vi.spyOn(process.stdout, 'write').mockImplementation((text) => (written.push(String(text)), true));
      vi.spyOn(process.stderr, 'write').mockImplementation((text) => (written.push(String(text)), true));
      const io = { out: (text: string) => void written.push(text), err: (text: string) => void written.push(text) };
      const code = await main([...args, '--help'], io);
      expect(code, written.join('')).toBe(0);
      const positionals = args.slice(1).filter((word, i, all) => !word.startsWith('-') && !(all[i - 1]?.startsWith('--') && !['--json', '--force', '--insecure'].includes(all[i - 1]!)));
      if (args[0] !== undefined && !args[0].startsWith('-') && args[0] !== 'demo') expect(() => gatewayUrl(positionals, args[0]!)).not.toThrow();
    });
  }
});

const BENCHMARKS = 'docs/benchmarks.md';

describe('docs: links and file names point at things that exist', () => {
  it(`operations.md links ${BENCHMARKS} once it exists, and says it is not built until then`, () => {
    const operations = readRepo('docs/operations.md');
    if (existsSync(`${REPO_ROOT}${BENCHMARKS}`)) expect(operations).toContain('](benchmarks.md)');
    else expect(operations).toMatch(/not built yet/);
  });

  const slug = (heading: string) =>
    heading
      .trim()
      .toLowerCase()
      .replace(/[^\w\- ]/g, '')
      .replace(/ /g, '-');
  const anchors = (file: string) => new Set(readRepo(file).split('\n').filter((l) => /^#{1,6} /.test(l)).map((l) => slug(l.replace(/^#+ /, ''))));

  for (const file of OWNED_DOCS) {
    it(`${file}: relative links and their anchors resolve`, () => {
      const base = new URL(file, `file://${REPO_ROOT}`);
      for (const [, target] of readRepo(file).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        const [path, anchor] = target!.split('#');
        const resolved = path ? new URL(path, base) : base;
        expect(existsSync(resolved), `${file}: link ${target}`).toBe(true);
        if (anchor && resolved.pathname.endsWith('.md')) {
          expect(anchors(resolved.pathname.slice(REPO_ROOT.length)), `${file}: anchor in ${target}`).toContain(anchor);
        }
      }
    });

    it(`${file}: every source, test, schema and deploy path it names exists`, () => {
      const named = [...readRepo(file).matchAll(/`((?:src|test|schemas|deploy|demo|docs)\/[\w./-]+)`/g)].map((m) => m[1]!);
      for (const path of named) {
        if (path.includes('*') || path === BENCHMARKS) continue; // BENCHMARKS: see the test below
        expect(existsSync(`${REPO_ROOT}${path}`), `${file} names ${path}`).toBe(true);
      }
    });
  }
});
